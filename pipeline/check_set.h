// The checks of one configuration, in the order they run, built once per
// (re)load and shared read-only by every connection.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "pipeline/check.h"

namespace ringmx {

class CheckSet {
 public:
  CheckSet() = default;
  // The built-in checks the config turns on (pipeline/checks/), in a fixed
  // order: DNS lists, PTR, HELO, sender.
  static std::shared_ptr<CheckSet> build(const ServerConfig& cfg);

  // Appends a check (a user's own, or a test's). Its name must be unique.
  void add(std::unique_ptr<Check> c);

  // A stage's checks: the early ones first, then (from late_from()) the late ones.
  const std::vector<const Check*>& at(CheckStage s) const {
    return by_stage_[static_cast<size_t>(s)];
  }
  size_t late_from(CheckStage s) const { return late_from_[static_cast<size_t>(s)]; }
  const std::vector<std::unique_ptr<Check>>& all() const { return checks_; }
  size_t size() const { return checks_.size(); }
  // Position of a check in all() (its metric slot); npos if unknown.
  size_t index_of(const Check* c) const;

  int32_t reject_score = 0;      // 0: scores never refuse
  int32_t quarantine_score = 0;  // 0: scores never quarantine
  bool trace_header = false;
  size_t milters = 0;    // [[milter]] checks (the last ones added by build())
  std::string hostname;  // our name: the trace header's authserv-id, the HELO check's "ours"

 private:
  std::vector<std::unique_ptr<Check>> checks_;
  std::array<std::vector<const Check*>, kCheckStages> by_stage_;
  std::array<size_t, kCheckStages> late_from_{};
};

}  // namespace ringmx
