// [auth]: how SMTP AUTH credentials are verified (net/auth_backend.h), who
// may send as whom, and the brute-force limits. A listener offers AUTH with
// its own `auth` key (core/config.h ListenerConfig).
#pragma once

#include <cstdint>
#include <string>

namespace ringmx {

enum class AuthBackendKind : uint8_t {
  none,     // no backend: no listener may offer AUTH
  dovecot,  // Dovecot's authentication protocol over its auth-client socket
  file,     // users_file: users and crypt(3) hashes (core/users_file.h)
};

struct AuthConfig {
  AuthBackendKind backend = AuthBackendKind::none;
  // "unix:/run/dovecot/auth-client" or "inet:127.0.0.1:12345" (core/socket_address.h).
  std::string dovecot_socket = "unix:/run/dovecot/auth-client";
  // The service name Dovecot sees (its passdb and userdb may match on it).
  std::string dovecot_service = "smtp";
  // backend = "file": "user:hash" lines, re-read on SIGHUP (a bad file keeps
  // the old one), and the threads that verify the hashes (read at start-up).
  std::string users_file;
  uint32_t hash_workers = 1;
  // The backend's answer: past this the client gets 454 4.7.0.
  uint32_t timeout_ms = 5000;
  // Verifications one shard keeps waiting for the backend; past this a new
  // AUTH gets 454 4.7.0 at once.
  uint32_t max_pending = 1000;
  // Who may send as whom: "login: address, @domain, *" lines (net/sender_logins.h).
  // Empty: an authenticated client may send only as its login itself (or <>).
  std::string sender_logins_file;
  // Brute force. A failed AUTH is answered 535 5.7.8 after failure_delay_ms,
  // doubled for each failure the client address had in failure_window_s, up
  // to max_failure_delay_ms. max_failures failures of one address, or for
  // one user, in the window: 421 4.7.0, and that address (that user) is
  // refused for block_s (at connect: 421 4.7.0; a blocked user's AUTH: 454
  // 4.7.0). Counted per shard, each enforcing ceil(limit / shards), as the
  // rate limits are (docs/rate-limits.md).
  uint32_t failure_delay_ms = 1000;
  uint32_t max_failure_delay_ms = 8000;
  uint32_t max_failures = 10;
  uint32_t failure_window_s = 600;
  uint32_t block_s = 900;
  // Clients and users each shard remembers for this (the least recently
  // failed are forgotten first).
  uint32_t max_tracked = 100'000;
};

}  // namespace ringmx
