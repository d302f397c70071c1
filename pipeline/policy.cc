#include "pipeline/policy.h"

#include <algorithm>
#include <utility>

namespace ringmx {

namespace {

// The refusal text names at most this many findings (a reply line stays short).
constexpr size_t kNamedFindings = 4;
// Findings kept per stage (recipients add up: a prober's stay bounded).
constexpr size_t kKeptFindings = 16;

}  // namespace

Policy::Policy(std::shared_ptr<const CheckSet> checks, const ConnInfo& conn, DnsLookup* dns,
               Resume resume)
    : checks_(std::move(checks)), ctx_(conn, dns), resume_(std::move(resume)) {
  ctx_.our_hostname = checks_->hostname;
}

void Policy::reset_client() {
  ctx_.reset_client();
  ++generation_;
  running_ = false;
  caller_waiting_ = false;
  prefetched_ = false;
  have_prefetch_ = false;
  score_ = 0;
  extra_score_ = 0;
  extra_findings_.clear();
  for (auto& q : stage_quarantine_) q.clear();
  quarantine_reason_.clear();
  stage_score_ = {};
  for (auto& f : findings_) f.clear();
}

void Policy::add_score(int32_t score, std::string reason) {
  extra_score_ += score;
  if (score > 0 && extra_findings_.size() < kKeptFindings) {
    extra_findings_.push_back(std::move(reason));
  }
}

void Policy::prefetch_connect() {
  if (running_ || prefetched_) return;
  prefetched_ = true;
  begin(CheckStage::connect);
  if (!running_) {  // decided at once
    prefetch_ = conclude();
    have_prefetch_ = true;
  }
}

bool Policy::run(CheckStage stage, PolicyDecision& out) {
  if (stage == CheckStage::connect && prefetched_) {
    if (have_prefetch_) {
      have_prefetch_ = false;
      out = std::move(prefetch_);
      return true;
    }
    if (running_ && stage_ == CheckStage::connect) {
      caller_waiting_ = true;  // the callback brings it
      return false;
    }
  }
  begin(stage);
  if (running_) {
    caller_waiting_ = true;
    return false;
  }
  out = conclude();
  return true;
}

void Policy::begin(CheckStage stage) {
  const std::vector<const Check*>& list = checks_->at(stage);
  ++generation_;
  stage_ = stage;
  running_checks_ = list;
  results_.assign(list.size(), CheckResult{});
  done_.assign(list.size(), false);
  late_from_ = std::min(checks_->late_from(stage), list.size());
  start_checks(0, late_from_);
  if (outstanding_ == 0) start_late();
  running_ = outstanding_ != 0;
}

void Policy::start_checks(size_t from, size_t to) {
  outstanding_ = to - from;
  if (outstanding_ == 0) return;
  starting_ = true;
  const uint64_t gen = generation_;
  // While every check so far answered at once without accepting, a refusal
  // decides the stage whatever comes after it: the later checks are not
  // started (their lookups would be spent on a client already refused).
  bool settled = true;
  const bool authenticated = !ctx_.conn().login.empty();
  for (size_t i = from; i < to; ++i) {
    if (authenticated && running_checks_[i]->spares_authenticated()) {
      check_done(gen, i, CheckResult{});  // says nothing
    } else {
      running_checks_[i]->start(
          stage_, ctx_, [this, gen, i](CheckResult r) { check_done(gen, i, std::move(r)); });
    }
    if (!settled || !done_[i]) {
      settled = false;
      continue;
    }
    const CheckResult::Action a = results_[i].action;
    if (a == CheckResult::Action::accept) settled = false;
    if (a != CheckResult::Action::reject && a != CheckResult::Action::tempfail) continue;
    for (size_t j = i + 1; j < to; ++j) done_[j] = true;
    outstanding_ -= to - 1 - i;
    break;
  }
  starting_ = false;
}

// The early checks are in: the late ones start unless the stage is already
// refused (they then count as having said nothing).
void Policy::start_late() {
  const size_t n = running_checks_.size();
  if (late_from_ >= n) return;
  const size_t from = late_from_;
  late_from_ = n;
  bool accepted = false;
  for (size_t i = 0; i < from; ++i) {
    const CheckResult::Action a = results_[i].action;
    if (a == CheckResult::Action::accept) accepted = true;
    if (!accepted && (a == CheckResult::Action::reject || a == CheckResult::Action::tempfail)) {
      for (size_t j = from; j < n; ++j) done_[j] = true;
      return;
    }
  }
  start_checks(from, n);
}

void Policy::check_done(uint64_t generation, size_t slot, CheckResult r) {
  if (generation != generation_ || slot >= done_.size() || done_[slot]) return;
  done_[slot] = true;
  results_[slot] = std::move(r);
  --outstanding_;
  if (outstanding_ != 0 || starting_) return;
  start_late();
  if (outstanding_ != 0) return;
  running_ = false;
  PolicyDecision d = conclude();
  if (!caller_waiting_) {  // the connect stage, prefetched: run() will pick it up
    prefetch_ = std::move(d);
    have_prefetch_ = true;
    return;
  }
  caller_waiting_ = false;
  const Resume resume = resume_;  // the call may destroy this, its members with it
  resume(d);
}

PolicyDecision Policy::conclude() {
  PolicyDecision d;
  d.stage = stage_;
  bool accepted = false;
  const CheckResult* refusal = nullptr;
  const Check* refuser = nullptr;
  // A stage run again (EHLO after STARTTLS, the next transaction's MAIL)
  // replaces what it said before; recipients add up within a transaction.
  const auto st = static_cast<size_t>(stage_);
  if (stage_ != CheckStage::rcpt) {
    stage_score_[st] = 0;
    findings_[st].clear();
    stage_quarantine_[st].clear();
  }
  if (stage_ == CheckStage::mail) {
    // A new transaction: what the last one's recipients, data and message
    // stages said is over.
    for (CheckStage later : {CheckStage::rcpt, CheckStage::data, CheckStage::message}) {
      const auto i = static_cast<size_t>(later);
      stage_score_[i] = 0;
      findings_[i].clear();
      stage_quarantine_[i].clear();
    }
  }
  for (size_t i = 0; i < results_.size(); ++i) {
    const CheckResult& r = results_[i];
    stage_score_[st] += r.score;
    if (r.score > 0 && findings_[st].size() < kKeptFindings) findings_[st].push_back(r.reason);
    if (r.action == CheckResult::Action::quarantine && stage_quarantine_[st].empty()) {
      stage_quarantine_[st] = std::string(running_checks_[i]->name()) + ": " + r.reason;
    }
    if (accepted || refusal != nullptr) continue;
    if (r.action == CheckResult::Action::accept) {
      accepted = true;
    } else if (r.action == CheckResult::Action::reject ||
               r.action == CheckResult::Action::tempfail) {
      refusal = &r;
      refuser = running_checks_[i];
    }
  }
  score_ = extra_score_;
  for (int32_t x : stage_score_) score_ += x;
  d.score = score_;
  if (refusal != nullptr) {
    uint16_t code = refusal->code;
    // A refused connection gets the greeting RFC 5321 3.1 allows for it
    // (554: only QUIT is served), or 421 and the close for a temporary one.
    if (stage_ == CheckStage::connect) code = code >= 500 ? 554 : 421;
    d.verdict = Verdict::reject(code, refusal->enhanced, refusal->text);
    d.check = std::string(refuser->name());
    d.reason = refusal->reason;
  } else if (!accepted && checks_->reject_score > 0 && score_ >= checks_->reject_score) {
    std::string text = "Error: refused by policy (";
    d.reason = "score " + std::to_string(score_) + ":";
    size_t n = 0;
    for (const std::string& f : extra_findings_) {
      if (n < kNamedFindings) text += (n ? ", " : "") + f;
      d.reason += (n ? ", " : " ") + f;
      ++n;
    }
    for (const auto& stage_findings : findings_) {
      for (const std::string& f : stage_findings) {
        if (n < kNamedFindings) text += (n ? ", " : "") + f;
        d.reason += (n ? ", " : " ") + f;
        ++n;
      }
    }
    if (n > kNamedFindings) text += ", ...";
    text += ')';
    const bool at_connect = stage_ == CheckStage::connect;
    d.verdict = Verdict::reject(at_connect ? 554 : 550, "5.7.1", std::move(text));
    d.check = "score";
  }
  quarantine_reason_.clear();
  for (const std::string& q : stage_quarantine_) {
    if (!q.empty()) {
      quarantine_reason_ = q;
      break;
    }
  }
  if (quarantine_reason_.empty() && checks_->quarantine_score > 0 &&
      score_ >= checks_->quarantine_score) {
    quarantine_reason_ = "score " + std::to_string(score_);
  }
  d.quarantine = !quarantine_reason_.empty();
  results_.clear();
  done_.clear();
  running_checks_.clear();
  return d;
}

}  // namespace ringmx
