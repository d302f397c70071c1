// core/milter_codec and core/milter_steps: every MTA command encoded byte
// for byte (expected bytes written out by hand), every milter response
// decoded, the same responses whole, at every split into two and octet by
// octet, each limit at its bound, option negotiation and which reply is due.
#include "core/milter_codec.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "core/milter_steps.h"

namespace ringmx::milter {
namespace {

// A string literal with its NULs, without the terminating one.
template <size_t N>
std::string B(const char (&s)[N]) {
  return std::string(s, N - 1);
}

// A packet as the milter sends it: the big-endian length, then `body`
// (command octet + data).
std::string frame(const std::string& body) {
  const auto n = static_cast<uint32_t>(body.size());
  std::string out;
  out.push_back(static_cast<char>(n >> 24));
  out.push_back(static_cast<char>((n >> 16) & 0xff));
  out.push_back(static_cast<char>((n >> 8) & 0xff));
  out.push_back(static_cast<char>(n & 0xff));
  return out + body;
}

// One line per response, every field shown: what the split tests compare.
std::string describe(const Response& r) {
  struct Visitor {
    std::string operator()(const OptNegReply& o) const {
      std::string s = "optneg " + std::to_string(o.version) + " " + std::to_string(o.actions) +
                      " " + std::to_string(o.protocol);
      for (size_t i = 0; i < o.macros.size(); ++i) {
        if (o.macros[i]) s += " [" + std::to_string(i) + ":" + *o.macros[i] + "]";
      }
      return s;
    }
    std::string operator()(const Verdict& v) const {
      return std::string("verdict ") + static_cast<char>(v.reply);
    }
    std::string operator()(const ReplyCode& c) const {
      return "replycode " + std::to_string(c.code) + " <" + c.enhanced + "> " + c.text;
    }
    std::string operator()(const AddHeader& h) const {
      return "addheader " + h.name + "|" + h.value;
    }
    std::string operator()(const InsertHeader& h) const {
      return "insheader " + std::to_string(h.index) + " " + h.name + "|" + h.value;
    }
    std::string operator()(const ChangeHeader& h) const {
      return "chgheader " + std::to_string(h.index) + " " + h.name + "|" + h.value;
    }
    std::string operator()(const AddRecipient& a) const { return "addrcpt " + a.rcpt; }
    std::string operator()(const AddRecipientArgs& a) const {
      return "addrcpt_par " + a.rcpt + "|" + a.args;
    }
    std::string operator()(const DeleteRecipient& d) const { return "delrcpt " + d.rcpt; }
    std::string operator()(const ChangeFrom& c) const { return "chgfrom " + c.from + "|" + c.args; }
    std::string operator()(const ReplaceBody& b) const { return "replbody " + b.chunk; }
    std::string operator()(const Quarantine& q) const { return "quarantine " + q.reason; }
    std::string operator()(const MilterProtocolError& e) const { return "error " + e.message; }
  };
  return std::visit(Visitor{}, r);
}

std::vector<std::string> drain(MilterDecoder& d) {
  std::vector<std::string> out;
  while (auto r = d.next()) out.push_back(describe(*r));
  return out;
}

// Feeds `in` in the pieces `cuts` (offsets) make.
std::vector<std::string> decode(const std::string& in, const std::vector<size_t>& cuts = {},
                                const DecoderLimits& limits = {}) {
  MilterDecoder d(limits);
  std::vector<std::string> out;
  size_t at = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(in.size());
  for (const size_t end : ends) {
    d.feed(std::string_view(in).substr(at, end - at));
    EXPECT_LE(d.buffered(), limits.max_packet + 4);
    for (auto& s : drain(d)) out.push_back(std::move(s));
    at = end;
  }
  return out;
}

// The same responses whole, at every split into two and octet by octet.
std::vector<std::string> every_split(const std::string& in, const DecoderLimits& limits = {}) {
  const auto whole = decode(in, {}, limits);
  for (size_t cut = 0; cut <= in.size(); ++cut) {
    EXPECT_EQ(decode(in, {cut}, limits), whole) << "split at " << cut;
  }
  std::vector<size_t> all;
  for (size_t i = 1; i < in.size(); ++i) all.push_back(i);
  EXPECT_EQ(decode(in, all, limits), whole) << "octet by octet";
  return whole;
}

// The one response a single packet decodes to.
std::string one(const std::string& body, const DecoderLimits& limits = {}) {
  const auto out = every_split(frame(body), limits);
  EXPECT_EQ(out.size(), 1u);
  return out.empty() ? "" : out.front();
}

bool is_err(const std::string& described) {
  return described.rfind("error ", 0) == 0;
}

// ---- Encoders

TEST(MilterEncode, OptNeg) {
  std::string out;
  encode_optneg(out, 6, action::kAll, 0x001fffff);
  EXPECT_EQ(out, B("\0\0\0\x0d"
                   "O"
                   "\0\0\0\x06"
                   "\0\0\x01\xff"
                   "\0\x1f\xff\xff"));
}

TEST(MilterEncode, Macros) {
  std::string out;
  const std::pair<std::string_view, std::string_view> macros[] = {{"j", "mx.example"},
                                                                  {"{daemon_name}", "ringmx"}};
  ASSERT_TRUE(encode_macros(out, Command::connect, macros));
  EXPECT_EQ(out, B("\0\0\0\x24"
                   "D"
                   "C"
                   "j\0mx.example\0{daemon_name}\0ringmx\0"));
  std::string empty;
  ASSERT_TRUE(encode_macros(empty, Command::eob, {}));
  EXPECT_EQ(empty, B("\0\0\0\x02"
                     "DE"));
}

TEST(MilterEncode, Connect) {
  std::string out;
  ASSERT_TRUE(encode_connect(out, "mail.example.org", Family::inet4, 25, "192.0.2.1"));
  EXPECT_EQ(out, B("\0\0\0\x1f"
                   "C"
                   "mail.example.org\0"
                   "4"
                   "\0\x19"
                   "192.0.2.1\0"));
  out.clear();
  ASSERT_TRUE(encode_connect(out, "[2001:db8::1]", Family::inet6, 0xc350, "2001:db8::1"));
  EXPECT_EQ(out, B("\0\0\0\x1e"
                   "C"
                   "[2001:db8::1]\0"
                   "6"
                   "\xc3\x50"
                   "2001:db8::1\0"));
  out.clear();
  ASSERT_TRUE(encode_connect(out, "localhost", Family::unknown, 0, ""));
  EXPECT_EQ(out, B("\0\0\0\x0c"
                   "C"
                   "localhost\0"
                   "U"));
  out.clear();
  ASSERT_TRUE(encode_connect(out, "localhost", Family::unix_socket, 0, "/run/x"));
  EXPECT_EQ(out, B("\0\0\0\x15"
                   "C"
                   "localhost\0"
                   "L"
                   "\0\0"
                   "/run/x\0"));
}

TEST(MilterEncode, HeloMailRcpt) {
  std::string out;
  ASSERT_TRUE(encode_helo(out, "client.example"));
  EXPECT_EQ(out, B("\0\0\0\x10"
                   "H"
                   "client.example\0"));
  out.clear();
  const std::string_view args[] = {"SIZE=100", "BODY=8BITMIME"};
  ASSERT_TRUE(encode_mail(out, "<a@b.example>", args));
  EXPECT_EQ(out, B("\0\0\0\x26"
                   "M"
                   "<a@b.example>\0"
                   "SIZE=100\0"
                   "BODY=8BITMIME\0"));
  out.clear();
  ASSERT_TRUE(encode_mail(out, "<>"));
  EXPECT_EQ(out, B("\0\0\0\x04"
                   "M"
                   "<>\0"));
  out.clear();
  ASSERT_TRUE(encode_rcpt(out, "<c@d.example>"));
  EXPECT_EQ(out, B("\0\0\0\x0f"
                   "R"
                   "<c@d.example>\0"));
}

TEST(MilterEncode, DataHeadersBody) {
  std::string out;
  encode_data(out);
  EXPECT_EQ(out, B("\0\0\0\x01"
                   "T"));
  out.clear();
  ASSERT_TRUE(encode_header(out, "Subject", " hi"));
  EXPECT_EQ(out, B("\0\0\0\x0d"
                   "L"
                   "Subject\0"
                   " hi\0"));
  out.clear();
  encode_eoh(out);
  EXPECT_EQ(out, B("\0\0\0\x01"
                   "N"));
  out.clear();
  ASSERT_TRUE(encode_body(out, "hello\r\n", kChunk64K));
  EXPECT_EQ(out, B("\0\0\0\x08"
                   "B"
                   "hello\r\n"));
  out.clear();
  ASSERT_TRUE(encode_body(out, "abc", 3));  // at the bound
  EXPECT_FALSE(encode_body(out, "abcd", 3));
  EXPECT_EQ(out, B("\0\0\0\x04"
                   "Babc"));
  out.clear();
  encode_eob(out);
  EXPECT_EQ(out, B("\0\0\0\x01"
                   "E"));
}

TEST(MilterEncode, EndingCommands) {
  std::string out;
  encode_abort(out);
  encode_quit(out);
  encode_quit_nc(out);
  EXPECT_EQ(out, B("\0\0\0\x01"
                   "A"
                   "\0\0\0\x01"
                   "Q"
                   "\0\0\0\x01"
                   "K"));
  out.clear();
  ASSERT_TRUE(encode_unknown(out, "XFOO bar"));
  EXPECT_EQ(out, B("\0\0\0\x0a"
                   "U"
                   "XFOO bar\0"));
}

TEST(MilterEncode, NulInsideAStringIsRefused) {
  std::string out = "keep";
  const std::string nul = B("a\0b");
  EXPECT_FALSE(encode_helo(out, nul));
  EXPECT_FALSE(encode_header(out, "X", nul));
  EXPECT_FALSE(encode_header(out, nul, "v"));
  EXPECT_FALSE(encode_connect(out, nul, Family::inet4, 1, "192.0.2.1"));
  EXPECT_FALSE(encode_unknown(out, nul));
  const std::string_view args[] = {nul};
  EXPECT_FALSE(encode_mail(out, "<a@b>", args));
  EXPECT_FALSE(encode_rcpt(out, nul));
  const std::pair<std::string_view, std::string_view> macros[] = {{"i", nul}};
  EXPECT_FALSE(encode_macros(out, Command::mail, macros));
  EXPECT_EQ(out, "keep");
}

// ---- Decoder: every response

TEST(MilterDecode, Verdicts) {
  for (const char c : std::string("acdrtsp4f")) {
    EXPECT_EQ(one(std::string(1, c)), std::string("verdict ") + c);
  }
}

TEST(MilterDecode, ReplyCode) {
  EXPECT_EQ(one(B("y550 5.7.1 go away\0")), "replycode 550 <5.7.1> 550 5.7.1 go away");
  EXPECT_EQ(one(B("y451 try later\0")), "replycode 451 <> 451 try later");
  EXPECT_EQ(one(B("y421\0")), "replycode 421 <> 421");
  EXPECT_EQ(one(B("y550-5.7.1 first\r\n550 5.7.1 second\0")),
            "replycode 550 <5.7.1> 550-5.7.1 first\r\n550 5.7.1 second");
  // An enhanced code of another class is text, not an enhanced code.
  EXPECT_EQ(one(B("y550 4.7.1 odd\0")), "replycode 550 <> 550 4.7.1 odd");
  EXPECT_EQ(one(B("y554 5.7.1\0")), "replycode 554 <5.7.1> 554 5.7.1");
}

TEST(MilterDecode, BadReplyCodes) {
  for (const std::string& bad : {
           B("y250 ok\0"),           // not 4xx/5xx
           B("y55\0"),               // too short
           B("y5x0 no\0"),           // not digits
           B("y550_x\0"),            // bad separator
           B("y550 a\nb\0"),         // bare LF: SMTP reply injection
           B("y550 a\rb\0"),         // bare CR
           B("y550-a\r\n551 b\0"),   // codes differ
           B("y550 a\r\n550 b\0"),   // a line before the last without '-'
           B("y550-a\r\n550-b\0"),   // the last with '-'
           B("y550 no terminator"),  // missing NUL
           B("y550 x\0extra"),       // octets after the NUL
           B("y550 a\x01\0"),        // a control character
       }) {
    EXPECT_TRUE(is_err(one(bad))) << bad;
  }
}

TEST(MilterDecode, Modifications) {
  EXPECT_EQ(one(B("hX-Spam\0yes\0")), "addheader X-Spam|yes");
  EXPECT_EQ(one(B("i\0\0\0\x02X-A\0 v\0")), "insheader 2 X-A| v");
  EXPECT_EQ(one(B("m\0\0\0\x01Subject\0\0")), "chgheader 1 Subject|");  // deletes
  EXPECT_EQ(one(B("m\x01\0\0\0X\0folded\r\n\tline\0")), "chgheader 16777216 X|folded\r\n\tline");
  EXPECT_EQ(one(B("+<new@example.org>\0")), "addrcpt <new@example.org>");
  EXPECT_EQ(one(B("2<new@example.org>\0NOTIFY=NEVER\0")),
            "addrcpt_par <new@example.org>|NOTIFY=NEVER");
  EXPECT_EQ(one(B("-<old@example.org>\0")), "delrcpt <old@example.org>");
  EXPECT_EQ(one(B("e<s@example.org>\0")), "chgfrom <s@example.org>|");
  EXPECT_EQ(one(B("e<s@example.org>\0SIZE=1\0")), "chgfrom <s@example.org>|SIZE=1");
  EXPECT_EQ(one(B("bnew body\r\n")), "replbody new body\r\n");
  EXPECT_EQ(one(B("b")), "replbody ");
  EXPECT_EQ(one(B("qspam score 12\0")), "quarantine spam score 12");
}

TEST(MilterDecode, MalformedModifications) {
  for (const std::string& bad : {
           B("hX-Spam\0yes"),       // value without NUL
           B("hX-Spam"),            // name without NUL
           B("h\0v\0"),             // empty name
           B("hX:Y\0v\0"),          // ':' in the name
           B("hX Y\0v\0"),          // space in the name
           B("hX\0a\r\nBcc: x\0"),  // a new header line injected
           B("hX\0a\nb\0"),         // LF not folding
           B("hX\0a\r\0"),          // bare CR
           B("hX\0v\0more"),        // octets after
           B("i\0\0X\0v\0"),        // index cut short: name read as index
           B("i\0\0"),              // index missing
           B("m"),                  // nothing at all
           B("+\0"),                // empty recipient
           B("+<a@b>"),             // no NUL
           B("+<a@b>\0x\0"),        // ADDRCPT has no args
           B("+<a\r\n@b>\0"),       // control octets
           B("2<a@b>\0"),           // ADDRCPT_PAR without args
           B("2<a@b>\0args"),       // args without NUL
           B("-\0"),                // empty recipient
           B("e\0"),                // empty sender
           B("e<a@b>\0x\0y\0"),     // too many fields
           B("q\0"),                // empty reason
           B("qreason"),            // no NUL
       }) {
    EXPECT_TRUE(is_err(one(bad))) << testing::PrintToString(bad);
  }
}

TEST(MilterDecode, UnknownAndMisplacedCommands) {
  EXPECT_TRUE(is_err(one("Z")));
  EXPECT_TRUE(is_err(one(B("l\0\0\0\0{x}\0"))));  // SETSYMLIST rides in OPTNEG in v6
  EXPECT_TRUE(is_err(one("ax")));                 // ACCEPT carries no data
  EXPECT_TRUE(is_err(one(B("c\0"))));
  EXPECT_TRUE(is_err(one(std::string(1, '\0'))));
}

TEST(MilterDecode, OptNegWithAndWithoutMacros) {
  EXPECT_EQ(one(B("O\0\0\0\x06\0\0\0\x01\0\0\x10\x00")), "optneg 6 1 4096");
  EXPECT_EQ(one(B("O\0\0\0\x06\0\0\x01\0\0\0\0\0"
                  "\0\0\0\0{client_addr} j\0"
                  "\0\0\0\x05i\0"
                  "\0\0\0\x02\0")),
            "optneg 6 256 0 [0:{client_addr} j] [2:] [5:i]");
  // What the MTA sends reads back the same (the same layout without macros).
  std::string mine;
  encode_optneg(mine, 6, action::kAll, proto::kAll);
  EXPECT_EQ(decode(mine), std::vector<std::string>{"optneg 6 511 " + std::to_string(proto::kAll)});
  for (const std::string& bad : {
           B("O\0\0\0\x06\0\0\0\x01\0\0\x10"),                            // protocol cut short
           B("O\0\0\0\x06\0\0\0\x01\0\0\0\0\0\0\0"),                      // stage cut short
           B("O\0\0\0\x06\0\0\0\x01\0\0\0\0\0\0\0\0j"),                   // names without NUL
           B("O\0\0\0\x06\0\0\0\x01\0\0\0\0\0\0\0\x07j\0"),               // stage 7
           B("O\0\0\0\x06\0\0\0\x01\0\0\0\0\0\0\0\x01j\0\0\0\0\x01i\0"),  // stage twice
       }) {
    EXPECT_TRUE(is_err(one(bad))) << testing::PrintToString(bad);
  }
}

// ---- Decoder: streams and splits

TEST(MilterDecode, StreamAtEverySplit) {
  const std::string stream =
      frame("p") + frame(B("hX-Spam\0yes\0")) + frame(B("i\0\0\0\x01X-B\0 b\0")) +
      frame(B("2<n@example.org>\0ORCPT=rfc822;n@example.org\0")) + frame("bbody part") +
      frame(B("y550-5.7.1 a\r\n550 5.7.1 b\0")) + frame("c") +
      frame(B("O\0\0\0\x06\0\0\0\0\0\0\0\0\0\0\0\x03{rcpt_addr}\0"));
  const auto out = every_split(stream);
  ASSERT_EQ(out.size(), 8u);
  EXPECT_EQ(out[0], "verdict p");
  EXPECT_EQ(out[5], "replycode 550 <5.7.1> 550-5.7.1 a\r\n550 5.7.1 b");
  EXPECT_EQ(out[7], "optneg 6 0 0 [3:{rcpt_addr}]");
}

TEST(MilterDecode, ErrorEndsTheStream) {
  // After the bad packet nothing more is read, however it was split.
  const std::string stream = frame("c") + frame("Z") + frame("a");
  const auto out = every_split(stream);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], "verdict c");
  EXPECT_TRUE(is_err(out[1]));
}

