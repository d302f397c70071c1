// SMTP session state machine. Owns the transaction being built and the reply
// buffer; asks its SessionHandler for every policy decision.
#include "core/session.h"

#include <algorithm>
#include <cstring>

#include "core/address.h"
#include "core/config.h"
#include "core/esmtp_params.h"
#include "core/protocol_discipline.h"
#include "core/received_header.h"
#include "core/xclient.h"

namespace ringmx {

namespace {

// Body buffers above this size are freed after a transaction, so an idle
// connection does not keep a large message's memory.
constexpr size_t kKeepBodyCapacity = size_t{64} * 1024;
// A spilled body is not held, but its header is, up to this much: the loop
// check counts Received headers there (50 of them take about 10 KiB).
constexpr size_t kSpillHeadKeep = size_t{64} * 1024;

bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' '; });
}

std::string_view skip_spaces(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && s[i] == ' ') ++i;
  return s.substr(i);
}

bool is_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

bool is_client_error(uint16_t code) {
  return code == 500 || code == 501 || code == 502 || code == 503 || code == 504 || code == 555;
}

// HELO/EHLO argument: one word of printable ASCII or valid UTF-8.
bool is_acceptable_helo(std::string_view s) {
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == 0x7f) return false;
  }
  return is_valid_utf8(s);
}

}  // namespace

namespace {
// How much of a command's argument a handler sees for its logs.
constexpr size_t kLoggedArgMax = 256;
constexpr char kBase32Hex[] = "0123456789ABCDEFGHIJKLMNOPQRSTUV";
}  // namespace

uint64_t compose_session_id(int64_t unix_ms, uint32_t shard, uint64_t seq) {
  static_assert(kMaxShards <= 256, "a shard id must fit in 8 bits");
  return (static_cast<uint64_t>(unix_ms) & ((uint64_t{1} << 43) - 1)) << 21 |
         uint64_t{shard & 0xff} << 13 | (seq & 0x1fff);
}

std::string format_session_id(uint64_t id) {
  std::string out(13, '0');
  for (int i = 12; i >= 0; --i) {
    out[static_cast<size_t>(i)] = kBase32Hex[id & 31];
    id >>= 5;
  }
  return out;
}

void SessionHandler::make_queue_id(Session& s, uint32_t txn_number, std::string& out) {
  // base32hex keeps ids sortable and filename-safe: 13 digits of the session
  // id, then 4 of the transaction number.
  out = format_session_id(s.conn().session_id);
  uint32_t t = txn_number;
  char tail[4];
  for (int i = 3; i >= 0; --i) {
    tail[i] = kBase32Hex[t & 31];
    t >>= 5;
  }
  out.append(tail, 4);
}

SessionSettings::SessionSettings(SessionConfig cfg) : cfg_(std::move(cfg)) {
  greeting_ = "220 " + cfg_.hostname;
  if (!cfg_.banner.empty()) greeting_ += " " + cfg_.banner;
  greeting_ += "\r\n";

  const Extensions& e = cfg_.ext;
  std::vector<std::string> kw;
  if (e.pipelining) kw.emplace_back("PIPELINING");
  if (e.size) kw.push_back("SIZE " + std::to_string(cfg_.limits.max_message_size));
  if (e.eightbitmime) kw.emplace_back("8BITMIME");
  if (e.smtputf8) kw.emplace_back("SMTPUTF8");
  if (e.enhanced_status_codes) kw.emplace_back("ENHANCEDSTATUSCODES");
  if (e.chunking) {
    kw.emplace_back("CHUNKING");
    kw.emplace_back("BINARYMIME");
  }
  if (e.dsn) kw.emplace_back("DSN");
  // RFC 2034 3: no enhanced codes in the EHLO reply.
  auto build = [&](bool tls, bool xclient, bool auth) {
    std::string lines = cfg_.hostname;
    for (const auto& k : kw) lines += "\n" + k;
    if (tls) lines += "\nSTARTTLS";
    if (auth) lines += "\nAUTH PLAIN LOGIN";
    if (xclient) lines += "\nXCLIENT " + std::string(kXclientAttributes);
    std::string out;
    append_reply(out, 250, {}, lines);
    return out;
  };
  for (int tls = 0; tls < 2; ++tls) {
    for (int xclient = 0; xclient < 2; ++xclient) {
      for (int auth = 0; auth < 2; ++auth) ehlo_[tls][xclient][auth] = build(tls, xclient, auth);
    }
  }
}

Session::Session(std::shared_ptr<const SessionSettings> settings, SessionHandler& handler,
                 ConnInfo info, Now now)
    : settings_(std::move(settings)),
      handler_(handler),
      info_(std::move(info)),
      started_ms_(now.mono_ms),
      last_activity_ms_(now.mono_ms) {
  out_.reserve(512);
}

// ---- output ---------------------------------------------------------------

void Session::consume_output(size_t n) {
  out_.erase(0, std::min(n, out_.size()));
}

void Session::reply(uint16_t code, std::string_view enhanced, std::string_view text) {
  if (!config().ext.enhanced_status_codes) enhanced = {};
  append_reply(out_, code, enhanced, text);
  handler_.on_reply(*this, current_verb_, code, enhanced, text);
  if (code == 421) phase_ = Phase::closed;
}

void Session::reply_verdict(const Verdict& v, uint16_t code, std::string_view enhanced,
                            std::string_view text) {
  if (v.code == 0) {
    reply(code, enhanced, text);
    return;
  }
  const bool positive = v.kind == Verdict::Kind::accept;
  const bool class_ok = positive ? v.code < 400 : v.code >= 400;
  if (!class_ok || !is_valid_reply(v.code, v.enhanced)) {
    // A handler bug must not become a misleading reply.
    if (positive) {
      reply(code, enhanced, text);
    } else {
      reply(451, "4.3.0", "Error: temporary local problem");
    }
    return;
  }
  reply(v.code, v.enhanced, v.text);
}

