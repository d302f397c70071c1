#include "core/auth_failures.h"

#include <algorithm>

namespace ringmx {

void AuthFailures::configure(const AuthConfig& cfg, uint32_t shards) {
  const uint32_t n = std::max<uint32_t>(shards, 1);
  share_ = std::max<uint32_t>(1, (cfg.max_failures + n - 1) / n);
  window_ms_ = int64_t{cfg.failure_window_s} * 1000;
  block_ms_ = int64_t{cfg.block_s} * 1000;
  delay_ms_ = cfg.failure_delay_ms;
  max_delay_ms_ = std::max(cfg.max_failure_delay_ms, cfg.failure_delay_ms);
  by_address_.set_max(cfg.max_tracked);
  by_user_.set_max(cfg.max_tracked);
}

std::string AuthFailures::user_key(std::string_view user) {
  std::string k(user.substr(0, 320));
  for (char& c : k) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return k;
}

bool AuthFailures::address_blocked(const IpBytes& client, int64_t now_ms) {
  const Entry* e = by_address_.find(client);
  return e != nullptr && now_ms < e->blocked_until_ms;
}

bool AuthFailures::user_blocked(std::string_view user, int64_t now_ms) {
  const Entry* e = by_user_.find(user_key(user));
  return e != nullptr && now_ms < e->blocked_until_ms;
}

bool AuthFailures::count(Entry& e, int64_t now_ms, uint32_t& before) {
  if (e.failures == 0 || now_ms - e.window_start_ms >= window_ms_) {
    e.failures = 0;
    e.window_start_ms = now_ms;
  }
  before = e.failures;
  if (e.failures < UINT32_MAX) ++e.failures;
  if (e.failures < share_) return false;
  // Blocked: the count starts over once the block ends.
  e.blocked_until_ms = now_ms + block_ms_;
  e.failures = 0;
  return block_ms_ > 0;
}

AuthFailures::Failure AuthFailures::failed(const IpBytes& client, std::string_view user,
                                           int64_t now_ms) {
  Failure f;
  uint32_t before = 0;
  f.address_blocked = count(by_address_.get(client), now_ms, before);
  // failure_delay_ms doubled for each earlier failure of the address, capped.
  uint64_t delay = delay_ms_;
  for (uint32_t i = 0; i < before && delay < max_delay_ms_; ++i) delay *= 2;
  f.delay_ms = static_cast<uint32_t>(std::min<uint64_t>(delay, max_delay_ms_));
  uint32_t user_before = 0;
  if (!user.empty()) f.user_blocked = count(by_user_.get(user_key(user)), now_ms, user_before);
  return f;
}

}  // namespace ringmx
