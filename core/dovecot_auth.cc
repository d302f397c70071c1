// Dovecot's authentication protocol, client side.
#include "core/dovecot_auth.h"

#include <charconv>

namespace ringmx::dovecot {

namespace {

// The next tab-separated field of `rest` (which loses it and its tab).
std::string_view next_field(std::string_view& rest) {
  const size_t tab = rest.find('\t');
  const std::string_view f = rest.substr(0, tab);
  rest = tab == std::string_view::npos ? std::string_view() : rest.substr(tab + 1);
  return f;
}

bool parse_u32(std::string_view s, uint32_t& out) {
  if (s.empty() || s.size() > 10) return false;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

// Values this client puts on a line: base64, addresses, digits and the
// checked service name, none of which holds a tab, CR, LF or \001.
bool plain_value(std::string_view v) {
  for (char c : v) {
    if (c == '\t' || c == '\n' || c == '\r' || c == '\001' || c == '\0') return false;
  }
  return true;
}

}  // namespace

std::string tab_unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\001' || i + 1 == s.size()) {
      out.push_back(s[i]);
      continue;
    }
    const char e = s[++i];
    switch (e) {
      case '0': out.push_back('\0'); break;
      case '1': out.push_back('\001'); break;
      case 't': out.push_back('\t'); break;
      case 'r': out.push_back('\r'); break;
      case 'n':
      case 'l': out.push_back('\n'); break;
      default: out.push_back(e); break;
    }
  }
  return out;
}

AuthClient::AuthClient(std::string service, uint32_t pid, size_t max_pending)
    : service_(std::move(service)), pid_(pid), max_pending_(max_pending) {
  if (!plain_value(service_)) service_ = "smtp";
}

void AuthClient::connected(int64_t /*now_ns*/) {
  if (state_ != State::connecting) return;
  state_ = State::handshake;
  // Sent at once: the server sends its half without waiting for ours.
  out_ += "VERSION\t1\t2\nCPID\t";
  out_ += std::to_string(pid_);
  out_ += '\n';
}

void AuthClient::consume_output(size_t n) {
  out_.erase(0, std::min(n, out_.size()));
}

bool AuthClient::offers(sasl::Mechanism m) const {
  return m == sasl::Mechanism::plain ? offers_plain_ : offers_login_;
}

uint32_t AuthClient::begin(Request r) {
  if (state_ == State::failed || waiting_.size() >= max_pending_) {
    r.credentials.wipe();
    return 0;
  }
  if (!plain_value(r.local_ip) || !plain_value(r.remote_ip)) {
    r.credentials.wipe();
    return 0;
  }
  Waiting w;
  w.id = next_id_++;
  if (next_id_ == 0) next_id_ = 1;  // 0 means "refused"
  w.req = std::move(r);
  waiting_.push_back(std::move(w));
  if (state_ == State::ready) send_request(waiting_.back());
  return waiting_.back().id;
}

void AuthClient::cancel(uint32_t id) {
  size_t i = 0;
  if (Waiting* w = find(id, i)) {
    w->req.credentials.wipe();
    waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(i));
  }
}

AuthClient::Waiting* AuthClient::find(uint32_t id, size_t& index) {
  for (size_t i = 0; i < waiting_.size(); ++i) {
    if (waiting_[i].id == id) {
      index = i;
      return &waiting_[i];
    }
  }
  return nullptr;
}

void AuthClient::send_request(Waiting& w) {
  const Request& r = w.req;
  // LOGIN goes as LOGIN where Dovecot has it (its logs and policies then
  // see the client's mechanism), else as PLAIN: both carry the same pair.
  w.as_login = offers_login_ && (r.mechanism == sasl::Mechanism::login || !offers_plain_);
  w.sent = true;
  out_ += "AUTH\t";
  out_ += std::to_string(w.id);
  out_ += w.as_login ? "\tLOGIN" : "\tPLAIN";
  out_ += "\tservice=";
  out_ += service_;
  // nologin: this is not a login to a mailbox (no userdb lookup is due).
  // no-penalty: ringmx slows and blocks guessing itself ([auth]
  // failure_delay_ms ...); Dovecot's own penalty would hold a FAIL back
  // until it looked like a timeout (454), and the guess would not count.
  out_ += "\tnologin\tno-penalty";
  if (r.secured) out_ += "\tsecured";
  if (!r.local_ip.empty()) {
    out_ += "\tlip=";
    out_ += r.local_ip;
  }
  if (!r.remote_ip.empty()) {
    out_ += "\trip=";
    out_ += r.remote_ip;
  }
  if (r.local_port != 0) {
    out_ += "\tlport=";
    out_ += std::to_string(r.local_port);
  }
  if (r.remote_port != 0) {
    out_ += "\trport=";
    out_ += std::to_string(r.remote_port);
  }
  if (!w.as_login) {
    std::string plain;
    plain.reserve(r.credentials.authzid.size() + r.credentials.user.size() +
                  r.credentials.password.size() + 2);
    plain += r.credentials.authzid;
    plain += '\0';
    plain += r.credentials.user;
    plain += '\0';
    plain += r.credentials.password;
    std::string b64;
    sasl::base64_encode(plain, b64);
    out_ += "\tresp=";
    out_ += b64;
    sasl::Credentials scratch;
    scratch.password.swap(plain);
    scratch.wipe();
  }
  out_ += '\n';
}

