// Contract: the watchdog policy (net/service_notify.h ShardWatchdog) pings at
// half the interval while every shard's loop counter moves, stops pinging
// once one stands still past the stall limit (max(3 s, half the interval)),
// resumes as soon as it moves again, and takes ended shards as healthy; and
// one_line() makes a single STATUS= line. ServiceNotify itself sends nothing
// without $NOTIFY_SOCKET (the integration test drives the real socket).
#include "net/service_notify.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

namespace ringmx {
namespace {

// Every shard's loop moves once per `step_ms` (an idle shard's disk check),
// except those listed in `stuck`; counts the pings between 0 and `until_ms`.
struct Shards {
  std::vector<ShardPulse> shards;
  int64_t now = 0;
  int pings = 0;
  std::vector<int64_t> ping_times;

  void advance(ShardWatchdog& dog, int64_t until_ms, int64_t step_ms,
               const std::vector<size_t>& stuck = {}) {
    while (now < until_ms) {
      now = std::min(until_ms, std::min(dog.next_ms(), now + step_ms));
      for (size_t i = 0; i < shards.size(); ++i) {
        if (std::find(stuck.begin(), stuck.end(), i) == stuck.end()) ++shards[i].loops;
      }
      if (dog.sample(now, shards)) {
        ++pings;
        ping_times.push_back(now);
      }
    }
  }
};

TEST(ShardWatchdog, PingsAtHalfTheIntervalWhileShardsMove) {
  ShardWatchdog dog(2000, 0);
  EXPECT_EQ(dog.stall_ms(), ShardWatchdog::kMinStallMs);
  Shards r;
  r.shards.resize(4);
  r.advance(dog, 10'000, 1000);
  // At 0, 1000, ..., 10000.
  EXPECT_EQ(r.pings, 11);
  for (size_t i = 1; i < r.ping_times.size(); ++i) {
    EXPECT_EQ(r.ping_times[i] - r.ping_times[i - 1], 1000);
  }
  EXPECT_EQ(dog.stalled_shard(), -1);
}

TEST(ShardWatchdog, StalledShardStopsThePingsUntilItMovesAgain) {
  ShardWatchdog dog(2000, 0);
  Shards r;
  r.shards.resize(3);
  r.advance(dog, 5000, 1000);
  const int before = r.pings;
  // Shard 1 stops at 5 s: still healthy up to 8 s (3 s stall limit), then no pings.
  r.advance(dog, 20'000, 250, {1});
  EXPECT_EQ(dog.stalled_shard(), 1);
  ASSERT_FALSE(r.ping_times.empty());
  EXPECT_LE(r.ping_times.back(), 5000 + ShardWatchdog::kMinStallMs);
  EXPECT_LE(r.pings - before, 4);
  // While stalled, sample() is asked for again soon (to see it move), not at once.
  EXPECT_GT(dog.next_ms(), r.now);
  EXPECT_LE(dog.next_ms(), r.now + 1000);
  // It moves: pings at once, and every second after.
  const int stalled_pings = r.pings;
  r.advance(dog, 20'250, 250);
  EXPECT_EQ(r.pings, stalled_pings + 1);
  EXPECT_EQ(r.ping_times.back(), 20'250);
  EXPECT_EQ(dog.stalled_shard(), -1);
  r.advance(dog, 25'000, 1000);
  EXPECT_EQ(r.ping_times.back(), 24'250);
}

TEST(ShardWatchdog, LongIntervalsAllowLongerStalls) {
  ShardWatchdog dog(30'000, 0);
  EXPECT_EQ(dog.stall_ms(), 15'000);
  Shards r;
  r.shards.resize(2);
  r.advance(dog, 15'000, 1000);
  EXPECT_EQ(r.pings, 2);  // 0 and 15 s
  r.advance(dog, 29'000, 1000, {0});
  EXPECT_EQ(dog.stalled_shard(), -1);  // 14 s still: under the limit
  r.advance(dog, 40'000, 1000, {0});
  EXPECT_EQ(dog.stalled_shard(), 0);
  EXPECT_EQ(r.pings, 3);  // the one at 30 s came before the 15 s stall limit passed
  EXPECT_EQ(r.ping_times.back(), 30'000);
}

TEST(ShardWatchdog, EndedShardsAreHealthy) {
  ShardWatchdog dog(2000, 0);
  Shards r;
  r.shards.resize(2);
  r.advance(dog, 2000, 1000);
  r.shards[0].finished = true;  // drained: its counter never moves again
  const int before = r.pings;
  r.advance(dog, 12'000, 1000, {0});
  EXPECT_EQ(dog.stalled_shard(), -1);
  EXPECT_EQ(r.pings - before, 10);
}

TEST(ShardWatchdog, NoShardSampleIsHealthy) {
  ShardWatchdog dog(1000, 100);
  EXPECT_TRUE(dog.sample(100, {}));
  EXPECT_FALSE(dog.sample(400, {}));
  EXPECT_TRUE(dog.sample(600, {}));
}

TEST(ServiceNotify, OneLineStatus) {
  EXPECT_EQ(one_line("a\nb\r\nc\n"), "a; b; c");
  EXPECT_EQ(one_line("listener changes need a restart\n"), "listener changes need a restart");
  EXPECT_EQ(one_line(""), "");
}

TEST(ServiceNotify, NothingWithoutNotifySocket) {
  const char* had = std::getenv("NOTIFY_SOCKET");
  const std::string saved = had ? had : "";
  ::unsetenv("NOTIFY_SOCKET");
  ::setenv("WATCHDOG_USEC", "2000000", 1);
  ServiceNotify n;
  EXPECT_FALSE(n.enabled());
  EXPECT_EQ(n.watchdog_interval_ms(), 0);
  n.ready("x");  // no socket: nothing happens, nothing fails
  n.watchdog();
  ::unsetenv("WATCHDOG_USEC");
  if (had) ::setenv("NOTIFY_SOCKET", saved.c_str(), 1);
}

}  // namespace
}  // namespace ringmx
