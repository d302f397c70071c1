// The header rules ([headers], core/header_check.h) at the end of each
// message: From and Date present, no field that may appear once appearing
// twice (RFC 5322 3.6). Of a body streamed to disk, the head the session
// kept (64 KiB) is looked at.
#include <memory>
#include <string>
#include <utility>

#include "core/header_check.h"
#include "pipeline/checks/builtin.h"

namespace ringmx {
namespace {

class HeadersCheck final : public Check {
 public:
  HeadersCheck(const HeaderRules& rules, uint32_t max_received) {
    opts_.require_from = rules.require_from;
    opts_.require_date = rules.require_date;
    opts_.reject_duplicates = rules.reject_duplicates;
    // The session refused more Received fields than this already (a loop).
    opts_.max_received = max_received;
    opts_.max_header_bytes = size_t{64} * 1024;
  }

  std::string_view name() const override { return "headers"; }
  uint32_t stages() const override { return stage_bit(CheckStage::message); }

  void start(CheckStage, CheckContext& ctx, CheckDone done) const override {
    if (ctx.message == nullptr) return done(CheckResult::next());
    const Message& m = *ctx.message;
    const HeaderCheckResult r = check_headers(m.spilled ? m.spilled_head : m.body.view(), opts_);
    if (r.ok()) return done(CheckResult::next());
    HeaderReply reply = header_check_reply(r);
    std::string reason(reply.text);
    done(CheckResult::reject(reply.code, std::string(reply.enhanced), std::move(reply.text),
                             std::move(reason)));
  }

 private:
  HeaderCheckOptions opts_;
};

}  // namespace

std::unique_ptr<Check> make_headers_check(const HeaderRules& rules, uint32_t max_received) {
  if (!rules.any()) return nullptr;
  return std::make_unique<HeadersCheck>(rules, max_received);
}

}  // namespace ringmx