TEST(MilterDecode, LengthZeroIsAnError) {
  const auto out = every_split(B("\0\0\0\0") + frame("c"));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], "error packet of length 0");
}

TEST(MilterDecode, LengthAtAndOverTheLimit) {
  DecoderLimits limits;
  limits.max_packet = 16;
  EXPECT_EQ(one("b" + std::string(15, 'x'), limits), "replbody " + std::string(15, 'x'));
  // One over: refused as soon as the length is in, before any data is kept.
  MilterDecoder d(limits);
  d.feed(B("\0\0\0\x11"));
  EXPECT_TRUE(d.failed());
  EXPECT_EQ(d.buffered(), 0u);
  const auto r = d.next();
  ASSERT_TRUE(r);
  EXPECT_EQ(describe(*r), "error packet length 17 over the limit of 16");
  // A huge claimed length is refused the same way, nothing allocated for it.
  MilterDecoder big;
  big.feed(
      B("\xff\xff\xff\xff"
        "b"));
  EXPECT_TRUE(big.failed());
  EXPECT_EQ(big.buffered(), 0u);
}

TEST(MilterDecode, TruncatedPacketWaits) {
  MilterDecoder d;
  const std::string p = frame(B("hX\0v\0"));
  d.feed(std::string_view(p).substr(0, p.size() - 1));
  EXPECT_FALSE(d.has_next());
  EXPECT_EQ(d.buffered(), p.size() - 1);
  d.feed(std::string_view(p).substr(p.size() - 1));
  EXPECT_EQ(drain(d), std::vector<std::string>{"addheader X|v"});
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(MilterDecode, HeaderSizesAtTheBound) {
  DecoderLimits limits;
  limits.max_header_name = 8;
  limits.max_header_value = 10;
  EXPECT_EQ(one("h" + std::string(8, 'N') + B("\0") + std::string(10, 'v') + B("\0"), limits),
            "addheader NNNNNNNN|vvvvvvvvvv");
  EXPECT_TRUE(is_err(one("h" + std::string(9, 'N') + B("\0v\0"), limits)));
  EXPECT_TRUE(is_err(one("h" + B("N\0") + std::string(11, 'v') + B("\0"), limits)));
  EXPECT_TRUE(is_err(one(B("i\0\0\0\x01") + std::string(9, 'N') + B("\0v\0"), limits)));
  EXPECT_TRUE(is_err(one(B("m\0\0\0\x01N\0") + std::string(11, 'v') + B("\0"), limits)));
}

// ---- Negotiation

OptNegReply reply(uint32_t version, uint32_t actions, uint32_t protocol) {
  OptNegReply r;
  r.version = version;
  r.actions = actions;
  r.protocol = protocol;
  return r;
}

TEST(MilterNegotiate, AgreesOnTheMilterTerms) {
  OptNegReply r = reply(6, action::kAddHeaders | action::kQuarantine,
                        proto::kNoHelo | proto::kNrConnect | proto::kSkip | proto::kHdrLeadSpace);
  r.macros[static_cast<size_t>(Stage::mail)] = "{mail_addr} {auth_type}";
  const auto n = negotiate(Offer{}, r);
  ASSERT_TRUE(n.ok) << n.error;
  EXPECT_EQ(n.terms.version, 6u);
  EXPECT_TRUE(n.terms.allows(action::kAddHeaders));
  EXPECT_FALSE(n.terms.allows(action::kChangeBody));
  EXPECT_TRUE(n.terms.skips(Command::helo));
  EXPECT_FALSE(n.terms.skips(Command::connect));
  EXPECT_TRUE(n.terms.no_reply(Command::connect));
  EXPECT_FALSE(n.terms.no_reply(Command::helo));
  EXPECT_TRUE(n.terms.skip_allowed());
  EXPECT_TRUE(n.terms.header_leading_space());
  EXPECT_FALSE(n.terms.wants_rejected_rcpts());
  EXPECT_EQ(n.terms.chunk, kChunk64K);
  ASSERT_TRUE(n.terms.macros(Stage::mail));
  EXPECT_EQ(*n.terms.macros(Stage::mail), "{mail_addr} {auth_type}");
  EXPECT_FALSE(n.terms.macros(Stage::connect));
}

TEST(MilterNegotiate, EveryStepFlag) {
  const std::pair<uint32_t, Command> skips[] = {
      {proto::kNoConnect, Command::connect}, {proto::kNoHelo, Command::helo},
      {proto::kNoMail, Command::mail},       {proto::kNoRcpt, Command::rcpt},
      {proto::kNoBody, Command::body},       {proto::kNoHeaders, Command::header},
      {proto::kNoEoh, Command::eoh},         {proto::kNoUnknown, Command::unknown},
      {proto::kNoData, Command::data}};
  for (const auto& [flag, cmd] : skips) {
    const auto n = negotiate(Offer{}, reply(6, 0, flag));
    ASSERT_TRUE(n.ok);
    EXPECT_TRUE(n.terms.skips(cmd)) << static_cast<char>(cmd);
    EXPECT_EQ(n.terms.protocol, flag);
  }
  const std::pair<uint32_t, Command> silent[] = {
      {proto::kNrConnect, Command::connect}, {proto::kNrHelo, Command::helo},
      {proto::kNrMail, Command::mail},       {proto::kNrRcpt, Command::rcpt},
      {proto::kNrBody, Command::body},       {proto::kNrHeader, Command::header},
      {proto::kNrEoh, Command::eoh},         {proto::kNrUnknown, Command::unknown},
      {proto::kNrData, Command::data}};
  for (const auto& [flag, cmd] : silent) {
    const auto n = negotiate(Offer{}, reply(6, 0, flag));
    ASSERT_TRUE(n.ok);
    EXPECT_TRUE(n.terms.no_reply(cmd)) << static_cast<char>(cmd);
    MilterReplyTracker t(n.terms);
    EXPECT_EQ(t.sent(cmd), MilterReplyTracker::Send::no_reply);
    EXPECT_FALSE(t.reply_due());
  }
  const auto none = negotiate(Offer{}, reply(6, 0, 0));
  for (const char c : std::string("CHMRBLNUT")) {
    EXPECT_FALSE(none.terms.skips(static_cast<Command>(c)));
    EXPECT_FALSE(none.terms.no_reply(static_cast<Command>(c)));
  }
  EXPECT_FALSE(none.terms.no_reply(Command::eob));
  EXPECT_TRUE(none.terms.no_reply(Command::macro));
  EXPECT_TRUE(none.terms.no_reply(Command::abort));
  EXPECT_TRUE(none.terms.no_reply(Command::quit));
  EXPECT_TRUE(none.terms.no_reply(Command::quit_nc));
}

TEST(MilterNegotiate, RefusesWhatWasNotOffered) {
  Offer offer;
  offer.actions = action::kAddHeaders;
  offer.protocol = proto::kNoHelo | proto::kNrHelo;
  EXPECT_TRUE(negotiate(offer, reply(6, action::kAddHeaders, proto::kNrHelo)).ok);
  EXPECT_FALSE(negotiate(offer, reply(6, action::kChangeBody, 0)).ok);
  const auto n = negotiate(offer, reply(6, 0, proto::kNrConnect));
  EXPECT_FALSE(n.ok);
  EXPECT_EQ(n.error, "milter wants protocol flags 0x00001000 not offered");
  EXPECT_FALSE(negotiate(Offer{}, reply(1, 0, 0)).ok);
  EXPECT_FALSE(negotiate(Offer{}, reply(0, 0, 0)).ok);
  EXPECT_FALSE(negotiate(Offer{}, reply(7, 0, 0)).ok);
}

TEST(MilterNegotiate, OlderVersionsSkipWhatTheyDoNotKnow) {
  const auto v2 = negotiate(Offer{}, reply(2, 0, 0));
  ASSERT_TRUE(v2.ok);
  EXPECT_TRUE(v2.terms.skips(Command::unknown));
  EXPECT_TRUE(v2.terms.skips(Command::data));
  const auto v3 = negotiate(Offer{}, reply(3, 0, 0));
  ASSERT_TRUE(v3.ok);
  EXPECT_FALSE(v3.terms.skips(Command::unknown));
  EXPECT_TRUE(v3.terms.skips(Command::data));
  const auto v4 = negotiate(Offer{}, reply(4, 0, 0));
  EXPECT_FALSE(v4.terms.skips(Command::data));
}

TEST(MilterNegotiate, ChunkSizeIsTheSmallerOffer) {
  Offer offer;  // kAll: up to 1M
  EXPECT_EQ(negotiate(offer, reply(6, 0, proto::kMds1M)).terms.chunk, kChunk1M);
  EXPECT_EQ(negotiate(offer, reply(6, 0, proto::kMds256K)).terms.chunk, kChunk256K);
  EXPECT_EQ(negotiate(offer, reply(6, 0, 0)).terms.chunk, kChunk64K);
  offer.protocol = proto::kNoSteps | proto::kMds256K;
  const auto n = negotiate(offer, reply(6, 0, proto::kMds1M));
  ASSERT_TRUE(n.ok);  // MDS bits are sizes, not features
  EXPECT_EQ(n.terms.chunk, kChunk256K);
  EXPECT_EQ(n.terms.protocol, 0u);
  offer.protocol = 0;
  EXPECT_EQ(negotiate(offer, reply(6, 0, proto::kMds1M)).terms.chunk, kChunk64K);
}

// ---- Which reply is due

Negotiated terms(uint32_t actions, uint32_t protocol) {
  const auto n = negotiate(Offer{}, reply(6, actions, protocol));
  EXPECT_TRUE(n.ok) << n.error;
  return n.terms;
}

using Outcome = MilterReplyTracker::Outcome;
using Send = MilterReplyTracker::Send;

TEST(MilterTracker, ReplyPerStep) {
  MilterReplyTracker t(terms(0, 0));
  EXPECT_EQ(t.sent(Command::macro), Send::no_reply);
  EXPECT_EQ(t.sent(Command::connect), Send::reply_due);
  EXPECT_EQ(t.pending(), Command::connect);
  EXPECT_EQ(t.sent(Command::helo), Send::out_of_turn);
  EXPECT_EQ(t.on_response(Verdict{Reply::progress}), Outcome::interim);
  EXPECT_EQ(t.on_response(Verdict{Reply::cont}), Outcome::final);
  EXPECT_FALSE(t.reply_due());
  EXPECT_EQ(t.sent(Command::mail), Send::reply_due);
  EXPECT_EQ(t.on_response(ReplyCode{550, "5.7.1", "550 5.7.1 no"}), Outcome::final);
  EXPECT_EQ(t.sent(Command::rcpt), Send::reply_due);
  // Its reply comes whatever follows: ABORT and QUIT_NC wait for it.
  EXPECT_EQ(t.sent(Command::abort), Send::out_of_turn);
  EXPECT_EQ(t.sent(Command::quit_nc), Send::out_of_turn);
  EXPECT_EQ(t.on_response(Verdict{Reply::cont}), Outcome::final);
  EXPECT_EQ(t.sent(Command::abort), Send::no_reply);
  EXPECT_EQ(t.sent(Command::helo), Send::reply_due);
  EXPECT_EQ(t.sent(Command::quit), Send::no_reply);  // at any time: the connection closes
  EXPECT_FALSE(t.reply_due());
  EXPECT_FALSE(t.failed());
}

TEST(MilterTracker, TheMessagesCommandsPipelineAndAreAnsweredInOrder) {
  MilterReplyTracker t(terms(action::kAll, proto::kSkip | proto::kNrEoh));
  EXPECT_EQ(t.sent(Command::data), Send::reply_due);
  // Nothing pipelines behind a command outside the message.
  EXPECT_EQ(t.sent_pipelined(Command::header), Send::out_of_turn);
  EXPECT_EQ(t.on_response(Verdict{Reply::cont}), Outcome::final);
  EXPECT_EQ(t.sent_pipelined(Command::header), Send::reply_due);
  EXPECT_EQ(t.sent_pipelined(Command::header), Send::reply_due);
  EXPECT_EQ(t.sent_pipelined(Command::eoh), Send::no_reply);  // NR_EOH
  EXPECT_EQ(t.sent_pipelined(Command::body), Send::reply_due);
  EXPECT_EQ(t.sent_pipelined(Command::eob), Send::reply_due);
  EXPECT_EQ(t.replies_due(), 4U);
  EXPECT_EQ(t.sent(Command::mail), Send::out_of_turn);
  EXPECT_EQ(t.sent_pipelined(Command::mail), Send::out_of_turn);
  // Nothing may follow EOB before its answer.
  EXPECT_EQ(t.sent_pipelined(Command::body), Send::out_of_turn);
  EXPECT_EQ(t.pending(), Command::header);
  // A modification before EOB's turn is an error; SKIP only in BODY's.
  MilterReplyTracker copy = t;
  EXPECT_EQ(copy.on_response(AddHeader{"X", "y"}), Outcome::error);
  copy = t;
  EXPECT_EQ(copy.on_response(Verdict{Reply::skip}), Outcome::error);
  EXPECT_EQ(t.on_response(Verdict{Reply::cont}), Outcome::final);
  EXPECT_EQ(t.on_response(Verdict{Reply::cont}), Outcome::final);
  EXPECT_EQ(t.pending(), Command::body);
  EXPECT_EQ(t.on_response(Verdict{Reply::skip}), Outcome::final);
  EXPECT_EQ(t.pending(), Command::eob);
  EXPECT_EQ(t.on_response(AddHeader{"X", "y"}), Outcome::interim);
  EXPECT_EQ(t.on_response(Verdict{Reply::accept}), Outcome::final);
  EXPECT_FALSE(t.reply_due());
  EXPECT_FALSE(t.failed());
}

TEST(MilterTracker, NoReplyStepThenAResponseIsAnError) {
  MilterReplyTracker t(terms(0, proto::kNrConnect));
  EXPECT_EQ(t.sent(Command::connect), Send::no_reply);
  EXPECT_EQ(t.on_response(Verdict{Reply::cont}), Outcome::error);
  EXPECT_TRUE(t.failed());
  EXPECT_EQ(t.error(), "response 'c' when no reply is due");
  EXPECT_EQ(t.on_response(Verdict{Reply::cont}), Outcome::error);  // stays failed
}

TEST(MilterTracker, SkipOnlyToBodyWhenAgreed) {
  MilterReplyTracker with(terms(0, proto::kSkip));
  with.sent(Command::body);
  EXPECT_EQ(with.on_response(Verdict{Reply::skip}), Outcome::final);
  with.sent(Command::header);
  EXPECT_EQ(with.on_response(Verdict{Reply::skip}), Outcome::error);
  MilterReplyTracker without(terms(0, 0));
  without.sent(Command::body);
  EXPECT_EQ(without.on_response(Verdict{Reply::skip}), Outcome::error);
}

TEST(MilterTracker, ModificationsOnlyAfterEobAndAgreed) {
  MilterReplyTracker t(terms(action::kAddHeaders | action::kQuarantine, 0));
  t.sent(Command::rcpt);
  EXPECT_EQ(t.on_response(AddHeader{"X", "v"}), Outcome::error);
  MilterReplyTracker u(terms(action::kAddHeaders | action::kQuarantine, 0));
  u.sent(Command::eob);
  EXPECT_EQ(u.on_response(AddHeader{"X", "v"}), Outcome::interim);
  EXPECT_EQ(u.on_response(InsertHeader{0, "X", "v"}), Outcome::interim);
  EXPECT_EQ(u.on_response(Quarantine{"why"}), Outcome::interim);
  EXPECT_EQ(u.on_response(Verdict{Reply::progress}), Outcome::interim);
  EXPECT_EQ(u.on_response(Verdict{Reply::accept}), Outcome::final);
  EXPECT_EQ(u.modifications(), 3u);
  u.sent(Command::eob);
  EXPECT_EQ(u.on_response(ReplaceBody{"x"}), Outcome::error);  // CHGBODY not agreed
  EXPECT_EQ(u.error(), "modification response 'b' not among the agreed actions");
}

TEST(MilterTracker, EveryModificationNeedsItsAction) {
  const std::pair<Response, uint32_t> cases[] = {
      {AddHeader{"X", "v"}, action::kAddHeaders},
      {InsertHeader{1, "X", "v"}, action::kAddHeaders},
      {ChangeHeader{1, "X", ""}, action::kChangeHeaders},
      {AddRecipient{"<a@b>"}, action::kAddRcpt},
      {AddRecipientArgs{"<a@b>", "X=1"}, action::kAddRcptPar},
      {DeleteRecipient{"<a@b>"}, action::kDelRcpt},
      {ChangeFrom{"<a@b>", ""}, action::kChangeFrom},
      {ReplaceBody{"x"}, action::kChangeBody},
      {Quarantine{"q"}, action::kQuarantine}};
  for (const auto& [r, act] : cases) {
    EXPECT_EQ(required_action(r), act);
    MilterReplyTracker yes(terms(act, 0));
    yes.sent(Command::eob);
    EXPECT_EQ(yes.on_response(r), Outcome::interim) << describe(r);
    MilterReplyTracker no(terms(action::kAll & ~act, 0));
    no.sent(Command::eob);
    EXPECT_EQ(no.on_response(r), Outcome::error) << describe(r);
  }
}

TEST(MilterTracker, ModificationLimitAtTheBound) {
  MilterReplyTracker t(terms(action::kAddHeaders, 0), TrackerLimits{3});
  t.sent(Command::eob);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(t.on_response(AddHeader{"X", "v"}), Outcome::interim);
  EXPECT_EQ(t.on_response(Verdict{Reply::cont}), Outcome::final);
  t.sent(Command::eob);  // the count is per message
  for (int i = 0; i < 3; ++i) EXPECT_EQ(t.on_response(AddHeader{"X", "v"}), Outcome::interim);
  EXPECT_EQ(t.on_response(AddHeader{"X", "v"}), Outcome::error);
  EXPECT_EQ(t.error(), "more than 3 modifications for one message");
}

TEST(MilterTracker, OptNegOnlyAfterOptNeg) {
  MilterReplyTracker t(terms(0, 0));
  EXPECT_EQ(t.sent(Command::optneg), Send::reply_due);
  EXPECT_EQ(t.on_response(Verdict{Reply::cont}), Outcome::error);
  MilterReplyTracker u(terms(0, 0));
  u.sent(Command::optneg);
  EXPECT_EQ(u.on_response(reply(6, 0, 0)), Outcome::final);
  u.sent(Command::helo);
  EXPECT_EQ(u.on_response(reply(6, 0, 0)), Outcome::error);
}

TEST(MilterTracker, DecoderErrorsPassThrough) {
  MilterReplyTracker t(terms(0, 0));
  t.sent(Command::helo);
  EXPECT_EQ(t.on_response(MilterProtocolError{"packet of length 0"}), Outcome::error);
  EXPECT_EQ(t.error(), "packet of length 0");
}

}  // namespace
}  // namespace ringmx::milter
