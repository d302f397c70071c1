// Karma: the penalty points a client's recent refusals left in this shard's
// memory (core/client_memory.h; the shard adds them when a connection ends,
// net/shard.cc maybe_free). At reject_penalty or more the client is refused
// at connect, for now (421 4.7.0: the points decay, and a legitimate server
// that was wrongly refused should retry, not bounce). Below that,
// score_weight percent of the points go to the connection's score.
//
// This check answers at once, so when it refuses, the policy starts none of
// the connect checks after it (pipeline/policy.cc): no DNS lookup is spent
// on such a client. It runs first (pipeline/check_set.cc).
#include <cmath>
#include <memory>
#include <string>

#include "pipeline/checks/builtin.h"

namespace ringmx {
namespace {

class KarmaCheck final : public Check {
 public:
  explicit KarmaCheck(const KarmaConfig& cfg) : cfg_(cfg) {}

  std::string_view name() const override { return "karma"; }
  uint32_t stages() const override { return stage_bit(CheckStage::connect); }

  void start(CheckStage, CheckContext& ctx, CheckDone done) const override {
    ctx.karma_score = 0;
    ClientMemory* mem = ctx.clients;
    if (mem == nullptr || !ctx.client_addr() || mem->exempt(*ctx.client_addr())) {
      return done(CheckResult::next());
    }
    const double points = mem->karma(*ctx.client_addr(), mem->now_ms());
    if (points <= 0) return done(CheckResult::next());
    const auto shown = static_cast<int64_t>(std::floor(points));
    if (points >= cfg_.reject_penalty) {
      return done(CheckResult::reject(421, "4.7.0",
                                      "Error: too many recent refusals from your address, "
                                      "try again later",
                                      "karma " + std::to_string(shown)));
    }
    const auto add = static_cast<int32_t>(std::floor(points * cfg_.score_weight / 100.0));
    if (add <= 0) return done(CheckResult::next());
    ctx.karma_score = add;
    done(CheckResult::add(add, "karma " + std::to_string(shown)));
  }

 private:
  KarmaConfig cfg_;
};

}  // namespace

std::unique_ptr<Check> make_karma_check(const KarmaConfig& cfg) {
  if (!cfg.enabled) return nullptr;
  return std::make_unique<KarmaCheck>(cfg);
}

}  // namespace ringmx
