// Contract: the wire format of the milter protocol, version 6 (Sendmail's
// libmilter, also spoken by Postfix and go-milter), from the MTA's side, with
// no I/O: encoders append the packets the MTA sends to a string, and
// MilterDecoder turns the milter's bytes, in any split, into typed responses.
//
// Framing (both ways): a 4-octet big-endian length covering what follows, a
// 1-octet command, its data. Strings inside are NUL-terminated; integers are
// 32-bit big endian (the CONNECT port is 16-bit).
//
// The decoder holds at most one packet (4 + max_packet octets): a length of 0
// or above max_packet is a protocol error as soon as its 4 octets are in,
// before anything of that size is kept. Every field is checked (NUL
// terminators where the protocol puts them, no octet left over, header names
// and values within their limits, reply codes 4xx/5xx); a packet that breaks
// a rule ends the stream with one MilterProtocolError, never a crash. Which
// response is allowed after which command is MilterReplyTracker's business
// (core/milter_steps.h): the decoder only knows the packet format.
//
// Facts checked against Sendmail's libmilter/mfdef.h and sendmail/milter.c
// and go-milter's documentation (constants, the OPTNEG reply's macro list).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace ringmx::milter {

constexpr uint32_t kProtocolVersion = 6;

// MTA -> milter commands (SMFIC_*).
enum class Command : char {
  abort = 'A',    // SMFIC_ABORT: forget the current message
  body = 'B',     // SMFIC_BODY: a body chunk
  connect = 'C',  // SMFIC_CONNECT
  macro = 'D',    // SMFIC_MACRO: macros for the command that follows
  eob = 'E',      // SMFIC_BODYEOB: end of the message
  helo = 'H',     // SMFIC_HELO
  quit_nc = 'K',  // SMFIC_QUIT_NC: end the session, keep the connection and the
                  // negotiated terms: the next session starts with CONNECT
  header = 'L',   // SMFIC_HEADER
  mail = 'M',     // SMFIC_MAIL
  eoh = 'N',      // SMFIC_EOH: end of the headers
  optneg = 'O',   // SMFIC_OPTNEG
  quit = 'Q',     // SMFIC_QUIT
  rcpt = 'R',     // SMFIC_RCPT
  data = 'T',     // SMFIC_DATA
  unknown = 'U',  // SMFIC_UNKNOWN: an SMTP command the MTA did not know
};

// Milter -> MTA responses (SMFIR_*).
enum class Reply : char {
  add_rcpt = '+',      // SMFIR_ADDRCPT
  del_rcpt = '-',      // SMFIR_DELRCPT
  add_rcpt_par = '2',  // SMFIR_ADDRCPT_PAR
  shutdown = '4',      // SMFIR_SHUTDOWN: 421, close the SMTP connection
  accept = 'a',        // SMFIR_ACCEPT
  repl_body = 'b',     // SMFIR_REPLBODY
  cont = 'c',          // SMFIR_CONTINUE
  discard = 'd',       // SMFIR_DISCARD
  chg_from = 'e',      // SMFIR_CHGFROM
  conn_fail = 'f',     // SMFIR_CONN_FAIL: fail the SMTP connection
  add_header = 'h',    // SMFIR_ADDHEADER
  ins_header = 'i',    // SMFIR_INSHEADER
  set_symlist = 'l',   // SMFIR_SETSYMLIST: not a response in v6 (the list rides in OPTNEG)
  chg_header = 'm',    // SMFIR_CHGHEADER
  optneg = 'O',        // the OPTNEG reply
  progress = 'p',      // SMFIR_PROGRESS: still working, keep waiting
  quarantine = 'q',    // SMFIR_QUARANTINE
  reject = 'r',        // SMFIR_REJECT
  skip = 's',          // SMFIR_SKIP: no more body chunks wanted
  tempfail = 't',      // SMFIR_TEMPFAIL
  reply_code = 'y',    // SMFIR_REPLYCODE: an SMTP reply of the milter's own
};

// Actions (SMFIF_*): what the MTA lets the milter change at end of message.
namespace action {
constexpr uint32_t kAddHeaders = 0x001;     // SMFIF_ADDHDRS (ADDHEADER, INSHEADER)
constexpr uint32_t kChangeBody = 0x002;     // SMFIF_CHGBODY (REPLBODY)
constexpr uint32_t kAddRcpt = 0x004;        // SMFIF_ADDRCPT
constexpr uint32_t kDelRcpt = 0x008;        // SMFIF_DELRCPT
constexpr uint32_t kChangeHeaders = 0x010;  // SMFIF_CHGHDRS (CHGHEADER)
constexpr uint32_t kQuarantine = 0x020;     // SMFIF_QUARANTINE
constexpr uint32_t kChangeFrom = 0x040;     // SMFIF_CHGFROM
constexpr uint32_t kAddRcptPar = 0x080;     // SMFIF_ADDRCPT_PAR
constexpr uint32_t kSetSymList = 0x100;     // SMFIF_SETSYMLIST (macro lists in OPTNEG)
constexpr uint32_t kAll = 0x1ff;
}  // namespace action