void AuthClient::feed(std::string_view bytes, int64_t /*now_ns*/) {
  size_t pos = 0;
  while (pos < bytes.size() && state_ != State::failed) {
    const size_t nl = bytes.find('\n', pos);
    if (nl == std::string_view::npos) {
      if (in_.size() + (bytes.size() - pos) > kMaxLine)
        return fail("line too long from the server");
      in_.append(bytes.substr(pos));
      return;
    }
    std::string_view l = bytes.substr(pos, nl - pos);
    pos = nl + 1;
    if (!in_.empty()) {
      if (in_.size() + l.size() > kMaxLine) return fail("line too long from the server");
      in_.append(l);
      const std::string whole = std::move(in_);
      in_.clear();
      line(whole);
    } else {
      if (l.size() > kMaxLine) return fail("line too long from the server");
      line(l);
    }
  }
}

void AuthClient::line(std::string_view l) {
  if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
  std::string_view rest = l;
  const std::string_view cmd = next_field(rest);
  if (state_ == State::handshake || state_ == State::connecting) return handshake_line(cmd, rest);
  answer_line(cmd, rest);
}

void AuthClient::handshake_line(std::string_view cmd, std::string_view rest) {
  if (cmd == "VERSION") {
    if (next_field(rest) != "1") return fail("unsupported protocol version");
    version_ok_ = true;
  } else if (cmd == "MECH") {
    const auto m = sasl::parse_mechanism(next_field(rest));
    if (m == sasl::Mechanism::plain) offers_plain_ = true;
    if (m == sasl::Mechanism::login) offers_login_ = true;
  } else if (cmd == "DONE") {
    if (!version_ok_) return fail("handshake without VERSION");
    if (!offers_plain_ && !offers_login_) return fail("the server offers neither PLAIN nor LOGIN");
    state_ = State::ready;
    for (Waiting& w : waiting_) send_request(w);
  }
  // SPID, CUID, COOKIE and anything newer: nothing this client needs.
}

void AuthClient::answer_line(std::string_view cmd, std::string_view rest) {
  const bool ok = cmd == "OK";
  const bool fail_line = cmd == "FAIL";
  const bool cont = cmd == "CONT";
  if (!ok && !fail_line && !cont) return;  // a command of a newer protocol: not ours
  uint32_t id = 0;
  if (!parse_u32(next_field(rest), id)) return fail("a reply without a valid id");
  size_t index = 0;
  Waiting* w = find(id, index);
  if (w == nullptr) return;  // cancelled (timed out) meanwhile, or never ours
  if (!w->sent) return fail("a reply to a request not sent");
  if (cont) {
    // LOGIN's two prompts; PLAIN sent everything at once.
    if (!w->as_login || w->cont_rounds >= 2) {
      return finish(index, Outcome::temp_fail, {}, "unexpected continuation");
    }
    const std::string& v =
        w->cont_rounds == 0 ? w->req.credentials.user : w->req.credentials.password;
    ++w->cont_rounds;
    std::string b64;
    sasl::base64_encode(v, b64);
    out_ += "CONT\t";
    out_ += std::to_string(id);
    out_ += '\t';
    out_ += b64;
    out_ += '\n';
    sasl::Credentials scratch;
    scratch.password.swap(b64);
    scratch.wipe();
    return;
  }
  std::string user;
  std::string reason;
  bool temp = false;
  while (!rest.empty()) {
    const std::string_view f = next_field(rest);
    if (f.substr(0, 5) == "user=") {
      user = tab_unescape(f.substr(5));
    } else if (f.substr(0, 7) == "reason=") {
      reason = tab_unescape(f.substr(7));
    } else if (f == "temp" || f == "code=temp_fail") {
      temp = true;
    }
  }
  if (ok) return finish(index, Outcome::ok, std::move(user), {});
  finish(index, temp ? Outcome::temp_fail : Outcome::fail, std::move(user), std::move(reason));
}

void AuthClient::finish(size_t index, Outcome outcome, std::string user, std::string reason) {
  Waiting& w = waiting_[index];
  w.req.credentials.wipe();
  results_.push_back(Result{w.id, outcome, std::move(user), std::move(reason)});
  waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(index));
}

void AuthClient::fail(std::string why) {
  if (state_ == State::failed) return;
  state_ = State::failed;
  error_ = std::move(why);
  while (!waiting_.empty()) finish(0, Outcome::temp_fail, {}, error_);
  in_.clear();
  out_.clear();
}

void AuthClient::connection_lost(ErrorKind /*kind*/, int64_t /*now_ns*/) {
  fail(state_ == State::connecting ? "cannot connect" : "connection lost");
}

}  // namespace ringmx::dovecot
