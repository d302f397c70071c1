// Contract: a log-bucketed latency histogram in the manner of HdrHistogram.
// Values are nanoseconds in [0, kMaxValue] (100 s); larger values are clamped
// to kMaxValue and counted in clamped(), negative ones are recorded as 0.
// Below kExactBelow (128 ns) every value has its own bucket; above, each power
// of two is split into 128 equal buckets and a bucket is reported by its
// midpoint, so percentile() is within 1/256 (0.4 %) of a value that was
// recorded: comfortably inside the 1 % the load generator promises from 1 µs to
// 100 s. count(), min(), max() and mean() are exact (of the clamped values).
// Fixed memory (about 31 KiB), no allocation after construction; record() is a
// few instructions. Not thread-safe: one per thread, merge() at the end.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace ringmx::bench {

class Histogram {
 public:
  static constexpr int64_t kMaxValue = int64_t{100} * 1'000'000'000;  // 100 s in ns
  static constexpr unsigned kSubBits = 7;                             // 128 buckets per octave
  static constexpr int64_t kExactBelow = int64_t{1} << kSubBits;
  // Octaves 2^7 .. 2^36 (kMaxValue < 2^37) plus the exact range below 2^7.
  static constexpr size_t kBucketCount = (37 - kSubBits + 1) << kSubBits;

  Histogram() = default;

  void record(int64_t value_ns);
  void merge(const Histogram& other);
  void reset();

  // The value at or below which p percent of the recorded values fall
  // (p in [0, 100]; 0 gives min(), 100 gives max()); 0 when empty.
  int64_t percentile(double p) const;
  int64_t max() const { return count_ ? max_ : 0; }
  int64_t min() const { return count_ ? min_ : 0; }
  uint64_t count() const { return count_; }
  uint64_t clamped() const { return clamped_; }
  double mean() const { return count_ ? sum_ / static_cast<double>(count_) : 0.0; }

  // Bucket arithmetic, exposed for tests.
  static size_t bucket_of(int64_t value_ns);
  static int64_t bucket_low(size_t index);
  static int64_t bucket_width(size_t index);

 private:
  std::array<uint64_t, kBucketCount> buckets_{};
  uint64_t count_ = 0;
  uint64_t clamped_ = 0;
  int64_t min_ = 0;
  int64_t max_ = 0;
  double sum_ = 0;
};

}  // namespace ringmx::bench
