// The rate and karma checks (pipeline/checks/rate.cc, karma.cc) through the
// policy, as a shard runs them: each stage's refusal at this shard's share
// of its limit, recovery as the minute moves on, karma refusing at connect
// before any DNS lookup of the checks after it, and its points adding to
// the score below the refusal.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "pipeline/check_set.h"
#include "pipeline/checks/builtin.h"
#include "pipeline/policy.h"

namespace ringmx {
namespace {

constexpr int64_t kT0 = 5'000'000;

// Every name is unknown; counts what was asked.
class CountingDns final : public DnsLookup {
 public:
  uint64_t lookup(uint16_t, std::string_view name, Done done) override {
    asked.emplace_back(name);
    DnsAnswer a;
    a.result = DnsResult::not_found;
    done(a);
    return ++next_;
  }
  void cancel(uint64_t) override {}
  std::vector<std::string> asked;

 private:
  uint64_t next_ = 0;
};

class RateCheckTest : public ::testing::Test {
 protected:
  RateCheckTest() { cfg_.checks.reject_score = 10; }

  // A connection from `ip` with the config so far, its checks reaching mem_.
  std::unique_ptr<Policy> connect(const std::string& ip) {
    conns_.push_back(std::make_unique<ConnInfo>());
    conns_.back()->client_ip = ip;
    if (!set_) set_ = CheckSet::build(cfg_);
    auto p = std::make_unique<Policy>(set_, *conns_.back(), &dns_, [](const PolicyDecision&) {});
    p->context().clients = &mem_;
    return p;
  }
  PolicyDecision run(Policy& p, CheckStage s) {
    PolicyDecision d;
    EXPECT_TRUE(p.run(s, d));
    return d;
  }
  void configure(uint32_t shards = 1) {
    mem_.configure(cfg_.checks.rate, cfg_.checks.karma, shards);
  }
  void at(int64_t ms) { mem_.set_now(ms); }

