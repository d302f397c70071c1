// The milter conversation (core/milter_client.h) against a scripted milter:
// what goes out for each step, what each answer makes of the step, the
// deadlines, and the bounds on what it holds.
#include "core/milter_client.h"

#include "core/socket_address.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ringmx::milter {
namespace {

constexpr int64_t kMs = 1'000'000;

struct Packet {
  char cmd = 0;
  std::string data;
};

// Takes every whole packet the client has sent, consuming its output.
std::vector<Packet> sent(MilterClient& c) {
  std::vector<Packet> out;
  std::string all;
  while (c.has_output()) {
    const std::string_view v = c.output();
    all.append(v);
    c.consume_output(v.size());
  }
  size_t at = 0;
  while (at + 5 <= all.size()) {
    const uint32_t len = (uint32_t{static_cast<uint8_t>(all[at])} << 24) |
                         (uint32_t{static_cast<uint8_t>(all[at + 1])} << 16) |
                         (uint32_t{static_cast<uint8_t>(all[at + 2])} << 8) |
                         uint32_t{static_cast<uint8_t>(all[at + 3])};
    EXPECT_GE(len, 1U);
    EXPECT_LE(at + 4 + len, all.size());
    out.push_back({all[at + 4], all.substr(at + 5, len - 1)});
    at += 4 + len;
  }
  EXPECT_EQ(at, all.size());
  return out;
}

std::string cmds(const std::vector<Packet>& ps) {
  std::string s;
  for (const Packet& p : ps) s.push_back(p.cmd);
  return s;
}

std::string frame(char cmd, const std::string& data = {}) {
  const auto len = static_cast<uint32_t>(data.size() + 1);
  std::string s;
  s.push_back(static_cast<char>(len >> 24));
  s.push_back(static_cast<char>(len >> 16));
  s.push_back(static_cast<char>(len >> 8));
  s.push_back(static_cast<char>(len));
  s.push_back(cmd);
  return s + data;
}

std::string be32(uint32_t v) {
  std::string s;
  for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<char>(v >> shift));
  return s;
}

// The milter's OPTNEG reply; `macros`: (stage, list) pairs.
std::string optneg(uint32_t actions, uint32_t protocol,
                   const std::vector<std::pair<uint32_t, std::string>>& macros = {}) {
  std::string d = be32(6) + be32(actions) + be32(protocol);
  for (const auto& [stage, list] : macros) d += be32(stage) + list + std::string(1, '\0');
  return frame('O', d);
}

std::string str0(std::string_view s) {
  return std::string(s) + std::string(1, '\0');
}

class MilterClientTest : public ::testing::Test {
 protected:
  MilterClient make(uint32_t actions, uint32_t protocol,
                    const std::vector<std::pair<uint32_t, std::string>>& macros = {}) {
    MilterClient c(Offer{}, timeouts_);
    c.connecting(now_);
    c.connected(now_);
    const std::vector<Packet> ps = sent(c);
    EXPECT_EQ(cmds(ps), "O");
    c.feed(optneg(actions, protocol, macros), now_);
    EXPECT_TRUE(c.negotiated());
    EXPECT_FALSE(c.failed()) << c.error();
    return c;
  }
  ClientTimeouts timeouts_{1000, 2000, 5000};
  int64_t now_ = 1000 * kMs;
  Macros connect_macros_{
      {"j", "mx.test"}, {"{client_addr}", "192.0.2.1"}, {"{daemon_name}", "ringmx"}};
};

