// The shard's SMTP AUTH backend: Dovecot's auth-client socket (unix or TCP)
// through one connection per shard that carries every verification of the
// shard at once (core/dovecot_auth.h), on the shard's ring through a
// ClientStream, each verification's deadline on the shard's timer wheel. No
// thread and no blocking call.
//
// The connection opens at the first AUTH and stays. A connection that fails
// answers everything it was carrying with a temporary failure; the next AUTH
// opens a new one, but not within a second of the failure (AUTH meanwhile
// gets its 454 at once, so a dead Dovecot costs one connect a second).
// A verification that reaches auth.timeout_ms is answered temp_fail with
// timed_out; if the connection has said nothing for that long it is taken
// for hung: what it carries fails, and the next AUTH opens a new one.
//
// verify() hands back a wait: destroying it forgets the verification, and
// its callback never runs after that. Shard thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/auth_config.h"
#include "core/dovecot_auth.h"

namespace ringmx {

class Shard;
struct AuthLink;
class AuthBackend;

struct AuthAnswer {
  dovecot::Outcome outcome = dovecot::Outcome::temp_fail;
  std::string user;    // the account (ok): the backend's name for it
  std::string reason;  // why not, for the log
  bool timed_out = false;
  int64_t latency_ns = 0;
};

// One verification in flight; owned by whoever waits for it.
class AuthWait {
 public:
  ~AuthWait();
  AuthWait(const AuthWait&) = delete;
  AuthWait& operator=(const AuthWait&) = delete;

 private:
  friend class AuthBackend;
  struct Timer;
  AuthWait() = default;
  AuthBackend* backend_ = nullptr;
  AuthLink* link_ = nullptr;
  uint32_t id_ = 0;
  int64_t started_ns_ = 0;
  std::function<void(AuthAnswer)> done_;
  std::unique_ptr<Timer> timer_;
};

class AuthBackend {
 public:
  explicit AuthBackend(Shard& shard);
  AuthBackend(const AuthBackend&) = delete;
  AuthBackend& operator=(const AuthBackend&) = delete;
  // Frees the links left (after the ring is gone: no completion can come).
  ~AuthBackend();

  // Asks the backend about `req`; `done` runs later (never from inside
  // verify). Null: refused at once (no backend configured, max_pending
  // waiting, or the backend failed less than a second ago): answer 454.
  std::unique_ptr<AuthWait> verify(dovecot::Request req, std::function<void(AuthAnswer)> done);

  size_t waiting() const { return waiting_; }
  size_t links() const { return live_links_; }

  // Used by the links and the waits.
  Shard& shard() { return shard_; }
  void link_event(AuthLink* l);
  void link_released(AuthLink* l);
  void forget(AuthWait* w);
  void expired(AuthWait* w);

 private:
  AuthLink* open_link();
  void drop_link(AuthLink* l);
  void deliver(AuthWait* w, AuthAnswer a);

  Shard& shard_;
  AuthLink* current_ = nullptr;  // the link new verifications go to
  std::vector<AuthLink*> all_;   // every link not yet released (current_ included)
  size_t live_links_ = 0;
  int64_t failed_at_ms_ = -1;  // when a link last failed
  size_t waiting_ = 0;         // waits in flight
};

}  // namespace ringmx
