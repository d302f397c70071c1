// Milters in the check pipeline. Each [[milter]] is a late Check
// (pipeline/check.h): it runs at every stage after the built-in checks pass,
// over a channel of its own per SMTP connection that the shard opens on its
// ring (net/milter_link.cc) and that carries a milter::MilterClient
// (core/milter_client.h). The check turns the SMTP session's stages into
// the client's steps and their results into CheckResults; at the end of the
// message it leaves the milter's modifications in ctx.milter_edits, which
// the shard applies (core/message_edits.h) before spooling.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/check_config.h"
#include "core/milter_client.h"
#include "pipeline/check.h"

namespace ringmx {

// One milter's connection for one SMTP connection. Destroying it ends the
// conversation (QUIT) and closes the socket; a step's `done` never runs
// after that.
class MilterChannel {
 public:
  virtual ~MilterChannel() = default;
  virtual milter::MilterClient& client() = 0;
  // The step just asked of client() goes out: `done` gets its result, at
  // once when there already is one.
  virtual void run(std::function<void(milter::StepResult)> done) = 0;

 protected:
  MilterChannel() = default;
  MilterChannel(const MilterChannel&) = default;
  MilterChannel& operator=(const MilterChannel&) = default;
};

// The shard's side of the milters.
class MilterConnector {
 public:
  virtual ~MilterConnector() = default;
  // A channel to the milter `cfg` (the `index`-th of the chain), connecting now.
  virtual std::unique_ptr<MilterChannel> open(const MilterConfig& cfg, size_t index) = 0;
  // Counts a step's outcome (metrics): `stage` as check_stage_name, the
  // result, its latency.
  virtual void count(size_t index, CheckStage stage, const milter::StepResult& r,
                     int64_t latency_ns) = 0;
  virtual int64_t now_ns() = 0;

 protected:
  MilterConnector() = default;
  MilterConnector(const MilterConnector&) = default;
  MilterConnector& operator=(const MilterConnector&) = default;
};

// The check of the `index`-th milter. `hostname`: the server's name (macro j).
std::unique_ptr<Check> make_milter_check(const MilterConfig& cfg, size_t index,
                                         std::string hostname);

// The CheckResult a milter's step result makes (exposed for the tests).
CheckResult milter_result(const MilterConfig& cfg, CheckStage stage, const milter::StepResult& r);

}  // namespace ringmx
