// What a shard remembers about recent clients (core/client_memory.h): the
// one-minute sliding counts at their window edges, each table's bound (the
// least recently seen client goes), a limit's per-shard share, and karma
// points halving with time.
#include "core/client_memory.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/lru_table.h"
#include "core/sliding_window.h"

namespace ringmx {
namespace {

constexpr int64_t kW = 60'000;
constexpr int64_t kT0 = 1'000'000;  // an arbitrary monotonic start

IpBytes ip(const char* text) {
  return *parse_ip(text);
}

IpBytes nth_v4(uint32_t n) {
  IpBytes b{};
  b[10] = b[11] = 0xff;
  b[12] = 10;
  b[13] = static_cast<uint8_t>(n >> 16);
  b[14] = static_cast<uint8_t>(n >> 8);
  b[15] = static_cast<uint8_t>(n);
  return b;
}

TEST(SlidingCount, CountsUpToTheLimitWithinAWindow) {
  SlidingCount c;
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(c.try_add(kT0 + i * 1000, kW, 5)) << i;
  EXPECT_FALSE(c.try_add(kT0 + 5000, kW, 5));
  EXPECT_FALSE(c.try_add(kT0 + kW - 1, kW, 5));  // the last millisecond of the window
  EXPECT_EQ(c.current(), 5u);                    // refusals are not counted
}

TEST(SlidingCount, ThePreviousWindowFadesOutLinearly) {
  SlidingCount c;
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(c.try_add(kT0, kW, 10));
  // At the edge the previous window still counts whole.
  EXPECT_EQ(c.estimate(kT0 + kW, kW), 10u);
  EXPECT_FALSE(c.try_add(kT0 + kW, kW, 10));
  // A quarter into the next window, three quarters of it are left.
  EXPECT_EQ(c.estimate(kT0 + kW + kW / 4, kW), 7u);
  EXPECT_TRUE(c.try_add(kT0 + kW + kW / 4, kW, 10));
  EXPECT_EQ(c.estimate(kT0 + kW + kW / 4, kW), 8u);
  // Half-way: 5 of the previous and the one added.
  EXPECT_EQ(c.estimate(kT0 + kW + kW / 2, kW), 6u);
  // The window after: what was "current" is now the previous (1 event).
  EXPECT_EQ(c.estimate(kT0 + 2 * kW, kW), 1u);
  EXPECT_EQ(c.previous(), 1u);
  EXPECT_EQ(c.estimate(kT0 + 2 * kW + kW - 1, kW), 0u);
}

TEST(SlidingCount, AWholeQuietWindowForgetsEverything) {
  SlidingCount c;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(c.try_add(kT0, kW, 3));
  EXPECT_FALSE(c.try_add(kT0 + 1, kW, 3));
  // Two windows later nothing of the past is left, and the window restarts
  // at the new event (not on a fixed tick).
  EXPECT_EQ(c.estimate(kT0 + 2 * kW + 7, kW), 0u);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(c.try_add(kT0 + 2 * kW + 7 + i, kW, 3));
  EXPECT_FALSE(c.try_add(kT0 + 3 * kW + 6, kW, 3));  // still the same window
}

TEST(SlidingCount, AClockGoingBackRestartsTheCount) {
  SlidingCount c;
  ASSERT_TRUE(c.try_add(kT0, kW, 1));
  EXPECT_FALSE(c.try_add(kT0 + 10, kW, 1));
  EXPECT_TRUE(c.try_add(kT0 - 10, kW, 1));
}

TEST(LruTable, HoldsAtMostItsBoundAndDropsTheLeastRecentlyUsed) {
  LruTable<int> t(3);
  t.get(nth_v4(1)) = 1;
  t.get(nth_v4(2)) = 2;
  t.get(nth_v4(3)) = 3;
  EXPECT_EQ(t.size(), 3u);
  ASSERT_NE(t.find(nth_v4(1)), nullptr);  // 1 is now the most recent; 2 the least
  t.get(nth_v4(4)) = 4;
  EXPECT_EQ(t.size(), 3u);
  EXPECT_EQ(t.evictions(), 1u);
  EXPECT_EQ(t.find(nth_v4(2)), nullptr);
  EXPECT_EQ(*t.find(nth_v4(1)), 1);
  EXPECT_EQ(*t.find(nth_v4(4)), 4);
  // A smaller bound (a reload) drops the least recent at once.
  t.set_max(1);
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(*t.find(nth_v4(4)), 4);
  t.set_max(0);  // never below one
  EXPECT_EQ(t.max(), 1u);
}

TEST(LruTable, StaysAtItsBoundUnderManyClients) {
  LruTable<int> t(1000);
  for (uint32_t i = 0; i < 50'000; ++i) t.get(nth_v4(i)) = static_cast<int>(i);
  EXPECT_EQ(t.size(), 1000u);
  EXPECT_EQ(t.evictions(), 49'000u);
  EXPECT_EQ(*t.oldest(), nth_v4(49'000));
  EXPECT_EQ(t.find(nth_v4(48'999)), nullptr);
  EXPECT_EQ(*t.find(nth_v4(49'999)), 49'999);
}

TEST(ShardShare, RoundsUpAndNeverDropsToZero) {
  EXPECT_EQ(shard_share(0, 4), 0u);  // no limit stays no limit
  EXPECT_EQ(shard_share(10, 1), 10u);
  EXPECT_EQ(shard_share(10, 0), 10u);
  EXPECT_EQ(shard_share(10, 2), 5u);
  EXPECT_EQ(shard_share(10, 3), 4u);
  EXPECT_EQ(shard_share(10, 4), 3u);
  EXPECT_EQ(shard_share(3, 8), 1u);
  EXPECT_EQ(shard_share(1, 256), 1u);
}

RateCheckConfig rates(uint32_t conns, uint32_t msgs, uint32_t rcpts, uint32_t max_clients = 100) {
  RateCheckConfig r;
  r.connections_per_minute = conns;
  r.messages_per_minute = msgs;
  r.recipients_per_minute = rcpts;
  r.max_clients = max_clients;
  return r;
}

TEST(ClientMemory, EachKindHasItsOwnCountPerClient) {
  ClientMemory m;
  m.configure(rates(2, 3, 0), KarmaConfig{}, 1);
  const IpBytes a = ip("192.0.2.1");
  const IpBytes b = ip("2001:db8::1");
  EXPECT_TRUE(m.allow(ClientMemory::Kind::connection, a, kT0));
  EXPECT_TRUE(m.allow(ClientMemory::Kind::connection, a, kT0));
  EXPECT_FALSE(m.allow(ClientMemory::Kind::connection, a, kT0));
  EXPECT_TRUE(m.allow(ClientMemory::Kind::connection, b, kT0));  // another client
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(m.allow(ClientMemory::Kind::message, a, kT0));
  EXPECT_FALSE(m.allow(ClientMemory::Kind::message, a, kT0));
  // No recipient limit: always allowed.
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(m.allow(ClientMemory::Kind::recipient, a, kT0));
  // A minute later (two windows: the previous one has faded too).
  EXPECT_TRUE(m.allow(ClientMemory::Kind::connection, a, kT0 + 2 * kW));
}

TEST(ClientMemory, EnforcesTheShardsShare) {
  ClientMemory m;
  m.configure(rates(5, 0, 0), KarmaConfig{}, 2);  // ceil(5 / 2) = 3 on this shard
  EXPECT_EQ(m.share(ClientMemory::Kind::connection), 3u);
  const IpBytes a = ip("192.0.2.1");
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(m.allow(ClientMemory::Kind::connection, a, kT0));
  EXPECT_FALSE(m.allow(ClientMemory::Kind::connection, a, kT0));
}

TEST(ClientMemory, RateTableAtItsBoundForgetsTheLeastRecentClient) {
  ClientMemory m;
  m.configure(rates(1, 0, 0, 2), KarmaConfig{}, 1);
  const IpBytes a = ip("192.0.2.1");
  const IpBytes b = ip("192.0.2.2");
  const IpBytes c = ip("192.0.2.3");
  EXPECT_TRUE(m.allow(ClientMemory::Kind::connection, a, kT0));
  EXPECT_TRUE(m.allow(ClientMemory::Kind::connection, b, kT0));
  EXPECT_EQ(m.rate_clients(), 2u);
  EXPECT_FALSE(m.allow(ClientMemory::Kind::connection, a, kT0));  // a is the most recent again
  EXPECT_TRUE(m.allow(ClientMemory::Kind::connection, c, kT0));   // b goes
  EXPECT_EQ(m.rate_clients(), 2u);
  EXPECT_EQ(m.rate_evictions(), 1u);
  EXPECT_TRUE(m.allow(ClientMemory::Kind::connection, b, kT0));  // b starts over (a goes)
  EXPECT_TRUE(m.allow(ClientMemory::Kind::connection, a, kT0));  // ... and so does a
}

TEST(ClientMemory, KarmaHalvesEveryHalfLife) {
  ClientMemory m;
  KarmaConfig k;
  k.enabled = true;
  k.half_life_s = 100;
  m.configure(RateCheckConfig{}, k, 1);
  const IpBytes a = ip("192.0.2.9");
  EXPECT_EQ(m.karma(a, kT0), 0.0);
  EXPECT_EQ(m.karma_clients(), 0u);  // asking remembers nothing
  m.punish(a, kT0, 40);
  EXPECT_DOUBLE_EQ(m.karma(a, kT0), 40.0);
  EXPECT_DOUBLE_EQ(m.karma(a, kT0 + 100'000), 20.0);
  EXPECT_DOUBLE_EQ(m.karma(a, kT0 + 200'000), 10.0);
  EXPECT_NEAR(m.karma(a, kT0 + 50'000), 40.0 / std::sqrt(2.0), 1e-9);
  // A new refusal adds to what is left.
  m.punish(a, kT0 + 100'000, 10);
  EXPECT_DOUBLE_EQ(m.karma(a, kT0 + 100'000), 30.0);
  EXPECT_DOUBLE_EQ(m.karma(a, kT0 + 200'000), 15.0);
  EXPECT_LT(m.karma(a, kT0 + 100'000 + 3'000'000), 1e-6);
  EXPECT_EQ(m.karma(ip("192.0.2.10"), kT0), 0.0);
}

TEST(ClientMemory, KarmaTableAtItsBound) {
  ClientMemory m;
  KarmaConfig k;
  k.enabled = true;
  k.max_clients = 100;
  m.configure(RateCheckConfig{}, k, 1);
  for (uint32_t i = 0; i < 1000; ++i) m.punish(nth_v4(i), kT0, 10);
  EXPECT_EQ(m.karma_clients(), 100u);
  EXPECT_EQ(m.karma_evictions(), 900u);
  EXPECT_EQ(m.karma(nth_v4(899), kT0), 0.0);  // forgotten
  EXPECT_EQ(m.karma(nth_v4(900), kT0), 10.0);
  EXPECT_EQ(m.karma(nth_v4(999), kT0), 10.0);
  // A reload with a smaller table keeps the most recent.
  k.max_clients = 10;
  m.configure(RateCheckConfig{}, k, 1);
  EXPECT_EQ(m.karma_clients(), 10u);
  EXPECT_EQ(m.karma(nth_v4(999), kT0), 10.0);
}

TEST(ClientMemory, ExemptNetworks) {
  ClientMemory m;
  RateCheckConfig r = rates(1, 0, 0);
  r.exempt = {"192.0.2.0/24", "2001:db8::/32"};
  m.configure(r, KarmaConfig{}, 1);
  EXPECT_TRUE(m.exempt(ip("192.0.2.77")));
  EXPECT_TRUE(m.exempt(ip("2001:db8::5")));
  EXPECT_FALSE(m.exempt(ip("198.51.100.1")));
}

}  // namespace
}  // namespace ringmx
