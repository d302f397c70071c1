// Contract: see password_workers.h.
#include "net/password_workers.h"

#include <argon2.h>
#include <crypt.h>
#include <string.h>  // explicit_bzero

#include <memory>

#include "net/shard.h"

namespace ringmx {

namespace {

void wipe(std::string& s) {
  if (!s.empty()) explicit_bzero(s.data(), s.size());
  s.clear();
}

}  // namespace

bool password_matches(const std::string& password, const std::string& hash) {
  if (hash.starts_with("$argon2")) {  // libargon2: libxcrypt has no argon2
    const argon2_type type = hash.starts_with("$argon2id$")  ? Argon2_id
                             : hash.starts_with("$argon2i$") ? Argon2_i
                                                             : Argon2_d;
    return argon2_verify(hash.c_str(), password.data(), password.size(), type) == ARGON2_OK;
  }
  // crypt_data is large (about 32 KiB): one per call, on the heap.
  auto data = std::make_unique<crypt_data>();
  const char* out = crypt_rn(password.c_str(), hash.c_str(), data.get(), sizeof(crypt_data));
  bool match = false;
  if (out != nullptr && out[0] != '*') {
    const size_t n = strlen(out);
    if (n == hash.size()) {
      unsigned char diff = 0;
      for (size_t i = 0; i < n; ++i) diff |= static_cast<unsigned char>(out[i] ^ hash[i]);
      match = diff == 0;
    }
  }
  explicit_bzero(data.get(), sizeof(crypt_data));
  return match;
}

PasswordWorkers::PasswordWorkers(uint32_t threads, size_t max_queued) : max_queued_(max_queued) {
  for (uint32_t i = 0; i < std::max<uint32_t>(1, threads); ++i) {
    threads_.emplace_back([this] { run(); });
  }
}

PasswordWorkers::~PasswordWorkers() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  for (PasswordJob& j : queue_) wipe(j.password);
}

bool PasswordWorkers::submit(PasswordJob job) {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (!stop_ && queue_.size() < max_queued_) {
      queue_.push_back(std::move(job));
      cv_.notify_one();
      return true;
    }
  }
  wipe(job.password);
  return false;
}

void PasswordWorkers::run() {
  for (;;) {
    PasswordJob job;
    {
      std::unique_lock<std::mutex> g(mu_);
      cv_.wait(g, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    PasswordResult r;
    r.token = job.token;
    r.match = password_matches(job.password, job.hash);
    wipe(job.password);
    job.shard->post_password_result(r);
  }
}

}  // namespace ringmx
