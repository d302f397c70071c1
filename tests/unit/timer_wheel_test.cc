#include "net/timer_wheel.h"

#include <gtest/gtest.h>

#include <vector>

namespace ringmx {
namespace {

TEST(TimerWheel, FiresAtOrAfterDeadlineNeverBefore) {
  TimerWheel w(1000, 10, 64);
  TimerNode a, b, c;
  w.schedule(a, 1050);
  w.schedule(b, 1500);
  w.schedule(c, 1000 + 10 * 64 * 3 + 7);  // more than three turns ahead
  std::vector<TimerNode*> fired;
  auto cb = [&](TimerNode& n) { fired.push_back(&n); };
  w.advance(1049, cb);
  EXPECT_TRUE(fired.empty());
  w.advance(1050, cb);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0], &a);
  for (int64_t t = 1060; t < 1500; t += 7) w.advance(t, cb);
  EXPECT_EQ(fired.size(), 1u);
  w.advance(1500, cb);
  EXPECT_EQ(fired.size(), 2u);
  w.advance(1000 + 10 * 64 * 3 + 6, cb);
  EXPECT_EQ(fired.size(), 2u);
  w.advance(1000 + 10 * 64 * 3 + 10, cb);
  ASSERT_EQ(fired.size(), 3u);
  EXPECT_EQ(fired[2], &c);
  EXPECT_EQ(w.size(), 0u);
}

TEST(TimerWheel, CancelAndReschedule) {
  TimerWheel w(0, 10, 16);
  TimerNode a;
  w.schedule(a, 100);
  w.cancel(a);
  EXPECT_FALSE(a.linked());
  int fired = 0;
  w.advance(200, [&](TimerNode&) { ++fired; });
  EXPECT_EQ(fired, 0);
  w.schedule(a, 250);
  w.schedule(a, 400);  // moved later
  w.advance(300, [&](TimerNode&) { ++fired; });
  EXPECT_EQ(fired, 0);
  w.advance(400, [&](TimerNode&) { ++fired; });
  EXPECT_EQ(fired, 1);
}

TEST(TimerWheel, PastDeadlineFiresOnNextAdvanceAndCallbackMayReschedule) {
  TimerWheel w(1000, 10, 16);
  TimerNode a;
  w.schedule(a, 5);
  int fired = 0;
  w.advance(1010, [&](TimerNode& n) {
    if (++fired < 3) w.schedule(n, 1000);  // in the past again: next tick
  });
  EXPECT_EQ(fired, 1);
  w.advance(1020, [&](TimerNode& n) {
    if (++fired < 3) w.schedule(n, 1000);
  });
  EXPECT_EQ(fired, 2);
}

TEST(TimerWheel, LongSleepSkipsWholeTurns) {
  TimerWheel w(0, 10, 8);
  std::vector<TimerNode> nodes(20);
  for (size_t i = 0; i < nodes.size(); ++i) w.schedule(nodes[i], static_cast<int64_t>(i) * 37);
  int fired = 0;
  w.advance(1'000'000, [&](TimerNode&) { ++fired; });
  EXPECT_EQ(fired, 20);
  EXPECT_EQ(w.size(), 0u);
}

}  // namespace
}  // namespace ringmx
