// The SMTP server session as a sans-I/O state machine (RFC 5321 with
// PIPELINING, SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, CHUNKING,
// BINARYMIME, DSN and STARTTLS as an event).
//
// The owner (the net layer, or a test) feeds received bytes and sends what
// output() holds afterwards: every reply produced by one feed() call goes out
// together (RFC 2920). Decisions the session cannot make alone are asked of a
// SessionHandler. A handler may answer later (Verdict::pending): the session
// then stops consuming input — feed() returns how much it used, and the owner
// keeps the rest — until resume() hands the decision back. Nothing is
// reordered. Time is passed in; the session reads no clock.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/command.h"
#include "core/data_decoder.h"
#include "core/envelope.h"
#include "core/reply.h"
#include "core/sasl.h"
#include "core/session_config.h"

namespace ringmx {

// Time as the owner sees it: a monotonic clock for timeouts, wall-clock
// seconds for the Received header.
struct Now {
  int64_t mono_ms = 0;
  int64_t unix_s = 0;
};

struct ConnInfo {
  uint64_t session_id = 0;  // unique per process lifetime; the default queue ids derive from it
  std::string client_ip;
  uint16_t client_port = 0;
  std::string client_ptr;      // verified (forward-confirmed) reverse name, empty if none
  bool tls_available = false;  // STARTTLS may be offered
  bool tls_active = false;     // implicit TLS, or after STARTTLS
  bool tls_required = false;   // MAIL before STARTTLS gets 530 5.7.0 (RFC 3207 4)
  std::string tls_version;     // e.g. "TLS1_3", set when tls_active
  std::string tls_cipher;
  // XCLIENT is offered and honoured (the peer is in the listener's xclient_hosts).
  bool xclient_allowed = false;
  // SMTP AUTH on this listener (offered only once TLS protects the session).
  AuthMode auth = AuthMode::none;
  // Set by XCLIENT, kept until the next one (Postfix's XCLIENT_README: HELO
  // and PROTO survive the reset and the client's own EHLO).
  // The authenticated user: set by AUTH here, or by a front end's XCLIENT
  // LOGIN (kept until the next XCLIENT). Received then says ESMTPA.
  std::string login;
  std::string xclient_helo;   // the real client's HELO name, over the one sent here
  int8_t xclient_esmtp = -1;  // PROTO: 1 ESMTP, 0 SMTP, -1 as the client spoke here
  std::string server_ip;      // DESTADDR: the address the real client reached
  uint16_t server_port = 0;   // DESTPORT
};

// A handler's answer to a check.
struct Verdict {
  enum class Kind : uint8_t { accept, reject, pending };
  Kind kind = Kind::accept;
  // Reply to send instead of the default (0 keeps the default). A 421 reply
  // closes the connection after it is sent.
  uint16_t code = 0;
  std::string enhanced;
  std::string text;

