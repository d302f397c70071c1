// SMTP AUTH on the shard: the session's credentials go to the backend
// (net/auth_backend.h) and its answer comes back as the session's verdict;
// counted, timed and logged (the user, the mechanism and the result; never
// the password).
#include <sys/socket.h>

#include <optional>
#include <string>
#include <utility>

#include "net/connection.h"
#include "net/listener.h"
#include "net/shard.h"

namespace ringmx {

namespace {

Verdict temp_fail() {
  return Verdict::reject(454, "4.7.0", "Temporary authentication failure");
}

size_t mechanism_index(sasl::Mechanism m) {
  return m == sasl::Mechanism::plain ? 0 : 1;
}

}  // namespace

Verdict Shard::check_auth_block(Connection& c) {
  const ConnInfo& ci = c.session.conn();
  if (ci.auth == AuthMode::none) return Verdict::accept();
  const std::optional<IpBytes> ip = parse_ip(ci.client_ip);
  if (!ip || !auth_failures_.address_blocked(*ip, now_.mono_ms)) return Verdict::accept();
  metrics_.auth_blocked_connections.inc();
  if (log_enabled(LogLevel::info)) {
    LogLine l(LogLevel::info, "auth_blocked", unix_ms_);
    l.kv("sid", format_session_id(ci.session_id)).kv("client", ci.client_ip);
    log(l);
  }
  return Verdict::reject(421, "4.7.0", "Error: too many failed authentications, try again later");
}

Verdict Shard::authenticate(Connection& c, sasl::Mechanism m, const sasl::Credentials& cr) {
  const ConnInfo& ci = c.session.conn();
  if (auth_failures_.user_blocked(cr.user, now_.mono_ms)) {
    // Too many failures for this user: the backend is not asked.
    AuthAnswer a;
    a.user = cr.user;
    a.reason = "user blocked after too many failures";
    auth_answered(c, m, std::move(a), /*blocked=*/true);
    return temp_fail();
  }
  if (ci.server_ip.empty()) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(c.fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      uint16_t port = 0;
      std::string ip = ip_text(ss, port);
      c.session.set_server(std::move(ip), port);
    }
  }
  dovecot::Request req;
  req.mechanism = m;
  req.credentials.authzid = cr.authzid;
  req.credentials.user = cr.user;
  req.credentials.password = cr.password;
  req.local_ip = ci.server_ip;
  req.local_port = ci.server_port;
  req.remote_ip = ci.client_ip;
  req.remote_port = ci.client_port;
  req.secured = ci.tls_active;
  Connection* conn = &c;
  const std::string user = cr.user;
  c.auth_wait = auth_.verify(std::move(req), [this, conn, m, user](AuthAnswer a) {
    if (a.user.empty() && a.outcome == dovecot::Outcome::ok) a.user = user;
    if (a.outcome != dovecot::Outcome::ok && a.user.empty()) a.user = user;
    auth_answered(*conn, m, std::move(a), false);
  });
  if (c.auth_wait) return Verdict::pending();
  AuthAnswer a;
  a.user = cr.user;
  a.reason = "backend unavailable";
  auth_answered(c, m, std::move(a), false);
  return temp_fail();
}

// The backend's answer (or its absence): counted and logged; the session
// hears it, unless `c` is still inside authenticate() (the backend refused
// at once) and returns the 454 itself.
void Shard::auth_answered(Connection& c, sasl::Mechanism m, AuthAnswer a, bool blocked) {
  const bool waited = c.auth_wait != nullptr;
  c.auth_wait.reset();
  AuthResult result = AuthResult::tempfail;
  Verdict v = temp_fail();
  uint32_t delay_ms = 0;
  if (blocked) {
    result = AuthResult::blocked;
  } else if (a.outcome == dovecot::Outcome::ok) {
    result = AuthResult::success;
    v = Verdict::accept();
    c.session.set_login(a.user);
  } else if (a.outcome == dovecot::Outcome::fail) {
    result = AuthResult::failure;
    v = Verdict::reject(535, "5.7.8", "Error: authentication failed");
    if (const std::optional<IpBytes> ip = parse_ip(c.session.conn().client_ip)) {
      const AuthFailures::Failure f = auth_failures_.failed(*ip, a.user, now_.mono_ms);
      delay_ms = f.delay_ms;
      if (f.address_blocked) {
        v = Verdict::reject(421, "4.7.0", "Error: too many failed authentications, closing");
        a.reason = "address blocked after too many failures";
      } else if (f.user_blocked) {
        a.reason = "user blocked after too many failures";
      }
    }
  } else if (a.timed_out) {
    result = AuthResult::timeout;
  }
  if (c.listener < kMaxListeners) {
    metrics_.auth[c.listener][mechanism_index(m)][static_cast<size_t>(result)].inc();
  }
  if (waited) metrics_.auth_backend_seconds.observe_ns(static_cast<uint64_t>(a.latency_ns));
  if (log_enabled(LogLevel::info)) {
    LogLine l(LogLevel::info, "auth", unix_ms_);
    l.kv("sid", format_session_id(c.session.conn().session_id))
        .kv("client", c.session.conn().client_ip)
        .kv("user", a.user)
        .kv("mechanism", sasl::mechanism_name(m))
        .kv("result", kAuthResultNames[static_cast<size_t>(result)]);
    if (!a.reason.empty()) l.kv("reason", a.reason);
    if (waited) l.kv("ms", static_cast<uint64_t>(a.latency_ns / 1'000'000));
    log(l);
  }
  if (!waited) return;
  if (delay_ms == 0) return resume_session(c, v);
  // The refusal waits: guessing goes no faster than the delays allow.
  if (!c.auth_delay) {
    c.auth_delay = std::make_unique<Connection::AuthDelay>();
    c.auth_delay->conn = &c;
    c.auth_delay->fire = [](TimerNode& n) {
      auto& d = static_cast<Connection::AuthDelay&>(n);
      d.conn->shard.resume_session(*d.conn, d.verdict);
    };
  }
  c.auth_delay->verdict = std::move(v);
  wheel_.schedule(*c.auth_delay, now_.mono_ms + delay_ms);
}

Verdict Shard::check_submission(Connection& c, const Envelope& env) {
  const ConnInfo& ci = c.session.conn();
  if (ci.auth == AuthMode::none) return Verdict::accept();
  if (ci.login.empty()) {
    if (!c.deferred_refusal) return Verdict::accept();
    // It applies now, at MAIL (and to every MAIL until an AUTH): counted
    // and logged under the stage that found it.
    return policy_verdict(c, *c.deferred_refusal, /*may_hold=*/false);
  }
  if (SenderLogins::allows(cfg_->sender_logins.get(), ci.login, env.sender)) {
    return Verdict::accept();
  }
  if (log_enabled(LogLevel::info)) {
    LogLine l(LogLevel::info, "sender_login_mismatch", unix_ms_);
    l.kv("sid", format_session_id(ci.session_id))
        .kv("client", ci.client_ip)
        .kv("user", ci.login)
        .kv("from", env.sender);
    log(l);
  }
  return Verdict::reject(553, "5.7.1", "Error: sender address not owned by the authenticated user");
}

}  // namespace ringmx
