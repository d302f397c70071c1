// The shard resolver against a real DNS server: dnsmasq (Debian's
// dnsmasq-base, which tools/dev.sh installs) in the foreground on a loopback
// port with a small zone; the resolver driven by a ring and a timer wheel as a
// shard drives it. Found, no such name, no data of the type, MX/PTR/TXT, the
// cache (a second lookup sends nothing), de-duplication of lookups in flight,
// cancel, the in-flight bound, and a server that never answers.
#include "net/resolver.h"

#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "tests/unit/ring_loop.h"

extern char** environ;

namespace ringmx {
namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Binds a loopback socket of `type` to `port` (0: any); its fd, or -1.
int bound(int type, uint16_t port) {
  const int s = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(s);
    return -1;
  }
  return s;
}

// A port free for both UDP and TCP (dnsmasq takes both) below the kernel's
// ephemeral range, so no client socket takes it before dnsmasq binds it.
uint16_t free_dns_port() {
  for (uint32_t i = 0; i < 500; ++i) {
    const auto port = static_cast<uint16_t>(20000 + (::getpid() * 7919 + i * 104729) % 12000);
    const int u = bound(SOCK_DGRAM, port);
    const int t = bound(SOCK_STREAM, port);
    if (u >= 0) ::close(u);
    if (t >= 0) ::close(t);
    if (u >= 0 && t >= 0) return port;
  }
  return 0;
}