TEST_F(MilterClientTest, AStepAskedBeforeNegotiationWaitsForIt) {
  MilterClient c(Offer{}, timeouts_);
  c.connecting(now_);
  EXPECT_EQ(c.deadline_ns(), now_ + 1000 * kMs);
  c.connect(now_, connect_macros_, "client.example", Family::inet4, 2525, "192.0.2.1");
  EXPECT_TRUE(c.busy());
  EXPECT_FALSE(c.has_output());  // nothing before the connection is up
  c.connected(now_);
  EXPECT_EQ(cmds(sent(c)), "O");
  EXPECT_EQ(c.deadline_ns(), now_ + 1000 * kMs);  // the negotiation is part of connecting
  c.feed(optneg(action::kAll, 0), now_);
  const std::vector<Packet> ps = sent(c);
  ASSERT_EQ(cmds(ps), "DC");
  EXPECT_EQ(ps[0].data, "C" + str0("j") + str0("mx.test") + str0("{client_addr}") +
                            str0("192.0.2.1") + str0("{daemon_name}") + str0("ringmx"));
  EXPECT_EQ(ps[1].data,
            str0("client.example") + "4" + std::string("\x09\xdd", 2) + str0("192.0.2.1"));
  EXPECT_TRUE(c.busy());
  EXPECT_FALSE(c.take_result());
  c.feed(frame('c'), now_);
  const std::optional<StepResult> r = c.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, StepResult::Kind::cont);
  EXPECT_FALSE(c.busy());
  EXPECT_EQ(c.deadline_ns(), 0);
}

TEST_F(MilterClientTest, MacrosAreThoseTheMilterListed) {
  MilterClient c = make(action::kAll, 0, {{0, "{client_addr} j"}});
  c.connect(now_, connect_macros_, "h", Family::inet4, 25, "192.0.2.1");
  const std::vector<Packet> ps = sent(c);
  ASSERT_EQ(cmds(ps), "DC");
  EXPECT_EQ(ps[0].data,
            "C" + str0("j") + str0("mx.test") + str0("{client_addr}") + str0("192.0.2.1"));
  // A list naming nothing we know: no MACRO packet at all.
  c.feed(frame('c'), now_);
  ASSERT_TRUE(c.take_result());
}

TEST_F(MilterClientTest, StepsTheMilterDoesNotAnswerOrWantEndAtOnce) {
  MilterClient c = make(action::kAll, proto::kNrConnect | proto::kNoHelo);
  c.connect(now_, connect_macros_, "h", Family::inet4, 25, "192.0.2.1");
  EXPECT_EQ(cmds(sent(c)), "DC");
  std::optional<StepResult> r = c.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, StepResult::Kind::cont);
  EXPECT_EQ(c.deadline_ns(), 0);
  c.helo(now_, {}, "client.example");
  EXPECT_EQ(cmds(sent(c)), "");
  r = c.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, StepResult::Kind::cont);
}

TEST_F(MilterClientTest, EveryVerdictOfAStep) {
  struct Case {
    std::string reply;
    StepResult::Kind kind;
    uint16_t code;
  };
  const std::vector<Case> cases = {
      {frame('r'), StepResult::Kind::reject, 0},
      {frame('t'), StepResult::Kind::tempfail, 0},
      {frame('d'), StepResult::Kind::discard, 0},
      {frame('a'), StepResult::Kind::accept, 0},
      {frame('4'), StepResult::Kind::shutdown, 0},
      {frame('f'), StepResult::Kind::shutdown, 0},
      {frame('y', str0("550 5.7.9 not from you")), StepResult::Kind::reject, 550},
      {frame('y', str0("451 4.7.1 later")), StepResult::Kind::tempfail, 451},
  };
  for (const Case& k : cases) {
    MilterClient c = make(action::kAll, 0);
    const std::vector<std::string> args = {"SIZE=10"};
    c.mail(now_, {{"{mail_addr}", "a@b.example"}}, "<a@b.example>", args);
    const std::vector<Packet> ps = sent(c);
    ASSERT_EQ(cmds(ps), "DM");
    EXPECT_EQ(ps[1].data, str0("<a@b.example>") + str0("SIZE=10"));
    c.feed(k.reply, now_);
    const std::optional<StepResult> r = c.take_result();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->kind, k.kind) << k.reply;
    EXPECT_EQ(r->reply.code, k.code);
  }
}