void Session::error_reply(uint16_t code, std::string_view enhanced, std::string_view text) {
  if (++bad_commands_ >= config().limits.max_bad_commands) {
    close_with(421, "4.7.0", "Error: too many errors, closing connection");
    return;
  }
  reply(code, enhanced, text);
}

void Session::close_with(uint16_t code, std::string_view enhanced, std::string_view text) {
  reply(code, enhanced, text);
  phase_ = Phase::closed;
  // A transaction still open is over (a verdict on its way keeps it: the
  // handler may still be working on the message).
  if (pending_ == Pending::none) reset_transaction();
}

void Session::end_of_input() {
  if (pending_ != Pending::none) return;
  reset_transaction();
  phase_ = Phase::closed;
}

// ---- lifecycle --------------------------------------------------------------

void Session::set_client(std::string ip, uint16_t port) {
  info_.client_ip = std::move(ip);
  info_.client_port = port;
}

void Session::start(Now now) {
  touch(now);
  Verdict v = handler_.on_connect(*this);
  if (v.kind == Verdict::Kind::pending) {
    pending_ = Pending::connect;
    return;
  }
  finish_connect(v);
}

void Session::finish_connect(const Verdict& v) {
  if (v.kind == Verdict::Kind::accept) {
    // RFC 2034 3: the greeting carries no enhanced code.
    out_ += settings_->greeting();
    handler_.on_reply(*this, Verb::unknown, 220, {}, {});
    phase_ = Phase::command;
    return;
  }
  phase_ = Phase::command;
  if (teaser_sent_) {
    // A multi-line reply keeps one code (RFC 5321 4.2.1): the "220-" line
    // is completed, and the refusal answers the commands instead.
    append_reply(out_, 220, {}, config().hostname + " ESMTP");
    handler_.on_reply(*this, Verb::unknown, 220, {}, {});
    connect_refusal_ = v;
    if (connect_refusal_.code == 0) {
      connect_refusal_ = Verdict::reject(554, "5.7.1", "Error: connection rejected");
    }
    connect_rejected_ = true;
    return;
  }
  reply_verdict(v, 554, "5.7.1", "Error: connection rejected");
  // A 554 greeting: the client may only QUIT (RFC 5321 3.1); 421 closed already.
  if (!closed()) connect_rejected_ = true;
}

void Session::resume(Verdict v, Now now) {
  const Pending p = pending_;
  if (p == Pending::none || closed()) return;
  pending_ = Pending::none;
  touch(now);
  if (v.kind == Verdict::Kind::pending) {
    v = Verdict::reject(451, "4.3.0", "Error: temporary local problem");
  }
  switch (p) {
    case Pending::connect: finish_connect(v); break;
    case Pending::helo: finish_helo(v); break;
    case Pending::mail: finish_mail(v); break;
    case Pending::rcpt: finish_rcpt(v); break;
    case Pending::data: finish_data(v); break;
    case Pending::bdat_start: finish_bdat_start(v, now); break;
    case Pending::message: finish_message(v); break;
    case Pending::unknown: finish_unknown(v); break;
    case Pending::auth: finish_auth(v); break;
    case Pending::none: break;
  }
}

void Session::set_tls(std::string tls_version, std::string tls_cipher) {
  info_.tls_active = true;
  info_.tls_version = std::move(tls_version);
  info_.tls_cipher = std::move(tls_cipher);
}

void Session::tls_started(std::string tls_version, std::string tls_cipher, Now now) {
  set_tls(std::move(tls_version), std::move(tls_cipher));
  // RFC 3207 4.2: forget everything learnt before the handshake.
  helo_seen_ = false;
  esmtp_ = false;
  helo_.clear();
  reset_transaction();
  line_buf_.clear();
  line_overflow_ = false;
  line_started_ms_ = -1;
  phase_ = Phase::command;
  touch(now);
}

int64_t Session::deadline_ms() const {
  const Limits& l = config().limits;
  const int64_t session_end = started_ms_ + l.session_timeout_ms;
  if (pending_ != Pending::none || phase_ == Phase::starttls || phase_ == Phase::closed) {
    return session_end;
  }
  const bool in_body = phase_ == Phase::data || phase_ == Phase::bdat;
  const int64_t idle_end = last_activity_ms_ + (in_body ? l.data_timeout_ms : l.command_timeout_ms);
  int64_t end = std::min(idle_end, session_end);
  if ((phase_ == Phase::command || phase_ == Phase::auth) && line_started_ms_ >= 0) {
    end = std::min(end, line_started_ms_ + int64_t{l.command_line_timeout_ms});
  }
  return end;
}

bool Session::line_timed_out(Now now) const {
  return (phase_ == Phase::command || phase_ == Phase::auth) && pending_ == Pending::none &&
         line_started_ms_ >= 0 &&
         now.mono_ms >= line_started_ms_ + int64_t{config().limits.command_line_timeout_ms};
}

bool Session::on_timer(Now now) {
  if (closed() || now.mono_ms < deadline_ms()) return false;
  current_verb_ = Verb::unknown;
  if (line_timed_out(now)) {
    protocol_reject(kCheckSlowCommand, 421, "4.4.2",
                    config().hostname + " Error: command line not completed in time");
    return true;
  }
  close_with(421, "4.4.2", config().hostname + " Error: timeout exceeded");
  return true;
}

