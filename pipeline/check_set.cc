#include "pipeline/check_set.h"

#include <stdexcept>
#include <utility>

#include "pipeline/checks/builtin.h"
#include "pipeline/milter.h"

namespace ringmx {

std::shared_ptr<CheckSet> CheckSet::build(const ServerConfig& cfg) {
  auto set = std::make_shared<CheckSet>();
  set->reject_score = cfg.checks.reject_score;
  set->quarantine_score = cfg.checks.quarantine_score;
  set->trace_header = cfg.checks.trace_header;
  set->hostname = cfg.smtp.hostname;
  // Karma and the rates first: they answer at once from the shard's memory,
  // and a refusal of theirs spares the DNS lookups of the checks after them
  // (Policy). An allow list does not lift them (checks.rate.exempt does).
  // Then allow lists: their verdict is known when the rest is combined.
  std::unique_ptr<Check> made[] = {
      make_karma_check(cfg.checks.karma),
      make_rate_check(cfg.checks.rate),
      make_dns_list_check(cfg.checks, true),
      make_dns_list_check(cfg.checks, false),
      make_ptr_check(cfg.checks.ptr),
      make_helo_check(cfg.checks.helo),
      make_sender_check(cfg.checks.sender),
      make_headers_check(cfg.smtp.headers, cfg.smtp.limits.max_received_headers)};
  for (auto& c : made) {
    if (c) set->add(std::move(c));
  }
  // The milters, in chain order, each after the built-in checks of a stage.
  for (size_t i = 0; i < cfg.checks.milters.size(); ++i) {
    set->add(make_milter_check(cfg.checks.milters[i], i, cfg.smtp.hostname));
  }
  set->milters = cfg.checks.milters.size();
  return set;
}

void CheckSet::add(std::unique_ptr<Check> c) {
  for (const auto& have : checks_) {
    if (have->name() == c->name()) {
      throw std::invalid_argument("two checks named " + std::string(c->name()));
    }
  }
  for (size_t s = 0; s < kCheckStages; ++s) {
    if ((c->stages() & stage_bit(static_cast<CheckStage>(s))) == 0) continue;
    std::vector<const Check*>& list = by_stage_[s];
    if (c->late()) {
      list.push_back(c.get());
    } else {  // after the early ones, before the late ones
      list.insert(list.begin() + static_cast<std::ptrdiff_t>(late_from_[s]), c.get());
      ++late_from_[s];
    }
  }
  checks_.push_back(std::move(c));
}

size_t CheckSet::index_of(const Check* c) const {
  for (size_t i = 0; i < checks_.size(); ++i) {
    if (checks_[i].get() == c) return i;
  }
  return static_cast<size_t>(-1);
}

}  // namespace ringmx