  static Verdict accept() { return {}; }
  static Verdict pending() { return {Kind::pending, 0, {}, {}}; }
  static Verdict reject(uint16_t code, std::string enhanced, std::string text) {
    return {Kind::reject, code, std::move(enhanced), std::move(text)};
  }
};

class Session;

// What a handler does with a message body that grew (SessionHandler::on_body_bytes).
enum class BodyRoom : uint8_t {
  keep,    // go on holding it in memory
  spill,   // stream it to the handler from here on (on_spill_start, on_body_spill)
  refuse,  // read the rest, store none of it, answer 452 4.3.1
};

// The 13-character base32hex form of a session id, as logs and the default
// queue ids show it.
std::string format_session_id(uint64_t id);

// A session id: 43 bits of wall-clock milliseconds (until the year 2248),
// 8 bits of shard id (every shard up to kMaxShards has its own), 13 bits of
// the shard's session counter. Two shards never mint the same id; one shard
// repeats an id only if its counter wraps (8192 sessions) within one
// millisecond, and a restart starts the counter at a random value.
uint64_t compose_session_id(int64_t unix_ms, uint32_t shard, uint64_t seq);

// What the layers above decide. Every method has a permissive default so a
// handler overrides only what it checks. Handlers must not call feed() or
// resume() from inside these methods; return a Verdict instead.
class SessionHandler {
 public:
  virtual ~SessionHandler() = default;
  virtual Verdict on_connect(Session&) { return Verdict::accept(); }
  virtual Verdict on_helo(Session&, std::string_view /*name*/) { return Verdict::accept(); }
  // The envelope holds the sender, its parameters and the new queue id.
  virtual Verdict on_mail(Session&, const Envelope&) { return Verdict::accept(); }
  virtual Verdict on_rcpt(Session&, const Envelope&, const Recipient&) { return Verdict::accept(); }
  // Before 354 for DATA, or before the first BDAT chunk is read.
  virtual Verdict on_data(Session&, const Envelope&) { return Verdict::accept(); }
  // A command line this server does not know (without CRLF). It is refused
  // whatever the verdict (500 5.5.2); a reject that carries a reply of its
  // own is sent instead (a 421 closes).
  virtual Verdict on_unknown(Session&, std::string_view /*line*/) { return Verdict::accept(); }
  // AUTH: the client's credentials, decoded (never logged). Accept: 235 and
  // the session is authenticated as the user (the handler may name the
  // account itself with Session::set_login() first); reject: the verdict's
  // reply, 535 5.7.8 by default (454 4.7.0 for a backend that cannot
  // answer). The credentials are wiped once the verdict is in.
  virtual Verdict on_auth(Session&, sasl::Mechanism, const sasl::Credentials&) {
    return Verdict::reject(454, "4.7.0", "Temporary authentication failure");
  }
  // End of data: the message is complete and valid. Accept only once it is
  // durable (or accepted downstream); the reply names the queue id. The
  // handler may move the body out of `msg`.
  virtual Verdict on_message(Session&, Message& msg) = 0;
  // "220 Ready to start TLS" is in output(): send it, then run the handshake
  // and call Session::tls_started(). Input after STARTTLS is discarded.
  virtual void on_starttls(Session&) {}
  // Every reply, for logs and metrics (verb is unknown for the greeting):
  // its code, enhanced code (may be empty) and text (lines joined by '\n';
  // empty for the greeting and the EHLO reply).
  virtual void on_reply(Session&, Verb, uint16_t /*code*/, std::string_view /*enhanced*/,
                        std::string_view /*text*/) {}
  // A protocol discipline check (core/protocol_discipline.h) fired: `check`
  // is "http_probe", "unoffered_pipelining" or "slow_command". Called before
  // the reply that ends the session (554, or 421 for slow_command) is queued,
  // while stage() still says where the client was.
  virtual void on_protocol_reject(Session&, std::string_view /*check*/) {}
  // XCLIENT replaced the client's identity (conn() has the new one); the
  // connect check runs again next, as for a new connection.
  virtual void on_xclient(Session&, std::string_view /*previous_client_ip*/) {}
  // The final reply to a message (end of DATA or BDAT LAST), whatever it was:
  // 250 after on_message accepted it, or the refusal (size, loop, bare line
  // ending, handler). `size` is the body size in octets as received.
  virtual void on_transaction_end(Session&, const Envelope&, uint16_t /*code*/, uint64_t /*size*/) {
  }
  // A transaction (MAIL accepted) ended without a final reply to a message:
  // RSET, HELO/EHLO or STARTTLS in the middle of it, QUIT, a 421, or the
  // client leaving (end_of_input()).
  virtual void on_transaction_abort(Session&, const Envelope&) {}
  // The body of the message being received now holds `bytes` octets in
  // memory (0 once it is released); called as it grows and when it is freed.
  // Answering spill or refuse (see BodyRoom) ends the holding: the session
  // then reports 0.
  virtual BodyRoom on_body_bytes(Session&, uint64_t /*bytes*/) { return BodyRoom::keep; }
  // Spilling starts: `msg` has the envelope, the Received header (stamped
  // now) and the body held so far, which the handler may move out (else it
  // comes as the first on_body_spill piece). Then every further octet of the
  // body, in order, goes to on_body_spill, and on_message sees spilled = true.
  virtual void on_spill_start(Session&, Message& /*msg*/) {}
  virtual void on_body_spill(Session&, std::string_view /*piece*/) {}
  // The transaction that spilled is over, whatever its end: what on_message
  // did not take (a refused, oversize or abandoned message) is to be thrown away.
  virtual void on_spill_end(Session&) {}
  // Makes the queue id for a new transaction; the default derives it from the
  // session id and the transaction number.
  virtual void make_queue_id(Session&, uint32_t txn_number, std::string& out);
};

// A config snapshot prepared for sessions: the config plus the replies that
// never change (greeting, EHLO keyword lists). Shared read-only by sessions.
class SessionSettings {
 public:
  explicit SessionSettings(SessionConfig cfg);
  const SessionConfig& config() const { return cfg_; }
  std::string_view greeting() const { return greeting_; }
  // The EHLO reply for the given TLS situation.
  std::string_view ehlo_reply(bool offer_starttls, bool offer_xclient = false,
                              bool offer_auth = false) const {
    return ehlo_[offer_starttls ? 1 : 0][offer_xclient ? 1 : 0][offer_auth ? 1 : 0];
  }

