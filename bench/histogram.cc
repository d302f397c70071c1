// Contract: see histogram.h. Bucket i below kExactBelow holds exactly the value
// i; above, bucket ((e - 6) << 7) + s holds [(128 + s) << (e - 7), +2^(e - 7))
// for a value whose highest set bit is e.
#include "bench/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace ringmx::bench {

size_t Histogram::bucket_of(int64_t value_ns) {
  const auto v = static_cast<uint64_t>(std::clamp<int64_t>(value_ns, 0, kMaxValue));
  if (v < static_cast<uint64_t>(kExactBelow)) return static_cast<size_t>(v);
  const unsigned e = 63U - static_cast<unsigned>(std::countl_zero(v));
  const unsigned shift = e - kSubBits;
  const uint64_t sub = (v >> shift) - (uint64_t{1} << kSubBits);
  return (static_cast<size_t>(shift + 1) << kSubBits) + static_cast<size_t>(sub);
}

int64_t Histogram::bucket_low(size_t index) {
  if (index < static_cast<size_t>(kExactBelow)) return static_cast<int64_t>(index);
  const size_t shift = (index >> kSubBits) - 1;
  const size_t sub = index & ((size_t{1} << kSubBits) - 1);
  return static_cast<int64_t>(((size_t{1} << kSubBits) + sub) << shift);
}

int64_t Histogram::bucket_width(size_t index) {
  if (index < static_cast<size_t>(kExactBelow)) return 1;
  return int64_t{1} << ((index >> kSubBits) - 1);
}

void Histogram::record(int64_t value_ns) {
  if (value_ns > kMaxValue) {
    value_ns = kMaxValue;
    ++clamped_;
  }
  value_ns = std::max<int64_t>(value_ns, 0);
  ++buckets_[bucket_of(value_ns)];
  if (count_ == 0 || value_ns < min_) min_ = value_ns;
  if (count_ == 0 || value_ns > max_) max_ = value_ns;
  ++count_;
  sum_ += static_cast<double>(value_ns);
}

void Histogram::merge(const Histogram& other) {
  if (other.count_ == 0) return;
  for (size_t i = 0; i < kBucketCount; ++i) buckets_[i] += other.buckets_[i];
  min_ = count_ ? std::min(min_, other.min_) : other.min_;
  max_ = count_ ? std::max(max_, other.max_) : other.max_;
  count_ += other.count_;
  clamped_ += other.clamped_;
  sum_ += other.sum_;
}

void Histogram::reset() {
  *this = Histogram();
}

int64_t Histogram::percentile(double p) const {
  if (count_ == 0) return 0;
  if (!(p > 0)) return min_;  // also NaN
  if (p >= 100) return max_;
  // The smallest value v such that at least p % of the values are <= v.
  auto rank = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count_)));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  uint64_t seen = 0;
  for (size_t i = 0; i < kBucketCount; ++i) {
    seen += buckets_[i];
    if (seen >= rank) {
      const int64_t mid = bucket_low(i) + (bucket_width(i) - 1) / 2;
      return std::clamp(mid, min_, max_);
    }
  }
  return max_;
}

}  // namespace ringmx::bench
