// The check pipeline (pipeline/policy.h) and the built-in checks against a
// DNS table: each check's decision table, how a stage's results combine
// (first refusal, accept, score threshold), waiting for DNS and resuming,
// the connect stage run ahead of the greeting, and cancellation.
#include "pipeline/policy.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pipeline/check_set.h"
#include "pipeline/checks/builtin.h"
#include "pipeline/milter.h"

namespace ringmx {
namespace {

std::string v4(const char* text) {
  in_addr a{};
  inet_pton(AF_INET, text, &a);
  return std::string(reinterpret_cast<const char*>(&a), 4);
}

DnsAnswer found(std::vector<std::string> data) {
  DnsAnswer a;
  a.result = DnsResult::found;
  for (auto& d : data) a.records.push_back({300, std::move(d), 0});
  return a;
}

DnsAnswer nx() {
  DnsAnswer a;
  a.result = DnsResult::not_found;
  return a;
}

// Answers from a table (unknown names: NXDOMAIN), now or when the test says.
class FakeDns final : public DnsLookup {
 public:
  void set(uint16_t type, const std::string& name, DnsAnswer a) { table_[{type, name}] = a; }
  bool deferred = false;

  uint64_t lookup(uint16_t type, std::string_view name, Done done) override {
    asked.emplace_back(type, std::string(name));
    auto it = table_.find({type, std::string(name)});
    const DnsAnswer a = it == table_.end() ? nx() : it->second;
    const uint64_t t = next_++;
    if (!deferred) {
      done(a);
      return t;
    }
    waiting_.push_back({t, a, std::move(done)});
    return t;
  }
  void cancel(uint64_t ticket) override {
    ++cancels;
    for (auto& w : waiting_) {
      if (w.ticket == ticket) w.done = nullptr;
    }
  }
  // Answers everything waiting (answers may ask again: those are answered too).
  void answer_all() {
    while (!waiting_.empty()) {
      Waiting w = std::move(waiting_.front());
      waiting_.pop_front();
      if (w.done) w.done(w.answer);
    }
  }
  size_t waiting() const { return waiting_.size(); }

  std::vector<std::pair<uint16_t, std::string>> asked;
  int cancels = 0;

 private:
  struct Waiting {
    uint64_t ticket;
    DnsAnswer answer;
    Done done;
  };
  std::map<std::pair<uint16_t, std::string>, DnsAnswer> table_;
  std::deque<Waiting> waiting_;
  uint64_t next_ = 1;
};

// A check with a fixed result at the stages it is given.
class Fixed final : public Check {
 public:
  Fixed(std::string name, uint32_t stages, CheckResult r)
      : name_(std::move(name)), stages_(stages), r_(std::move(r)) {}
  std::string_view name() const override { return name_; }
  uint32_t stages() const override { return stages_; }
  void start(CheckStage, CheckContext&, CheckDone done) const override { done(r_); }

 private:
  std::string name_;
  uint32_t stages_;
  CheckResult r_;
};

// The example in pipeline/check.h: a user's own check.
class NoRoot final : public Check {
 public:
  std::string_view name() const override { return "no_root"; }
  uint32_t stages() const override { return stage_bit(CheckStage::rcpt); }
  void start(CheckStage, CheckContext& ctx, CheckDone done) const override {
    if (ctx.rcpt->address.starts_with("root@")) {
      return done(CheckResult::reject(550, "5.7.1", "Error: no mail for root", "root"));
    }
    done(CheckResult::next());
  }
};

class PolicyTest : public ::testing::Test {
 protected:
  PolicyTest() { conn_.client_ip = "192.0.2.7"; }

  std::unique_ptr<Policy> make(std::shared_ptr<CheckSet> set) {
    set_ = std::move(set);
    return std::make_unique<Policy>(set_, conn_, &dns_,
                                    [this](const PolicyDecision& d) { resumed_.push_back(d); });
  }
  // Runs a stage that must be decided at once.
  PolicyDecision now(Policy& p, CheckStage s) {
    PolicyDecision d;
    EXPECT_TRUE(p.run(s, d));
    return d;
  }

