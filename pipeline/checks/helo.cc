// The HELO/EHLO name (RFC 5321 4.1.1.1: the client's FQDN, or an address
// literal when it has none). The session has already refused what is not a
// name or a literal at all; this looks at what bots say instead: a bare
// address, a name without a dot, our own name, a literal that is not the
// client's address, a name that does not resolve.
#include <memory>
#include <string>
#include <utility>

#include "core/command.h"
#include "pipeline/checks/builtin.h"

namespace ringmx {
namespace {

// "[192.0.2.1]" or "[IPv6:2001:db8::1]" -> the address text; empty otherwise.
std::string_view literal_address(std::string_view helo) {
  if (helo.size() < 3 || helo.front() != '[' || helo.back() != ']') return {};
  std::string_view inner = helo.substr(1, helo.size() - 2);
  if (starts_with_nocase(inner, "IPv6:")) inner.remove_prefix(5);
  return inner;
}

class HeloCheck final : public Check {
 public:
  explicit HeloCheck(const HeloCheckConfig& cfg) : cfg_(cfg) {}

  std::string_view name() const override { return "helo"; }
  uint32_t stages() const override { return stage_bit(CheckStage::helo); }

  void start(CheckStage, CheckContext& ctx, CheckDone done) const override {
    std::string_view helo = ctx.helo;
    // A name may end in a dot (an absolute name); it is the same name.
    if (!helo.empty() && helo.back() == '.') helo.remove_suffix(1);
    const std::string shown(helo);
    CheckResult r;
    const std::string_view lit = literal_address(helo);
    const ConnInfo& ci = ctx.conn();
    if (!lit.empty()) {
      const auto addr = parse_ip(lit);
      const bool ours = addr && !ci.server_ip.empty() && parse_ip(ci.server_ip) == addr;
      if (ours) {
        merge(r, finding(cfg_.ours, cfg_.score, 550, "5.7.1",
                         "Error: HELO/EHLO " + shown + " is my address, not yours",
                         "HELO our address"));
      } else if (!addr || !ctx.client_addr() || *addr != *ctx.client_addr()) {
        merge(r,
              finding(cfg_.literal_mismatch, cfg_.score, 550, "5.7.1",
                      "Error: HELO/EHLO " + shown + " is not your address [" + ci.client_ip + "]",
                      "HELO literal not the client"));
      }
      return done(std::move(r));
    }
    if (const auto addr = parse_ip(helo)) {
      if (!ci.server_ip.empty() && parse_ip(ci.server_ip) == addr) {
        merge(r, finding(cfg_.ours, cfg_.score, 550, "5.7.1",
                         "Error: HELO/EHLO " + shown + " is my address, not yours",
                         "HELO our address"));
      }
      merge(r, finding(cfg_.bare_ip, cfg_.score, 550, "5.7.1",
                       "Error: HELO/EHLO " + shown +
                           ": an address must be written as a literal, [" + shown + "]",
                       "HELO bare address"));
      return done(std::move(r));
    }
    if (!ctx.our_hostname.empty() && equals_nocase(helo, ctx.our_hostname)) {
      merge(r, finding(cfg_.ours, cfg_.score, 550, "5.7.1",
                       "Error: HELO/EHLO " + shown + " is my name, not yours", "HELO our name"));
    }
    if (helo.find('.') == std::string_view::npos) {
      merge(r, finding(cfg_.not_fqdn, cfg_.score, 550, "5.7.1",
                       "Error: HELO/EHLO " + shown + " is not a fully qualified domain name",
                       "HELO not FQDN"));
    }
    if (cfg_.unresolvable == CheckAction::off || r.action != CheckResult::Action::next ||
        helo.find('.') == std::string_view::npos) {
      return done(std::move(r));
    }
    // Resolvable: an A, else an AAAA.
    auto st = std::make_shared<std::pair<CheckResult, CheckDone>>(std::move(r), std::move(done));
    ctx.lookup(dns_type::kA, helo, [this, &ctx, st, shown](const DnsAnswer& a) {
      if (a.result == DnsResult::found) return finish(*st, CheckResult::next());
      const bool temp = a.result == DnsResult::temp_fail;
      ctx.lookup(dns_type::kAaaa, shown, [this, st, shown, temp](const DnsAnswer& b) {
        if (b.result == DnsResult::found) return finish(*st, CheckResult::next());
        if (temp || b.result == DnsResult::temp_fail) {
          if (cfg_.dns_failure == DnsFailure::skip) return finish(*st, CheckResult::next());
          return finish(*st, CheckResult::reject(
                                 450, "4.7.1",
                                 "Error: cannot resolve HELO/EHLO " + shown + ", try again later",
                                 "HELO lookup failed"));
        }
        finish(*st,
               finding(cfg_.unresolvable, cfg_.score, 550, "5.7.1",
                       "Error: HELO/EHLO " + shown + " does not resolve", "HELO unresolvable"));
      });
    });
  }

 private:
  static void finish(std::pair<CheckResult, CheckDone>& st, CheckResult more) {
    merge(st.first, std::move(more));
    CheckDone d = std::move(st.second);
    d(std::move(st.first));
  }

  HeloCheckConfig cfg_;
};

}  // namespace

std::unique_ptr<Check> make_helo_check(const HeloCheckConfig& cfg) {
  if (cfg.bare_ip == CheckAction::off && cfg.not_fqdn == CheckAction::off &&
      cfg.ours == CheckAction::off && cfg.literal_mismatch == CheckAction::off &&
      cfg.unresolvable == CheckAction::off) {
    return nullptr;
  }
  return std::make_unique<HeloCheck>(cfg);
}

}  // namespace ringmx
