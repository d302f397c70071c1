// The MAIL FROM domain must be able to take a reply (RFC 5321 5.1): an MX,
// or failing that an A or AAAA (the implicit MX); and it must not say it
// takes no mail at all (RFC 7505 null MX: one MX of preference 0 naming
// the root). The null sender is never checked, nor is an address literal.
// Internationalised domains (SMTPUTF8 senders) are not looked up: that needs
// IDNA, and the DNS holds their A-labels.
#include <memory>
#include <string>
#include <utility>

#include "core/routes.h"
#include "pipeline/checks/builtin.h"

namespace ringmx {
namespace {

bool ascii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

class SenderCheck final : public Check {
 public:
  explicit SenderCheck(const SenderCheckConfig& cfg) : cfg_(cfg) {}

  std::string_view name() const override { return "sender"; }
  uint32_t stages() const override { return stage_bit(CheckStage::mail); }

  void start(CheckStage, CheckContext& ctx, CheckDone done) const override {
    if (ctx.envelope == nullptr || ctx.envelope->sender.empty()) return done(CheckResult::next());
    std::string domain(mailbox_domain(ctx.envelope->sender));
    if (!domain.empty() && domain.back() == '.') domain.pop_back();
    if (domain.empty() || domain.front() == '[' || !ascii(domain)) {
      return done(CheckResult::next());
    }
    ctx.lookup(dns_type::kMx, domain,
               [this, &ctx, domain, done = std::move(done)](const DnsAnswer& mx) mutable {
                 if (mx.result == DnsResult::found) {
                   if (mx.records.size() == 1 && mx.records.front().data.empty()) {
                     return done(finding(cfg_.null_mx, cfg_.score, 550, "5.7.27",
                                         "Error: sender domain " + domain +
                                             " accepts no mail (null MX), so cannot get replies",
                                         "sender null MX"));
                   }
                   return done(CheckResult::next());
                 }
                 if (mx.result == DnsResult::temp_fail) return temp(domain, done);
                 implicit_mx(ctx, domain, std::move(done));
               });
  }

 private:
  // No MX: the domain's own address records (RFC 5321 5.1).
  void implicit_mx(CheckContext& ctx, const std::string& domain, CheckDone done) const {
    ctx.lookup(
        dns_type::kA, domain,
        [this, &ctx, domain, done = std::move(done)](const DnsAnswer& a) mutable {
          if (a.result == DnsResult::found) return done(CheckResult::next());
          const bool temp_a = a.result == DnsResult::temp_fail;
          ctx.lookup(
              dns_type::kAaaa, domain,
              [this, domain, temp_a, done = std::move(done)](const DnsAnswer& aaaa) mutable {
                if (aaaa.result == DnsResult::found) {
                  return done(CheckResult::next());
                }
                if (temp_a || aaaa.result == DnsResult::temp_fail) {
                  return temp(domain, done);
                }
                done(finding(cfg_.unresolvable, cfg_.score, 550, "5.1.8",
                             "Error: sender domain " + domain + " has no MX or address record",
                             "sender domain unresolvable"));
              });
        });
  }

  void temp(const std::string& domain, const CheckDone& done) const {
    if (cfg_.dns_failure == DnsFailure::skip) return done(CheckResult::next());
    done(CheckResult::reject(451, "4.4.3",
                             "Error: cannot resolve sender domain " + domain + ", try again later",
                             "sender lookup failed"));
  }

  SenderCheckConfig cfg_;
};

}  // namespace

std::unique_ptr<Check> make_sender_check(const SenderCheckConfig& cfg) {
  if (cfg.unresolvable == CheckAction::off && cfg.null_mx == CheckAction::off) return nullptr;
  return std::make_unique<SenderCheck>(cfg);
}

}  // namespace ringmx
