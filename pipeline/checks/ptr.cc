// The client's reverse DNS (RFC 8601 2.7.3, "iprev"): its PTR names, and
// whether one of them resolves back to the client's address (forward-
// confirmed reverse DNS). At most kMaxNames names are confirmed, all at once.
// What it finds goes into ctx.iprev for the trace header and the Received
// header, whatever the actions say.
#include <memory>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "core/address.h"
#include "pipeline/checks/builtin.h"

namespace ringmx {
namespace {

// A PTR record set larger than this is unusual; the rest are not confirmed.
constexpr size_t kMaxNames = 5;

class PtrCheck final : public Check {
 public:
  explicit PtrCheck(const PtrCheckConfig& cfg) : cfg_(cfg) {
    for (const std::string& p : cfg.dynamic_patterns) {
      patterns_.emplace_back(p, std::regex::ECMAScript | std::regex::icase | std::regex::optimize);
    }
  }

  std::string_view name() const override { return "ptr"; }
  uint32_t stages() const override { return stage_bit(CheckStage::connect); }

  void start(CheckStage, CheckContext& ctx, CheckDone done) const override {
    if (!ctx.client_addr()) return done(CheckResult::next());
    const IpBytes ip = *ctx.client_addr();
    ctx.lookup(dns_type::kPtr, reverse_name(ip),
               [this, &ctx, done = std::move(done)](const DnsAnswer& a) mutable {
                 on_ptr(ctx, a, std::move(done));
               });
  }

 private:
  struct State {
    CheckDone done;
    std::vector<std::string> names;
    size_t waiting = 0;
    bool temp_failed = false;
    std::string verified;
  };

  static bool is_v4(const IpBytes& ip) {
    static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::equal(std::begin(kMapped), std::end(kMapped), ip.begin());
  }

  void on_ptr(CheckContext& ctx, const DnsAnswer& a, CheckDone done) const {
    if (a.result == DnsResult::temp_fail) {
      ctx.iprev.state = IprevFacts::State::temperror;
      return conclude(ctx, done, true);
    }
    if (a.result == DnsResult::not_found || a.records.empty()) {
      ctx.iprev.state = IprevFacts::State::permerror;  // RFC 8601: no PTR at all
      return conclude(ctx, done, false);
    }
    ctx.iprev.has_ptr = true;
    auto st = std::make_shared<State>();
    st->done = std::move(done);
    for (const DnsRecord& r : a.records) {
      if (st->names.size() == kMaxNames) break;
      // A name goes into the Received and trace headers and the logs: only
      // host names (letters, digits, '-', '.'), never whatever octets a
      // hostile reverse zone serves (a CR LF would forge header lines).
      if (r.data.empty() || !is_valid_domain(r.data, false) || r.data.front() == '[') continue;
      st->names.push_back(r.data);
    }
    if (!st->names.empty()) ctx.iprev.ptr_name = st->names.front();
    if (st->names.empty()) {
      ctx.iprev.state = IprevFacts::State::fail;
      CheckDone d = std::move(st->done);
      return conclude(ctx, d, false);
    }
    const IpBytes ip = *ctx.client_addr();
    const bool v4 = is_v4(ip);
    st->waiting = st->names.size();
    for (const std::string& n : st->names) {
      ctx.lookup(v4 ? dns_type::kA : dns_type::kAaaa, n,
                 [this, &ctx, st, n, ip, v4](const DnsAnswer& fa) {
                   if (fa.result == DnsResult::temp_fail) st->temp_failed = true;
                   if (fa.result == DnsResult::found && st->verified.empty()) {
                     for (const DnsRecord& r : fa.records) {
                       if (matches(r.data, ip, v4)) {
                         st->verified = n;
                         break;
                       }
                     }
                   }
                   if (--st->waiting != 0) return;
                   if (!st->verified.empty()) {
                     ctx.iprev.state = IprevFacts::State::pass;
                     ctx.iprev.verified_name = st->verified;
                   } else {
                     ctx.iprev.state =
                         st->temp_failed ? IprevFacts::State::temperror : IprevFacts::State::fail;
                   }
                   CheckDone d = std::move(st->done);
                   conclude(ctx, d, st->verified.empty() && st->temp_failed);
                 });
    }
  }

  static bool matches(const std::string& data, const IpBytes& ip, bool v4) {
    if (v4)
      return data.size() == 4 &&
             std::equal(data.begin(), data.end(), ip.begin() + 12,
                        [](char c, uint8_t b) { return static_cast<uint8_t>(c) == b; });
    return data.size() == 16 &&
           std::equal(data.begin(), data.end(), ip.begin(),
                      [](char c, uint8_t b) { return static_cast<uint8_t>(c) == b; });
  }

  void conclude(CheckContext& ctx, const CheckDone& done, bool temp_failed) const {
    const IprevFacts& f = ctx.iprev;
    const std::string& ip = ctx.conn().client_ip;
    std::string trace = "iprev=";
    switch (f.state) {
      case IprevFacts::State::pass: trace += "pass"; break;
      case IprevFacts::State::fail: trace += "fail"; break;
      case IprevFacts::State::temperror: trace += "temperror"; break;
      default: trace += "permerror"; break;
    }
    trace += " policy.iprev=" + ip;
    if (!f.verified_name.empty()) trace += " (" + f.verified_name + ")";
    ctx.trace.push_back(std::move(trace));

    if (temp_failed) {
      if (cfg_.dns_failure == DnsFailure::skip) return done(CheckResult::next());
      return done(CheckResult::reject(
          450, "4.7.25", "Error: cannot check the reverse DNS of [" + ip + "], try again later",
          "reverse DNS lookup failed"));
    }
    CheckResult r;
    if (!f.has_ptr) {
      merge(r, finding(cfg_.missing, cfg_.score, 550, "5.7.25",
                       "Error: client [" + ip + "] has no reverse DNS (PTR) name", "no PTR"));
    } else if (f.state != IprevFacts::State::pass) {
      merge(r, finding(cfg_.unconfirmed, cfg_.score, 550, "5.7.25",
                       "Error: the reverse DNS name of [" + ip + "] does not resolve back to it",
                       "PTR not confirmed"));
    }
    const std::string& shown = f.verified_name.empty() ? f.ptr_name : f.verified_name;
    if (!shown.empty() && cfg_.dynamic != CheckAction::off) {
      for (const std::regex& re : patterns_) {
        if (!std::regex_search(shown, re)) continue;
        merge(r, finding(cfg_.dynamic, cfg_.score, 550, "5.7.1",
                         "Error: client name " + shown +
                             " looks like a dynamic address; send through your provider's relay",
                         "dynamic PTR " + shown));
        break;
      }
    }
    done(std::move(r));
  }

  PtrCheckConfig cfg_;
  std::vector<std::regex> patterns_;
};

}  // namespace

std::unique_ptr<Check> make_ptr_check(const PtrCheckConfig& cfg) {
  if (cfg.missing == CheckAction::off && cfg.unconfirmed == CheckAction::off &&
      cfg.dynamic == CheckAction::off) {
    return nullptr;
  }
  return std::make_unique<PtrCheck>(cfg);
}

}  // namespace ringmx
