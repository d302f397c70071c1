// Contract: see arrival.h. The PRNG is splitmix64 (seeding) + xorshift64, so
// schedules never depend on the standard library's distributions.
#include "bench/arrival.h"

#include <cmath>

namespace ringmx::bench {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

}  // namespace

ArrivalSchedule::ArrivalSchedule(double rate_per_s, int64_t start_ns, ArrivalKind kind,
                                 uint64_t seed)
    : ArrivalSchedule(rate_per_s, start_ns, kind, seed, 1, 0, rate_per_s) {}

ArrivalSchedule::ArrivalSchedule(double rate_per_s, int64_t start_ns, ArrivalKind kind,
                                 uint64_t seed, uint64_t stride, uint64_t offset,
                                 double global_rate)
    : rate_(rate_per_s > 0 ? rate_per_s : 1.0),
      global_rate_(global_rate > 0 ? global_rate : 1.0),
      start_ns_(start_ns),
      kind_(kind),
      rng_(splitmix64(seed) | 1),
      stride_(stride ? stride : 1),
      offset_(offset) {
  next_ns_ = compute(0);
}

ArrivalSchedule ArrivalSchedule::share(uint32_t thread, uint32_t threads) const {
  if (threads <= 1) return *this;
  if (kind_ == ArrivalKind::uniform) {
    return ArrivalSchedule(global_rate_ / threads, start_ns_, kind_, rng_, threads, thread,
                           global_rate_);
  }
  return ArrivalSchedule(global_rate_ / threads, start_ns_, kind_,
                         splitmix64(rng_ + 0x51ED2701ULL * (thread + 1ULL)), 1, 0,
                         global_rate_ / threads);
}

int64_t ArrivalSchedule::uniform_at(double rate_per_s, int64_t start_ns, uint64_t i) {
  const long double offset = static_cast<long double>(i) * 1e9L / rate_per_s;
  return start_ns + static_cast<int64_t>(std::llround(offset));
}

double ArrivalSchedule::unit_random() {
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  // 53 random bits -> [0, 1).
  return static_cast<double>(rng_ >> 11) * 0x1.0p-53;
}

int64_t ArrivalSchedule::compute(uint64_t i) {
  if (kind_ == ArrivalKind::uniform) {
    return uniform_at(global_rate_, start_ns_, offset_ + i * stride_);
  }
  // Exponential gap of mean 1 / rate: -ln(1 - u) / rate, u in [0, 1).
  poisson_at_ += -std::log1p(-unit_random()) / rate_;
  return start_ns_ + static_cast<int64_t>(std::llround(poisson_at_ * 1e9));
}

int64_t ArrivalSchedule::pop() {
  const int64_t t = next_ns_;
  ++taken_;
  next_ns_ = compute(taken_);
  return t;
}

}  // namespace ringmx::bench
