#include "net/timer_wheel.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
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

TEST(TimerWheel, NextWakeIsNeverWhenEmptyAndFiresWhatIsDue) {
  TimerWheel w(1000);
  EXPECT_EQ(w.next_wake_ms(), TimerWheel::kNever);
  TimerNode a;
  w.schedule(a, 1234);
  const int64_t wake = w.next_wake_ms();
  EXPECT_GE(wake, 1234);
  EXPECT_LT(wake, 1234 + 10);
  int fired = 0;
  w.advance(wake, [&](TimerNode&) { ++fired; });
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(w.next_wake_ms(), TimerWheel::kNever);
  w.schedule(a, 5000);
  w.cancel(a);
  EXPECT_EQ(w.next_wake_ms(), TimerWheel::kNever);
}

// A loop that sleeps until next_wake_ms() wakes a handful of times for a
// far deadline (a 5-minute command timeout), not once per tick.
TEST(TimerWheel, FarDeadlineTakesFewWakeups) {
  for (const int64_t ahead : {int64_t{45'000}, int64_t{300'000}, int64_t{3'600'000 * 5}}) {
    TimerWheel w(7);
    TimerNode a;
    const int64_t deadline = 7 + ahead;
    w.schedule(a, deadline);
    int wakes = 0;
    int64_t fired_at = -1;
    while (fired_at < 0 && wakes < 1000) {
      const int64_t now = w.next_wake_ms();
      ASSERT_NE(now, TimerWheel::kNever);
      ++wakes;
      w.advance(now, [&](TimerNode&) { fired_at = now; });
    }
    EXPECT_GE(fired_at, deadline) << ahead;
    EXPECT_LT(fired_at, deadline + 20) << ahead;
    // Coarse slots come round every 44 min; five hours ahead re-files a few times.
    EXPECT_LE(wakes, ahead > 3'000'000 ? 12 : 3) << ahead;
  }
}

// Random deadlines, cancels, reschedules and deadlines moved later without
// re-filing (as the shard does), driven by a loop that sleeps until
// next_wake_ms() or until its own random events: every node fires once, no
// earlier than its deadline and less than two ticks after it (a deadline
// later in the tick being walked goes to the next slot).
TEST(TimerWheel, SleepingUntilNextWakeFiresEveryNodeOnTime) {
  for (const uint32_t slots : {8u, 64u, 4096u}) {
    std::mt19937_64 rng(slots);
    TimerWheel w(0, 10, slots);
    std::vector<TimerNode> nodes(300);
    std::map<TimerNode*, int64_t> due;  // what the model expects armed
    int64_t now = 0;
    int fired = 0;
    auto on_fire = [&](TimerNode& n) {
      auto it = due.find(&n);
      ASSERT_NE(it, due.end());
      EXPECT_GE(now, it->second);
      EXPECT_LT(now, it->second + 20) << "late by " << now - it->second;
      due.erase(it);
      ++fired;
    };
    for (int step = 0; step < 4000; ++step) {
      TimerNode& n = nodes[rng() % nodes.size()];
      const int64_t later = now + static_cast<int64_t>(rng() % 200'000);
      switch (rng() % 4) {
        case 0:
        case 1:
          w.schedule(n, later);
          due[&n] = later;
          break;
        case 2:
          w.cancel(n);
          due.erase(&n);
          break;
        case 3:
          if (n.linked() && later > n.deadline_ms) {  // pushed back lazily
            n.deadline_ms = later;
            due[&n] = later;
          }
          break;
      }
      // Sleep until the wheel's next wake or the next event, whichever is first.
      const int64_t next_event = now + static_cast<int64_t>(rng() % 3000);
      now = std::min(w.next_wake_ms(), next_event);
      w.advance(now, on_fire);
    }
    while (w.size() > 0) {
      now = w.next_wake_ms();
      w.advance(now, on_fire);
    }
    EXPECT_TRUE(due.empty());
    EXPECT_GT(fired, 100);
  }
}

}  // namespace
}  // namespace ringmx
