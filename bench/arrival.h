// Contract: the open-loop arrival schedule. Message i of a run at `rate`
// messages per second is due at an intended start time fixed before the run,
// whatever the server does: latency is measured from that time, so a server
// that stalls is charged for every message that should have started during
// the stall (no coordinated omission).
//   uniform: start + i / rate, computed from i (no accumulated rounding);
//   poisson: start + the sum of i exponential gaps of mean 1 / rate, drawn from
//            a seeded xorshift PRNG: the same seed gives the same times.
// A run over T threads splits one schedule with share(t, T): uniform thread t
// takes messages t, t + T, t + 2T, ... of the global schedule; poisson threads
// are independent Poisson processes of rate / T with seeds derived from the
// seed (their superposition is a Poisson process of the full rate). Times are
// nanoseconds on the caller's clock. Not thread-safe; one per thread.
#pragma once

#include <cstdint>

namespace ringmx::bench {

enum class ArrivalKind : uint8_t { uniform, poisson };

class ArrivalSchedule {
 public:
  // rate_per_s must be > 0.
  ArrivalSchedule(double rate_per_s, int64_t start_ns, ArrivalKind kind = ArrivalKind::uniform,
                  uint64_t seed = 1);

  // This thread's part of the schedule when it is run by `threads` threads.
  ArrivalSchedule share(uint32_t thread, uint32_t threads) const;

  // Intended start of the next message (not yet taken), and taking it.
  int64_t peek() const { return next_ns_; }
  int64_t pop();
  // Messages taken so far.
  uint64_t taken() const { return taken_; }

  double rate() const { return rate_; }
  ArrivalKind kind() const { return kind_; }

  // Uniform spacing, message i of a schedule (for tests and reports).
  static int64_t uniform_at(double rate_per_s, int64_t start_ns, uint64_t i);

 private:
  ArrivalSchedule(double rate_per_s, int64_t start_ns, ArrivalKind kind, uint64_t seed,
                  uint64_t stride, uint64_t offset, double global_rate);
  int64_t compute(uint64_t i);
  double unit_random();

  double rate_;         // of this (possibly shared) schedule
  double global_rate_;  // of the whole run (uniform index arithmetic)
  int64_t start_ns_;
  ArrivalKind kind_;
  uint64_t rng_;
  uint64_t stride_ = 1;  // uniform share: global index = offset + k * stride
  uint64_t offset_ = 0;
  uint64_t taken_ = 0;
  double poisson_at_ = 0;  // seconds since start of the next poisson arrival
  int64_t next_ns_ = 0;
};

}  // namespace ringmx::bench
