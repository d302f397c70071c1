#include "core/client_memory.h"

#include <cmath>

namespace ringmx {

uint32_t shard_share(uint32_t limit, uint32_t shards) {
  if (limit == 0) return 0;
  if (shards <= 1) return limit;
  const uint32_t share = limit / shards + (limit % shards != 0 ? 1 : 0);
  return share == 0 ? 1 : share;
}

void ClientMemory::configure(const RateCheckConfig& rate, const KarmaConfig& karma,
                             uint32_t shards) {
  share_[static_cast<size_t>(Kind::connection)] = shard_share(rate.connections_per_minute, shards);
  share_[static_cast<size_t>(Kind::message)] = shard_share(rate.messages_per_minute, shards);
  share_[static_cast<size_t>(Kind::recipient)] = shard_share(rate.recipients_per_minute, shards);
  exempt_ = NetworkSet(rate.exempt);
  half_life_ms_ = int64_t{karma.half_life_s == 0 ? 1 : karma.half_life_s} * 1000;
  rate_.set_max(rate.max_clients);
  karma_.set_max(karma.max_clients);
}

uint32_t ClientMemory::share(Kind kind) const {
  return share_[static_cast<size_t>(kind)];
}

bool ClientMemory::allow(Kind kind, const IpBytes& client, int64_t now_ms) {
  const uint32_t limit = share(kind);
  if (limit == 0) return true;
  Rates& r = rate_.get(client);
  SlidingCount& count = kind == Kind::connection ? r.connections
                        : kind == Kind::message  ? r.messages
                                                 : r.recipients;
  return count.try_add(now_ms, kRateWindowMs, limit);
}

double ClientMemory::decayed(const Karma& k, int64_t now_ms) const {
  if (now_ms <= k.at_ms) return k.points;
  const double halvings =
      static_cast<double>(now_ms - k.at_ms) / static_cast<double>(half_life_ms_);
  return k.points * std::exp2(-halvings);
}

double ClientMemory::karma(const IpBytes& client, int64_t now_ms) {
  const Karma* k = karma_.find(client);
  return k == nullptr ? 0 : decayed(*k, now_ms);
}

void ClientMemory::punish(const IpBytes& client, int64_t now_ms, double points) {
  Karma& k = karma_.get(client);
  k.points = decayed(k, now_ms) + points;
  k.at_ms = now_ms;
}

}  // namespace ringmx
