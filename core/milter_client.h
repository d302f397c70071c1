// Contract: one SMTP session's conversation with one milter (protocol 6),
// from the MTA's side, with no I/O: a StreamLink (core/stream_link.h) that
// net/ClientStream connects to the milter and feeds, plus steps the owner
// asks for as the SMTP session moves (connect, helo, mail, rcpt, data, the
// message, unknown commands, quit).
//
// On connected() the client sends OPTNEG; the milter's reply is checked
// (core/milter_steps.h negotiate()) and steps asked for meanwhile wait. A
// step is one or more commands, each after its MACRO packet (the macros the
// milter listed for that stage, or all the owner gave when it listed none),
// sent one at a time: a command the milter answers waits for its answer, one
// it does not (the SMFIP_NR_* flags, or steps it asked not to get) goes on.
// The message step sends the header fields (the server's own first, then the
// message's), EOH, the body in chunks of the agreed size (SKIP ends them) and
// EOB pipelined, without waiting for each answer (they come in order: one
// round trip instead of one per header; when the milter may SKIP, body
// chunks after the first wait for the answer before), and collects the modifications that
// come before the final answer. A verdict other than continue before the
// last answer leaves the conversation out of step (libmilter ignores the
// commands behind it silently, others answer them): the verdict stands and
// the connection is not used again; later steps fail (default_action).
// Output is produced a piece at a time (at most about kOutputHigh octets
// wait in output()), so a large body is never copied whole.
//
// A step ends in a StepResult (take_result()): continue, accept, reject,
// tempfail, discard, a reply of the milter's own, shutdown, or failed (no
// usable answer: the milter is unreachable, broke the protocol, or timed out;
// the owner applies its default action). Once failed, the client stays
// failed and every later step fails at once; the owner drops the connection.
// ACCEPT at connect or HELO accepts the rest of the connection; at MAIL and
// after, the rest of the message: later steps in that scope end in continue
// without a word to the milter. A transaction the milter saw (MAIL sent)
// that did not end at EOB is ABORTed before the next MAIL or HELO.
//
// Timers: deadline_ns() is when the wait in progress times out (0: none):
// the connect and the negotiation (connect_ms), a command's answer (command_ms; eom_ms for
// EOB), each PROGRESS pushing it back. The owner calls timeout() when it
// passes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/milter_codec.h"
#include "core/milter_steps.h"
#include "core/stream_link.h"

namespace ringmx::milter {

struct ClientTimeouts {
  uint32_t connect_ms = 5000;   // connect and option negotiation
  uint32_t command_ms = 30000;  // each command's answer
  uint32_t eom_ms = 60000;      // the answer to EOB (a filter's long think)
};

struct StepResult {
  enum class Kind : uint8_t {
    cont,      // nothing to say (or nothing was asked): go on
    accept,    // accepted: the connection (at connect/HELO) or the message
    reject,    // 5xx (reply has code 550 unless the milter gave its own)
    tempfail,  // 4xx
    discard,   // take the message and drop it
    shutdown,  // 421 and close the SMTP connection (SMFIR_SHUTDOWN, SMFIR_CONN_FAIL)
    failed,    // no usable answer: `error` says why
  };
  Kind kind = Kind::cont;
  // reject/tempfail: the milter's own reply (SMFIR_REPLYCODE) when it gave
  // one (code != 0), else code 0 and the owner's default text.
  ReplyCode reply;
  std::string error;       // failed: why
  bool timed_out = false;  // failed: the deadline passed
};
const char* step_kind_name(StepResult::Kind k);

// A macro as it goes on the wire: "j", "{daemon_name}".
using Macro = std::pair<std::string, std::string>;
using Macros = std::vector<Macro>;

class MilterClient final : public StreamLink {
 public:
  // Octets of pending output above which the client stops producing more
  // (body chunks without answers) until the stream takes some.
  static constexpr size_t kOutputHigh = size_t{256} * 1024;

  // `max_modification_bytes`: what the changes to one message may hold in
  // all (header fields, addresses, the new body); more is a protocol error.
  static constexpr size_t kDefaultModificationBytes = size_t{64} << 20;
  MilterClient(const Offer& offer, const ClientTimeouts& timeouts,
               size_t max_modification_bytes = kDefaultModificationBytes,
               const DecoderLimits& decoder = {}, const TrackerLimits& tracker = {});

  // StreamLink.
  void connected(int64_t now_ns) override;
  void feed(std::string_view bytes, int64_t now_ns) override;
  void connection_lost(ErrorKind kind, int64_t now_ns) override;
  std::string_view output() override { return {out_.data() + out_off_, out_.size() - out_off_}; }
  void consume_output(size_t n) override;
  bool has_output() override { return out_off_ < out_.size(); }
  bool output_stable() const override { return false; }

