// Contract: see smtp_client.h. Replies are parsed line by line (CRLF, a bare
// LF is tolerated); a reply ends at its "ddd " line. Every command sent pushes
// what it expects onto expect_, and replies are matched to it in order, which
// is what makes pipelined and lock-step transactions the same code.
#include "core/smtp_client.h"

#include <algorithm>

namespace ringmx {

namespace {

bool is_2xx(uint16_t code) {
  return code >= 200 && code < 300;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    if (x >= 'a' && x <= 'z') x = static_cast<char>(x - 'a' + 'A');
    if (x != b[i]) return false;
  }
  return true;
}

}  // namespace

const char* error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::none: return "none";
    case ErrorKind::refused: return "refused";
    case ErrorKind::timeout: return "timeout";
    case ErrorKind::reset: return "reset";
    case ErrorKind::closed: return "closed";
    case ErrorKind::protocol: return "protocol";
    case ErrorKind::unsupported: return "unsupported";
    case ErrorKind::connect: return "connect";
    case ErrorKind::not_started: return "not_started";
    case ErrorKind::tls: return "tls";
  }
  return "unknown";
}

SmtpClient::SmtpClient(const ClientSettings& settings, int64_t now_ns)
    : settings_(settings), created_ns_(now_ns), last_progress_ns_(now_ns) {}

// ---- output ---------------------------------------------------------------------

void SmtpClient::send(std::string_view text) {
  if (out_head_ < out_.size() && !out_.back().text.empty()) {
    out_.back().text.append(text);
  } else {
    out_.push_back(Segment{std::string(text), {}});
  }
}

void SmtpClient::send_body(std::string_view body) {
  if (body.size() < kCopyBelow) {
    send(body);
  } else {
    out_.push_back(Segment{std::string(), body});
  }
}

std::string_view SmtpClient::output() const {
  if (out_head_ >= out_.size()) return {};
  const Segment& s = out_[out_head_];
  const std::string_view v = s.text.empty() ? s.view : std::string_view(s.text);
  return v.substr(out_off_);
}

void SmtpClient::consume_output(size_t n) {
  while (n > 0 && out_head_ < out_.size()) {
    const Segment& s = out_[out_head_];
    const size_t size = s.text.empty() ? s.view.size() : s.text.size();
    const size_t take = std::min(n, size - out_off_);
    out_off_ += take;
    n -= take;
    if (out_off_ >= size) {
      ++out_head_;
      out_off_ = 0;
    }
  }
  if (out_head_ >= out_.size()) {
    out_.clear();
    out_head_ = 0;
    out_off_ = 0;
  }
}

// ---- input ----------------------------------------------------------------------