std::string_view Session::stage() const {
  if (phase_ == Phase::data || phase_ == Phase::bdat) return "data";
  if (in_txn_) return msg_.envelope.recipients.empty() ? "mail" : "rcpt";
  return helo_seen_ ? "helo" : "connect";
}

bool Session::pipelining_offered() const {
  return helo_seen_ && esmtp_ && config().ext.pipelining;
}

void Session::protocol_reject(std::string_view check, uint16_t code, std::string_view enhanced,
                              std::string_view text) {
  handler_.on_protocol_reject(*this, check);
  close_with(code, enhanced, text);
}

void Session::drain(Now /*now*/) {
  draining_ = true;
  if (phase_ == Phase::command && !in_txn_ && pending_ == Pending::none) {
    current_verb_ = Verb::unknown;
    close_with(421, "4.3.2", config().hostname + " Service shutting down, closing connection");
  }
}

// ---- input ----------------------------------------------------------------

size_t Session::feed(std::string_view in, Now now) {
  if (in.empty()) return 0;
  touch(now);
  if (line_timed_out(now)) {
    // The rest of a line that is already too late (the owner's timer has
    // not run yet): the same end as on_timer's.
    current_verb_ = Verb::unknown;
    protocol_reject(kCheckSlowCommand, 421, "4.4.2",
                    config().hostname + " Error: command line not completed in time");
    return in.size();
  }
  // What a command read in an earlier call says about this input: nothing,
  // unless that call stopped for a verdict with this input left over.
  if (!unoffered_carry_) unoffered_follow_ = false;
  unoffered_carry_ = false;
  size_t pos = 0;
  while (pos < in.size()) {
    if (pending_ != Pending::none) {
      unoffered_carry_ = unoffered_follow_;
      return pos;
    }
    switch (phase_) {
      case Phase::greeting: return pos;  // nothing is read before the greeting is decided
      case Phase::closed:
      case Phase::starttls:
        // After STARTTLS, plaintext that was pipelined behind it is dropped,
        // never executed (CVE-2011-0411).
        return in.size();
      case Phase::data: {
        // The next command follows the end of data, not a command.
        unoffered_follow_ = false;
        auto r = decoder_.decode(in.substr(pos), msg_.body);
        pos += r.consumed;
        if (spilling_) {
          spill_piece(msg_.body.view());
          msg_.body.clear();
        } else {
          // Past the size limit nothing more is stored and what was is freed
          // at once: an oversize message costs no memory until its 552.
          if (decoder_.overflow() && msg_.body.capacity() != 0) release_body();
          body_changed(now);
        }
        if (r.done) end_of_data(now);
        break;
      }
      case Phase::bdat:
        unoffered_follow_ = false;
        pos += feed_bdat(in.substr(pos), now);
        break;
      case Phase::command:
      case Phase::auth: {
        const char* start = in.data() + pos;
        if (line_started_ms_ < 0) {
          // The first octet of a command line: its deadline starts, and it
          // was sent ahead of time if a command read while PIPELINING was
          // not offered came before it in this input.
          line_started_ms_ = now.mono_ms;
          line_unoffered_ = unoffered_follow_;
        }
        const void* nl = std::memchr(start, '\n', in.size() - pos);
        const size_t max_line =
            line_limit(line_buf_.empty() ? std::string_view(start, in.size() - pos) : line_buf_);
        if (nl == nullptr) {
          // A line that straddles reads: assembled once, capped.
          size_t n = in.size() - pos;
          if (!line_overflow_ && line_buf_.size() + n <= max_line) {
            line_buf_.append(start, n);
          } else {
            line_overflow_ = true;
            line_buf_.clear();
          }
          return in.size();
        }
        size_t len = static_cast<size_t>(static_cast<const char*>(nl) - start);
        pos += len + 1;
        std::string_view line;
        if (line_buf_.empty() && !line_overflow_) {
          line = std::string_view(start, len);  // zero-copy: a view into the input
        } else {
          if (!line_overflow_ && line_buf_.size() + len + 1 <= max_line) {
            line_buf_.append(start, len);
          } else {
            line_overflow_ = true;
          }
          line = line_buf_;
        }
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        const bool overlong = line_overflow_ || line.size() + 2 > max_line;
        line_overflow_ = false;
        line_started_ms_ = -1;
        const bool offered = pipelining_offered();  // when this command was read
        if (phase_ == Phase::auth) {
          auth_response(line, overlong);
        } else if (overlong) {
          current_verb_ = Verb::unknown;
          error_reply(500, "5.5.2", "Error: line too long");
        } else {
          handle_line(line, now);
        }
        line_unoffered_ = false;
        unoffered_follow_ = !offered;
        line_buf_.clear();
        break;
      }
    }
  }
  return pos;
}

