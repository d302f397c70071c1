// The built-in checks (one file each in pipeline/checks/), made from the
// config. Each returns null when the config leaves it nothing to do.
#pragma once

#include <memory>

#include "core/check_config.h"
#include "core/session_config.h"
#include "pipeline/check.h"

namespace ringmx {

// [[dnsbl]] or [[dnswl]] (`allow`): every list looked up at connect, at once.
std::unique_ptr<Check> make_dns_list_check(const ChecksConfig& cfg, bool allow);
// [checks.ptr]: PTR, forward confirmation, dynamic-looking names.
std::unique_ptr<Check> make_ptr_check(const PtrCheckConfig& cfg);
// [checks.helo]
std::unique_ptr<Check> make_helo_check(const HeloCheckConfig& cfg);
// [checks.sender]: MX / implicit MX / null MX of the MAIL FROM domain.
std::unique_ptr<Check> make_sender_check(const SenderCheckConfig& cfg);

// [checks.rate]: connections (connect), messages (MAIL) and recipients
// (RCPT) per minute per client address, counted in ctx.clients.
std::unique_ptr<Check> make_rate_check(const RateCheckConfig& cfg);
// [checks.karma]: a client with too many recent refusals (ctx.clients) is
// refused at connect; fewer add to its score.
std::unique_ptr<Check> make_karma_check(const KarmaConfig& cfg);

// [headers]: the header section at the end of each message.
std::unique_ptr<Check> make_headers_check(const HeaderRules& rules, uint32_t max_received);

// A finding under `action`: nothing (off), `score` added, or the refusal.
CheckResult finding(CheckAction action, int32_t score, uint16_t code, std::string_view enhanced,
                    std::string text, std::string reason);
// Merges a finding into what a check has found so far: scores add up, the
// first refusal stays.
void merge(CheckResult& into, CheckResult more);

}  // namespace ringmx
