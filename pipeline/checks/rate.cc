// Per-client rates over the last minute: connections (at connect), MAIL
// commands and RCPT commands, each against this shard's share of its limit
// (core/client_memory.h). What is over is refused for now (4.7.0); what is
// refused is not counted, so a client that keeps trying regains its share
// as the minute moves on. Counted when this check passes it, whatever later
// checks of the stage decide.
#include <memory>
#include <string>

#include "pipeline/checks/builtin.h"

namespace ringmx {
namespace {

class RateCheck final : public Check {
 public:
  explicit RateCheck(const RateCheckConfig& cfg) : cfg_(cfg) {}

  std::string_view name() const override { return "rate"; }
  bool spares_authenticated() const override { return false; }  // own users too
  uint32_t stages() const override {
    uint32_t s = 0;
    if (cfg_.connections_per_minute) s |= stage_bit(CheckStage::connect);
    if (cfg_.messages_per_minute) s |= stage_bit(CheckStage::mail);
    if (cfg_.recipients_per_minute) s |= stage_bit(CheckStage::rcpt);
    return s;
  }

  void start(CheckStage stage, CheckContext& ctx, CheckDone done) const override {
    ClientMemory* mem = ctx.clients;
    if (mem == nullptr || !ctx.client_addr() || mem->exempt(*ctx.client_addr())) {
      return done(CheckResult::next());
    }
    const IpBytes& ip = *ctx.client_addr();
    const int64_t now = mem->now_ms();
    switch (stage) {
      case CheckStage::connect:
        if (mem->allow(ClientMemory::Kind::connection, ip, now)) break;
        return done(CheckResult::reject(
            421, "4.7.0", "Error: too many connections from your address, try again later",
            over("connections", mem->share(ClientMemory::Kind::connection))));
      case CheckStage::mail:
        if (mem->allow(ClientMemory::Kind::message, ip, now)) break;
        return done(CheckResult::reject(
            452, "4.7.0", "Error: too many messages from your address, try again later",
            over("messages", mem->share(ClientMemory::Kind::message))));
      case CheckStage::rcpt:
        if (mem->allow(ClientMemory::Kind::recipient, ip, now)) break;
        return done(CheckResult::reject(
            452, "4.7.0", "Error: too many recipients from your address, try again later",
            over("recipients", mem->share(ClientMemory::Kind::recipient))));
      default: break;
    }
    done(CheckResult::next());
  }

 private:
  static std::string over(const char* what, uint32_t share) {
    return std::string(what) + " per minute over " + std::to_string(share) +
           " (this shard's share)";
  }

  RateCheckConfig cfg_;
};

}  // namespace

std::unique_ptr<Check> make_rate_check(const RateCheckConfig& cfg) {
  if (cfg.connections_per_minute == 0 && cfg.messages_per_minute == 0 &&
      cfg.recipients_per_minute == 0) {
    return nullptr;
  }
  return std::make_unique<RateCheck>(cfg);
}

}  // namespace ringmx