 private:
  SessionConfig cfg_;
  std::string greeting_;
  std::string ehlo_[2][2][2];  // [STARTTLS offered][XCLIENT offered][AUTH offered]
};

class Session {
 public:
  Session(std::shared_ptr<const SessionSettings> settings, SessionHandler& handler, ConnInfo info,
          Now now);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Runs the connect check and queues the greeting (or the rejection).
  void start(Now now);

  // The client a trusted PROXY header named, set before start(): every
  // check, log line and Received header uses it instead of the peer's.
  void set_client(std::string ip, uint16_t port);
  // The client's forward-confirmed reverse name (the checks found it): the
  // Received header names it.
  void set_client_ptr(std::string name) { info_.client_ptr = std::move(name); }
  // Trace header fields (each a whole field, folded, ending in CRLF) put
  // above the Received header of the transaction's message; set before the
  // body starts (at on_data), cleared with the transaction.
  void set_trace_headers(std::string fields) { trace_headers_ = std::move(fields); }
  // The address and port the client reached (the checks' "our address").
  void set_server(std::string ip, uint16_t port) {
    info_.server_ip = std::move(ip);
    info_.server_port = port;
  }
  // A "220-" teaser line already went out (the greeting delay's, as
  // postscreen does): the greeting must complete that reply. A connection the
  // connect check refuses then gets a plain "220 <host>" and the refusal as
  // the answer to each of its commands (QUIT excepted). Set before start().
  void set_teaser_sent() { teaser_sent_ = true; }
  // Whether XCLIENT is offered and honoured; set before start().
  void allow_xclient(bool allowed) { info_.xclient_allowed = allowed; }
  // SMTP AUTH on this session's listener; set before start().
  void set_auth(AuthMode mode) { info_.auth = mode; }
  // The account an AUTH verdict names (a backend's canonical user name),
  // set before the accepting resume(); without it the user the client gave.
  void set_login(std::string user) { info_.login = std::move(user); }

  // Feeds received bytes. Returns how many were used: all of them, unless the
  // session is waiting for a verdict or closing; the owner keeps the rest and
  // feeds it again after resume(). Bytes after STARTTLS are used and dropped.
  size_t feed(std::string_view in, Now now);

  // Hands back the verdict a handler left pending.
  void resume(Verdict v, Now now);
  bool waiting() const { return pending_ != Pending::none; }

  // Bytes to send. The owner sends them and then calls consume_output().
  std::string_view output() const { return out_; }
  void consume_output(size_t n);

  // True once the session is over: send the output, then close.
  bool closed() const { return phase_ == Phase::closed; }