// Protocol flags (SMFIP_*): steps the milter does not want, steps it does
// not answer, and the v6 extras.
namespace proto {
constexpr uint32_t kNoConnect = 0x00000001;     // SMFIP_NOCONNECT
constexpr uint32_t kNoHelo = 0x00000002;        // SMFIP_NOHELO
constexpr uint32_t kNoMail = 0x00000004;        // SMFIP_NOMAIL
constexpr uint32_t kNoRcpt = 0x00000008;        // SMFIP_NORCPT
constexpr uint32_t kNoBody = 0x00000010;        // SMFIP_NOBODY
constexpr uint32_t kNoHeaders = 0x00000020;     // SMFIP_NOHDRS
constexpr uint32_t kNoEoh = 0x00000040;         // SMFIP_NOEOH
constexpr uint32_t kNrHeader = 0x00000080;      // SMFIP_NR_HDR (also SMFIP_NOHREPL)
constexpr uint32_t kNoUnknown = 0x00000100;     // SMFIP_NOUNKNOWN
constexpr uint32_t kNoData = 0x00000200;        // SMFIP_NODATA
constexpr uint32_t kSkip = 0x00000400;          // SMFIP_SKIP: the MTA understands SKIP
constexpr uint32_t kRcptRej = 0x00000800;       // SMFIP_RCPT_REJ: send rejected RCPTs too
constexpr uint32_t kNrConnect = 0x00001000;     // SMFIP_NR_CONN
constexpr uint32_t kNrHelo = 0x00002000;        // SMFIP_NR_HELO
constexpr uint32_t kNrMail = 0x00004000;        // SMFIP_NR_MAIL
constexpr uint32_t kNrRcpt = 0x00008000;        // SMFIP_NR_RCPT
constexpr uint32_t kNrData = 0x00010000;        // SMFIP_NR_DATA
constexpr uint32_t kNrUnknown = 0x00020000;     // SMFIP_NR_UNKN
constexpr uint32_t kNrEoh = 0x00040000;         // SMFIP_NR_EOH
constexpr uint32_t kNrBody = 0x00080000;        // SMFIP_NR_BODY
constexpr uint32_t kHdrLeadSpace = 0x00100000;  // SMFIP_HDR_LEADSPC: header values as is
constexpr uint32_t kMds256K = 0x10000000;       // SMFIP_MDS_256K: chunks up to 256 KiB - 1
constexpr uint32_t kMds1M = 0x20000000;         // SMFIP_MDS_1M: chunks up to 1 MiB - 1
constexpr uint32_t kMdsMask = kMds256K | kMds1M;
// Every step flag and no-reply flag of v6 (not SKIP, RCPT_REJ, LEADSPC, MDS).
constexpr uint32_t kNoSteps =
    kNoConnect | kNoHelo | kNoMail | kNoRcpt | kNoBody | kNoHeaders | kNoEoh | kNoUnknown | kNoData;
constexpr uint32_t kNoReplies =
    kNrHeader | kNrConnect | kNrHelo | kNrMail | kNrRcpt | kNrData | kNrUnknown | kNrEoh | kNrBody;
constexpr uint32_t kAll = kNoSteps | kNoReplies | kSkip | kRcptRej | kHdrLeadSpace | kMdsMask;
}  // namespace proto

// Body chunk sizes (MILTER_MDS_*): the data of one BODY packet at most.
constexpr size_t kChunk64K = size_t{64} * 1024 - 1;
constexpr size_t kChunk256K = size_t{256} * 1024 - 1;
constexpr size_t kChunk1M = size_t{1024} * 1024 - 1;

// Macro stages (SMFIM_*), as the OPTNEG reply names them.
enum class Stage : uint8_t {
  connect = 0,
  helo = 1,
  mail = 2,
  rcpt = 3,
  data = 4,
  eom = 5,
  eoh = 6
};
constexpr size_t kStageCount = 7;

// CONNECT's protocol family (SMFIA_*).
enum class Family : char { unknown = 'U', unix_socket = 'L', inet4 = '4', inet6 = '6' };

// ---- Encoders (MTA -> milter). Each appends one packet to `out`. Those that
// take strings sent NUL-terminated return false, appending nothing, when a
// string holds a NUL (the milter would read it as two fields).

void encode_optneg(std::string& out, uint32_t version, uint32_t actions, uint32_t protocol);
// `command`: the command these macros go with (Command::connect, ...).
bool encode_macros(std::string& out, Command command,
                   std::span<const std::pair<std::string_view, std::string_view>> macros);
// family unknown: no port and no address follow (what Sendmail sends).
bool encode_connect(std::string& out, std::string_view hostname, Family family, uint16_t port,
                    std::string_view address);