  ConnInfo conn_;
  FakeDns dns_;
  std::shared_ptr<CheckSet> set_;
  std::vector<PolicyDecision> resumed_;
};

uint32_t all_stages() {
  return (uint32_t{1} << kCheckStages) - 1;
}

TEST_F(PolicyTest, NoChecksAcceptsAtOnce) {
  auto p = make(std::make_shared<CheckSet>());
  for (size_t s = 0; s < kCheckStages; ++s) {
    EXPECT_EQ(now(*p, static_cast<CheckStage>(s)).verdict.kind, Verdict::Kind::accept);
  }
}

TEST_F(PolicyTest, FirstRefusalDecidesAndScoresAddUp) {
  auto set = std::make_shared<CheckSet>();
  set->reject_score = 10;
  set->add(std::make_unique<Fixed>("a", all_stages(), CheckResult::add(4, "a found")));
  set->add(
      std::make_unique<Fixed>("b", stage_bit(CheckStage::mail),
                              CheckResult::reject(550, "5.7.1", "Error: b says no", "b found")));
  set->add(
      std::make_unique<Fixed>("c", stage_bit(CheckStage::mail),
                              CheckResult::reject(450, "4.7.1", "Error: c says later", "c found")));
  auto p = make(set);
  PolicyDecision d = now(*p, CheckStage::connect);
  EXPECT_EQ(d.verdict.kind, Verdict::Kind::accept);
  EXPECT_EQ(d.score, 4);
  d = now(*p, CheckStage::mail);
  EXPECT_EQ(d.verdict.kind, Verdict::Kind::reject);
  EXPECT_EQ(d.verdict.code, 550);
  EXPECT_EQ(d.check, "b");
  EXPECT_EQ(d.score, 8);
  // connect 4 + mail 4 + rcpt 4 = 12: the score refuses, naming its findings.
  d = now(*p, CheckStage::rcpt);
  EXPECT_EQ(d.check, "score");
  EXPECT_EQ(d.verdict.code, 550);
  EXPECT_EQ(d.verdict.enhanced, "5.7.1");
  EXPECT_NE(d.verdict.text.find("a found"), std::string::npos) << d.verdict.text;
  EXPECT_EQ(d.score, 12);
}

// A prober's recipients add up, but the findings a stage keeps for the
// refusal stay bounded (16): the 17th and later are counted, not kept.
TEST_F(PolicyTest, FindingsKeptPerStageAreBounded) {
  struct Counting final : Check {
    mutable int n = 0;
    std::string_view name() const override { return "c"; }
    uint32_t stages() const override { return stage_bit(CheckStage::rcpt); }
    void start(CheckStage, CheckContext&, CheckDone done) const override {
      done(CheckResult::add(1, "f" + std::to_string(n++) + "."));
    }
  };
  auto set = std::make_shared<CheckSet>();
  set->reject_score = 20;
  set->add(std::make_unique<Counting>());
  auto p = make(set);
  PolicyDecision d;
  for (int i = 0; i < 20; ++i) d = now(*p, CheckStage::rcpt);
  EXPECT_EQ(d.check, "score");
  EXPECT_EQ(d.score, 20);
  EXPECT_NE(d.reason.find("f15."), std::string::npos) << d.reason;
  EXPECT_EQ(d.reason.find("f16."), std::string::npos) << d.reason;
  EXPECT_NE(d.verdict.text.find("f3., ..."), std::string::npos) << d.verdict.text;  // 4 named
}

TEST_F(PolicyTest, ScoreAtTheThresholdRefusesOneBelowDoesNot) {
  for (int32_t s : {9, 10}) {
    auto set = std::make_shared<CheckSet>();
    set->reject_score = 10;
    set->add(
        std::make_unique<Fixed>("a", stage_bit(CheckStage::connect), CheckResult::add(s, "a")));
    auto p = make(set);
    const PolicyDecision d = now(*p, CheckStage::connect);
    if (s < 10) {
      EXPECT_EQ(d.verdict.kind, Verdict::Kind::accept);
    } else {
      EXPECT_EQ(d.verdict.code, 554);  // a refused connection's greeting
      EXPECT_EQ(d.check, "score");
    }
  }
}

TEST_F(PolicyTest, RejectScoreZeroNeverRefuses) {
  auto set = std::make_shared<CheckSet>();
  set->add(std::make_unique<Fixed>("a", all_stages(), CheckResult::add(1000, "a")));
  auto p = make(set);
  EXPECT_EQ(now(*p, CheckStage::rcpt).verdict.kind, Verdict::Kind::accept);
}

TEST_F(PolicyTest, AcceptOutranksLaterRefusalsButScoresStillCount) {
  auto set = std::make_shared<CheckSet>();
  set->reject_score = 10;
  set->add(std::make_unique<Fixed>("allow", stage_bit(CheckStage::rcpt),
                                   CheckResult::accept("trusted")));
  set->add(std::make_unique<Fixed>("deny", stage_bit(CheckStage::rcpt),
                                   CheckResult::reject(550, "5.7.1", "no", "deny")));
  auto p = make(set);
  EXPECT_EQ(now(*p, CheckStage::rcpt).verdict.kind, Verdict::Kind::accept);
}

TEST_F(PolicyTest, HeloAgainReplacesItsScore) {
  auto set = std::make_shared<CheckSet>();
  set->reject_score = 10;
  set->add(std::make_unique<Fixed>("h", stage_bit(CheckStage::helo), CheckResult::add(6, "h")));
  auto p = make(set);
  EXPECT_EQ(now(*p, CheckStage::helo).score, 6);
  // EHLO again (after STARTTLS): still 6, not 12.
  EXPECT_EQ(now(*p, CheckStage::helo).verdict.kind, Verdict::Kind::accept);
  EXPECT_EQ(p->score(), 6);
}

TEST_F(PolicyTest, RecipientsAddUpUntilTheNextMail) {
  auto set = std::make_shared<CheckSet>();
  set->reject_score = 10;
  set->add(std::make_unique<Fixed>("r", stage_bit(CheckStage::rcpt), CheckResult::add(4, "r")));
  auto p = make(set);
  EXPECT_EQ(now(*p, CheckStage::rcpt).score, 4);
  EXPECT_EQ(now(*p, CheckStage::rcpt).score, 8);
  EXPECT_EQ(now(*p, CheckStage::rcpt).check, "score");  // 12
  EXPECT_EQ(now(*p, CheckStage::mail).score, 0);        // a new transaction
}

TEST_F(PolicyTest, QuarantineByCheckOrScore) {
  auto set = std::make_shared<CheckSet>();
  set->reject_score = 10;
  set->quarantine_score = 6;
  set->add(std::make_unique<Fixed>("m", stage_bit(CheckStage::message),
                                   CheckResult::quarantine("looks odd")));
  set->add(std::make_unique<Fixed>("r", stage_bit(CheckStage::rcpt), CheckResult::add(3, "r")));
  auto p = make(set);
  EXPECT_FALSE(now(*p, CheckStage::mail).quarantine);
  EXPECT_FALSE(now(*p, CheckStage::rcpt).quarantine);  // 3
  PolicyDecision d = now(*p, CheckStage::rcpt);        // 6: held, still accepted
  EXPECT_EQ(d.verdict.kind, Verdict::Kind::accept);
  EXPECT_TRUE(d.quarantine);
  EXPECT_EQ(p->quarantined(), "score 6");
  // The next transaction starts clean; a check quarantines its message.
  EXPECT_FALSE(now(*p, CheckStage::mail).quarantine);
  EXPECT_TRUE(p->quarantined().empty());
  d = now(*p, CheckStage::message);
  EXPECT_EQ(d.verdict.kind, Verdict::Kind::accept);
  EXPECT_EQ(p->quarantined(), "m: looks odd");
  EXPECT_FALSE(now(*p, CheckStage::mail).quarantine);
}

TEST_F(PolicyTest, UserCheckFromTheHeaderExample) {
  auto set = std::make_shared<CheckSet>();
  set->add(std::make_unique<NoRoot>());
  EXPECT_THROW(set->add(std::make_unique<NoRoot>()), std::invalid_argument);
  auto p = make(set);
  Recipient r;
  r.address = "root@example.org";
  p->context().rcpt = &r;
  PolicyDecision d = now(*p, CheckStage::rcpt);
  EXPECT_EQ(d.check, "no_root");
  r.address = "alice@example.org";
  EXPECT_EQ(now(*p, CheckStage::rcpt).verdict.kind, Verdict::Kind::accept);
}

ChecksConfig lists_config() {
  ChecksConfig c;
  c.reject_score = 10;
  c.dnsbl.push_back({"bl.test", "bl", 10, {"127.0.0.2-127.0.0.3"}});
  c.dnsbl.push_back({"any.test", "any", 3, {}});
  c.dnswl.push_back({"wl.test", "wl", 20, {}});
  return c;
}

std::shared_ptr<CheckSet> set_of(const ChecksConfig& c) {
  ServerConfig sc;
  sc.checks = c;
  sc.smtp.hostname = "mx.test";
  return CheckSet::build(sc);
}

TEST_F(PolicyTest, DnsListsInParallelWithCodesAndAllowList) {
  dns_.deferred = true;
  auto p = make(set_of(lists_config()));
  dns_.set(dns_type::kA, "7.2.0.192.bl.test", found({v4("127.0.0.2")}));
  dns_.set(dns_type::kA, "7.2.0.192.any.test", found({v4("127.255.255.254")}));  // refused query
  PolicyDecision d;
  EXPECT_FALSE(p->run(CheckStage::connect, d));
  EXPECT_EQ(dns_.waiting(), 3u);  // every list at once
  dns_.answer_all();
  ASSERT_EQ(resumed_.size(), 1u);
  EXPECT_EQ(resumed_[0].verdict.code, 554);
  EXPECT_NE(resumed_[0].verdict.text.find("listed by bl"), std::string::npos);
  EXPECT_EQ(resumed_[0].score, 10);
  const auto& trace = p->context().trace;
  ASSERT_EQ(trace.size(), 2u);
  EXPECT_EQ(trace[0], "x-dnswl=none");
  EXPECT_EQ(trace[1], "x-dnsbl=fail (bl=127.0.0.2)");
}

TEST_F(PolicyTest, AllowListOutweighsBlockList) {
  auto p = make(set_of(lists_config()));
  dns_.set(dns_type::kA, "7.2.0.192.bl.test", found({v4("127.0.0.2")}));
  dns_.set(dns_type::kA, "7.2.0.192.wl.test", found({v4("127.0.9.1")}));
  const PolicyDecision d = now(*p, CheckStage::connect);
  EXPECT_EQ(d.verdict.kind, Verdict::Kind::accept);
  EXPECT_EQ(d.score, -10);
}

TEST_F(PolicyTest, CodeOutsideTheListIsNotAListing) {
  auto p = make(set_of(lists_config()));
  dns_.set(dns_type::kA, "7.2.0.192.bl.test", found({v4("127.0.0.4")}));
  EXPECT_EQ(now(*p, CheckStage::connect).score, 0);
}

TEST_F(PolicyTest, DnsListFailureSkipsOrTempfails) {
  for (DnsFailure f : {DnsFailure::skip, DnsFailure::tempfail}) {
    ChecksConfig c = lists_config();
    c.dnsbl_failure = f;
    auto p = make(set_of(c));
    DnsAnswer fail;  // temp_fail
    dns_.set(dns_type::kA, "7.2.0.192.bl.test", fail);
    const PolicyDecision d = now(*p, CheckStage::connect);
    if (f == DnsFailure::skip) {
      EXPECT_EQ(d.verdict.kind, Verdict::Kind::accept);
    } else {
      EXPECT_EQ(d.verdict.code, 421);  // temporary, at connect: 421 and close
      EXPECT_EQ(d.verdict.enhanced, "4.4.3");
    }
  }
}

TEST_F(PolicyTest, Ipv6ClientIsLookedUpByNibbles) {
  conn_.client_ip = "2001:db8::1";
  auto p = make(set_of(lists_config()));
  now(*p, CheckStage::connect);
  ASSERT_FALSE(dns_.asked.empty());
  EXPECT_EQ(dns_.asked.back().second,
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.any.test");
}

ChecksConfig ptr_config(CheckAction missing, CheckAction unconfirmed, CheckAction dynamic) {
  ChecksConfig c;
  c.reject_score = 10;
  c.ptr.missing = missing;
  c.ptr.unconfirmed = unconfirmed;
  c.ptr.dynamic = dynamic;
  c.ptr.dynamic_patterns = {"(^|[.-])(dyn|pool)[.-]"};
  c.ptr.score = 4;
  c.ptr.dns_failure = DnsFailure::tempfail;
  return c;
}

TEST_F(PolicyTest, PtrMissingRefusedAtConnect) {
  auto p = make(set_of(ptr_config(CheckAction::reject, CheckAction::score, CheckAction::score)));
  const PolicyDecision d = now(*p, CheckStage::connect);
  EXPECT_EQ(d.verdict.code, 554);
  EXPECT_EQ(d.verdict.enhanced, "5.7.25");
  EXPECT_EQ(d.check, "ptr");
  EXPECT_EQ(p->context().trace.back(), "iprev=permerror policy.iprev=192.0.2.7");
}

TEST_F(PolicyTest, PtrConfirmedPasses) {
  dns_.set(dns_type::kPtr, "7.2.0.192.in-addr.arpa", found({"a.example", "mx.example"}));
  dns_.set(dns_type::kA, "a.example", found({v4("198.51.100.1")}));
  dns_.set(dns_type::kA, "mx.example", found({v4("198.51.100.2"), v4("192.0.2.7")}));
  auto p = make(set_of(ptr_config(CheckAction::reject, CheckAction::reject, CheckAction::reject)));
  const PolicyDecision d = now(*p, CheckStage::connect);
  EXPECT_EQ(d.verdict.kind, Verdict::Kind::accept);
  EXPECT_EQ(p->context().iprev.verified_name, "mx.example");
  EXPECT_EQ(p->context().trace.back(), "iprev=pass policy.iprev=192.0.2.7 (mx.example)");
}

TEST_F(PolicyTest, PtrUnconfirmedAndDynamicScore) {
  dns_.set(dns_type::kPtr, "7.2.0.192.in-addr.arpa", found({"pool-7.dyn.example"}));
  auto p = make(set_of(ptr_config(CheckAction::reject, CheckAction::score, CheckAction::score)));
  const PolicyDecision d = now(*p, CheckStage::connect);
  EXPECT_EQ(d.verdict.kind, Verdict::Kind::accept);
  EXPECT_EQ(d.score, 8);
  EXPECT_EQ(p->context().iprev.state, IprevFacts::State::fail);
}

TEST_F(PolicyTest, PtrNamesThatAreNotHostNamesAreNeverUsed) {
  // A hostile reverse zone: a name with CR LF (a forged header line) that
  // even resolves back. It is neither confirmed nor shown anywhere.
  const std::string evil = "a.example\r\nx-injected: 1";
  dns_.set(dns_type::kPtr, "7.2.0.192.in-addr.arpa", found({evil}));
  dns_.set(dns_type::kA, evil, found({v4("192.0.2.7")}));
  auto p = make(set_of(ptr_config(CheckAction::off, CheckAction::score, CheckAction::off)));
  EXPECT_EQ(now(*p, CheckStage::connect).score, 4);
  EXPECT_TRUE(p->context().iprev.verified_name.empty());
  EXPECT_TRUE(p->context().iprev.ptr_name.empty());
  EXPECT_EQ(dns_.asked.size(), 1u);  // never looked up forward
}

TEST_F(PolicyTest, PtrConfirmsAtMostFiveNames) {
  std::vector<std::string> names;
  for (int i = 0; i < 9; ++i) names.push_back("n" + std::to_string(i) + ".example");
  dns_.set(dns_type::kPtr, "7.2.0.192.in-addr.arpa", found(names));
  dns_.set(dns_type::kA, "n8.example", found({v4("192.0.2.7")}));
  auto p = make(set_of(ptr_config(CheckAction::off, CheckAction::score, CheckAction::off)));
  EXPECT_EQ(now(*p, CheckStage::connect).score, 4);  // n8 is never asked
  EXPECT_EQ(dns_.asked.size(), 1u + 5u);
}

TEST_F(PolicyTest, PtrTemporaryFailureIsNeverPermanent) {
  DnsAnswer fail;
  dns_.set(dns_type::kPtr, "7.2.0.192.in-addr.arpa", fail);
  auto p = make(set_of(ptr_config(CheckAction::reject, CheckAction::reject, CheckAction::off)));
  const PolicyDecision d = now(*p, CheckStage::connect);
  EXPECT_EQ(d.verdict.code, 421);
  EXPECT_EQ(d.verdict.enhanced, "4.7.25");
  EXPECT_EQ(p->context().iprev.state, IprevFacts::State::temperror);
}

ChecksConfig helo_config() {
  ChecksConfig c;
  c.reject_score = 100;
  c.helo.bare_ip = CheckAction::reject;
  c.helo.not_fqdn = CheckAction::score;
  c.helo.ours = CheckAction::reject;
  c.helo.literal_mismatch = CheckAction::score;
  c.helo.unresolvable = CheckAction::reject;
  c.helo.score = 3;
  return c;
}

TEST_F(PolicyTest, HeloRules) {
  conn_.server_ip = "198.51.100.25";
  dns_.set(dns_type::kA, "good.example", found({v4("192.0.2.7")}));
  dns_.set(dns_type::kAaaa, "v6only.example", found({std::string(16, '\1')}));
  struct Case {
    const char* helo;
    Verdict::Kind kind;
    int32_t score;
  } cases[] = {
      {"good.example", Verdict::Kind::accept, 0},
      {"good.example.", Verdict::Kind::accept, 0},
      {"v6only.example", Verdict::Kind::accept, 0},
      {"gone.example", Verdict::Kind::reject, 0},  // resolves to nothing
      {"192.0.2.7", Verdict::Kind::reject, 0},     // bare address
      {"[192.0.2.7]", Verdict::Kind::accept, 0},   // the client's own literal
      {"[192.0.2.8]", Verdict::Kind::accept, 3},   // someone else's
      {"[198.51.100.25]", Verdict::Kind::reject, 0},
      {"MX.TEST", Verdict::Kind::reject, 0},  // our name, any case
      {"localhost", Verdict::Kind::accept, 3},
  };
  for (const Case& c : cases) {
    auto p = make(set_of(helo_config()));
    p->context().helo = c.helo;
    const PolicyDecision d = now(*p, CheckStage::helo);
    EXPECT_EQ(d.verdict.kind, c.kind) << c.helo << ": " << d.verdict.text;
    EXPECT_EQ(d.score, c.score) << c.helo;
  }
}

ChecksConfig sender_config() {
  ChecksConfig c;
  c.sender.unresolvable = CheckAction::reject;
  c.sender.null_mx = CheckAction::reject;
  return c;
}

TEST_F(PolicyTest, SenderDomains) {
  DnsRecord null_mx{300, "", 0};
  DnsAnswer nm;
  nm.result = DnsResult::found;
  nm.records.push_back(null_mx);
  dns_.set(dns_type::kMx, "nullmx.example", nm);
  dns_.set(dns_type::kMx, "mx.example", found({"mail.mx.example"}));
  dns_.set(dns_type::kAaaa, "v6.example", found({std::string(16, '\1')}));
  DnsAnswer fail;
  dns_.set(dns_type::kMx, "slow.example", fail);
  struct Case {
    const char* sender;
    uint16_t code;
    const char* enhanced;
  } cases[] = {
      {"a@mx.example", 0, ""},          {"a@v6.example", 0, ""},  // implicit MX
      {"a@nx.example", 550, "5.1.8"},   {"a@nullmx.example", 550, "5.7.27"},
      {"a@slow.example", 451, "4.4.3"}, {"", 0, ""},  // the null sender
      {"a@[192.0.2.1]", 0, ""},
  };
  for (const Case& c : cases) {
    auto p = make(set_of(sender_config()));
    Envelope env;
    env.sender = c.sender;
    p->context().envelope = &env;
    const PolicyDecision d = now(*p, CheckStage::mail);
    EXPECT_EQ(d.verdict.code, c.code) << c.sender;
    EXPECT_EQ(d.verdict.enhanced, c.enhanced) << c.sender;
  }
}

TEST_F(PolicyTest, HeaderRulesAtTheEndOfTheMessage) {
  ServerConfig sc;
  sc.smtp.headers.require_from = true;
  sc.smtp.headers.reject_duplicates = true;
  struct Case {
    const char* message;
    bool spilled;
    const char* text;  // the refusal's, or null
  } cases[] = {
      {"Subject: x\r\n\r\nbody\r\n", false,
       "Error: message has no From header field (RFC 5322 3.6)"},
      {"From: a@example.com\r\nSubject: x\r\nsubject: y\r\n\r\nb\r\n", false,
       "Error: message has more than one Subject header field (RFC 5322 3.6)"},
      {"From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n", false, nullptr},
      // A body streamed to disk: its head, as the session kept it.
      {"Subject: x\r\n\r\n", true, "Error: message has no From header field (RFC 5322 3.6)"},
  };
  for (const Case& c : cases) {
    auto p = make(CheckSet::build(sc));
    Message m;
    if (c.spilled) {
      m.spilled = true;
      m.spilled_head = c.message;
    } else {
      m.body.append(c.message);
    }
    p->context().message = &m;
    const PolicyDecision d = now(*p, CheckStage::message);
    if (c.text == nullptr) {
      EXPECT_EQ(d.verdict.kind, Verdict::Kind::accept) << c.message;
    } else {
      EXPECT_EQ(d.verdict.code, 550) << c.message;
      EXPECT_EQ(d.verdict.enhanced, "5.6.0");
      EXPECT_EQ(d.verdict.text, c.text);
      EXPECT_EQ(d.check, "headers");
    }
  }
  // Off by default: no check at all.
  EXPECT_TRUE(CheckSet::build(ServerConfig{})->at(CheckStage::message).empty());
}

TEST_F(PolicyTest, WaitsForDnsThenResumesOnce) {
  dns_.deferred = true;
  dns_.set(dns_type::kMx, "mx.example", found({"mail.mx.example"}));
  auto p = make(set_of(sender_config()));
  Envelope env;
  env.sender = "a@mx.example";
  p->context().envelope = &env;
  PolicyDecision d;
  EXPECT_FALSE(p->run(CheckStage::mail, d));
  EXPECT_TRUE(p->busy());
  EXPECT_TRUE(resumed_.empty());
  dns_.answer_all();
  ASSERT_EQ(resumed_.size(), 1u);
  EXPECT_EQ(resumed_[0].stage, CheckStage::mail);
  EXPECT_EQ(resumed_[0].verdict.kind, Verdict::Kind::accept);
  EXPECT_FALSE(p->busy());
}

TEST_F(PolicyTest, PrefetchedConnectStage) {
  dns_.deferred = true;
  // Answered before the greeting asks: the decision waits for run().
  auto p = make(set_of(ptr_config(CheckAction::reject, CheckAction::off, CheckAction::off)));
  p->prefetch_connect();
  EXPECT_EQ(dns_.waiting(), 1u);
  dns_.answer_all();
  EXPECT_TRUE(resumed_.empty());
  PolicyDecision d;
  ASSERT_TRUE(p->run(CheckStage::connect, d));
  EXPECT_EQ(d.verdict.code, 554);
  // Still waiting when the greeting asks: the callback brings it.
  auto q = make(set_of(ptr_config(CheckAction::reject, CheckAction::off, CheckAction::off)));
  q->prefetch_connect();
  EXPECT_FALSE(q->run(CheckStage::connect, d));
  const size_t asked = dns_.asked.size();
  dns_.answer_all();
  ASSERT_EQ(resumed_.size(), 1u);
  EXPECT_EQ(resumed_[0].verdict.code, 554);
  EXPECT_EQ(dns_.asked.size(), asked);  // not asked twice
}

TEST_F(PolicyTest, GoingAwayCancelsLookups) {
  dns_.deferred = true;
  auto p = make(set_of(lists_config()));
  PolicyDecision d;
  EXPECT_FALSE(p->run(CheckStage::connect, d));
  EXPECT_EQ(p->context().lookups_waiting(), 3u);
  p.reset();
  EXPECT_EQ(dns_.cancels, 3);
  dns_.answer_all();  // nothing runs into the freed policy
  EXPECT_TRUE(resumed_.empty());
}

TEST_F(PolicyTest, NewClientStartsOver) {
  auto set = std::make_shared<CheckSet>();
  set->add(std::make_unique<Fixed>("a", stage_bit(CheckStage::connect), CheckResult::add(4, "a")));
  auto p = make(set);
  EXPECT_EQ(now(*p, CheckStage::connect).score, 4);
  conn_.client_ip = "198.51.100.9";
  p->reset_client();
  EXPECT_EQ(p->score(), 0);
  ASSERT_TRUE(p->context().client_addr().has_value());
  EXPECT_EQ(now(*p, CheckStage::connect).score, 4);
}

TEST_F(PolicyTest, ScoreFromOutsideTheChecksCountsAndIsNamed) {
  auto set = std::make_shared<CheckSet>();
  set->reject_score = 10;
  set->add(std::make_unique<Fixed>("h", stage_bit(CheckStage::helo), CheckResult::add(4, "h")));
  auto p = make(set);
  p->add_score(6, "talked before the greeting");
  EXPECT_EQ(now(*p, CheckStage::connect).score, 6);
  const PolicyDecision d = now(*p, CheckStage::helo);
  EXPECT_EQ(d.check, "score");
  EXPECT_NE(d.verdict.text.find("talked before the greeting"), std::string::npos);
}

TEST_F(PolicyTest, WithoutResolverDnsChecksSeeTemporaryFailure) {
  auto set = set_of(sender_config());
  Policy p(set, conn_, nullptr, [](const PolicyDecision&) {});
  Envelope env;
  env.sender = "a@mx.example";
  p.context().envelope = &env;
  PolicyDecision d;
  ASSERT_TRUE(p.run(CheckStage::mail, d));
  EXPECT_EQ(d.verdict.code, 451);
}

}  // namespace
}  // namespace ringmx

namespace ringmx {
namespace {

// A late check (like a milter) that answers when the test says.
class Later final : public Check {
 public:
  Later(std::string name, std::vector<CheckDone>& pending)
      : name_(std::move(name)), pending_(pending) {}
  std::string_view name() const override { return name_; }
  uint32_t stages() const override { return all_stages(); }
  bool late() const override { return true; }
  void start(CheckStage, CheckContext&, CheckDone done) const override {
    pending_.push_back(std::move(done));
  }

