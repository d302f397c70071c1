// DNS block and allow lists (DNSBL / DNSWL, RFC 5782): the client's address,
// reversed, under each list's zone; an A answer means listed. Every list is
// asked at once; the check concludes when the last one answers.
#include <arpa/inet.h>

#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/config_load_checks.h"
#include "pipeline/checks/builtin.h"

namespace ringmx {
namespace {

struct List {
  std::string zone;
  std::string name;
  int32_t weight = 0;
  std::vector<std::pair<uint32_t, uint32_t>> codes;  // host order, inclusive
};

// Whether an answer lists the client: one of the configured codes, or with
// none configured any 127.0.0.0/8 address except 127.255.255.0/24 (lists
// answer there to say they refused the query, e.g. from a public resolver).
bool counts(const List& l, uint32_t a) {
  if (l.codes.empty()) return (a >> 24) == 127 && (a >> 8) != 0x7fffff;
  for (const auto& [first, last] : l.codes) {
    if (a >= first && a <= last) return true;
  }
  return false;
}

std::string dotted(uint32_t a) {
  return std::to_string(a >> 24) + '.' + std::to_string((a >> 16) & 255) + '.' +
         std::to_string((a >> 8) & 255) + '.' + std::to_string(a & 255);
}

class DnsListCheck final : public Check {
 public:
  DnsListCheck(std::vector<List> lists, bool allow, DnsFailure failure)
      : lists_(std::move(lists)), allow_(allow), failure_(failure) {}

  std::string_view name() const override { return allow_ ? "dnswl" : "dnsbl"; }
  uint32_t stages() const override { return stage_bit(CheckStage::connect); }

  void start(CheckStage, CheckContext& ctx, CheckDone done) const override {
    if (!ctx.client_addr()) return done(CheckResult::next());
    struct State {
      CheckDone done;
      size_t waiting = 0;
      CheckResult result;
      bool temp_failed = false;
      std::string listed;  // "name (code), ..." for the trace header
    };
    auto st = std::make_shared<State>();
    st->done = std::move(done);
    st->waiting = lists_.size();
    for (const List& l : lists_) {
      const std::string q = reverse_name(*ctx.client_addr(), l.zone);
      ctx.lookup(dns_type::kA, q, [this, &l, st, &ctx](const DnsAnswer& a) {
        answered(l, a, *st, ctx);
        if (--st->waiting == 0) finish(*st, ctx);  // may destroy ctx
      });
    }
  }

 private:
  template <class State>
  void answered(const List& l, const DnsAnswer& a, State& st, CheckContext&) const {
    if (a.result == DnsResult::temp_fail) {
      st.temp_failed = true;
      return;
    }
    if (a.result != DnsResult::found) return;
    for (const DnsRecord& r : a.records) {
      if (r.data.size() != 4) continue;
      uint32_t v = 0;
      std::memcpy(&v, r.data.data(), 4);
      v = ntohl(v);
      if (!counts(l, v)) continue;
      const int32_t w = allow_ ? -l.weight : l.weight;
      st.result.score += w;
      if (!st.result.reason.empty()) st.result.reason += ", ";
      st.result.reason += (allow_ ? "allowed by " : "listed by ") + l.name;
      if (!st.listed.empty()) st.listed += ' ';
      st.listed += l.name + "=" + dotted(v);
      return;  // one answer per list counts
    }
  }

  template <class State>
  void finish(State& st, CheckContext& ctx) const {
    const char* method = allow_ ? "x-dnswl" : "x-dnsbl";
    if (!st.listed.empty()) {
      ctx.trace.push_back(std::string(method) + (allow_ ? "=pass" : "=fail") + " (" + st.listed +
                          ")");
    } else if (st.temp_failed) {
      ctx.trace.push_back(std::string(method) + "=temperror");
    } else {
      ctx.trace.push_back(std::string(method) + "=none");
    }
    if (st.listed.empty() && st.temp_failed && failure_ == DnsFailure::tempfail) {
      CheckDone done = std::move(st.done);
      return done(CheckResult::reject(451, "4.4.3",
                                      "Error: temporary DNS failure checking your address, try "
                                      "again later",
                                      std::string(name()) + " lookup failed"));
    }
    CheckDone done = std::move(st.done);
    done(std::move(st.result));
  }

  std::vector<List> lists_;
  bool allow_;
  DnsFailure failure_;
};

}  // namespace

std::unique_ptr<Check> make_dns_list_check(const ChecksConfig& cfg, bool allow) {
  const std::vector<DnsListConfig>& src = allow ? cfg.dnswl : cfg.dnsbl;
  if (src.empty()) return nullptr;
  std::vector<List> lists;
  for (const DnsListConfig& c : src) {
    List l;
    l.zone = c.zone;
    l.name = c.name.empty() ? c.zone : c.name;
    l.weight = c.weight;
    for (const std::string& code : c.codes) {
      uint32_t a = 0;
      uint32_t b = 0;
      if (parse_dns_list_code(code, a, b)) l.codes.emplace_back(a, b);
    }
    lists.push_back(std::move(l));
  }
  return std::make_unique<DnsListCheck>(std::move(lists), allow, cfg.dnsbl_failure);
}

CheckResult finding(CheckAction action, int32_t score, uint16_t code, std::string_view enhanced,
                    std::string text, std::string reason) {
  switch (action) {
    case CheckAction::off: return CheckResult::next();
    case CheckAction::score: return CheckResult::add(score, std::move(reason));
    case CheckAction::reject:
      return CheckResult::reject(code, std::string(enhanced), std::move(text), std::move(reason));
  }
  return CheckResult::next();
}

void merge(CheckResult& into, CheckResult more) {
  into.score += more.score;
  if (!more.reason.empty() && (more.score != 0 || more.action != CheckResult::Action::next)) {
    if (!into.reason.empty()) into.reason += ", ";
    into.reason += more.reason;
  }
  if (into.action == CheckResult::Action::next && more.action != CheckResult::Action::next) {
    into.action = more.action;
    into.code = more.code;
    into.enhanced = std::move(more.enhanced);
    into.text = std::move(more.text);
  }
}

}  // namespace ringmx