void SmtpClient::feed(std::string_view bytes, int64_t now_ns) {
  if (state_ == State::closed) return;
  last_progress_ns_ = now_ns;
  in_.append(bytes);
  size_t pos = 0;
  while (state_ != State::closed) {
    const size_t nl = in_.find('\n', pos);
    if (nl == std::string::npos) break;
    std::string_view line(in_.data() + pos, nl - pos);
    pos = nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const bool digits = line.size() >= 3 && std::all_of(line.begin(), line.begin() + 3, [](char c) {
                          return c >= '0' && c <= '9';
                        });
    const char sep = line.size() > 3 ? line[3] : ' ';
    if (!digits || (sep != ' ' && sep != '-')) {
      fail_protocol(now_ns);
      return;
    }
    const auto code =
        static_cast<uint16_t>((line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0'));
    if (reply_started_ && code != reply_code_) {
      fail_protocol(now_ns);
      return;
    }
    if (state_ == State::helo && reply_lines_ > 0 && line.size() > 4) {
      on_ehlo_line(line.substr(4));
    }
    if (settings_.keep_replies && line.size() > 4) {
      const size_t room =
          ReplyText::kMaxReplyText - std::min(ReplyText::kMaxReplyText, reply_text_.size());
      if (room > 1) {
        if (!reply_text_.empty()) reply_text_.push_back(' ');
        reply_text_.append(line.substr(4, room - 1));
      }
    }
    reply_started_ = true;
    reply_code_ = code;
    ++reply_lines_;
    if (sep == '-') continue;
    reply_started_ = false;
    reply_lines_ = 0;
    last_reply_.code = code;
    last_reply_.text.swap(reply_text_);
    reply_text_.clear();
    last_reply_ns_ = now_ns;
    on_reply(code, now_ns);
    if (state_ == State::tls_handshake) {
      // The server speaks next only after the handshake: plaintext behind
      // the 220 would be injected into the TLS session.
      if (pos < in_.size()) {
        fail_protocol(now_ns);
        return;
      }
      break;
    }
  }
  if (state_ == State::closed) {
    in_.clear();
    return;
  }
  in_.erase(0, pos);
  if (in_.size() > kMaxReplyLine) fail_protocol(now_ns);
}

void SmtpClient::on_ehlo_line(std::string_view line) {
  const size_t sp = line.find(' ');
  const std::string_view keyword = line.substr(0, sp);
  if (iequals(keyword, "PIPELINING")) pipelining_ = true;
  if (iequals(keyword, "CHUNKING")) chunking_ = true;
  if (iequals(keyword, "STARTTLS")) starttls_offered_ = true;
  if (iequals(keyword, "8BITMIME")) eightbit_ = true;
  if (iequals(keyword, "SMTPUTF8")) smtputf8_ = true;
  if (iequals(keyword, "DSN")) dsn_ = true;
  if (iequals(keyword, "SIZE")) {
    size_offered_ = true;
    size_limit_ = 0;
    if (sp != std::string_view::npos) {
      for (const char c : line.substr(sp + 1)) {
        if (c < '0' || c > '9' || size_limit_ > UINT64_MAX / 10 - 9) break;
        size_limit_ = size_limit_ * 10 + static_cast<uint64_t>(c - '0');
      }
    }
  }
}

void SmtpClient::forget_extensions() {
  pipelining_ = false;
  chunking_ = false;
  starttls_offered_ = false;
  eightbit_ = false;
  smtputf8_ = false;
  dsn_ = false;
  size_offered_ = false;
  size_limit_ = 0;
}

// EHLO or HELO accepted: STARTTLS first when asked for, else ready.
void SmtpClient::after_helo(int64_t now_ns) {
  if (!settings_.starttls || tls_active_) return authenticate(now_ns);
  if (!starttls_offered_) {
    if (settings_.starttls_optional) return authenticate(now_ns);  // opportunistic: plaintext
    setup_error_ = ErrorKind::unsupported;                         // never fall back to plaintext
    return send_quit();
  }
  send("STARTTLS\r\n");
  state_ = State::starttls;
}

void SmtpClient::authenticate(int64_t now_ns) {
  if (settings_.auth_plain.empty()) return become_idle(now_ns);
  send("AUTH PLAIN ");
  send(settings_.auth_plain);
  send("\r\n");
  state_ = State::auth;
}

void SmtpClient::tls_started(int64_t now_ns) {
  if (state_ != State::tls_handshake) return;
  tls_active_ = true;
  last_progress_ns_ = now_ns;
  // RFC 3207 4.2: forget what was learnt before TLS and ask again.
  forget_extensions();
  send(settings_.lmtp ? "LHLO " : "EHLO ");
  send(settings_.helo_name);
  send("\r\n");
  state_ = State::helo;
}

void SmtpClient::on_reply(uint16_t code, int64_t now_ns) {
  switch (state_) {
    case State::banner:
      banner_ns_ = now_ns;
      if (code == 220) {
        const bool plain = settings_.helo_only && !settings_.lmtp;
        send(settings_.lmtp ? "LHLO " : plain ? "HELO " : "EHLO ");
        send(settings_.helo_name);
        send("\r\n");
        state_ = plain ? State::helo_fallback : State::helo;
      } else {
        setup_code_ = code;
        state_ = State::closed;
        server_closes_ = code == 421;
      }
      return;
    case State::helo:
      if (is_2xx(code)) return after_helo(now_ns);
      if (!settings_.lmtp && code >= 500) {
        forget_extensions();
        send("HELO ");
        send(settings_.helo_name);
        send("\r\n");
        state_ = State::helo_fallback;
        return;
      }
      [[fallthrough]];
    case State::helo_fallback:
      if (is_2xx(code)) return after_helo(now_ns);
      [[fallthrough]];
    case State::starttls:
    case State::auth:
      if (state_ == State::starttls && code == 220) {
        state_ = State::tls_handshake;
        return;
      }
      if (state_ == State::auth && code == 235) return become_idle(now_ns);
      setup_code_ = code;
      if (code == 421) {
        state_ = State::closed;
        server_closes_ = true;
        finish_all(now_ns, ErrorKind::none, code);
      } else {
        send_quit();
      }
      return;
    case State::idle:
    case State::tls_handshake:
    case State::closed:
      // Nobody asked: a 421 announces the end (idle timeout, shutdown).
      if (code == 421) {
        state_ = State::closed;
        server_closes_ = true;
      } else {
        fail_protocol(now_ns);
      }
      return;
    case State::transaction:
    case State::rset:
    case State::quit: break;
  }
  if (expect_head_ >= expect_.size()) return fail_protocol(now_ns);
  const Expect e = expect_[expect_head_++];
  if (e == Expect::quit) {
    state_ = State::closed;
    server_closes_ = true;
    return;
  }
  if (code == 421) {  // the server is closing: nothing more will be answered
    state_ = State::closed;
    server_closes_ = true;
    finish_all(now_ns, ErrorKind::none, code);
    clear_output();
    return;
  }
  if (e == Expect::rset) return become_idle(now_ns);
  if (!cur_) return fail_protocol(now_ns);
  on_transaction_reply(*cur_, e, code, now_ns);
}

void SmtpClient::on_transaction_reply(Txn& t, Expect e, uint16_t code, int64_t now_ns) {
  t.last_code = code;
  if (!is_2xx(code) && t.first_fail == 0 && !(e == Expect::data && code == 354)) {
    t.first_fail = code;
  }
  const bool keep = settings_.keep_replies;
  switch (e) {
    case Expect::mail:
      t.mail_ok = is_2xx(code);
      if (keep && !t.mail_ok && t.r.early.code == 0) t.r.early = last_reply_;
      if (!t.pipelined) {
        if (!t.mail_ok) {
          finish_cur(now_ns);
          return end_transaction(now_ns);
        }
        send_rcpt(t, 0);
      }
      return;
    case Expect::rcpt:
      if (is_2xx(code)) {
        ++t.r.rcpt_accepted;
        if (keep) t.accepted.push_back(static_cast<uint32_t>(t.r.rcpt_replies.size()));
      } else {
        ++t.r.rcpt_rejected;
      }
      if (keep) t.r.rcpt_replies.push_back(last_reply_);
      if (!t.pipelined) {
        if (t.rcpt_sent < recipient_count(t)) return send_rcpt(t, t.rcpt_sent);
        if (t.r.rcpt_accepted == 0) {
          finish_cur(now_ns);
          return end_transaction(now_ns);
        }
        send_data_command(t, now_ns);
      }
      return;
    case Expect::data:
      if (code != 354) {
        if (keep && t.r.early.code == 0) t.r.early = last_reply_;
        finish_cur(now_ns);
        return end_transaction(now_ns);
      }
      if (t.mail_ok && t.r.rcpt_accepted > 0) {
        send_body(t.body.stuffed);
        t.r.data_bytes = t.body.stuffed.size();
      } else {
        send(".\r\n");  // a server that said 354 anyway gets an empty message
      }
      push_expect(Expect::final_reply);
      return data_queued(t, now_ns);
    case Expect::final_reply:
      if (!is_2xx(code)) t.final_failed = true;
      if (!t.final_counted) {
        t.final_counted = true;
        t.final_left = settings_.lmtp && t.r.rcpt_accepted > 0 ? t.r.rcpt_accepted : 1;
      }
      if (keep) {
        // LMTP: this reply is the next accepted recipient's; SMTP: every one's.
        const size_t upto = settings_.lmtp ? t.final_seen + 1 : t.accepted.size();
        for (; t.final_seen < std::min(upto, t.accepted.size()); ++t.final_seen) {
          t.r.rcpt_replies[t.accepted[t.final_seen]] = last_reply_;
        }
      }
      if (--t.final_left > 0) {
        --expect_head_;  // more per-recipient replies to come (LMTP)
        return;
      }
      finish_cur(now_ns);
      return end_transaction(now_ns);
    case Expect::rset_lead:  // a refusal counts as the message's first failure
    case Expect::rset:
    case Expect::quit: return;
  }
}

// ---- transactions ---------------------------------------------------------------

void SmtpClient::start_message(uint64_t id, const MessageBody& body, int64_t intended_ns,
                               int64_t now_ns) {
  Txn t;
  t.r.id = id;
  t.r.intended_ns = intended_ns;
  t.body = body;
  if (state_ == State::idle && !cur_) {
    cur_ = std::move(t);
    last_progress_ns_ = now_ns;
    return begin(now_ns);
  }
  if (can_queue_next()) {
    next_ = std::move(t);
    return maybe_send_next(now_ns);
  }
  // A caller's mistake: the message still gets its one outcome.
  finish(t, now_ns, ErrorKind::protocol);
}

bool SmtpClient::can_queue_next() const {
  return state_ == State::transaction && cur_ && cur_->pipelined && !next_ && !quit_requested_ &&
         !rset_needed_;
}

// Starts cur_ on an idle session.
void SmtpClient::begin(int64_t now_ns) {
  if (settings_.bdat && !chunking_) {
    finish_cur(now_ns, ErrorKind::unsupported);
    return become_idle(now_ns);
  }
  state_ = State::transaction;
  cur_->pipelined = settings_.use_pipelining && pipelining_;
  send_envelope(*cur_, now_ns);
}

void SmtpClient::send_envelope(Txn& t, int64_t now_ns) {
  t.sent = true;
  t.r.started_ns = now_ns;
  if (t.r.intended_ns == kIntendedAtStart) t.r.intended_ns = now_ns;
  send("MAIL FROM:<");
  if (t.body.envelope) {
    send(t.body.envelope->mail_from);
    send(">");
    send(t.body.envelope->mail_params);
    send("\r\n");
  } else {
    send(settings_.mail_from);
    send(">\r\n");
  }
  push_expect(Expect::mail);
  if (!t.pipelined) return;
  for (size_t i = 0; i < recipient_count(t); ++i) send_rcpt(t, i);
  send_data_command(t, now_ns);
}

void SmtpClient::send_rcpt(Txn& t, size_t i) {
  send("RCPT TO:<");
  if (t.body.envelope) {
    const ClientRecipient& r = t.body.envelope->recipients[i];
    send(r.address);
    send(">");
    send(r.params);
    send("\r\n");
  } else {
    send(settings_.recipients[i]);
    send(">\r\n");
  }
  push_expect(Expect::rcpt);
  t.rcpt_sent = i + 1;
}

void SmtpClient::send_data_command(Txn& t, int64_t now_ns) {
  if (!settings_.bdat) {
    send("DATA\r\n");
    push_expect(Expect::data);
    return;
  }
  send("BDAT ");
  send(std::to_string(t.body.raw.size()));
  send(" LAST\r\n");
  send_body(t.body.raw);
  t.r.data_bytes = t.body.raw.size();
  push_expect(Expect::final_reply);
  data_queued(t, now_ns);
}

// The end of t's data is on its way: the next message's commands, or QUIT,
// may follow in the same group.
void SmtpClient::data_queued(Txn& t, int64_t now_ns) {
  t.data_queued = true;
  t.r.data_end_ns = now_ns;
  if (&t == &*cur_) maybe_send_next(now_ns);
  maybe_send_quit();
}

void SmtpClient::maybe_send_next(int64_t now_ns) {
  if (!next_ || next_->sent || !cur_ || !cur_->data_queued || quit_sent_) return;
  if (settings_.bdat && !chunking_) return;  // it fails when it would start
  next_->pipelined = true;
  if (settings_.bdat) {
    // cur_'s BDAT may yet be refused, leaving the server's state indeterminate
    // (RFC 3030): RSET clears it whatever the outcome.
    send("RSET\r\n");
    push_expect(Expect::rset_lead);
  }
  send_envelope(*next_, now_ns);
}

void SmtpClient::maybe_send_quit() {
  if (!quit_requested_ || quit_sent_ || state_ != State::transaction || !cur_) return;
  const Txn& last = next_ ? *next_ : *cur_;
  if (!last.pipelined || !last.data_queued) return;
  send("QUIT\r\n");
  push_expect(Expect::quit);
  quit_sent_ = true;
}

void SmtpClient::push_expect(Expect e) {
  if (expect_head_ >= expect_.size()) {
    expect_.clear();
    expect_head_ = 0;
  }
  expect_.push_back(e);
}

void SmtpClient::finish(Txn& t, int64_t now_ns, ErrorKind error) {
  if (settings_.keep_replies) {
    // Accepted recipients whose reply after the data never came are undecided.
    for (size_t k = t.final_seen; k < t.accepted.size(); ++k) t.r.rcpt_replies[t.accepted[k]] = {};
    t.final_seen = t.accepted.size();
    t.r.rcpt_replies.resize(recipient_count(t));
  }
  MessageResult r = std::move(t.r);
  r.error = error;
  r.code = error != ErrorKind::none ? 0 : (t.first_fail ? t.first_fail : t.last_code);
  r.final_ns = now_ns;
  if (r.intended_ns == kIntendedAtStart) r.intended_ns = now_ns;
  results_.push_back(std::move(r));
  ++transactions_;
}

// cur_ ends; the next message, if its commands are on their way, takes its place.
void SmtpClient::finish_cur(int64_t now_ns, ErrorKind error) {
  if (!cur_) return;
  finish(*cur_, now_ns, error);
  // Failed after MAIL and before the data: the server may still hold the
  // transaction open. After the end-of-data reply to DATA it has reset it
  // itself; after a refused BDAT its state is indeterminate (RFC 3030).
  rset_needed_ = error == ErrorKind::none && cur_->first_fail != 0 && cur_->mail_ok &&
                 (!cur_->data_queued || (settings_.bdat && cur_->final_failed));
  cur_.reset();
  if (next_ && next_->sent) {
    cur_ = std::move(next_);
    next_.reset();
    rset_needed_ = false;  // sent behind the end of data: BDAT put RSET in front of it
  }
}

void SmtpClient::finish_all(int64_t now_ns, ErrorKind error, uint16_t code) {
  for (std::optional<Txn>* t : {&cur_, &next_}) {
    if (!*t) continue;
    if (code && (*t)->first_fail == 0) (*t)->first_fail = code;
    finish(**t, now_ns, error);
    t->reset();
  }
}

void SmtpClient::end_transaction(int64_t now_ns) {
  if (cur_) {
    state_ = State::transaction;  // the next message carries on
    return;
  }
  if (rset_needed_) {
    rset_needed_ = false;
    send("RSET\r\n");
    push_expect(Expect::rset);
    state_ = State::rset;
    return;
  }
  if (quit_sent_) {
    state_ = State::quit;  // QUIT is already on its way behind the data
    return;
  }
  become_idle(now_ns);
}

void SmtpClient::become_idle(int64_t now_ns) {
  if (ready_ns_ == 0) ready_ns_ = now_ns;
  if (next_) {  // queued while the previous one failed early: it starts now
    cur_ = std::move(next_);
    next_.reset();
    return begin(now_ns);
  }
  if (quit_requested_) return send_quit();
  state_ = State::idle;
}

void SmtpClient::send_quit() {
  send("QUIT\r\n");
  push_expect(Expect::quit);
  quit_sent_ = true;
  state_ = State::quit;
}

void SmtpClient::quit(int64_t now_ns) {
  if (quit_requested_ || state_ == State::closed) return;
  quit_requested_ = true;
  if (state_ == State::idle) {
    last_progress_ns_ = now_ns;
    send_quit();
    return;
  }
  maybe_send_quit();
}

void SmtpClient::clear_output() {
  out_.clear();
  out_head_ = 0;
  out_off_ = 0;
}

void SmtpClient::connection_lost(ErrorKind kind, int64_t now_ns) {
  if (state_ == State::closed && !cur_ && !next_) return;
  finish_all(now_ns, kind, 0);
  if (ready_ns_ == 0 && setup_code_ == 0 && setup_error_ == ErrorKind::none) setup_error_ = kind;
  state_ = State::closed;
  clear_output();
  in_.clear();
}

void SmtpClient::fail_protocol(int64_t now_ns) {
  connection_lost(ErrorKind::protocol, now_ns);
}

bool SmtpClient::waiting() const {
  switch (state_) {
    case State::idle:
    case State::closed: return false;
    default: return true;
  }
}

std::optional<MessageResult> SmtpClient::take_result() {
  if (results_head_ >= results_.size()) return std::nullopt;
  MessageResult r = std::move(results_[results_head_++]);
  if (results_head_ >= results_.size()) {
    results_.clear();
    results_head_ = 0;
  }
  return r;
}

}  // namespace ringmx
