// SMTP AUTH (RFC 4954) in the session: the AUTH command, the exchange of
// challenges and response lines (core/sasl.h decodes them), and the
// handler's verdict on the credentials.
#include <algorithm>

#include "core/session.h"

namespace ringmx {

namespace {

constexpr std::string_view kAuthPrefix = "AUTH ";

// `head` starts with "AUTH " (any case), or is a shorter beginning of it.
bool may_be_auth(std::string_view head) {
  const size_t n = std::min(head.size(), kAuthPrefix.size());
  for (size_t i = 0; i < n; ++i) {
    char c = head[i];
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (c != kAuthPrefix[i]) return false;
  }
  return true;
}

}  // namespace

bool Session::auth_offered() const {
  return info_.auth != AuthMode::none && info_.tls_active && info_.login.empty();
}

size_t Session::line_limit(std::string_view head) const {
  const Limits& l = config().limits;
  if (info_.auth == AuthMode::none) return l.max_command_line;
  if (phase_ == Phase::auth || may_be_auth(head)) {
    return std::max(l.max_command_line, l.max_auth_line);
  }
  return l.max_command_line;
}

void Session::cmd_auth(const Command& c) {
  // The mechanism only: an initial response carries the password.
  const std::string_view arg = c.arg;
  const size_t sp = arg.find(' ');
  const std::string_view mech = arg.substr(0, sp);
  current_arg_.assign(mech.substr(0, 32));
  if (info_.auth == AuthMode::none) {
    return error_reply(502, "5.5.1", "Error: authentication not enabled");
  }
  if (!helo_seen_ || !esmtp_) return error_reply(503, "5.5.1", "Error: send EHLO first");
  // RFC 4954 4 / 6: never a password in the clear.
  if (!info_.tls_active) {
    return error_reply(538, "5.7.11", "Encryption required for requested authentication mechanism");
  }
  if (!info_.login.empty()) return error_reply(503, "5.5.1", "Error: already authenticated");
  if (in_txn_) return error_reply(503, "5.5.1", "Error: MAIL transaction in progress");
  if (mech.empty()) return error_reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
  const std::optional<sasl::Mechanism> m = sasl::parse_mechanism(mech);
  if (!m) return error_reply(504, "5.5.4", "Unrecognized authentication type");
  std::optional<std::string_view> initial;
  if (sp != std::string_view::npos) {
    const std::string_view ir = arg.substr(sp + 1);
    if (ir.empty() || ir.find(' ') != std::string_view::npos) {
      return error_reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
    }
    initial = ir;
  }
  auth_step(sasl_.start(*m, initial));
}

void Session::auth_response(std::string_view line, bool overlong) {
  current_verb_ = Verb::auth;
  if (overlong) {
    phase_ = Phase::command;
    sasl_.wipe();
    return error_reply(500, "5.5.6", "Authentication exchange line is too long");
  }
  auth_step(sasl_.respond(line));
}

void Session::auth_step(const sasl::ServerExchange::Step& s) {
  using Kind = sasl::ServerExchange::Step::Kind;
  switch (s.kind) {
    case Kind::challenge:
      phase_ = Phase::auth;
      // RFC 4954 4: "334 " and the base64 challenge; no enhanced code.
      append_reply(out_, 334, {}, s.challenge);
      handler_.on_reply(*this, Verb::auth, 334, {}, {});
      return;
    case Kind::error: phase_ = Phase::command; return error_reply(s.code, s.enhanced, s.text);
    case Kind::done: break;
  }
  phase_ = Phase::command;
  const Verdict v = handler_.on_auth(*this, sasl_.mechanism(), sasl_.credentials());
  if (v.kind == Verdict::Kind::pending) {
    pending_ = Pending::auth;
    return;
  }
  finish_auth(v);
}

void Session::finish_auth(const Verdict& v) {
  current_verb_ = Verb::auth;
  if (v.kind == Verdict::Kind::accept) {
    if (info_.login.empty()) info_.login = sasl_.credentials().user;
    sasl_.wipe();
    return reply(235, "2.7.0", "Authentication successful");
  }
  sasl_.wipe();
  info_.login.clear();  // a handler that named the account and then refused
  if (v.code == 421) return close_with(421, v.enhanced.empty() ? "4.7.0" : v.enhanced, v.text);
  if (v.code == 0 || !is_valid_reply(v.code, v.enhanced) || v.code < 400) {
    return error_reply(535, "5.7.8", "Error: authentication failed");
  }
  // A refusal counts against the session's error limit (guessing passwords
  // on one connection ends there); a temporary failure does not.
  if (v.code >= 500) return error_reply(v.code, v.enhanced, v.text);
  reply(v.code, v.enhanced, v.text);
}

}  // namespace ringmx