TEST_F(MilterClientTest, AcceptAtConnectEndsTheMilterForTheConnection) {
  MilterClient c = make(action::kAll, 0);
  c.connect(now_, {}, "h", Family::inet4, 25, "192.0.2.1");
  sent(c);
  c.feed(frame('a'), now_);
  ASSERT_EQ(c.take_result()->kind, StepResult::Kind::accept);
  c.helo(now_, {}, "x");
  EXPECT_EQ(c.take_result()->kind, StepResult::Kind::cont);
  c.mail(now_, {}, "<a@b>", {});
  EXPECT_EQ(c.take_result()->kind, StepResult::Kind::cont);
  EXPECT_EQ(cmds(sent(c)), "");
}

TEST_F(MilterClientTest, AcceptInATransactionEndsItAndTheNextMailAbortsFirst) {
  MilterClient c = make(action::kAll, proto::kNoConnect | proto::kNoHelo);
  c.mail(now_, {}, "<a@b>", {});
  EXPECT_EQ(cmds(sent(c)), "M");
  c.feed(frame('a'), now_);
  EXPECT_EQ(c.take_result()->kind, StepResult::Kind::accept);
  c.rcpt(now_, {}, "<r@b>", {});
  EXPECT_EQ(c.take_result()->kind, StepResult::Kind::cont);
  c.message(now_, {}, {}, "", "Subject: x\r\n\r\nbody\r\n");
  EXPECT_EQ(c.take_result()->kind, StepResult::Kind::cont);
  EXPECT_EQ(cmds(sent(c)), "");
  // The next transaction: ABORT, then MAIL, which the milter hears again.
  c.mail(now_, {}, "<a@b>", {});
  EXPECT_EQ(cmds(sent(c)), "AM");
  c.feed(frame('c'), now_);
  EXPECT_EQ(c.take_result()->kind, StepResult::Kind::cont);
}

TEST_F(MilterClientTest, TheMessageGoesAsHeadersEohBodyChunksAndEob) {
  MilterClient c = make(action::kAll, proto::kNoConnect | proto::kNoHelo | proto::kNoRcpt);
  c.mail(now_, {}, "<a@b>", {});
  sent(c);
  c.feed(frame('c'), now_);
  ASSERT_TRUE(c.take_result());
  const std::string body(150000, 'x');
  const std::string msg = "Subject: hello\r\nX-Folded: one\r\n\ttwo\r\nX-Empty:\r\n\r\n" + body;
  c.message(now_, {{"i", "Q1"}}, {{"i", "Q1"}}, "Received: from x\r\n\tby y\r\n", msg);
  // One command at a time, each waiting for its answer.
  std::string order;
  std::vector<std::string> headers;
  size_t body_octets = 0;
  for (int i = 0; i < 20 && c.busy(); ++i) {
    for (const Packet& p : sent(c)) {
      order.push_back(p.cmd);
      if (p.cmd == 'L') headers.push_back(p.data);
      if (p.cmd == 'B') {
        body_octets += p.data.size();
        EXPECT_LE(p.data.size(), kChunk64K);
      }
    }
    c.feed(frame('c'), now_);
  }
  EXPECT_EQ(order, "LLLLDNBBBDE");
  ASSERT_EQ(headers.size(), 4U);
  EXPECT_EQ(headers[0], str0("Received") + str0("from x\n\tby y"));
  EXPECT_EQ(headers[1], str0("Subject") + str0("hello"));
  EXPECT_EQ(headers[2], str0("X-Folded") + str0("one\n\ttwo"));
  EXPECT_EQ(headers[3], str0("X-Empty") + str0(""));
  EXPECT_EQ(body_octets, body.size());
  const std::optional<StepResult> r = c.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, StepResult::Kind::cont);
}

