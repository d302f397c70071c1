// Contract: the load generator's latency histogram keeps its promises:
// percentiles within 1 % of the exact order statistic of known distributions
// over 1 µs .. 100 s, exact count/min/max/mean, merge == recording everything in
// one, empty histograms answer 0, values beyond 100 s clamp.
#include "bench/histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace ringmx::bench {
namespace {

int64_t exact_percentile(std::vector<int64_t> v, double p) {
  std::sort(v.begin(), v.end());
  if (p <= 0) return v.front();
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  rank = std::clamp<size_t>(rank, 1, v.size());
  return v[rank - 1];
}

void expect_within_one_percent(const std::vector<int64_t>& values, const Histogram& h) {
  for (double p : {0.0, 1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0}) {
    const auto want = static_cast<double>(exact_percentile(values, p));
    const auto got = static_cast<double>(h.percentile(p));
    EXPECT_LE(std::abs(got - want), want * 0.01 + 0.5) << "p" << p << " want " << want;
  }
}

TEST(BenchHistogram, EmptyAnswersZero) {
  Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.percentile(50), 0);
  EXPECT_EQ(h.percentile(100), 0);
  EXPECT_EQ(h.max(), 0);
  EXPECT_EQ(h.min(), 0);
  EXPECT_EQ(h.mean(), 0.0);
  Histogram other;
  h.merge(other);
  EXPECT_EQ(h.count(), 0u);
}

TEST(BenchHistogram, BucketsCoverTheRangeWithBoundedWidth) {
  std::mt19937_64 rng(1);
  for (int i = 0; i < 200000; ++i) {
    const auto v = static_cast<int64_t>(rng() % static_cast<uint64_t>(Histogram::kMaxValue + 1));
    for (int64_t x : {v, v >> (rng() % 37), int64_t{i}}) {
      const size_t b = Histogram::bucket_of(x);
      ASSERT_LT(b, Histogram::kBucketCount);
      const int64_t low = Histogram::bucket_low(b);
      const int64_t width = Histogram::bucket_width(b);
      ASSERT_LE(low, x);
      ASSERT_LT(x, low + width);
      if (x >= Histogram::kExactBelow) {
        ASSERT_LE(width * 128, low) << x;
      } else {
        ASSERT_EQ(width, 1);
      }
    }
  }
  // Buckets are contiguous and ordered.
  for (size_t b = 1; b < Histogram::kBucketCount; ++b) {
    ASSERT_EQ(Histogram::bucket_low(b - 1) + Histogram::bucket_width(b - 1),
              Histogram::bucket_low(b));
  }
  EXPECT_LT(Histogram::bucket_of(Histogram::kMaxValue), Histogram::kBucketCount);
  EXPECT_GE(Histogram::bucket_of(Histogram::kMaxValue), Histogram::kBucketCount - 128);
}

TEST(BenchHistogram, UniformMicrosecondsToMilliseconds) {
  std::vector<int64_t> values;
  Histogram h;
  for (int64_t i = 1; i <= 100000; ++i) {
    values.push_back(i * 1000);  // 1 µs .. 100 ms
    h.record(i * 1000);
  }
  EXPECT_EQ(h.count(), 100000u);
  EXPECT_EQ(h.min(), 1000);
  EXPECT_EQ(h.max(), 100000 * 1000);
  EXPECT_NEAR(h.mean(), 50000.5 * 1000, 1e-6 * 50000.5 * 1000);
  expect_within_one_percent(values, h);
}

TEST(BenchHistogram, ExponentialAndLogUniformDistributions) {
  std::mt19937_64 rng(42);
  std::exponential_distribution<double> expo(1.0 / 250e3);  // mean 250 µs
  std::uniform_real_distribution<double> unit(0, 1);
  std::vector<int64_t> e_values;
  std::vector<int64_t> l_values;
  Histogram e;
  Histogram l;
  for (int i = 0; i < 300000; ++i) {
    const auto x = static_cast<int64_t>(expo(rng)) + 1000;
    e_values.push_back(x);
    e.record(x);
    // log-uniform over 1 µs .. 100 s
    const auto y = static_cast<int64_t>(std::pow(10.0, 3.0 + 8.0 * unit(rng)));
    l_values.push_back(y);
    l.record(y);
  }
  expect_within_one_percent(e_values, e);
  expect_within_one_percent(l_values, l);
  EXPECT_EQ(l.clamped(), 0u);
}

TEST(BenchHistogram, PercentilesAreOrdered) {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> dist(11.0, 1.5);
  Histogram h;
  for (int i = 0; i < 100000; ++i) h.record(static_cast<int64_t>(dist(rng)));
  int64_t last = 0;
  for (double p : {0.0, 50.0, 90.0, 99.0, 99.9, 100.0}) {
    EXPECT_GE(h.percentile(p), last) << p;
    last = h.percentile(p);
  }
  EXPECT_EQ(h.percentile(100), h.max());
  EXPECT_EQ(h.percentile(0), h.min());
}

TEST(BenchHistogram, MergeEqualsRecordingInOne) {
  std::mt19937_64 rng(3);
  Histogram a;
  Histogram b;
  Histogram all;
  for (int i = 0; i < 50000; ++i) {
    const auto v = static_cast<int64_t>(rng() % 5'000'000'000ULL);
    (i % 3 ? a : b).record(v);
    all.record(v);
  }
  Histogram merged;
  merged.merge(a);
  merged.merge(b);
  EXPECT_EQ(merged.count(), all.count());
  EXPECT_EQ(merged.min(), all.min());
  EXPECT_EQ(merged.max(), all.max());
  EXPECT_DOUBLE_EQ(merged.mean(), all.mean());
  for (double p : {1.0, 50.0, 90.0, 99.0, 99.9}) {
    EXPECT_EQ(merged.percentile(p), all.percentile(p)) << p;
  }
  // Merging into a histogram that has values keeps min/max of both.
  Histogram c;
  c.record(5);
  c.merge(all);
  EXPECT_EQ(c.min(), 5);
  EXPECT_EQ(c.max(), all.max());
}

TEST(BenchHistogram, HugeValuesClampAndNegativeAreZero) {
  Histogram h;
  h.record(int64_t{1} << 62);
  h.record(Histogram::kMaxValue + 1);
  h.record(-5);
  EXPECT_EQ(h.count(), 3u);
  EXPECT_EQ(h.clamped(), 2u);
  EXPECT_EQ(h.max(), Histogram::kMaxValue);
  EXPECT_EQ(h.min(), 0);
  EXPECT_EQ(h.percentile(100), Histogram::kMaxValue);
  EXPECT_EQ(h.percentile(10), 0);
  h.reset();
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.clamped(), 0u);
}

TEST(BenchHistogram, SingleValueIsExact) {
  Histogram h;
  h.record(123456789);
  for (double p : {0.0, 50.0, 99.9, 100.0}) EXPECT_EQ(h.percentile(p), 123456789);
  EXPECT_EQ(h.mean(), 123456789.0);
}

}  // namespace
}  // namespace ringmx::bench