 private:
  std::string name_;
  std::vector<CheckDone>& pending_;
};

TEST_F(PolicyTest, LateChecksStartAfterTheOthersAndOnlyWhenNoneRefused) {
  std::vector<CheckDone> late;
  auto set = std::make_shared<CheckSet>();
  set->reject_score = 0;
  set->add(std::make_unique<Later>("milter_a", late));
  set->add(std::make_unique<Later>("milter_b", late));
  // Added after the late ones, yet runs before them.
  set->add(
      std::make_unique<Fixed>("early", stage_bit(CheckStage::mail),
                              CheckResult::reject(550, "5.7.1", "Error: early says no", "early")));
  set->add(std::make_unique<NoRoot>());
  ASSERT_EQ(set->at(CheckStage::rcpt).size(), 3U);
  EXPECT_EQ(set->at(CheckStage::rcpt)[0]->name(), "no_root");
  EXPECT_EQ(set->late_from(CheckStage::rcpt), 1U);
  auto p = make(set);

  // An early refusal: the late checks are never asked.
  PolicyDecision d = now(*p, CheckStage::mail);
  EXPECT_EQ(d.check, "early");
  EXPECT_TRUE(late.empty());

  // The early check passes: both late checks start, in parallel, and the
  // stage waits for both; the first refusal in configuration order decides.
  Envelope env;
  Recipient r{"user@example.org", {}};
  p->context().envelope = &env;
  p->context().rcpt = &r;
  EXPECT_FALSE(p->run(CheckStage::rcpt, d));
  ASSERT_EQ(late.size(), 2U);
  late[1](CheckResult::reject(451, "4.7.1", "Error: b later", "b"));
  EXPECT_TRUE(resumed_.empty());
  late[0](CheckResult::reject(550, "5.7.9", "Error: a no", "a"));
  ASSERT_EQ(resumed_.size(), 1U);
  EXPECT_EQ(resumed_[0].check, "milter_a");
  EXPECT_EQ(resumed_[0].verdict.code, 550);

  // root@ is refused by the early check at once: no late check runs.
  late.clear();
  Recipient root{"root@example.org", {}};
  p->context().rcpt = &root;
  d = now(*p, CheckStage::rcpt);
  EXPECT_EQ(d.check, "no_root");
  EXPECT_TRUE(late.empty());
}

TEST(MilterResult, VerdictsRepliesAndDefaultActions) {
  MilterConfig cfg;
  cfg.name = "f";
  using K = milter::StepResult::Kind;
  milter::StepResult r;
  r.kind = K::reject;
  CheckResult c = milter_result(cfg, CheckStage::rcpt, r);
  EXPECT_EQ(c.action, CheckResult::Action::reject);
  EXPECT_EQ(c.code, 550);
  EXPECT_EQ(c.enhanced, "5.7.1");
  r.kind = K::tempfail;
  EXPECT_EQ(milter_result(cfg, CheckStage::rcpt, r).code, 451);
  r.kind = K::reject;
  r.reply.code = 554;
  r.reply.enhanced = "5.7.9";
  r.reply.text = "554-5.7.9 first line\r\n554 5.7.9 second line";
  c = milter_result(cfg, CheckStage::data, r);
  EXPECT_EQ(c.code, 554);
  EXPECT_EQ(c.enhanced, "5.7.9");
  EXPECT_EQ(c.text, "first line second line");
  r = {};
  r.kind = K::shutdown;
  EXPECT_EQ(milter_result(cfg, CheckStage::mail, r).code, 421);
  for (K k : {K::cont, K::accept, K::discard}) {
    r.kind = k;
    EXPECT_EQ(milter_result(cfg, CheckStage::mail, r).action, CheckResult::Action::next);
  }
  r.kind = K::failed;
  r.error = "timed out";
  c = milter_result(cfg, CheckStage::mail, r);
  EXPECT_EQ(c.code, 451);  // default_action tempfail
  EXPECT_NE(c.reason.find("timed out"), std::string::npos);
  cfg.default_action = MilterDefault::reject;
  EXPECT_EQ(milter_result(cfg, CheckStage::mail, r).code, 550);
  cfg.default_action = MilterDefault::accept;
  EXPECT_EQ(milter_result(cfg, CheckStage::mail, r).action, CheckResult::Action::next);
}

}  // namespace
}  // namespace ringmx