TEST_F(MilterClientTest, SkipEndsTheBodyAndModificationsComeBeforeTheFinalAnswer) {
  MilterClient c = make(action::kAll, proto::kNoConnect | proto::kNoHelo | proto::kSkip |
                                          proto::kNoHeaders | proto::kNoEoh);
  c.mail(now_, {}, "<a@b>", {});
  sent(c);
  c.feed(frame('c'), now_);
  c.take_result();
  const std::string msg = "A: b\r\n\r\n" + std::string(size_t{2} << 20, 'y');  // 33 chunks
  c.message(now_, {}, {}, "", msg);  // the message must outlive the step
  // The first chunk goes behind the headers; with SKIP agreed, each further
  // one waits for the answer to the one before: SKIP to the first stops them.
  std::string wire(c.output());
  c.consume_output(wire.size());
  c.feed(frame('s'), now_);
  while (c.has_output()) {
    const std::string_view v = c.output();
    wire.append(v);
    c.consume_output(v.size());
  }
  size_t chunks = 0;
  for (size_t at = 0; at + 5 <= wire.size();) {
    const uint32_t len = (uint32_t{static_cast<uint8_t>(wire[at])} << 24) |
                         (uint32_t{static_cast<uint8_t>(wire[at + 1])} << 16) |
                         (uint32_t{static_cast<uint8_t>(wire[at + 2])} << 8) |
                         uint32_t{static_cast<uint8_t>(wire[at + 3])};
    if (wire[at + 4] == 'B') ++chunks;
    at += 4 + len;
  }
  EXPECT_EQ(chunks, 1U);
  EXPECT_EQ(wire[wire.size() - 1], 'E');
  EXPECT_EQ(c.deadline_ns(), now_ + 5000 * kMs);  // only EOB's answer left: its timeout
  c.feed(frame('h', str0("X-Added") + str0("yes")), now_);
  c.feed(frame('p'), now_ + 4000 * kMs);  // progress pushes the deadline back
  EXPECT_EQ(c.deadline_ns(), now_ + 9000 * kMs);
  c.feed(frame('q', str0("looks odd")), now_);
  c.feed(frame('a'), now_);
  const std::optional<StepResult> r = c.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, StepResult::Kind::accept);
  ASSERT_EQ(c.modifications().size(), 2U);
  EXPECT_EQ(std::get<AddHeader>(c.modifications()[0]).name, "X-Added");
  EXPECT_EQ(std::get<Quarantine>(c.modifications()[1]).reason, "looks odd");
  EXPECT_FALSE(c.out_of_step());
  // The transaction ended at EOB: the next MAIL needs no ABORT.
  c.mail(now_, {}, "<a@b>", {});
  EXPECT_EQ(cmds(sent(c)), "M");
}

TEST_F(MilterClientTest, WithoutSkipTheBodyPipelinesWithinTheOutputBound) {
  MilterClient c =
      make(action::kAll, proto::kNoConnect | proto::kNoHelo | proto::kNoHeaders | proto::kNoEoh);
  c.mail(now_, {}, "<a@b>", {});
  sent(c);
  c.feed(frame('c'), now_);
  c.take_result();
  const std::string msg = "A: b\r\n\r\n" + std::string(size_t{1} << 20, 'y');
  c.message(now_, {}, {}, "", msg);
  // Everything goes at once (17 chunks and EOB), in pieces of at most the bound.
  const std::vector<Packet> ps = sent(c);
  EXPECT_EQ(cmds(ps), std::string(17, 'B') + "E");
  for (int i = 0; i < 17; ++i) {
    EXPECT_TRUE(c.busy());
    c.feed(frame('c'), now_);
  }
  c.feed(frame('c'), now_);
  EXPECT_EQ(c.take_result()->kind, StepResult::Kind::cont);
}

