// The shard's milter connections (pipeline/milter.h MilterConnector): one
// socket per milter per SMTP connection, on the shard's ring through a
// ClientStream, carrying a milter::MilterClient, with its deadline on the
// shard's timer wheel. No thread and no blocking call: connect, send and
// receive are ring operations.
//
// A link lives until its stream is released. The channel handed to the
// check pipeline is a handle: when the SMTP connection goes (or its client
// changes), the handle is destroyed, the link says QUIT and closes once the
// QUIT is out (or at once, when it was not yet connected or has failed), and
// is freed when no ring operation points at it any more. With
// reuse_connections, a healthy link says QUIT_NC instead and waits, idle, in
// its milter's pool (at most max_idle_connections, for idle_timeout_ms) for
// the next session of this shard that asks for that milter. A step's callback
// never runs after its handle is gone. Shard thread only.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/check_config.h"
#include "core/metrics.h"
#include "pipeline/milter.h"

namespace ringmx {

class Shard;
struct MilterLink;

class MilterLinks final : public MilterConnector {
 public:
  explicit MilterLinks(Shard& shard) : shard_(shard) {}
  MilterLinks(const MilterLinks&) = delete;
  MilterLinks& operator=(const MilterLinks&) = delete;
  // Frees every link left (after the ring is gone: no completion can come).
  ~MilterLinks() override;

  std::unique_ptr<MilterChannel> open(const MilterConfig& cfg, size_t index) override;
  void count(size_t index, CheckStage stage, const milter::StepResult& r,
             int64_t latency_ns) override;
  int64_t now_ns() override;

  // Links alive, closing ones included.
  size_t links() const { return live_; }
  Shard& shard() { return shard_; }

  // Idle links kept for later sessions (reuse_connections).
  size_t idle_links() const;

  // Used by the links.
  void add(MilterLink* l);
  void remove(MilterLink* l);
  // An idle link joins its milter's pool (false: the pool is full) or leaves it.
  bool park(MilterLink* l);
  void unpark(MilterLink* l);

 private:
  Shard& shard_;
  MilterLink* head_ = nullptr;  // intrusive list of live links
  size_t live_ = 0;
  std::array<std::vector<MilterLink*>, kMaxMilters> idle_;  // by milter index
};

}  // namespace ringmx