void Session::handle_line(std::string_view line, Now now) {
  const Command c = parse_command(line);
  current_verb_ = c.verb;
  current_arg_.assign(c.arg.substr(0, kLoggedArgMax));
  if (config().reject_http && is_http_line(line)) {
    current_arg_.assign(line.substr(0, kLoggedArgMax));  // the request, for the logs
    return protocol_reject(kCheckHttpProbe, 554, "5.7.0",
                           "Error: HTTP (or proxy) requests are not SMTP, closing connection");
  }
  // Sent ahead of time with PIPELINING not offered. QUIT is let through: it
  // ends the session anyway, and clients that say goodbye that way (scripts,
  // openssl s_client after STARTTLS) are not spam engines.
  if (line_unoffered_ && c.verb != Verb::quit &&
      config().unoffered_pipelining == UnofferedPipelining::reject) {
    return protocol_reject(kCheckUnofferedPipelining, 554, "5.5.0",
                           "Error: command sent before the previous reply was read; "
                           "PIPELINING was not offered, closing connection");
  }
  if (c.verb == Verb::quit) {
    close_with(221, "2.0.0", "Bye");
    return;
  }
  if (connect_rejected_) {
    if (teaser_sent_) {
      // Refused after a 220: each command gets the refusal (a 421 closes).
      if (connect_refusal_.code < 500) {
        return close_with(connect_refusal_.code, connect_refusal_.enhanced, connect_refusal_.text);
      }
      return error_reply(connect_refusal_.code, connect_refusal_.enhanced, connect_refusal_.text);
    }
    error_reply(503, "5.7.0", "Error: connection rejected, send QUIT");
    return;
  }
  if (draining_ && !in_txn_) {
    close_with(421, "4.3.2", config().hostname + " Service shutting down, closing connection");
    return;
  }
  const bool no_args = c.arg.empty();
  switch (c.verb) {
    case Verb::ehlo: cmd_helo(c, true); return;
    case Verb::helo: cmd_helo(c, false); return;
    case Verb::mail: cmd_mail(c, now); return;
    case Verb::rcpt: cmd_rcpt(c); return;
    case Verb::data: cmd_data(c); return;
    case Verb::bdat: cmd_bdat(c, now); return;
    case Verb::starttls: cmd_starttls(c); return;
    case Verb::xclient: cmd_xclient(c); return;
    case Verb::rset:
      if (!no_args) return error_reply(501, "5.5.4", "Syntax: RSET");
      reset_transaction();
      reply(250, "2.0.0", "Ok");
      return close_if_draining();
    case Verb::noop: return reply(250, "2.0.0", "Ok");
    case Verb::vrfy:
      if (!config().ext.vrfy) return reply(502, "5.5.1", "Error: VRFY command is disabled");
      if (no_args) return error_reply(501, "5.5.4", "Syntax: VRFY address");
      return reply(252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery");
    case Verb::expn: return reply(502, "5.5.1", "Error: EXPN not supported");
    case Verb::help: {
      // Only what this session can use: STARTTLS where it is offered, BDAT
      // and VRFY when enabled.
      const Extensions& ext = config().ext;
      scratch_ = "Commands: EHLO HELO MAIL RCPT DATA";
      if (ext.chunking) scratch_ += " BDAT";
      scratch_ += " RSET NOOP QUIT";
      if (ext.vrfy) scratch_ += " VRFY";
      scratch_ += " HELP";
      if (info_.tls_available && !info_.tls_active) scratch_ += " STARTTLS";
      if (auth_offered()) scratch_ += " AUTH";
      if (info_.xclient_allowed) scratch_ += " XCLIENT";
      scratch_ += "\nSee RFC 5321";
      return reply(214, "2.0.0", scratch_);
    }
    case Verb::auth: cmd_auth(c); return;
    case Verb::quit:
    case Verb::unknown: break;
  }
  if (line.empty()) return error_reply(500, "5.5.2", "Error: bad syntax");
  const Verdict v = handler_.on_unknown(*this, line);
  if (v.kind == Verdict::Kind::pending) {
    pending_ = Pending::unknown;
    return;
  }
  finish_unknown(v);
}

void Session::finish_unknown(const Verdict& v) {
  if (v.kind == Verdict::Kind::reject && v.code == 421) {
    return close_with(421, v.enhanced.empty() ? "4.7.0" : v.enhanced, v.text);
  }
  if (v.kind == Verdict::Kind::reject && v.code >= 400 && v.code < 600) {
    return error_reply(v.code, v.enhanced, v.text);
  }
  error_reply(500, "5.5.2", "Error: command not recognized");
}

// ---- HELO / EHLO ----------------------------------------------------------

void Session::cmd_helo(const Command& c, bool extended) {
  if (c.arg.empty()) {
    return error_reply(501, "5.5.4", extended ? "Syntax: EHLO hostname" : "Syntax: HELO hostname");
  }
  if (c.arg.size() > config().limits.max_helo_length) {
    return error_reply(501, "5.5.2", "Error: HELO/EHLO name too long");
  }
  if (!is_acceptable_helo(c.arg)) {
    return error_reply(501, "5.5.2", "Error: invalid HELO/EHLO name");
  }
  reset_transaction();  // RFC 5321 4.1.4: EHLO also resets the transaction
  helo_candidate_.assign(c.arg);
  ehlo_candidate_ = extended;
  Verdict v = handler_.on_helo(*this, helo_candidate_);
  if (v.kind == Verdict::Kind::pending) {
    pending_ = Pending::helo;
    return;
  }
  finish_helo(v);
}

void Session::finish_helo(const Verdict& v) {
  if (v.kind != Verdict::Kind::accept) {
    helo_seen_ = false;
    return reply_verdict(v, 550, "5.7.1", "Error: HELO/EHLO rejected");
  }
  helo_.swap(helo_candidate_);
  helo_seen_ = true;
  esmtp_ = ehlo_candidate_;
  if (esmtp_) {
    out_ += settings_->ehlo_reply(info_.tls_available && !info_.tls_active, info_.xclient_allowed,
                                  auth_offered());
    handler_.on_reply(*this, current_verb_, 250, {}, {});
  } else {
    std::string_view host = config().hostname;
    append_reply(out_, 250, {}, host);  // RFC 2034 3: no enhanced code here
    handler_.on_reply(*this, current_verb_, 250, {}, host);
  }
}

// ---- MAIL -------------------------------------------------------------------

void Session::cmd_mail(const Command& c, Now /*now*/) {
  if (!helo_seen_) return error_reply(503, "5.5.1", "Error: send HELO/EHLO first");
  if (in_txn_) return error_reply(503, "5.5.1", "Error: nested MAIL command");
  if (info_.tls_required && !info_.tls_active) {
    return error_reply(530, "5.7.0", "Must issue a STARTTLS command first");
  }
  if (info_.auth == AuthMode::required && info_.login.empty()) {
    return error_reply(530, "5.7.0", "Authentication required");
  }
  if (!starts_with_nocase(c.arg, "FROM:")) {
    return error_reply(501, "5.5.4", "Syntax: MAIL FROM:<address>");
  }
  if (txn_count_ >= config().limits.max_transactions) {
    return close_with(421, "4.7.0", "Error: too many transactions in this session");
  }
  const Extensions& ext = config().ext;
  std::string_view rest = skip_spaces(c.arg.substr(5));
  const PathResult r = parse_path(rest, PathKind::reverse, ext.smtputf8 && esmtp_);
  if (!r.ok()) {
    if (r.error == AddrError::missing_open_bracket) {
      return error_reply(501, "5.5.4", "Syntax: MAIL FROM:<address>");
    }
    if (r.error == AddrError::utf8_not_allowed) {
      return reply(553, "5.6.7", "Error: non-ASCII sender address needs SMTPUTF8");
    }
    scratch_ = "Error: bad sender address syntax: ";
    scratch_ += describe(r.error);
    return error_reply(501, "5.1.7", scratch_);
  }
  std::string_view params = rest.substr(r.consumed);
  if (!esmtp_ && !is_blank(params)) {
    return error_reply(555, "5.5.4", "Error: MAIL parameters need EHLO");
  }
  Envelope& env = msg_.envelope;
  const ParamError pe = parse_mail_params(params, ext, config().limits.max_message_size, env.mail,
                                          info_.auth != AuthMode::none);
  if (!pe.ok()) {
    env.mail = {};
    if (is_client_error(pe.code)) return error_reply(pe.code, pe.enhanced, pe.text);
    return reply(pe.code, pe.enhanced, pe.text);
  }
  if (r.path.has_utf8 && !env.mail.smtputf8) {
    env.mail = {};
    return reply(553, "5.6.7", "Error: non-ASCII sender address needs SMTPUTF8");
  }
  env.sender.assign(r.path.mailbox);
  env.sender_utf8 = r.path.has_utf8;
  handler_.make_queue_id(*this, txn_count_ + 1, env.queue_id);
  Verdict v = handler_.on_mail(*this, env);
  if (v.kind == Verdict::Kind::pending) {
    pending_ = Pending::mail;
    return;
  }
  finish_mail(v);
}

void Session::finish_mail(const Verdict& v) {
  if (v.kind != Verdict::Kind::accept) {
    reset_transaction();
    return reply_verdict(v, 550, "5.7.1", "Error: sender rejected");
  }
  in_txn_ = true;
  ++txn_count_;
  reply_verdict(v, 250, "2.1.0", "Ok");
}

// ---- RCPT -------------------------------------------------------------------

void Session::cmd_rcpt(const Command& c) {
  if (!in_txn_) return error_reply(503, "5.5.1", "Error: need MAIL command");
  if (txn_used_bdat_) return error_reply(503, "5.5.1", "Error: RCPT after BDAT");
  if (!starts_with_nocase(c.arg, "TO:"))
    return error_reply(501, "5.5.4", "Syntax: RCPT TO:<address>");
  const Extensions& ext = config().ext;
  Envelope& env = msg_.envelope;
  std::string_view rest = skip_spaces(c.arg.substr(3));
  const PathResult r = parse_path(rest, PathKind::forward, ext.smtputf8 && env.mail.smtputf8);
  if (!r.ok()) {
    if (r.error == AddrError::missing_open_bracket) {
      return error_reply(501, "5.5.4", "Syntax: RCPT TO:<address>");
    }
    if (r.error == AddrError::utf8_not_allowed) {
      return reply(553, "5.6.7", "Error: non-ASCII recipient address needs SMTPUTF8");
    }
    scratch_ = "Error: bad recipient address syntax: ";
    scratch_ += describe(r.error);
    return error_reply(501, "5.1.3", scratch_);
  }
  std::string_view params = rest.substr(r.consumed);
  if (!esmtp_ && !is_blank(params)) {
    return error_reply(555, "5.5.4", "Error: RCPT parameters need EHLO");
  }
  pending_rcpt_.params = {};
  const ParamError pe = parse_rcpt_params(params, ext, pending_rcpt_.params);
  if (!pe.ok()) {
    if (is_client_error(pe.code)) return error_reply(pe.code, pe.enhanced, pe.text);
    return reply(pe.code, pe.enhanced, pe.text);
  }
  if (!env.mail.smtputf8 && !is_ascii(pending_rcpt_.params.orcpt)) {
    return error_reply(501, "5.5.4", "Error: non-ASCII ORCPT needs SMTPUTF8");
  }
  if (env.recipients.size() >= config().limits.max_recipients) {
    return reply(452, "4.5.3", "Error: too many recipients");
  }
  pending_rcpt_.address.assign(r.path.mailbox);
  Verdict v = handler_.on_rcpt(*this, env, pending_rcpt_);
  if (v.kind == Verdict::Kind::pending) {
    pending_ = Pending::rcpt;
    return;
  }
  finish_rcpt(v);
}

void Session::finish_rcpt(const Verdict& v) {
  if (v.kind != Verdict::Kind::accept) {
    return reply_verdict(v, 550, "5.7.1", "Error: recipient rejected");
  }
  msg_.envelope.recipients.push_back(std::move(pending_rcpt_));
  pending_rcpt_ = {};
  reply_verdict(v, 250, "2.1.5", "Ok");
}

// ---- DATA -------------------------------------------------------------------

void Session::cmd_data(const Command& c) {
  if (!c.arg.empty()) return error_reply(501, "5.5.4", "Syntax: DATA");
  if (!in_txn_) return error_reply(503, "5.5.1", "Error: need MAIL command");
  if (txn_used_bdat_) return error_reply(503, "5.5.1", "Error: DATA after BDAT");
  // RFC 2920 3.1 / RFC 5321 3.3: all RCPTs failed; not a client error.
  if (msg_.envelope.recipients.empty()) return reply(554, "5.5.1", "Error: no valid recipients");
  if (msg_.envelope.mail.body == BodyType::binary_mime) {
    return error_reply(503, "5.5.1", "Error: BODY=BINARYMIME needs BDAT");  // RFC 3030 3
  }
  Verdict v = handler_.on_data(*this, msg_.envelope);
  if (v.kind == Verdict::Kind::pending) {
    pending_ = Pending::data;
    return;
  }
  finish_data(v);
}

void Session::finish_data(const Verdict& v) {
  if (v.kind != Verdict::Kind::accept) {
    // The refusal is the transaction's final reply.
    const size_t before = out_.size();
    reply_verdict(v, 554, "5.7.1", "Error: message refused");
    handler_.on_transaction_end(*this, msg_.envelope, reply_code_at(before), 0);
    in_txn_ = false;
    reset_transaction();
    return;
  }
  const uint64_t max = config().limits.max_message_size;
  decoder_.reset(config().bare_line, max);
  const MailParams& mp = msg_.envelope.mail;
  if (mp.has_size) msg_.body.reserve(static_cast<size_t>(std::min(mp.size, max) + 1024));
  phase_ = Phase::data;
  reply(354, {}, "End data with <CR><LF>.<CR><LF>");  // RFC 2034 3: no code on 3xx
}

void Session::end_of_data(Now now) {
  phase_ = Phase::command;
  const uint64_t size = decoder_.body_size();
  if (decoder_.overflow()) {
    return message_reply(552, "5.3.4", "Error: message size exceeds fixed limit", size);
  }
  if (body_refused_) {
    return message_reply(452, "4.3.1", "Error: insufficient system resources, try again later",
                         size);
  }
  if (config().bare_line == BareLinePolicy::reject) {
    if (decoder_.saw_bare_lf()) {
      return message_reply(550, "5.5.2", "Error: bare <LF> received", size);
    }
    if (decoder_.saw_bare_cr()) {
      return message_reply(550, "5.5.2", "Error: bare <CR> received", size);
    }
  }
  complete_message(now);
}

// The body is complete and within limits: loop check, trace header, handler.
void Session::complete_message(Now now) {
  if (spilling_) {
    msg_.size = txn_used_bdat_ ? bdat_total_ : decoder_.body_size();
    msg_.received_count = count_received_headers(spill_head_);
    msg_.spilled_head = spill_head_;
  } else {
    msg_.size = msg_.body.size();
    msg_.received_count = count_received_headers(msg_.body.view());
  }
  if (msg_.received_count > config().limits.max_received_headers) {
    return message_reply(554, "5.4.6", "Error: too many hops (mail loop?)", msg_.size);
  }
  if (const uint32_t max_line = config().limits.max_line_length; max_line != 0) {
    uint64_t longest = 0;
    if (spilling_) {
      longest = spill_lines_.max();
    } else {
      LineMeter m;
      m.feed(msg_.body.view());
      longest = m.max();
    }
    if (longest > max_line) {
      return message_reply(550, "5.6.0",
                           "Error: message has a line longer than " + std::to_string(max_line) +
                               " octets (RFC 5322 2.1.1)",
                           msg_.size);
    }
  }
  if (!spilling_) stamp_received(now);  // a spilled body has its own, from when it began
  msg_.spilled = spilling_;
  msg_.via_bdat = txn_used_bdat_;
  Verdict v = handler_.on_message(*this, msg_);
  if (v.kind == Verdict::Kind::pending) {
    pending_ = Pending::message;
    return;
  }
  finish_message(v);
}

void Session::stamp_received(Now now) {
  const Envelope& env = msg_.envelope;
  const bool utf8 = env.mail.smtputf8;
  ReceivedFields f;
  f.helo = info_.xclient_helo.empty() ? helo_ : info_.xclient_helo;
  f.client_ip = info_.client_ip;
  f.client_ptr = info_.client_ptr;
  f.by_host = config().hostname;
  f.software = config().software;
  const bool esmtp = info_.xclient_esmtp < 0 ? esmtp_ : info_.xclient_esmtp == 1;
  f.protocol = protocol_name(esmtp, info_.tls_active, !info_.login.empty(), utf8);
  f.queue_id = env.queue_id;
  if (info_.tls_active) {
    f.tls_version = info_.tls_version;
    f.tls_cipher = info_.tls_cipher;
  }
  if (env.recipients.size() == 1) f.for_mailbox = env.recipients.front().address;
  if (config().received_names_auth_user) f.auth_user = info_.login;
  f.unix_time = now.unix_s;
  msg_.received.assign(trace_headers_);
  append_received(msg_.received, f);
  msg_.received_at_unix = now.unix_s;
}

void Session::finish_message(const Verdict& v) {
  const size_t before = out_.size();
  if (v.kind == Verdict::Kind::accept) {
    scratch_ = "Ok: queued as ";
    scratch_ += msg_.envelope.queue_id;
    reply_verdict(v, 250, "2.0.0", scratch_);
  } else {
    reply_verdict(v, 451, "4.3.0", "Error: message not accepted, try again later");
  }
  // The code actually sent (a bad verdict may have been replaced).
  handler_.on_transaction_end(*this, msg_.envelope, reply_code_at(before), msg_.size);
  in_txn_ = false;
  reset_transaction();
  close_if_draining();
}

void Session::message_reply(uint16_t code, std::string_view enhanced, std::string_view text,
                            uint64_t size) {
  reply(code, enhanced, text);
  handler_.on_transaction_end(*this, msg_.envelope, code, size);
  in_txn_ = false;
  reset_transaction();
  close_if_draining();
}

// While draining, a session is closed as soon as it has no transaction: a
// client that keeps its connection open after the 250 must not hold shutdown
// up until the deadline.
void Session::close_if_draining() {
  if (draining_ && !in_txn_ && phase_ == Phase::command && pending_ == Pending::none) {
    current_verb_ = Verb::unknown;
    close_with(421, "4.3.2", config().hostname + " Service shutting down, closing connection");
  }
}

// ---- BDAT (RFC 3030) ------------------------------------------------------

void Session::set_bdat_error(uint16_t code, std::string_view enhanced, std::string_view text) {
  if (bdat_err_.code != 0) return;  // the first failure is the one reported
  bdat_err_ = Verdict::reject(code, std::string(enhanced), std::string(text));
}

void Session::cmd_bdat(const Command& c, Now now) {
  // BDAT chunk-size [SP "LAST"]
  std::string_view a = c.arg;
  size_t i = 0;
  uint64_t size = 0;
  bool overflow = false;
  while (i < a.size() && a[i] >= '0' && a[i] <= '9') {
    if (size > (UINT64_MAX - 9) / 10) overflow = true;
    size = size * 10 + static_cast<uint64_t>(a[i] - '0');
    ++i;
  }
  std::string_view tail = a.substr(i);
  bool last = false;
  bool syntax_ok = i > 0 && i <= 20 && !overflow;
  if (syntax_ok && !tail.empty()) {
    std::string_view t = skip_spaces(tail);
    syntax_ok = t.size() < tail.size() && equals_nocase(t, "LAST");
    last = syntax_ok;
  }
  if (!syntax_ok) {
    // The chunk's length is unknown, so its bytes cannot be skipped; they will
    // be read as commands and fail on their own.
    return error_reply(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]");
  }
  bdat_remaining_ = size;
  bdat_chunk_size_ = size;
  bdat_last_ = last;
  // Whatever happens, exactly `size` octets follow and are consumed.
  if (!config().ext.chunking) {
    ++bad_commands_;
    set_bdat_error(502, "5.5.1", "Error: BDAT not enabled");
  } else if (!in_txn_) {
    ++bad_commands_;
    set_bdat_error(503, "5.5.1", "Error: need MAIL command");
  } else if (msg_.envelope.recipients.empty()) {
    set_bdat_error(554, "5.5.1", "Error: no valid recipients");
  }
  if (bdat_err_.code == 0 && !txn_used_bdat_) {
    txn_used_bdat_ = true;
    Verdict v = handler_.on_data(*this, msg_.envelope);
    if (v.kind == Verdict::Kind::pending) {
      pending_ = Pending::bdat_start;
      return;
    }
    return finish_bdat_start(v, now);
  }
  phase_ = Phase::bdat;
  if (bdat_remaining_ == 0) bdat_chunk_done(now);
}

void Session::finish_bdat_start(const Verdict& v, Now now) {
  if (v.kind != Verdict::Kind::accept) {
    if (v.code != 0 && v.code >= 400 && is_valid_reply(v.code, v.enhanced)) {
      set_bdat_error(v.code, v.enhanced, v.text);
    } else {
      set_bdat_error(554, "5.7.1", "Error: message refused");
    }
  } else {
    const uint64_t max = config().limits.max_message_size;
    const MailParams& mp = msg_.envelope.mail;
    uint64_t hint = mp.has_size ? std::min(mp.size, max) : bdat_chunk_size_;
    msg_.body.reserve(static_cast<size_t>(std::min(hint, max) + 1024));
  }
  phase_ = Phase::bdat;
  if (bdat_remaining_ == 0) bdat_chunk_done(now);
}

size_t Session::feed_bdat(std::string_view in, Now now) {
  const size_t n = static_cast<size_t>(std::min<uint64_t>(bdat_remaining_, in.size()));
  if (bdat_err_.code == 0) {
    const uint64_t max = config().limits.max_message_size;
    if (bdat_total_ + n > max) {
      set_bdat_error(552, "5.3.4", "Error: message size exceeds fixed limit");
      release_body();
    } else if (spilling_) {
      spill_piece(in.substr(0, n));
    } else {
      msg_.body.append(in.data(), n);
      body_changed(now);
    }
  }
  bdat_remaining_ -= n;
  bdat_total_ += n;
  if (bdat_remaining_ == 0) bdat_chunk_done(now);
  return n;
}

void Session::bdat_chunk_done(Now now) {
  phase_ = Phase::command;
  if (bdat_err_.code != 0) {
    const Verdict err = bdat_err_;
    if (is_client_error(err.code) && bad_commands_ >= config().limits.max_bad_commands) {
      reset_transaction();
      return close_with(421, "4.7.0", "Error: too many errors, closing connection");
    }
    if (bdat_last_ && in_txn_) return message_reply(err.code, err.enhanced, err.text, bdat_total_);
    if (!in_txn_) reset_transaction();
    return reply(err.code, err.enhanced, err.text);
  }
  if (!bdat_last_) {
    scratch_ = std::to_string(bdat_chunk_size_);
    scratch_ += " octets received";
    return reply(250, "2.0.0", scratch_);
  }
  complete_message(now);
}

// ---- STARTTLS / RSET helpers ----------------------------------------------

void Session::cmd_starttls(const Command& c) {
  if (!c.arg.empty()) return error_reply(501, "5.5.4", "Syntax: STARTTLS");
  if (info_.tls_active) return error_reply(503, "5.5.1", "Error: TLS already active");
  if (!info_.tls_available) return error_reply(502, "5.5.1", "Error: STARTTLS not available");
  reset_transaction();
  reply(220, "2.0.0", "Ready to start TLS");
  phase_ = Phase::starttls;
  handler_.on_starttls(*this);
}

// XCLIENT (core/xclient.h): a trusted front end names the client it serves.
// The session goes back to the greeting stage with that identity: the
// connect check runs again and the client must say EHLO again. TLS stays as
// it is (XCLIENT_README: it cannot be undone).
void Session::cmd_xclient(const Command& c) {
  if (!info_.xclient_allowed) return error_reply(550, "5.7.0", "Error: insufficient authorization");
  if (in_txn_) return error_reply(503, "5.5.1", "Error: MAIL transaction in progress");
  XclientUpdate u;
  const std::string problem = parse_xclient(c.arg, u);
  if (!problem.empty()) return error_reply(501, "5.5.4", problem);
  const std::string previous = info_.client_ip;
  if (u.addr) info_.client_ip = u.addr->empty() ? "unknown" : *u.addr;
  if (u.port) info_.client_port = *u.port;
  if (u.name) info_.client_ptr = *u.name;
  if (u.helo) info_.xclient_helo = *u.helo;
  if (u.esmtp) info_.xclient_esmtp = *u.esmtp ? 1 : 0;
  if (u.login) info_.login = *u.login;
  if (u.destaddr) info_.server_ip = *u.destaddr;
  if (u.destport) info_.server_port = *u.destport;
  reset_transaction();
  helo_.clear();
  helo_seen_ = false;
  esmtp_ = false;
  handler_.on_xclient(*this, previous);
  Verdict v = handler_.on_connect(*this);
  if (v.kind == Verdict::Kind::pending) {
    pending_ = Pending::connect;
    return;
  }
  finish_connect(v);
}

void Session::release_body() {
  msg_.body.release();
  body_changed({});  // shrinking: the time is not needed
}

void Session::body_changed(Now now) {
  if (spilling_) return;  // nothing is held
  const uint64_t now_held = msg_.body.size();
  if (now_held == body_reported_) return;
  body_reported_ = now_held;
  const BodyRoom room = handler_.on_body_bytes(*this, now_held);
  if (room == BodyRoom::keep || now_held == 0) return;
  if (room == BodyRoom::spill) return start_spill(now);
  // No room: keep reading the body to its end, store none of it.
  body_refused_ = true;
  decoder_.drop_rest();
  msg_.body.release();
  body_reported_ = 0;
  handler_.on_body_bytes(*this, 0);
  if (phase_ == Phase::bdat || txn_used_bdat_) {
    set_bdat_error(452, "4.3.1", "Error: insufficient system resources, try again later");
  }
}

// The body goes to the handler from now on, starting with what is held.
void Session::start_spill(Now now) {
  spilling_ = true;
  stamp_received(now);
  const std::string_view held = msg_.body.view();
  spill_head_.assign(held.substr(0, std::min(held.size(), kSpillHeadKeep)));
  handler_.on_spill_start(*this, msg_);
  spill_lines_ = {};
  spill_lines_.feed(msg_.body.view());
  if (!msg_.body.empty()) handler_.on_body_spill(*this, msg_.body.view());
  msg_.body.release();
  body_reported_ = 0;
  handler_.on_body_bytes(*this, 0);
}

void Session::spill_piece(std::string_view piece) {
  if (piece.empty()) return;
  spill_lines_.feed(piece);
  if (spill_head_.size() < kSpillHeadKeep) {
    spill_head_.append(piece.substr(0, kSpillHeadKeep - spill_head_.size()));
  }
  handler_.on_body_spill(*this, piece);
}

uint16_t Session::reply_code_at(size_t pos) const {
  uint16_t code = 0;
  for (size_t i = pos; i < pos + 3 && i < out_.size(); ++i) {
    code = static_cast<uint16_t>(code * 10 + (out_[i] - '0'));
  }
  return code;
}

void Session::reset_transaction() {
  if (in_txn_) handler_.on_transaction_abort(*this, msg_.envelope);
  in_txn_ = false;
  txn_used_bdat_ = false;
  Envelope& env = msg_.envelope;
  env.queue_id.clear();
  env.sender.clear();
  env.sender_utf8 = false;
  env.mail = {};
  env.recipients.clear();
  msg_.received.clear();
  trace_headers_.clear();
  msg_.received_count = 0;
  msg_.via_bdat = false;
  if (msg_.body.capacity() > kKeepBodyCapacity) {
    msg_.body.release();
  } else {
    msg_.body.clear();
  }
  body_refused_ = false;
  if (spilling_) {
    spilling_ = false;
    spill_head_.clear();
    spill_head_.shrink_to_fit();
    handler_.on_spill_end(*this);
  }
  msg_.spilled = false;
  msg_.spilled_head = {};
  body_changed({});
  bdat_err_ = {};
  bdat_total_ = 0;
  msg_.size = 0;
  bdat_remaining_ = 0;
  bdat_last_ = false;
}

}  // namespace ringmx