TEST_F(MilterClientTest, AVerdictInTheMiddleOfThePipelinedMessageEndsTheConnection) {
  MilterClient c = make(action::kAll, proto::kNoConnect | proto::kNoHelo);
  c.mail(now_, {}, "<a@b>", {});
  sent(c);
  c.feed(frame('c'), now_);
  c.take_result();
  c.message(now_, {}, {}, "", "A: 1\r\nB: 2\r\nC: 3\r\n\r\nbody\r\n");
  EXPECT_EQ(cmds(sent(c)), "LLLNBE");  // all at once
  c.feed(frame('c'), now_);
  EXPECT_TRUE(c.busy());
  c.feed(frame('y', str0("550 5.7.1 header B")), now_);  // the second header is refused
  const std::optional<StepResult> r = c.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, StepResult::Kind::reject);
  EXPECT_EQ(r->reply.code, 550);
  EXPECT_TRUE(c.out_of_step());
  EXPECT_FALSE(c.failed());
  EXPECT_EQ(c.deadline_ns(), 0);
  // Whatever comes next cannot be matched to a command: it is not read, and
  // the next step fails (the owner closes the connection).
  c.feed(frame('c') + frame('c'), now_);
  c.mail(now_, {}, "<a@b>", {});
  const std::optional<StepResult> next = c.take_result();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->kind, StepResult::Kind::failed);
  EXPECT_NE(next->error.find("out of step"), std::string::npos) << next->error;
}

TEST_F(MilterClientTest, ChangesToOneMessageAreBounded) {
  MilterClient c(Offer{}, timeouts_, 100);
  c.connected(now_);
  sent(c);
  c.feed(optneg(action::kAll, proto::kNoConnect | proto::kNoHelo | proto::kNoHeaders |
                                  proto::kNoEoh | proto::kNoBody),
         now_);
  for (int round = 0; round < 2; ++round) {  // the bound is per message
    c.mail(now_, {}, "<a@b>", {});
    sent(c);
    c.feed(frame('c'), now_);
    c.take_result();
    c.message(now_, {}, {}, "", "A: b\r\n\r\nx\r\n");
    EXPECT_EQ(cmds(sent(c)), "E");
    // name 6 + value 40 + 4 = 50 octets each: two are exactly at the bound.
    c.feed(frame('h', str0("X-Adds") + str0(std::string(40, 'v'))), now_);
    c.feed(frame('h', str0("X-Adds") + str0(std::string(40, 'v'))), now_);
    EXPECT_FALSE(c.failed());
    if (round == 0) {
      c.feed(frame('c'), now_);
      EXPECT_EQ(c.take_result()->kind, StepResult::Kind::cont);
      EXPECT_EQ(c.modifications().size(), 2U);
    }
  }
  c.feed(frame('b', "y"), now_);  // one octet past it
  const std::optional<StepResult> r = c.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, StepResult::Kind::failed);
  EXPECT_NE(r->error.find("exceed 100 octets"), std::string::npos) << r->error;
}

TEST_F(MilterClientTest, UnansweredBodyIsProducedWithinTheOutputBound) {
  MilterClient c = make(action::kAll, proto::kNoConnect | proto::kNoHelo | proto::kNrBody |
                                          proto::kNoHeaders | proto::kNoEoh);
  c.mail(now_, {}, "<a@b>", {});
  sent(c);
  c.feed(frame('c'), now_);
  c.take_result();
  const std::string msg = "A: b\r\n\r\n" + std::string(size_t{4} << 20, 'z');
  c.message(now_, {}, {}, "", msg);
  size_t body = 0;
  std::string tail;
  for (int i = 0; i < 1000 && c.has_output(); ++i) {
    const std::string_view v = c.output();
    EXPECT_LE(v.size(), MilterClient::kOutputHigh + kChunk64K + 64);
    body += v.size();
    tail = std::string(v.substr(v.size() > 10 ? v.size() - 10 : 0));
    c.consume_output(v.size());
  }
  EXPECT_GT(body, msg.size() - 8);
  EXPECT_EQ(tail.back(), 'E');  // EOB last
  c.feed(frame('c'), now_);
  EXPECT_EQ(c.take_result()->kind, StepResult::Kind::cont);
}

TEST_F(MilterClientTest, TimeoutFailsTheStepAndEveryLaterOne) {
  MilterClient c = make(action::kAll, 0);
  c.connect(now_, {}, "h", Family::inet4, 25, "192.0.2.1");
  sent(c);
  c.timeout(now_ + 1999 * kMs);
  EXPECT_FALSE(c.take_result());
  c.timeout(now_ + 2000 * kMs);
  std::optional<StepResult> r = c.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, StepResult::Kind::failed);
  EXPECT_TRUE(r->timed_out);
  EXPECT_TRUE(c.failed());
  c.feed(frame('c'), now_);  // a late answer is ignored
  c.helo(now_, {}, "x");
  r = c.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, StepResult::Kind::failed);
}