  // The connection is being made (the owner started connect): the connect deadline runs.
  void connecting(int64_t now_ns);

  // Steps: one at a time (!busy()). `now_ns` starts the answer's deadline.
  void connect(int64_t now_ns, const Macros& macros, std::string_view hostname, Family family,
               uint16_t port, std::string_view address);
  void helo(int64_t now_ns, const Macros& macros, std::string_view name);
  // `sender` as it goes on the wire ("<a@b>", "<>"); args one ESMTP parameter each.
  void mail(int64_t now_ns, const Macros& macros, std::string_view sender,
            std::span<const std::string> args);
  void rcpt(int64_t now_ns, const Macros& macros, std::string_view rcpt,
            std::span<const std::string> args);
  void data(int64_t now_ns, const Macros& macros);
  void unknown(int64_t now_ns, const Macros& macros, std::string_view line);
  // The whole message: `prepended` (the server's own header fields, CRLF)
  // and `message` (as received, CRLF) must stay valid until the step ends.
  void message(int64_t now_ns, const Macros& eoh_macros, const Macros& eom_macros,
               std::string_view prepended, std::string_view message);
  // Ends the conversation: QUIT goes out (after whatever is queued); no step may follow.
  void quit();
  // The connection can carry another SMTP session (SMFIC_QUIT_NC, protocol
  // 6): negotiated, healthy, idle, nothing due.
  bool reusable() const;
  // Ends this SMTP session but keeps the connection and the agreed terms
  // (ABORT first when a message was under way, then QUIT_NC): the next
  // session starts with its connect step. Only when reusable().
  void end_session();

  bool busy() const { return step_ != StepKind::none; }
  std::optional<StepResult> take_result();
  // The modifications of the last message step, in the order the milter sent them.
  std::vector<Response>& modifications() { return mods_; }

  int64_t deadline_ns() const { return deadline_ns_; }
  void timeout(int64_t now_ns);

  bool failed() const { return failed_; }
  const std::string& error() const { return error_; }
  bool negotiated() const { return tracker_.has_value(); }
  const Negotiated& terms() const { return terms_; }
  bool quit_sent() const { return quit_; }
  // A verdict came in the middle of a pipelined message: the connection
  // cannot be used again (see verdict() in the .cc).
  bool out_of_step() const { return out_of_step_; }

 private:
  enum class StepKind : uint8_t { none, connect, helo, mail, rcpt, data, unknown, message };
  enum class Part : uint8_t { headers, eoh, body, eob, done };
  struct Pending {  // one command of a simple step, already encoded
    Command command = Command::connect;
    std::string packet;  // MACRO + command
  };

  void begin(StepKind kind, int64_t now_ns);
  void simple(int64_t now_ns, StepKind kind, Command c, Stage stage, const Macros& macros,
              std::string packet);
  void append_macros(Command c, Stage stage, const Macros& macros);
  void pump();
  bool send_next();  // one command of the step; false: the step has no more
  bool may_pipeline() const;
  bool send_command(Command c);
  void finish(StepResult r);
  void fail(std::string why, bool timed_out = false);
  void on_response(Response r);
  void on_final(const Response& r, Command answered);
  void verdict(StepResult out);
  bool next_header(std::string_view& name, std::string_view& value);

  Offer offer_;
  ClientTimeouts timeouts_;
  MilterDecoder decoder_;
  TrackerLimits tracker_limits_;
  std::optional<MilterReplyTracker> tracker_;
  Negotiated terms_;
  int64_t now_ns_ = 0;
  int64_t deadline_ns_ = 0;
  bool optneg_sent_ = false;
  bool failed_ = false;
  bool quit_ = false;
  std::string error_;
  std::string out_;
  size_t out_off_ = 0;

  StepKind step_ = StepKind::none;
  bool started_ = false;  // the step's first command went (negotiation done)
  std::optional<StepResult> result_;
  bool waiting_ = false;  // a reply is due
  // Simple steps: the command (with its MACRO) to send once negotiated.
  std::optional<Pending> pending_;
  Stage pending_stage_ = Stage::connect;
  Macros pending_macros_;
  // The message step.
  Part part_ = Part::done;
  std::string_view prepended_, message_;
  size_t header_at_ = 0;  // offset into prepended_ + message_ (virtually concatenated)
  size_t body_at_ = 0;    // offset into message_ of the body still to send
  size_t chunks_sent_ = 0;
  Macros eoh_macros_, eom_macros_;
  std::vector<Response> mods_;
  size_t mod_bytes_ = 0;
  size_t max_mod_bytes_;

  bool conn_accepted_ = false;  // ACCEPT at connect/HELO
  bool msg_accepted_ = false;   // ACCEPT in a transaction
  bool in_message_ = false;     // MAIL went, EOB has not answered
  bool out_of_step_ = false;
};

}  // namespace ringmx::milter