  ServerConfig cfg_;
  std::shared_ptr<CheckSet> set_;
  ClientMemory mem_;
  CountingDns dns_;
  std::vector<std::unique_ptr<ConnInfo>> conns_;
};

TEST_F(RateCheckTest, OffByDefault) {
  EXPECT_EQ(make_rate_check(ServerConfig{}.checks.rate), nullptr);
  EXPECT_EQ(make_karma_check(ServerConfig{}.checks.karma), nullptr);
  EXPECT_EQ(CheckSet::build(ServerConfig{})->size(), 0u);
}

TEST_F(RateCheckTest, ConnectionsPerMinuteAtTheBound) {
  cfg_.checks.rate.connections_per_minute = 3;
  configure();
  at(kT0);
  for (int i = 0; i < 3; ++i) {
    auto p = connect("192.0.2.1");
    EXPECT_EQ(run(*p, CheckStage::connect).verdict.kind, Verdict::Kind::accept) << i;
  }
  auto p = connect("192.0.2.1");
  PolicyDecision d = run(*p, CheckStage::connect);
  EXPECT_EQ(d.verdict.code, 421);
  EXPECT_EQ(d.verdict.enhanced, "4.7.0");
  EXPECT_EQ(d.verdict.text, "Error: too many connections from your address, try again later");
  EXPECT_EQ(d.check, "rate");
  // Another address is not affected.
  auto other = connect("192.0.2.2");
  EXPECT_EQ(run(*other, CheckStage::connect).verdict.kind, Verdict::Kind::accept);
  // Two minutes later the client is welcome again.
  at(kT0 + 120'000);
  auto later = connect("192.0.2.1");
  EXPECT_EQ(run(*later, CheckStage::connect).verdict.kind, Verdict::Kind::accept);
}

TEST_F(RateCheckTest, MessagesAndRecipientsPerMinute) {
  cfg_.checks.rate.messages_per_minute = 2;
  cfg_.checks.rate.recipients_per_minute = 3;
  configure();
  at(kT0);
  auto p = connect("2001:db8::7");
  EXPECT_EQ(run(*p, CheckStage::connect).verdict.kind, Verdict::Kind::accept);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(run(*p, CheckStage::mail).verdict.kind, Verdict::Kind::accept);
  }
  PolicyDecision d = run(*p, CheckStage::mail);
  EXPECT_EQ(d.verdict.code, 452);
  EXPECT_EQ(d.verdict.enhanced, "4.7.0");
  EXPECT_EQ(d.verdict.text, "Error: too many messages from your address, try again later");
  EXPECT_EQ(d.check, "rate");
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(run(*p, CheckStage::rcpt).verdict.kind, Verdict::Kind::accept);
  }
  d = run(*p, CheckStage::rcpt);
  EXPECT_EQ(d.verdict.code, 452);
  EXPECT_EQ(d.verdict.text, "Error: too many recipients from your address, try again later");
  // The count is per client, not per connection: a second connection shares it.
  auto q = connect("2001:db8::7");
  EXPECT_EQ(run(*q, CheckStage::mail).verdict.code, 452);
}

TEST_F(RateCheckTest, EachShardEnforcesItsShare) {
  cfg_.checks.rate.connections_per_minute = 5;
  configure(2);  // ceil(5 / 2) = 3 here
  at(kT0);
  for (int i = 0; i < 3; ++i) {
    auto p = connect("192.0.2.1");
    EXPECT_EQ(run(*p, CheckStage::connect).verdict.kind, Verdict::Kind::accept);
  }
  auto p = connect("192.0.2.1");
  EXPECT_EQ(run(*p, CheckStage::connect).verdict.code, 421);
}

TEST_F(RateCheckTest, ExemptClientsAreNeverLimited) {
  cfg_.checks.rate.connections_per_minute = 1;
  cfg_.checks.rate.exempt = {"192.0.2.0/24"};
  cfg_.checks.karma.enabled = true;
  configure();
  at(kT0);
  mem_.punish(*parse_ip("192.0.2.1"), kT0, 1000);
  for (int i = 0; i < 5; ++i) {
    auto p = connect("192.0.2.1");
    EXPECT_EQ(run(*p, CheckStage::connect).verdict.kind, Verdict::Kind::accept);
  }
}

TEST_F(RateCheckTest, WithoutAMemoryEveryonePasses) {
  cfg_.checks.rate.connections_per_minute = 1;
  cfg_.checks.karma.enabled = true;
  set_ = CheckSet::build(cfg_);
  ConnInfo ci;
  ci.client_ip = "unknown";
  for (int i = 0; i < 3; ++i) {
    Policy p(set_, ci, &dns_, [](const PolicyDecision&) {});
    EXPECT_EQ(run(p, CheckStage::connect).verdict.kind, Verdict::Kind::accept);
  }
}

TEST_F(RateCheckTest, KarmaRefusesAtTheThresholdBeforeAnyLookup) {
  cfg_.checks.karma.enabled = true;
  cfg_.checks.karma.reject_penalty = 30;
  cfg_.checks.karma.half_life_s = 60;
  cfg_.checks.dnsbl.push_back({"bl.test", "bl", 10, {}});
  configure();
  const IpBytes bad = *parse_ip("198.51.100.9");
  mem_.punish(bad, kT0, 29);
  at(kT0);
  auto p = connect("198.51.100.9");
  EXPECT_EQ(run(*p, CheckStage::connect).verdict.kind, Verdict::Kind::accept);  // 29 < 30
  EXPECT_EQ(dns_.asked.size(), 1u);  // the block list was asked
  mem_.punish(bad, kT0, 1);
  dns_.asked.clear();
  auto q = connect("198.51.100.9");
  PolicyDecision d = run(*q, CheckStage::connect);
  EXPECT_EQ(d.verdict.code, 421);
  EXPECT_EQ(d.verdict.enhanced, "4.7.0");
  EXPECT_EQ(d.verdict.text, "Error: too many recent refusals from your address, try again later");
  EXPECT_EQ(d.check, "karma");
  EXPECT_EQ(d.reason, "karma 30");
  EXPECT_TRUE(dns_.asked.empty());  // refused before any lookup
  // A half-life later the points are down to 15: served again.
  at(kT0 + 60'000);
  auto r = connect("198.51.100.9");
  EXPECT_EQ(run(*r, CheckStage::connect).verdict.kind, Verdict::Kind::accept);
  // Another client was never affected.
  auto other = connect("198.51.100.10");
  EXPECT_EQ(run(*other, CheckStage::connect).verdict.kind, Verdict::Kind::accept);
}

TEST_F(RateCheckTest, KarmaAddsItsWeightToTheScore) {
  cfg_.checks.karma.enabled = true;
  cfg_.checks.karma.reject_penalty = 100;
  cfg_.checks.karma.score_weight = 50;  // half the points
  configure();
  at(kT0);
  mem_.punish(*parse_ip("198.51.100.9"), kT0, 13);
  auto p = connect("198.51.100.9");
  PolicyDecision d = run(*p, CheckStage::connect);
  EXPECT_EQ(d.verdict.kind, Verdict::Kind::accept);
  EXPECT_EQ(d.score, 6);  // floor(13 * 50%)
  EXPECT_EQ(p->context().karma_score, 6);
  // Enough points to reach reject_score (10) through the score.
  mem_.punish(*parse_ip("198.51.100.9"), kT0, 7);
  auto q = connect("198.51.100.9");
  d = run(*q, CheckStage::connect);
  EXPECT_EQ(d.verdict.code, 554);
  EXPECT_EQ(d.check, "score");
  EXPECT_EQ(d.score, 10);
}

// A refusal decided at once spares the checks after it; one after a check
// still waiting does not (the earlier one might still accept).
TEST_F(RateCheckTest, ImmediateRefusalSkipsLaterChecksOnly) {
  cfg_.checks.rate.connections_per_minute = 1;
  cfg_.checks.dnsbl.push_back({"bl.test", "bl", 10, {}});
  configure();
  at(kT0);
  auto p = connect("192.0.2.1");
  EXPECT_EQ(run(*p, CheckStage::connect).verdict.kind, Verdict::Kind::accept);
  EXPECT_EQ(dns_.asked.size(), 1u);
  auto q = connect("192.0.2.1");
  EXPECT_EQ(run(*q, CheckStage::connect).check, "rate");
  EXPECT_EQ(dns_.asked.size(), 1u);
}

}  // namespace
}  // namespace ringmx