TEST_F(MilterClientTest, ConnectTimeoutAndLostConnection) {
  MilterClient c(Offer{}, timeouts_);
  c.connecting(now_);
  c.connect(now_, {}, "h", Family::inet4, 25, "192.0.2.1");
  c.timeout(now_ + 1000 * kMs);
  std::optional<StepResult> r = c.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, StepResult::Kind::failed);
  EXPECT_NE(r->error.find("connect"), std::string::npos) << r->error;

  MilterClient d = make(action::kAll, 0);
  d.helo(now_, {}, "x");
  d.connection_lost(ErrorKind::closed, now_);
  r = d.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, StepResult::Kind::failed);
}

TEST_F(MilterClientTest, ProtocolErrorsFail) {
  // An answer nobody asked for.
  MilterClient c = make(action::kAll, 0);
  c.feed(frame('c'), now_);
  EXPECT_TRUE(c.failed());
  // A modification outside EOB.
  MilterClient d = make(action::kAll, 0);
  d.helo(now_, {}, "x");
  d.feed(frame('h', str0("A") + str0("b")), now_);
  EXPECT_EQ(d.take_result()->kind, StepResult::Kind::failed);
  // A version we do not speak.
  MilterClient e(Offer{}, timeouts_);
  e.connected(now_);
  sent(e);
  e.helo(now_, {}, "x");
  e.feed(frame('O', be32(7) + be32(0) + be32(0)), now_);
  const std::optional<StepResult> r = e.take_result();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, StepResult::Kind::failed);
  EXPECT_NE(r->error.find("version"), std::string::npos) << r->error;
}

TEST_F(MilterClientTest, AnswersSplitAtEveryOctet) {
  const std::string stream =
      optneg(action::kAll, 0, {{2, "{mail_addr}"}}) + frame('c') + frame('y', str0("550 5.7.1 no"));
  for (size_t cut = 1; cut < stream.size(); ++cut) {
    MilterClient c(Offer{}, timeouts_);
    c.connected(now_);
    c.connect(now_, {}, "h", Family::inet4, 25, "192.0.2.1");
    c.feed(stream.substr(0, cut), now_);
    c.feed(stream.substr(cut), now_);
    std::optional<StepResult> r = c.take_result();
    ASSERT_TRUE(r) << cut;
    EXPECT_EQ(r->kind, StepResult::Kind::cont) << cut;
    // The reply code came before anything asked for it: a protocol error,
    // never a verdict for the MAIL that follows.
    EXPECT_TRUE(c.failed()) << cut;
    c.mail(now_, {{"{mail_addr}", "a@b"}}, "<a@b>", {});
    EXPECT_EQ(c.take_result()->kind, StepResult::Kind::failed) << cut;
  }
}

TEST_F(MilterClientTest, QuitAfterAStepInFlightSendsQuit) {
  MilterClient c = make(action::kAll, 0);
  c.helo(now_, {}, "x");
  sent(c);
  c.quit();
  EXPECT_EQ(cmds(sent(c)), "Q");
  EXPECT_FALSE(c.busy());
  EXPECT_EQ(c.deadline_ns(), 0);
}

