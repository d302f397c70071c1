// What one shard remembers about recent clients, for the rate limits and
// karma ([checks.rate], [checks.karma]; pipeline/checks/rate.cc, karma.cc):
// per client address, its connections, messages and recipients of the last
// minute (core/sliding_window.h), and the penalty points of its recent
// refusals, halving every half-life. Two tables, each bounded (the least
// recently seen client goes first). Each shard has its own: no lock, and a
// shard enforces its share of each limit (share()). Pure: time is passed in.
#pragma once

#include <cstdint>

#include "core/check_config.h"
#include "core/ip_network.h"
#include "core/lru_table.h"
#include "core/sliding_window.h"

namespace ringmx {

inline constexpr int64_t kRateWindowMs = 60'000;

// A shard's part of a limit shared by `shards` shards: ceil(limit / shards),
// at least 1; 0 (no limit) stays 0.
uint32_t shard_share(uint32_t limit, uint32_t shards);

class ClientMemory {
 public:
  enum class Kind : uint8_t { connection, message, recipient };

  ClientMemory() = default;
  // The limits and bounds of a (new) config; tables shrink to fit at once.
  void configure(const RateCheckConfig& rate, const KarmaConfig& karma, uint32_t shards);

  // Counts one event of `kind` from `client`, unless the client already
  // reached this shard's share of its per-minute limit: false then (and
  // not counted). Always true for a limit of 0 (and nothing is kept).
  bool allow(Kind kind, const IpBytes& client, int64_t now_ms);
  // In checks.rate.exempt: never limited, never remembered by karma.
  bool exempt(const IpBytes& client) const { return exempt_.contains(client); }
  // This shard's share of the per-minute limit of `kind` (0: none).
  uint32_t share(Kind kind) const;

  // The client's penalty points now (0 when unknown).
  double karma(const IpBytes& client, int64_t now_ms);
  // Adds `points` to the client's (decayed) penalty.
  void punish(const IpBytes& client, int64_t now_ms, double points);

  size_t rate_clients() const { return rate_.size(); }
  size_t karma_clients() const { return karma_.size(); }
  uint64_t rate_evictions() const { return rate_.evictions(); }
  uint64_t karma_evictions() const { return karma_.evictions(); }

  // The shard's clock, for the checks that reach this object through their
  // context (the shard sets it as its loop turns).
  void set_now(int64_t now_ms) { now_ms_ = now_ms; }
  int64_t now_ms() const { return now_ms_; }

 private:
  struct Rates {
    SlidingCount connections;
    SlidingCount messages;
    SlidingCount recipients;
  };
  struct Karma {
    double points = 0;
    int64_t at_ms = 0;  // when `points` was right
  };
  double decayed(const Karma& k, int64_t now_ms) const;

  uint32_t share_[3] = {0, 0, 0};
  NetworkSet exempt_;
  int64_t half_life_ms_ = 600'000;
  int64_t now_ms_ = 0;
  LruTable<Rates> rate_{100'000};
  LruTable<Karma> karma_{100'000};
};

}  // namespace ringmx