  // The client will send nothing more (it closed its side, or the
  // connection is gone). Call it once the session has taken all the input
  // it was given and is not waiting: a transaction in progress is abandoned
  // (on_transaction_abort) and the session closes without a reply. The
  // replies already in output() are still owed to the client.
  void end_of_input();

  // After STARTTLS: the handshake finished; the session starts over (RFC 3207 4.2).
  void tls_started(std::string tls_version, std::string tls_cipher, Now now);
  // Implicit TLS: the handshake finished before start(); nothing to forget.
  void set_tls(std::string tls_version, std::string tls_cipher);

  // Monotonic time at which on_timer() must be called: the idle timeout
  // (command or data), the session timeout, and while a command line is
  // partly received, its own deadline (limits.command_line_timeout_ms).
  int64_t deadline_ms() const;
  // Closes with 421 4.4.2 if a timeout expired; returns true if it did.
  bool on_timer(Now now);

  // Graceful shutdown: an idle session is told 421 4.3.2 at once; a busy one
  // finishes its transaction and gets the 421 at its next command.
  void drain(Now now);

  const ConnInfo& conn() const { return info_; }
  const SessionConfig& config() const { return settings_->config(); }
  std::string_view helo() const { return helo_; }
  // The argument of the command being answered (its first 256 octets), for logs.
  std::string_view current_arg() const { return current_arg_; }
  bool esmtp() const { return esmtp_; }
  // Where the client is in the dialogue, for logs and reject counters:
  // "connect" (no HELO/EHLO yet), "helo", "mail" (MAIL accepted, no
  // recipient yet), "rcpt", "data" (receiving a body).
  std::string_view stage() const;
  uint32_t transactions() const { return txn_count_; }
  uint32_t bad_commands() const { return bad_commands_; }
  // Queue id of the transaction in progress (empty between transactions).
  const std::string& current_queue_id() const { return msg_.envelope.queue_id; }

 private:
  // auth: reading the responses of an AUTH exchange, line by line.
  enum class Phase : uint8_t { greeting, command, auth, data, bdat, starttls, closed };
  enum class Pending : uint8_t {
    none,
    connect,
    helo,
    mail,
    rcpt,
    data,
    bdat_start,
    message,
    unknown,
    auth
  };

  void handle_line(std::string_view line, Now now);
  // PIPELINING is in the EHLO reply this client has (RFC 2920 applies).
  bool pipelining_offered() const;
  // The partial command line has been arriving for too long.
  bool line_timed_out(Now now) const;
  // A discipline check fired: the handler hears which, then the reply, then close.
  void finish_unknown(const Verdict& v);
  void protocol_reject(std::string_view check, uint16_t code, std::string_view enhanced,
                       std::string_view text);
  void cmd_helo(const Command& c, bool extended);
  void cmd_mail(const Command& c, Now now);
  void cmd_rcpt(const Command& c);
  void cmd_data(const Command& c);
  void cmd_bdat(const Command& c, Now now);
  void cmd_starttls(const Command& c);
  void cmd_xclient(const Command& c);
  void cmd_auth(const Command& c);
  // AUTH is offered to this session now (EHLO, HELP).
  bool auth_offered() const;
  // The next step of an AUTH exchange: a challenge, the backend, or its end.
  void auth_step(const sasl::ServerExchange::Step& s);
  void auth_response(std::string_view line, bool overlong);
  void finish_auth(const Verdict& v);
  // The longest command line accepted, given its first octets (an AUTH
  // command may be longer than the others, RFC 4954 4).
  size_t line_limit(std::string_view head) const;
  void finish_connect(const Verdict& v);
  void finish_helo(const Verdict& v);
  void finish_mail(const Verdict& v);
  void finish_rcpt(const Verdict& v);
  void finish_data(const Verdict& v);
  void finish_bdat_start(const Verdict& v, Now now);
  void finish_message(const Verdict& v);
  void end_of_data(Now now);
  void complete_message(Now now);
  void bdat_chunk_done(Now now);
  size_t feed_bdat(std::string_view in, Now now);

