// Contract: the client side of one SMTP (or LMTP) session as a sans-I/O state
// machine, shared by the load generator (bench/) and the daemon's relays. The owner feeds the bytes
// the server sent, sends what output() holds (in order, as much as the socket takes, then
// consume_output()), and passes the time in: the client opens no socket and
// reads no clock. An output() view is valid until the next call into the
// client (a referenced body stays where its owner keeps it).
//
// Session: banner (220) -> EHLO (LHLO for LMTP; HELO when EHLO gets 5xx) ->
// idle. With settings.helo_only: banner -> HELO -> idle, plain RFC 5321 SMTP:
// no extension is known (a multi-line 250 to HELO is not read for keywords),
// so transactions are lock-step, MAIL carries no parameters, and BDAT or
// STARTTLS fail as `unsupported`; a refused HELO ends the set-up with its code. With
// settings.starttls: EHLO -> STARTTLS (only when the server offers it: otherwise the set-up fails
// as `unsupported`, nothing goes out in plaintext) -> 220 -> wants_tls(): the owner runs the TLS
// handshake and calls tls_started(), after which every byte fed and sent is the plaintext inside
// TLS -> EHLO again -> (with settings.auth_plain: AUTH PLAIN -> 235) -> idle. Bytes after the 220
// in the same read are a protocol error (command injection). start_message() runs one transaction
// from idle back to idle:
//   pipelined (the server offered PIPELINING and the settings allow it):
//     MAIL + every RCPT + DATA leave together; the body follows the 354;
//     BDAT mode sends MAIL + RCPT* + "BDAT <n> LAST" + body at once;
//   lock-step otherwise: one command, one reply.
// While a pipelined transaction is in progress, can_queue_next() says one
// more message may be started: its MAIL + RCPT* + DATA (or BDAT) leave right
// behind the current end of data (RFC 2920 allows message content to open a
// group), so a busy connection costs one round trip per message. Message i+1's
// replies come after message i's; if i fails before its data, i+1 starts once
// the session is idle again (after RSET). With BDAT, i+1 starts with RSET
// ("RSET" + MAIL + RCPT* + BDAT): RFC 3030 leaves the server's state
// indeterminate after a refused BDAT (Dovecot's LMTP keeps the transaction,
// MAIL included), and i's outcome is not known when i+1 leaves.
// The DATA body is the caller's dot-stuffed text ending in ".\r\n" (see
// message_gen's dot_stuff); BDAT sends the raw message. LMTP expects one reply
// per accepted recipient after the data. quit() ends the session: QUIT at once
// when idle, or after the transactions in progress (pipelined behind the last
// end of data when possible).
//
// Every started message ends exactly once, in a MessageResult taken with
// take_result(): its code is the first non-2xx reply of the transaction
// (MAIL, any RCPT, DATA, the final reply or any LMTP per-recipient reply),
// else the final 2xx; or an ErrorKind when the transport failed before the
// final reply (connection_lost()) or the server broke the protocol. A
// transaction that failed after MAIL was accepted and before its data, or
// whose BDAT got a non-2xx reply, is followed by RSET before the session goes
// on (after the end-of-data reply to DATA the server has reset the
// transaction itself). A 421 at any point ends the
// session (closed()), and every message in progress ends with 421.
// Bodies are referenced, not copied, above kCopyBelow octets: the caller keeps
// them alive until the message's result is taken.
//
// Envelopes: a message's MAIL FROM and RCPT TO come from its MessageBody's
// `envelope` when set (the relays: each message its own sender, recipients
// and ESMTP parameters, rendered by the caller for what the server offered),
// else from the settings (the load generator). With settings.keep_replies the
// result also holds, per recipient, the reply that decided it (its RCPT reply
// if that failed, else its LMTP reply after the data, else the one reply to
// the data) with its text, and the reply that ended the transaction early
// (MAIL or DATA refused): what a relay logs, retries or bounces on.
#pragma once

#include <climits>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ringmx {

