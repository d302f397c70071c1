// One connection's way through the checks (pipeline/check.h): runs every
// check of a stage at once (their DNS lookups in parallel), then combines
// their results in the order the checks were configured:
//   - the first refusal (reject or tempfail) decides, unless an earlier
//     check accepted the stage; a refusal known at once (every check before
//     it answered at once, none accepting) starts none of the checks after it;
//   - every score counts, whatever the action; when the connection's score
//     reaches checks.reject_score the stage is refused (550 5.7.1, or 554
//     at connect) naming the findings that added to it.
// A stage decided at once is returned at once; one that waits for DNS is
// handed to the resume callback later. Late checks (Check::late(): the
// milters) start once the others have answered, and only when none of them
// refused. Shard thread only.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/session.h"
#include "pipeline/check.h"
#include "pipeline/check_set.h"

namespace ringmx {

struct PolicyDecision {
  CheckStage stage = CheckStage::connect;
  Verdict verdict;     // accept, or the refusal to send
  std::string check;   // which check refused ("score": the total did); empty on accept
  std::string reason;  // why, for the log line
  int32_t score = 0;   // the connection's score after the stage
  // Accepted mail from here on is held (Policy::quarantined()).
  bool quarantine = false;
};

class Policy {
 public:
  // Runs with the decision of a stage that had to wait. It is the last
  // thing the policy does for that stage: the callee may destroy the Policy.
  using Resume = std::function<void(const PolicyDecision&)>;

  Policy(std::shared_ptr<const CheckSet> checks, const ConnInfo& conn, DnsLookup* dns,
         Resume resume);
  Policy(const Policy&) = delete;
  Policy& operator=(const Policy&) = delete;

  // Runs the checks of `stage`. True: decided now, in `out`. False: the
  // decision comes through the resume callback.
  bool run(CheckStage stage, PolicyDecision& out);
  // Starts the connect checks early (during the greeting delay); run()
  // picks up their decision.
  void prefetch_connect();
  bool busy() const { return running_; }
  // The connect stage, started early, is already decided: refused.
  bool connect_refused() const {
    return have_prefetch_ && prefetch_.verdict.kind != Verdict::Kind::accept;
  }
  // The client changed (XCLIENT): score, facts and lookups start over.
  void reset_client();

  // A finding made outside the checks (a client that talked before the
  // greeting): counts from the next stage decided on.
  void add_score(int32_t score, std::string reason);

  CheckContext& context() { return ctx_; }
  int32_t score() const { return score_; }
  // The mail of the transaction in progress is to be held: a check said so
  // (at connect or HELO: every transaction of the connection), or the score
  // reached checks.quarantine_score. Empty when not.
  const std::string& quarantined() const { return quarantine_reason_; }
  const CheckSet& checks() const { return *checks_; }

 private:
  void begin(CheckStage stage);
  void start_checks(size_t from, size_t to);
  void start_late();
  void check_done(uint64_t generation, size_t slot, CheckResult r);
  PolicyDecision conclude();

  std::shared_ptr<const CheckSet> checks_;
  CheckContext ctx_;
  Resume resume_;
  int32_t score_ = 0;
  std::array<int32_t, kCheckStages> stage_score_{};
  int32_t extra_score_ = 0;                                 // add_score()
  std::array<std::string, kCheckStages> stage_quarantine_;  // a check's reason, by stage
  std::string quarantine_reason_;
  std::vector<std::string> extra_findings_;
  // Findings that added to the score, for the refusal text, by stage.
  std::array<std::vector<std::string>, kCheckStages> findings_;

  // The stage in flight.
  CheckStage stage_ = CheckStage::connect;
  bool running_ = false;
  bool starting_ = false;        // inside begin(): completions only record
  bool caller_waiting_ = false;  // run() said "later": the resume callback is owed
  bool prefetched_ = false;      // the connect stage ran (or runs) ahead of run()
  bool have_prefetch_ = false;   // ... and its decision waits in prefetch_
  PolicyDecision prefetch_;
  uint64_t generation_ = 0;
  size_t outstanding_ = 0;
  size_t late_from_ = 0;  // the stage's late checks not yet started begin here
  std::vector<const Check*> running_checks_;
  std::vector<CheckResult> results_;
  std::vector<bool> done_;
};

}  // namespace ringmx