TEST_F(MilterClientTest, ASessionEndsWithQuitNcAndTheNextStartsWithConnect) {
  MilterClient c = make(action::kAll, 0);
  EXPECT_TRUE(c.reusable());
  c.connect(now_, {}, "h", Family::inet4, 25, "192.0.2.1");
  EXPECT_FALSE(c.reusable());  // a step in flight
  sent(c);
  c.feed(frame('a'), now_);  // accepted for the whole connection
  c.take_result();
  c.mail(now_, {}, "<a@b>", {});
  EXPECT_EQ(c.take_result()->kind, StepResult::Kind::cont);
  ASSERT_TRUE(c.reusable());
  c.end_session();
  EXPECT_EQ(cmds(sent(c)), "K");
  // The next session: its CONNECT goes (the earlier ACCEPT is forgotten).
  c.connect(now_, {}, "h2", Family::inet4, 26, "192.0.2.2");
  EXPECT_EQ(cmds(sent(c)), "C");
  c.feed(frame('c'), now_);
  EXPECT_EQ(c.take_result()->kind, StepResult::Kind::cont);
  c.mail(now_, {}, "<a@b>", {});
  sent(c);
  c.feed(frame('c'), now_);
  c.take_result();
  // A message under way is aborted first.
  c.end_session();
  EXPECT_EQ(cmds(sent(c)), "AK");
  // Not after a failure, nor before the negotiation.
  c.helo(now_, {}, "x");
  sent(c);
  c.timeout(now_ + 10'000 * kMs);
  EXPECT_FALSE(c.reusable());
  MilterClient fresh(Offer{}, timeouts_);
  EXPECT_FALSE(fresh.reusable());
}

TEST_F(MilterClientTest, MessageWithoutHeaderSectionIsAllBody) {
  MilterClient c = make(action::kAll, proto::kNoConnect | proto::kNoHelo | proto::kNrHeader |
                                          proto::kNrEoh | proto::kNrBody);
  c.mail(now_, {}, "<a@b>", {});
  sent(c);
  c.feed(frame('c'), now_);
  c.take_result();
  c.message(now_, {}, {}, "", "no header here\r\nsecond\r\n");
  const std::vector<Packet> ps = sent(c);
  ASSERT_EQ(cmds(ps), "NBE");
  EXPECT_EQ(ps[1].data, "no header here\r\nsecond\r\n");
}

}  // namespace
}  // namespace ringmx::milter

namespace ringmx {
namespace {

TEST(SocketAddress, PostfixAndSendmailSpellings) {
  struct Case {
    std::string text;
    SocketAddress::Kind kind;
    std::string where;  // path, or ip
    uint16_t port;
  };
  const std::vector<Case> ok = {
      {"unix:/run/x.sock", SocketAddress::Kind::unix_path, "/run/x.sock", 0},
      {"local:/run/x.sock", SocketAddress::Kind::unix_path, "/run/x.sock", 0},
      {"/run/x.sock", SocketAddress::Kind::unix_path, "/run/x.sock", 0},
      {"inet:127.0.0.1:11332", SocketAddress::Kind::inet, "127.0.0.1", 11332},
      {"inet:11332@127.0.0.1", SocketAddress::Kind::inet, "127.0.0.1", 11332},
      {"inet:localhost:8891", SocketAddress::Kind::inet, "127.0.0.1", 8891},
      {"inet:[::1]:8891", SocketAddress::Kind::inet, "::1", 8891},
      {"inet6:[::1]:8891", SocketAddress::Kind::inet, "::1", 8891},
      {"inet6:8891@localhost", SocketAddress::Kind::inet, "::1", 8891},
  };
  for (const Case& c : ok) {
    SocketAddress a;
    std::string error;
    ASSERT_TRUE(parse_socket_address(c.text, a, error)) << c.text << ": " << error;
    EXPECT_EQ(a.kind, c.kind) << c.text;
    EXPECT_EQ(a.kind == SocketAddress::Kind::inet ? a.ip : a.path, c.where) << c.text;
    EXPECT_EQ(a.port, c.port) << c.text;
  }
  for (const std::string& bad :
       std::vector<std::string>{"", "inet:127.0.0.1", "inet:127.0.0.1:0", "inet:host.example:25",
                                "inet6:127.0.0.1:25", "unix:relative", "tcp:1.2.3.4:5",
                                "inet:1.2.3.4:25x", "unix:/" + std::string(107, 'a')}) {
    SocketAddress a;
    std::string error;
    EXPECT_FALSE(parse_socket_address(bad, a, error)) << bad;
    EXPECT_FALSE(error.empty()) << bad;
  }
}

}  // namespace
}  // namespace ringmx