// Why a message (or a connection) failed without a final reply code.
enum class ErrorKind : uint8_t {
  none,
  refused,      // connect: ECONNREFUSED
  timeout,      // no reply (or no connection) within the timeout
  reset,        // ECONNRESET, EPIPE and other socket errors
  closed,       // the server closed the connection before the final reply
  protocol,     // a reply that is not SMTP, or one nobody asked for
  unsupported,  // --bdat without CHUNKING, --starttls without STARTTLS offered
  connect,      // connect failed otherwise (EADDRNOTAVAIL, ENETUNREACH, ...)
  not_started,  // issued, but no connection took it before the run ended
  tls,          // the TLS handshake failed (or TLS broke afterwards)
};
constexpr size_t kErrorKindCount = 10;
const char* error_kind_name(ErrorKind kind);

struct ClientSettings {
  std::string helo_name = "bench.example.net";
  std::string mail_from = "bench@example.net";
  std::vector<std::string> recipients = {"rcpt@example.org"};
  bool lmtp = false;
  bool bdat = false;
  bool use_pipelining = true;      // when the server offers PIPELINING
  bool starttls = false;           // STARTTLS after the first EHLO (the owner runs TLS)
  bool starttls_optional = false;  // with starttls: go on in plaintext when it is not offered
  bool helo_only = false;          // greet with HELO, not EHLO: no extensions (ignored for LMTP)
  bool keep_replies = false;       // results carry per-recipient replies and texts
  // AUTH PLAIN (RFC 4954) with this initial response (base64 of
  // "\0user\0password") once the session is ready (after STARTTLS when
  // asked for): 235 makes it idle, anything else ends the set-up with that
  // code. Empty: no AUTH.
  std::string auth_plain;
};

// A message's own envelope, as it goes on the wire: addresses without the
// angle brackets, parameters (" SIZE=123 BODY=8BITMIME", with the leading
// space, or empty) already chosen for what the server offered.
struct ClientRecipient {
  std::string address;
  std::string params;
};
struct ClientEnvelope {
  std::string mail_from;
  std::string mail_params;
  std::vector<ClientRecipient> recipients;
};

// One message's data, owned by the caller.
struct MessageBody {
  std::string_view stuffed;                  // dot-stuffed, ending in ".\r\n" (DATA)
  std::string_view raw;                      // as is (BDAT)
  const ClientEnvelope* envelope = nullptr;  // null: the settings' sender and recipients
};

// A reply as kept for a relay (settings.keep_replies): its code and its text,
// the lines after the code joined by a space, at most kMaxReplyText octets.
struct ReplyText {
  uint16_t code = 0;  // 0: no reply came (the transport failed first)
  std::string text;   // "5.1.1 <x@example.org>: user unknown"
  static constexpr size_t kMaxReplyText = 512;
};

struct MessageResult {
  uint64_t id = 0;
  uint16_t code = 0;  // 0 when `error` is set
  ErrorKind error = ErrorKind::none;
  int64_t intended_ns = 0;  // when the caller wanted it to start (kIntendedAtStart: at MAIL)
  int64_t started_ns = 0;   // MAIL queued
  int64_t data_end_ns = 0;  // the end of the data queued (0: never got that far)
  int64_t final_ns = 0;     // the final reply (or the error)
  uint32_t rcpt_accepted = 0;
  uint32_t rcpt_rejected = 0;
  uint64_t data_bytes = 0;  // message octets sent (stuffed for DATA)
  // keep_replies only: one per recipient, in order (see the contract), and
  // the reply that ended the transaction before its data (code 0: none did).
  std::vector<ReplyText> rcpt_replies;
  ReplyText early;
  bool ok() const { return error == ErrorKind::none && code >= 200 && code < 300; }
};

