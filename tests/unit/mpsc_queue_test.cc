// Contract: the bounded MPSC queue (net/mpsc_queue.h): FIFO for one producer,
// refuses when full and takes again once drained, and under four producer
// threads racing one consumer every value arrives exactly once, each
// producer's values in the order it pushed them.
#include "net/mpsc_queue.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace ringmx {
namespace {

TEST(MpscQueue, FifoAndBounded) {
  MpscQueue<int> q(4);
  EXPECT_FALSE(q.pop());
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(q.push(i));
  EXPECT_FALSE(q.push(99));  // full
  for (int i = 0; i < 4; ++i) EXPECT_EQ(q.pop(), i);
  EXPECT_FALSE(q.pop());
  for (int round = 0; round < 10; ++round) {  // wraps around
    EXPECT_TRUE(q.push(round));
    EXPECT_EQ(q.pop(), round);
  }
}

TEST(MpscQueue, ManyProducersOneConsumer) {
  constexpr int kProducers = 4;
  constexpr int kEach = 20000;
  MpscQueue<uint64_t> q(64);
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&q, p] {
      for (uint64_t i = 0; i < kEach; ++i) {
        while (!q.push((uint64_t(p) << 32) | i)) std::this_thread::yield();
      }
    });
  }
  std::vector<uint64_t> next(kProducers, 0);
  int got = 0;
  while (got < kProducers * kEach) {
    auto v = q.pop();
    if (!v) {
      std::this_thread::yield();
      continue;
    }
    const auto p = static_cast<size_t>(*v >> 32);
    ASSERT_LT(p, next.size());
    ASSERT_EQ(*v & 0xffffffffu, next[p]);  // per producer, in order, none twice
    ++next[p];
    ++got;
  }
  for (auto& t : producers) t.join();
  for (const uint64_t n : next) EXPECT_EQ(n, uint64_t{kEach});
  EXPECT_FALSE(q.pop());
}

}  // namespace
}  // namespace ringmx