// A UDP socket that never answers: its port.
uint16_t silent_udp_port(int& keep) {
  keep = bound(SOCK_DGRAM, 0);
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ::getsockname(keep, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

class ResolverTest : public ::testing::Test {
 protected:
  static constexpr const char* kDnsmasq = "/usr/sbin/dnsmasq";

  void SetUp() override {
    if (::access(kDnsmasq, X_OK) != 0) {
      GTEST_SKIP() << "dnsmasq is not installed (Debian package dnsmasq-base; tools/dev.sh "
                      "installs it)";
    }
    ring_.init(256, 512, 0);
    port_ = free_dns_port();
    ASSERT_NE(port_, 0) << "no free port for dnsmasq";
    const std::string port = "--port=" + std::to_string(port_);
    std::vector<std::string> args = {
        kDnsmasq,
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--conf-file=/dev/null",
        "--pid-file=",
        "--user=root",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        port,
        "--local=/test.zone/",
        "--host-record=mail.test.zone,192.0.2.10",
        "--mx-host=test.zone,mail.test.zone,10",
        "--txt-record=t.test.zone,v=spf1 -all",
        "--local-ttl=300",  // dnsmasq's own records have TTL 0 otherwise: nothing would be cached
        "--log-facility=/dev/null"};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ASSERT_EQ(posix_spawn(&dnsmasq_, kDnsmasq, nullptr, nullptr, argv.data(), environ), 0);
  }

  void TearDown() override {
    resolver_.reset();
    if (dnsmasq_ > 0) {
      ::kill(dnsmasq_, SIGTERM);  // our child, by its pid
      int st = 0;
      ::waitpid(dnsmasq_, &st, 0);
    }
  }

  void make(DnsConfig cfg) {
    if (cfg.servers.empty()) cfg.servers = {"127.0.0.1:" + std::to_string(port_)};
    resolver_ = std::make_unique<Resolver>(ring_, wheel_, cfg, &metrics_.dns);
    std::string error;
    ASSERT_TRUE(resolver_->init(error)) << error;
    const int64_t t = now_ms();
    resolver_->set_now(t, t * 1'000'000);
  }

  void pass() {
    const int64_t t = now_ms();
    resolver_->set_now(t, t * 1'000'000);
    test::pass_completions(ring_, 5'000'000);
    wheel_.advance(now_ms(), [](TimerNode& node) { node.fire(node); });
  }

  bool run_until(const std::function<bool()>& done, int seconds = 5) {
    const int64_t end = now_ms() + seconds * 1000;
    while (!done()) {
      if (now_ms() > end) return false;
      pass();
    }
    return true;
  }

  // One lookup, run to its answer.
  DnsAnswer ask(uint16_t type, const std::string& name) {
    bool got = false;
    DnsAnswer out;
    resolver_->lookup(type, name, [&](const DnsAnswer& a) {
      out = a;
      got = true;
    });
    EXPECT_TRUE(run_until([&] { return got; })) << name;
    return out;
  }

  // dnsmasq is up once it answers.
  void wait_for_server() {
    const int64_t end = now_ms() + 5000;
    while (now_ms() < end) {
      int st = 0;
      if (::waitpid(dnsmasq_, &st, WNOHANG) != 0) {
        dnsmasq_ = -1;  // reaped: its pid is no longer ours to signal
        FAIL() << "dnsmasq exited (port " << port_ << ")";
      }
      if (ask(dns_type::kA, "mail.test.zone").result == DnsResult::found) return;
      ::usleep(50'000);
    }
    FAIL() << "dnsmasq did not answer on port " << port_;
  }

  uint64_t queries(size_t type, DnsOutcome o) const {
    return metrics_.dns.queries[type][static_cast<size_t>(o)].get();
  }

  Ring ring_;
  TimerWheel wheel_{now_ms()};
  ShardMetrics metrics_;
  std::unique_ptr<Resolver> resolver_;
  pid_t dnsmasq_ = -1;
  uint16_t port_ = 0;
};

TEST_F(ResolverTest, FoundNotFoundAndTheTypes) {
  DnsConfig cfg;
  cfg.negative_ttl_s = 0;  // nothing negative cached: each lookup below is a query
  make(cfg);
  wait_for_server();
  DnsAnswer a = ask(dns_type::kA, "mail.test.zone");
  ASSERT_EQ(a.result, DnsResult::found);
  ASSERT_EQ(a.records.size(), 1u);
  EXPECT_EQ(a.records[0].data, std::string("\xc0\x00\x02\x0a", 4));

  EXPECT_EQ(ask(dns_type::kA, "nosuch.test.zone").result, DnsResult::not_found);   // NXDOMAIN
  EXPECT_EQ(ask(dns_type::kAaaa, "mail.test.zone").result, DnsResult::not_found);  // no data

  DnsAnswer mx = ask(dns_type::kMx, "test.zone");
  ASSERT_EQ(mx.result, DnsResult::found);
  EXPECT_EQ(mx.records[0].data, "mail.test.zone");
  EXPECT_EQ(mx.records[0].preference, 10);

  IpBytes ip = *parse_ip("192.0.2.10");
  DnsAnswer ptr = ask(dns_type::kPtr, reverse_name(ip));
  ASSERT_EQ(ptr.result, DnsResult::found);
  EXPECT_EQ(ptr.records[0].data, "mail.test.zone");

  DnsAnswer txt = ask(dns_type::kTxt, "t.test.zone");
  ASSERT_EQ(txt.result, DnsResult::found);
  EXPECT_EQ(txt.records[0].data, "v=spf1 -all");

  EXPECT_GE(queries(0, DnsOutcome::found), 1u);
  EXPECT_EQ(queries(0, DnsOutcome::not_found), 1u);
  EXPECT_EQ(queries(1, DnsOutcome::not_found), 1u);
  EXPECT_EQ(metrics_.dns.in_flight.get(), 0);
  EXPECT_GE(metrics_.dns.seconds.count(), 6u);
}

TEST_F(ResolverTest, CacheAndDeduplication) {
  make({});
  wait_for_server();
  const uint64_t sent = metrics_.dns.cache_misses.get();
  // Two lookups of a name not asked yet, before any answer: one query.
  int answers = 0;
  for (int i = 0; i < 2; ++i) {
    resolver_->lookup(dns_type::kMx, "test.zone", [&](const DnsAnswer& a) {
      EXPECT_EQ(a.result, DnsResult::found);
      ++answers;
    });
  }
  EXPECT_EQ(resolver_->in_flight(), 1u);
  ASSERT_TRUE(run_until([&] { return answers == 2; }));
  EXPECT_EQ(metrics_.dns.cache_misses.get(), sent + 1);
  // Answered from the cache now, at once, without running the ring.
  bool now = false;
  resolver_->lookup(dns_type::kMx, "TEST.zone",
                    [&](const DnsAnswer& a) { now = a.result == DnsResult::found; });
  EXPECT_TRUE(now);
  EXPECT_EQ(metrics_.dns.cache_misses.get(), sent + 1);
  // A negative answer is cached too (dnsmasq sends no SOA: the configured cap applies).
  EXPECT_EQ(ask(dns_type::kA, "gone.test.zone").result, DnsResult::not_found);
  const uint64_t before = metrics_.dns.cache_misses.get();
  EXPECT_EQ(ask(dns_type::kA, "gone.test.zone").result, DnsResult::not_found);
  EXPECT_EQ(metrics_.dns.cache_misses.get(), before);
}

TEST_F(ResolverTest, CancelAndTheInFlightBound) {
  DnsConfig cfg;
  cfg.max_in_flight = 1;
  make(cfg);
  wait_for_server();
  const uint64_t errors = queries(0, DnsOutcome::error);  // the start-up probes may add some
  bool cancelled_ran = false;
  const uint64_t t = resolver_->lookup(dns_type::kTxt, "t.test.zone",
                                       [&](const DnsAnswer&) { cancelled_ran = true; });
  // Over the bound: a temporary failure at once, nothing sent.
  DnsResult over = DnsResult::found;
  resolver_->lookup(dns_type::kA, "other.test.zone", [&](const DnsAnswer& a) { over = a.result; });
  EXPECT_EQ(over, DnsResult::temp_fail);
  EXPECT_EQ(queries(0, DnsOutcome::error), errors + 1);
  resolver_->cancel(t);
  ASSERT_TRUE(run_until([&] { return resolver_->in_flight() == 0; }));
  EXPECT_FALSE(cancelled_ran);
  // The answer of the cancelled lookup was still cached.
  bool cached = false;
  resolver_->lookup(dns_type::kTxt, "t.test.zone",
                    [&](const DnsAnswer& a) { cached = a.result == DnsResult::found; });
  EXPECT_TRUE(cached);
}

// Two lookups wait for one query; the first one's callback cancels the
// second (its connection went away as a result): the second never runs.
TEST_F(ResolverTest, ACallbackMayCancelAnotherWaiterOfTheSameAnswer) {
  make(DnsConfig{});
  wait_for_server();
  int first = 0;
  int second = 0;
  uint64_t second_ticket = 0;
  resolver_->lookup(dns_type::kMx, "test.zone", [&](const DnsAnswer&) {
    ++first;
    resolver_->cancel(second_ticket);
  });
  second_ticket =
      resolver_->lookup(dns_type::kMx, "test.zone", [&](const DnsAnswer&) { ++second; });
  ASSERT_TRUE(run_until([&] { return first == 1; }));
  pass();
  EXPECT_EQ(second, 0);
}

// At dns.cache_entries the least recently used answer goes: asking for it
// again is a query, while the one used since is still an answer from the cache.
TEST_F(ResolverTest, TheCacheKeepsAtMostItsEntries) {
  DnsConfig cfg;
  cfg.cache_entries = 2;
  make(cfg);
  wait_for_server();  // caches mail.test.zone A
  ASSERT_EQ(ask(dns_type::kMx, "test.zone").result, DnsResult::found);
  ASSERT_EQ(ask(dns_type::kA, "mail.test.zone").result, DnsResult::found);  // used again
  ASSERT_EQ(ask(dns_type::kTxt, "t.test.zone").result, DnsResult::found);   // MX goes
  EXPECT_EQ(resolver_->cached(), 2u);
  const uint64_t misses = metrics_.dns.cache_misses.get();
  ASSERT_EQ(ask(dns_type::kA, "mail.test.zone").result, DnsResult::found);
  EXPECT_EQ(metrics_.dns.cache_misses.get(), misses);
  ASSERT_EQ(ask(dns_type::kMx, "test.zone").result, DnsResult::found);
  EXPECT_EQ(metrics_.dns.cache_misses.get(), misses + 1);
  EXPECT_EQ(resolver_->cached(), 2u);
}

TEST_F(ResolverTest, AServerThatNeverAnswersIsATemporaryFailure) {
  int silent = -1;
  const uint16_t port = silent_udp_port(silent);
  DnsConfig cfg;
  cfg.servers = {"127.0.0.1:" + std::to_string(port)};
  cfg.timeout_ms = 200;
  cfg.tries = 1;
  make(cfg);
  const int64_t start = now_ms();
  DnsAnswer a = ask(dns_type::kA, "mail.test.zone");
  EXPECT_EQ(a.result, DnsResult::temp_fail);
  EXPECT_GE(now_ms() - start, 150);
  EXPECT_LT(now_ms() - start, 3000);
  EXPECT_EQ(queries(0, DnsOutcome::timeout), 1u);
  // Never cached: the next lookup asks again.
  const uint64_t misses = metrics_.dns.cache_misses.get();
  EXPECT_EQ(ask(dns_type::kA, "mail.test.zone").result, DnsResult::temp_fail);
  EXPECT_EQ(metrics_.dns.cache_misses.get(), misses + 1);
  ::close(silent);
}

}  // namespace
}  // namespace ringmx