class SmtpClient {
 public:
  enum class State : uint8_t {
    banner,
    helo,           // EHLO (or LHLO) sent: its reply lists the extensions
    helo_fallback,  // HELO sent (EHLO refused, or helo_only): no extensions
    starttls,       // STARTTLS sent, its reply due
    tls_handshake,  // 220 to STARTTLS: the owner runs the handshake
    auth,           // AUTH PLAIN sent, its reply due
    idle,
    transaction,
    rset,
    quit,
    closed
  };
  static constexpr size_t kCopyBelow = size_t{64} * 1024;
  static constexpr size_t kMaxReplyLine = size_t{64} * 1024;
  // As intended_ns: the message is intended to start when its MAIL is queued.
  static constexpr int64_t kIntendedAtStart = INT64_MIN;

  // The connection attempt starts now; `settings` must outlive the client.
  SmtpClient(const ClientSettings& settings, int64_t now_ns);

  void feed(std::string_view bytes, int64_t now_ns);
  // Precondition: idle() or can_queue_next().
  void start_message(uint64_t id, const MessageBody& body, int64_t intended_ns, int64_t now_ns);
  bool can_queue_next() const;
  void quit(int64_t now_ns);
  // The transport is gone (or the owner gave up): the messages in progress, if
  // any, end with `kind`; the session is closed.
  void connection_lost(ErrorKind kind, int64_t now_ns);
  // STARTTLS: the server said 220, the owner must now run the TLS handshake
  // and call tls_started() once it is done (or connection_lost(tls)).
  bool wants_tls() const { return state_ == State::tls_handshake; }
  // The TLS handshake is done: EHLO again, inside TLS.
  void tls_started(int64_t now_ns);
  bool tls_active() const { return tls_active_; }

  std::string_view output() const;
  void consume_output(size_t n);
  bool has_output() const { return out_head_ < out_.size(); }
  // True when output() is a referenced body (it stays where the caller keeps
  // it, so it may be sent without a copy while the client is called again);
  // false for the client's own text, which may grow or move at the next call.
  bool output_is_reference() const {
    return out_head_ < out_.size() && out_[out_head_].text.empty();
  }

  std::optional<MessageResult> take_result();
  bool has_result() const { return results_head_ < results_.size(); }

  State state() const { return state_; }
  bool idle() const { return state_ == State::idle; }
  bool closed() const { return state_ == State::closed; }
  bool ready_seen() const { return ready_ns_ != 0; }  // reached idle at least once
  // True while a reply from the server is due (the owner's timeout applies).
  bool waiting() const;
  int64_t last_progress_ns() const { return last_progress_ns_; }
  int64_t created_ns() const { return created_ns_; }
  int64_t banner_ns() const { return banner_ns_; }
  int64_t ready_ns() const { return ready_ns_; }
  // Why the session ended before it was ever ready: a reply code (banner or
  // EHLO/HELO refused) or an error kind; both 0/none otherwise.
  uint16_t setup_code() const { return setup_code_; }
  ErrorKind setup_error() const { return setup_error_; }
  // The end of the current message's data is on its way: the reply to it is awaited.
  bool data_queued() const { return cur_ && cur_->data_queued; }
  // Messages started and not finished (0, 1 or 2).
  size_t in_flight() const { return (cur_ ? 1 : 0) + (next_ ? 1 : 0); }
  // Closed by a reply after which the server closes the connection itself
  // (the reply to QUIT, or a 421): the owner may wait for its FIN, so that the
  // server, not the client, keeps the TIME_WAIT.
  bool server_closes() const { return state_ == State::closed && server_closes_; }

  bool server_pipelining() const { return pipelining_; }
  bool server_chunking() const { return chunking_; }
  bool server_starttls() const { return starttls_offered_; }
  bool server_8bitmime() const { return eightbit_; }
  bool server_smtputf8() const { return smtputf8_; }
  bool server_dsn() const { return dsn_; }
  // SIZE's value (0: offered without a limit, or not offered: see server_size_offered()).
  uint64_t server_size() const { return size_limit_; }
  bool server_size_offered() const { return size_offered_; }
  // The last complete reply (keep_replies: with its text): a set-up refusal's words.
  const ReplyText& last_reply() const { return last_reply_; }
  // When the last complete reply arrived (a reply that trickles in line by
  // line does not move it): the owner's command timeout runs from here.
  int64_t last_reply_ns() const { return last_reply_ns_; }
  uint64_t transactions() const { return transactions_; }

