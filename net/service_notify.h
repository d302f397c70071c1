// The service manager's side of the daemon (systemd Type=notify, through
// libsystemd's sd_notify): READY, RELOADING, STOPPING, STATUS lines and the
// watchdog. Main thread only. Without $NOTIFY_SOCKET every call is a no-op.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ringmx {

// One shard's pulse as the main thread samples it: its event loop's iteration
// counter (ringmx_shard_loop_iterations_total) and whether its thread ended.
struct ShardPulse {
  uint64_t loops = 0;
  bool finished = false;
};

// When to feed the service manager's watchdog: every half interval, and only
// while every shard's loop has moved within `stall_ms` (an idle shard still
// wakes once a second for its disk check, so a counter that stands still
// means a loop stuck in a call). A shard whose thread has ended counts as
// healthy: during a drain they end one by one; outside one the daemon exits.
// Pure: time is passed in.
class ShardWatchdog {
 public:
  // The longest a live shard's loop may stand still, given the watchdog
  // interval: half of it, but never under kMinStallMs.
  static constexpr int64_t kMinStallMs = 3000;
  ShardWatchdog(int64_t interval_ms, int64_t now_ms);

  // Takes one sample of every shard (same order each time); true when a
  // WATCHDOG=1 is due now and every shard is alive.
  bool sample(int64_t now_ms, std::span<const ShardPulse> shards);
  // When sample() should run next: the next ping, or soon again while a shard
  // stands still (the pings resume once it moves).
  int64_t next_ms() const;
  int64_t stall_ms() const { return stall_ms_; }
  // The first shard that stood still past stall_ms at the last sample; -1: none.
  int stalled_shard() const { return stalled_; }

 private:
  int64_t period_ms_;
  int64_t stall_ms_;
  int64_t next_ping_ms_;
  int64_t last_sample_ms_;
  int stalled_ = -1;
  std::vector<uint64_t> last_loops_;
  std::vector<int64_t> last_change_ms_;
};

class ServiceNotify {
 public:
  // Reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID (left set).
  ServiceNotify();

  bool enabled() const { return enabled_; }
  // The watchdog interval the manager asked for; 0 when it asked for none.
  int64_t watchdog_interval_ms() const { return watchdog_ms_; }

  // Start-up done: listeners open, shards running.
  void ready(std::string_view status);
  // A SIGHUP reload begins (RELOADING=1 with MONOTONIC_USEC, which systemd
  // 253+ needs to match the reload; older ones ignore it) ...
  void reloading(std::string_view status);
  // ... and is over, done or failed (the status says which): READY=1 again.
  void reloaded(std::string_view status);
  // The drain begins; `extend_ms` is how long the manager should wait for it.
  void stopping(std::string_view status, int64_t extend_ms);
  void status(std::string_view status);
  void watchdog();

 private:
  void send(const std::string& state);

  bool enabled_ = false;
  int64_t watchdog_ms_ = 0;
};

// "a b; c" from text with line breaks: a STATUS= value is one line.
std::string one_line(std::string_view text);

}  // namespace ringmx
