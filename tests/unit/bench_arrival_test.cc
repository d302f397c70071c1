// Contract: the open-loop arrival schedule: uniform spacing is exact (computed
// from the index, no drift), thread shares interleave back into the global
// schedule, and the Poisson schedule is seeded (same seed, same times), never
// goes backwards, and has exponential gaps of mean 1 / rate.
#include "bench/arrival.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace ringmx::bench {
namespace {

TEST(BenchArrival, UniformIsExactFromTheIndex) {
  ArrivalSchedule s(1000.0, 5'000'000'000);
  for (uint64_t i = 0; i < 5000; ++i) {
    EXPECT_EQ(s.peek(), 5'000'000'000 + static_cast<int64_t>(i) * 1'000'000) << i;
    EXPECT_EQ(s.pop(), 5'000'000'000 + static_cast<int64_t>(i) * 1'000'000) << i;
  }
  EXPECT_EQ(s.taken(), 5000u);
  // A rate that is not a divisor of 1e9 does not drift: 3/s for 10^6 messages.
  EXPECT_EQ(ArrivalSchedule::uniform_at(3.0, 0, 3'000'000), int64_t{1'000'000} * 1'000'000'000);
  EXPECT_EQ(ArrivalSchedule::uniform_at(3.0, 0, 1), 333'333'333);
  EXPECT_EQ(ArrivalSchedule::uniform_at(3.0, 0, 2), 666'666'667);
}

TEST(BenchArrival, UniformSharesInterleaveIntoTheGlobalSchedule) {
  const double rate = 7777.0;
  const int64_t start = 123;
  const uint32_t threads = 3;
  ArrivalSchedule global(rate, start);
  std::vector<ArrivalSchedule> shares;
  for (uint32_t t = 0; t < threads; ++t) shares.push_back(global.share(t, threads));
  for (uint64_t i = 0; i < 3000; ++i) {
    EXPECT_EQ(shares[i % threads].pop(), global.pop()) << i;
  }
  EXPECT_NEAR(shares[0].rate(), rate / threads, 1e-9);
}

TEST(BenchArrival, PoissonIsSeededAndMonotonic) {
  ArrivalSchedule a(500.0, 0, ArrivalKind::poisson, 9);
  ArrivalSchedule b(500.0, 0, ArrivalKind::poisson, 9);
  ArrivalSchedule c(500.0, 0, ArrivalKind::poisson, 10);
  bool differs = false;
  int64_t last = 0;
  for (int i = 0; i < 10000; ++i) {
    const int64_t x = a.pop();
    EXPECT_EQ(x, b.pop());
    if (x != c.pop()) differs = true;
    EXPECT_GE(x, last);
    last = x;
  }
  EXPECT_TRUE(differs);
}

TEST(BenchArrival, PoissonGapsAreExponential) {
  const double rate = 2000.0;
  const int n = 200000;
  ArrivalSchedule s(rate, 1'000'000, ArrivalKind::poisson, 1234);
  std::vector<double> gaps;
  int64_t last = 1'000'000;
  for (int i = 0; i < n; ++i) {
    const int64_t t = s.pop();
    gaps.push_back(static_cast<double>(t - last) / 1e9);
    last = t;
  }
  double sum = 0;
  for (double g : gaps) sum += g;
  const double mean = sum / n;
  double var = 0;
  for (double g : gaps) var += (g - mean) * (g - mean);
  const double sd = std::sqrt(var / n);
  EXPECT_NEAR(mean, 1.0 / rate, 0.01 / rate);  // 1 %
  EXPECT_NEAR(sd / mean, 1.0, 0.02);           // exponential: CV = 1
  const auto below_mean =
      std::count_if(gaps.begin(), gaps.end(), [&](double g) { return g < 1.0 / rate; });
  EXPECT_NEAR(static_cast<double>(below_mean) / n, 1.0 - std::exp(-1.0), 0.01);
}

TEST(BenchArrival, PoissonSharesAddUpToTheRate) {
  const double rate = 1000.0;
  ArrivalSchedule global(rate, 0, ArrivalKind::poisson, 77);
  std::vector<int64_t> all;
  for (uint32_t t = 0; t < 4; ++t) {
    ArrivalSchedule s = global.share(t, 4);
    EXPECT_NEAR(s.rate(), rate / 4, 1e-9);
    while (s.peek() < int64_t{100} * 1'000'000'000) all.push_back(s.pop());
  }
  // 100 s at 1000/s: about 100000 arrivals (sd ~316).
  EXPECT_NEAR(static_cast<double>(all.size()), 100000.0, 2000.0);
  // The shares are different streams.
  ArrivalSchedule s0 = global.share(0, 4);
  ArrivalSchedule s1 = global.share(1, 4);
  EXPECT_NE(s0.pop(), s1.pop());
}

}  // namespace
}  // namespace ringmx::bench