 private:
  // rset_lead: the RSET in front of a BDAT transaction pipelined behind another.
  enum class Expect : uint8_t { mail, rcpt, data, final_reply, rset, rset_lead, quit };
  struct Segment {
    std::string text;
    std::string_view view;  // used when text is empty
  };
  struct Txn {
    MessageResult r;
    MessageBody body;
    bool pipelined = false;
    bool sent = false;         // MAIL queued
    bool data_queued = false;  // the end of its data queued
    bool mail_ok = false;
    size_t rcpt_sent = 0;
    uint16_t first_fail = 0;
    uint16_t last_code = 0;
    uint32_t final_left = 0;
    bool final_counted = false;
    bool final_failed = false;       // a non-2xx reply to the data (or one LMTP recipient's)
    size_t final_seen = 0;           // keep_replies: accepted recipients decided after the data
    std::vector<uint32_t> accepted;  // keep_replies: indices of the recipients accepted at RCPT
  };
  size_t recipient_count(const Txn& t) const {
    return t.body.envelope ? t.body.envelope->recipients.size() : settings_.recipients.size();
  }

  void on_reply(uint16_t code, int64_t now_ns);
  void on_transaction_reply(Txn& t, Expect e, uint16_t code, int64_t now_ns);
  void on_ehlo_line(std::string_view line);
  void after_helo(int64_t now_ns);
  // Ready but for AUTH (settings.auth_plain): AUTH PLAIN, else idle.
  void authenticate(int64_t now_ns);
  void forget_extensions();
  void become_idle(int64_t now_ns);
  void begin(int64_t now_ns);
  void send_envelope(Txn& t, int64_t now_ns);
  void send_rcpt(Txn& t, size_t i);
  void send_data_command(Txn& t, int64_t now_ns);
  void data_queued(Txn& t, int64_t now_ns);
  void maybe_send_next(int64_t now_ns);
  void maybe_send_quit();
  void push_expect(Expect e);
  void send(std::string_view text);
  void send_body(std::string_view body);
  void finish(Txn& t, int64_t now_ns, ErrorKind error);
  void finish_cur(int64_t now_ns, ErrorKind error = ErrorKind::none);
  void finish_all(int64_t now_ns, ErrorKind error, uint16_t code);
  void end_transaction(int64_t now_ns);
  void fail_protocol(int64_t now_ns);
  void send_quit();
  void clear_output();

  const ClientSettings& settings_;
  State state_ = State::banner;
  std::string in_;
  bool reply_started_ = false;  // a multi-line reply is being read
  uint16_t reply_code_ = 0;
  size_t reply_lines_ = 0;
  std::string reply_text_;  // keep_replies: the reply being read
  ReplyText last_reply_;
  int64_t last_reply_ns_ = 0;

  std::vector<Segment> out_;
  size_t out_head_ = 0;
  size_t out_off_ = 0;

  std::vector<Expect> expect_;
  size_t expect_head_ = 0;

  bool pipelining_ = false;
  bool chunking_ = false;
  bool starttls_offered_ = false;
  bool eightbit_ = false;
  bool smtputf8_ = false;
  bool dsn_ = false;
  bool size_offered_ = false;
  uint64_t size_limit_ = 0;
  bool tls_active_ = false;
  bool quit_requested_ = false;
  bool quit_sent_ = false;
  bool server_closes_ = false;
  bool rset_needed_ = false;

  std::optional<Txn> cur_;   // the replies being read are its
  std::optional<Txn> next_;  // queued behind it (its commands may be on their way)
  std::vector<MessageResult> results_;
  size_t results_head_ = 0;

  int64_t created_ns_ = 0;
  int64_t banner_ns_ = 0;
  int64_t ready_ns_ = 0;
  int64_t last_progress_ns_ = 0;
  uint16_t setup_code_ = 0;
  ErrorKind setup_error_ = ErrorKind::none;
  uint64_t transactions_ = 0;
};

}  // namespace ringmx
