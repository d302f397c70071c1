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
// With backend = "file" the shard looks the user up in the users file and
// hands the hash and the password to the password workers
// (net/password_workers.h); their answer comes back through the shard's
// control queue (password_answered). An unknown user's password is checked
// against another user's hash, so both cost the same.
//
// verify() hands back a wait: destroying it forgets the verification, and
// its callback never runs after that. Shard thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/auth_config.h"
#include "core/dovecot_auth.h"

namespace ringmx {

// File-backend verifications one shard has in flight at most (also bounded
// by auth.max_pending): the size of its queue of answers.
inline constexpr size_t kMaxFileVerifications = 4096;

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
  AuthLink* link_ = nullptr;  // the Dovecot link carrying it, or
  bool file_ = false;         // in the password workers' hands
  bool known_ = false;        // file: the user is in the users file
  uint64_t id_ = 0;
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

  // Used by the links and the waits.
  Shard& shard() { return shard_; }
  void link_event(AuthLink* l);
  // A password worker's answer for token `token`.
  void password_answered(uint64_t token, bool match);
  void link_released(AuthLink* l);
  void forget(AuthWait* w);
  void expired(AuthWait* w);

 private:
  AuthLink* open_link();
  std::unique_ptr<AuthWait> verify_file(dovecot::Request& req,
                                        std::function<void(AuthAnswer)>& done);
  std::unique_ptr<AuthWait> make_wait(std::function<void(AuthAnswer)> done);
  void drop_link(AuthLink* l);
  void deliver(AuthWait* w, AuthAnswer a);

  Shard& shard_;
  AuthLink* current_ = nullptr;  // the link new verifications go to
  std::vector<AuthLink*> all_;   // every link not yet released (current_ included)
  int64_t failed_at_ms_ = -1;    // when a link last failed
  size_t waiting_ = 0;           // waits in flight
  uint64_t next_token_ = 1;
  std::unordered_map<uint64_t, AuthWait*> file_waits_;  // by token
};

}  // namespace ringmx