bool encode_helo(std::string& out, std::string_view name);
// `address` as it goes on the wire, in angle brackets ("<a@example.org>",
// "<>"); `args` the ESMTP parameters, one string each ("SIZE=123").
bool encode_mail(std::string& out, std::string_view address,
                 std::span<const std::string_view> args = {});
bool encode_rcpt(std::string& out, std::string_view address,
                 std::span<const std::string_view> args = {});
void encode_data(std::string& out);
bool encode_header(std::string& out, std::string_view name, std::string_view value);
void encode_eoh(std::string& out);
// `chunk` at most the negotiated chunk size: false (nothing appended) above `max_chunk`.
bool encode_body(std::string& out, std::string_view chunk, size_t max_chunk);
void encode_eob(std::string& out);
void encode_abort(std::string& out);
void encode_quit(std::string& out);
void encode_quit_nc(std::string& out);
// The SMTP command line as the client sent it, without CRLF.
bool encode_unknown(std::string& out, std::string_view line);

// ---- Responses (milter -> MTA), one struct each.

// The milter's OPTNEG reply. macros[stage]: the space-separated macro names
// it asked for at that stage (v6, SMFIF_SETSYMLIST), nullopt when not listed.
struct OptNegReply {
  uint32_t version = 0;
  uint32_t actions = 0;
  uint32_t protocol = 0;
  std::array<std::optional<std::string>, kStageCount> macros;
};
// The responses without data: accept, cont, discard, reject, tempfail, skip,
// progress, shutdown, conn_fail.
struct Verdict {
  Reply reply = Reply::cont;
};
// SMFIR_REPLYCODE: a whole SMTP reply ("550 5.7.1 go away", or lines joined
// by CRLF, each "550-" but the last "550 "), checked: 4xx or 5xx, the same
// code on every line, no CR or LF but in CRLF, no other control octet but TAB.
struct ReplyCode {
  uint16_t code = 0;
  std::string enhanced;  // "5.7.1" when the first line carries one of the code's class, else ""
  std::string text;      // the reply as given, without the trailing NUL
};
struct AddHeader {
  std::string name, value;
};
struct InsertHeader {
  uint32_t index = 0;  // insert after the index-th header (0: first of all)
  std::string name, value;
};
struct ChangeHeader {
  uint32_t index = 0;  // the index-th header of that name, from 1; an empty value deletes it
  std::string name, value;
};
struct AddRecipient {
  std::string rcpt;
};
struct AddRecipientArgs {
  std::string rcpt, args;
};
struct DeleteRecipient {
  std::string rcpt;
};
struct ChangeFrom {
  std::string from, args;  // args "" when absent
};
struct ReplaceBody {
  std::string chunk;
};
struct Quarantine {
  std::string reason;
};
struct MilterProtocolError {
  std::string message;
};

using Response = std::variant<OptNegReply, Verdict, ReplyCode, AddHeader, InsertHeader,
                              ChangeHeader, AddRecipient, AddRecipientArgs, DeleteRecipient,
                              ChangeFrom, ReplaceBody, Quarantine, MilterProtocolError>;

// The command octet a response came as (Reply::optneg, ...); for a
// MilterProtocolError, Reply::set_symlist is never returned: see is_error.
Reply reply_of(const Response& r);
inline bool is_error(const Response& r) {
  return std::holds_alternative<MilterProtocolError>(r);
}
// True for the end-of-message modifications (ADDHEADER ... QUARANTINE).
bool is_modification(const Response& r);

struct DecoderLimits {
  size_t max_packet = size_t{1024} * 1024;  // command octet + data; a longer length is an error
  size_t max_header_name = 256;             // ADDHEADER / INSHEADER / CHGHEADER name
  size_t max_header_value = size_t{64} * 1024;
};

class MilterDecoder {
 public:
  explicit MilterDecoder(const DecoderLimits& limits = {});

  // Takes the next bytes from the milter; complete packets become responses
  // (next()). After a protocol error (the last response queued), further
  // bytes are ignored.
  void feed(std::string_view bytes);
  std::optional<Response> next();
  bool has_next() const { return head_ < out_.size(); }
  bool failed() const { return failed_; }
  // Octets held of a packet not yet complete (at most 4 + max_packet).
  size_t buffered() const { return len_have_ + body_.size(); }
  const DecoderLimits& limits() const { return limits_; }

 private:
  void packet(std::string_view p);  // command octet + data
  void fail(std::string message);

  DecoderLimits limits_;
  std::array<char, 4> len_buf_{};
  size_t len_have_ = 0;
  uint32_t need_ = 0;  // the current packet's length, once its 4 octets are in
  std::string body_;
  std::vector<Response> out_;
  size_t head_ = 0;
  bool failed_ = false;
};

// Parses one packet (command octet + data) into a response; the decoder's
// core, usable on its own (tests, a packet already framed).
Response parse_response(std::string_view packet, const DecoderLimits& limits = {});

}  // namespace ringmx::milter
