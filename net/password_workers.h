// Verifying crypt(3) hashes for [auth] backend = "file". yescrypt and bcrypt
// spend milliseconds of CPU by design, which no shard may spend on its loop:
// a few worker threads (auth.hash_workers) do it and post each answer back to
// the shard that asked, through that shard's control queue and eventfd (the
// way operators' queue requests reach it). The job queue is bounded: a job
// past it is refused and the AUTH gets 454. Passwords are wiped once hashed.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ringmx {

class Shard;

struct PasswordJob {
  Shard* shard = nullptr;  // gets the answer (Shard::post_password_result)
  uint64_t token = 0;
  std::string hash;
  std::string password;
};

struct PasswordResult {
  uint64_t token = 0;
  bool match = false;
};

// crypt_rn(password, hash) gives back `hash` exactly (compared in constant
// time); argon2 hashes through libargon2's argon2_verify.
bool password_matches(const std::string& password, const std::string& hash);

class PasswordWorkers {
 public:
  PasswordWorkers(uint32_t threads, size_t max_queued);
  ~PasswordWorkers();  // stops and joins the threads; queued jobs are dropped
  PasswordWorkers(const PasswordWorkers&) = delete;
  PasswordWorkers& operator=(const PasswordWorkers&) = delete;

  // False when max_queued jobs already wait (the password is wiped then too).
  bool submit(PasswordJob job);

 private:
  void run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<PasswordJob> queue_;
  size_t max_queued_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace ringmx