  void set_bdat_error(uint16_t code, std::string_view enhanced, std::string_view text);
  void reply(uint16_t code, std::string_view enhanced, std::string_view text);
  void reply_verdict(const Verdict& v, uint16_t code, std::string_view enhanced,
                     std::string_view text);
  // A client error: counted; at the limit the answer is 421 4.7.0 and close.
  void error_reply(uint16_t code, std::string_view enhanced, std::string_view text);
  void close_with(uint16_t code, std::string_view enhanced, std::string_view text);
  // Forgets the transaction; one still in progress is reported abandoned.
  void reset_transaction();
  // The code of the reply that starts at out_[pos].
  uint16_t reply_code_at(size_t pos) const;
  void close_if_draining();
  // Final reply to a message, then the transaction is over.
  void message_reply(uint16_t code, std::string_view enhanced, std::string_view text,
                     uint64_t size);
  void touch(Now now) { last_activity_ms_ = now.mono_ms; }
  // After the body grew or was freed: tells the handler, and spills or
  // stops storing it if the handler says so.
  void body_changed(Now now);
  void release_body();
  void start_spill(Now now);
  void spill_piece(std::string_view piece);
  void stamp_received(Now now);

  std::shared_ptr<const SessionSettings> settings_;
  SessionHandler& handler_;
  ConnInfo info_;
  std::string out_;
  std::string line_buf_;  // a command line that straddles feeds
  bool line_overflow_ = false;
  // When the first octet of the command line being received came; -1 when
  // no line is partly received (between commands, the idle timeout rules).
  int64_t line_started_ms_ = -1;
  // Unoffered pipelining: the command just read came while PIPELINING was
  // not offered, so a line that starts in the same feed() was written
  // before its reply could have been read. Carried into the next feed()
  // only when this one stopped for a verdict with input left over.
  bool unoffered_follow_ = false;
  bool unoffered_carry_ = false;
  bool line_unoffered_ = false;  // the line being received is such a line

  Phase phase_ = Phase::greeting;
  Pending pending_ = Pending::none;
  Verb current_verb_ = Verb::unknown;
  std::string current_arg_;
  bool esmtp_ = false;
  bool helo_seen_ = false;
  bool draining_ = false;
  bool connect_rejected_ = false;  // 5xx greeting: only QUIT is served (RFC 5321 3.1)
  bool teaser_sent_ = false;       // set_teaser_sent()
  Verdict connect_refusal_;        // after a teaser: what every command is answered
  std::string helo_;
  std::string helo_candidate_;  // waiting for on_helo
  bool ehlo_candidate_ = false;
  std::string scratch_;        // reply text built at run time
  std::string trace_headers_;  // set_trace_headers()
  sasl::ServerExchange sasl_;  // the AUTH exchange in progress

  // Transaction.
  bool in_txn_ = false;
  bool txn_used_bdat_ = false;
  Message msg_;
  Recipient pending_rcpt_;
  DataDecoder decoder_;
  uint64_t bdat_remaining_ = 0;
  bool bdat_last_ = false;
  uint64_t bdat_chunk_size_ = 0;
  // A BDAT transaction that failed keeps answering with this until LAST/RSET.
  Verdict bdat_err_;
  uint64_t bdat_total_ = 0;     // octets of all chunks of this transaction
  uint64_t body_reported_ = 0;  // what on_body_bytes was last told
  bool body_refused_ = false;   // the handler had no room for this body
  bool spilling_ = false;       // the body goes to the handler as it comes
  std::string spill_head_;  // the first octets of a spilled body: its header, for the loop check
  // The longest line of a spilled body so far, and the length of its last
  // (unfinished) line: the body is not kept to measure it at the end.
  LineMeter spill_lines_;

  uint32_t txn_count_ = 0;
  uint32_t bad_commands_ = 0;
  int64_t started_ms_ = 0;
  int64_t last_activity_ms_ = 0;
};

}  // namespace ringmx
