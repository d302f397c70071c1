// Brute force against SMTP AUTH ([auth] failure_delay_ms .. block_s): a
// shard's memory of failed logins, per client address and per user name,
// each in a window that starts at its first failure. Each failure of an
// address makes its next 535 wait longer (failure_delay_ms, doubled per
// earlier failure, up to max_failure_delay_ms); the address or user that
// reaches its share of max_failures is blocked for block_s. Each shard
// enforces ceil(max_failures / shards), as the rate limits do
// (docs/rate-limits.md). LRU-bounded (max_tracked per table). Pure: time
// is passed in.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/auth_config.h"
#include "core/lru_table.h"

namespace ringmx {

class AuthFailures {
 public:
  struct Failure {
    uint32_t delay_ms = 0;         // before the refusal is sent
    bool address_blocked = false;  // this failure blocked the address
    bool user_blocked = false;     // ... or the user
  };

  void configure(const AuthConfig& cfg, uint32_t shards);

  bool address_blocked(const IpBytes& client, int64_t now_ms);
  bool user_blocked(std::string_view user, int64_t now_ms);
  // A failed AUTH (wrong credentials) from `client` for `user`.
  Failure failed(const IpBytes& client, std::string_view user, int64_t now_ms);

  uint32_t share() const { return share_; }
  size_t tracked() const { return by_address_.size() + by_user_.size(); }

 private:
  struct Entry {
    uint32_t failures = 0;
    int64_t window_start_ms = 0;
    int64_t blocked_until_ms = 0;
  };
  struct StringHash {
    size_t operator()(const std::string& s) const { return std::hash<std::string>{}(s); }
  };
  // Counts one failure; true when it reaches the share (and blocks).
  bool count(Entry& e, int64_t now_ms, uint32_t& before);
  static std::string user_key(std::string_view user);

  uint32_t share_ = 10;
  int64_t window_ms_ = 600'000;
  int64_t block_ms_ = 900'000;
  uint32_t delay_ms_ = 1000;
  uint32_t max_delay_ms_ = 8000;
  LruTable<Entry> by_address_{100'000};
  LruTable<Entry, std::string, StringHash> by_user_{100'000};
};

}  // namespace ringmx
