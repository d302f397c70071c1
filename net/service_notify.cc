// sd_notify(3) messages for systemd's Type=notify and its watchdog.
#include "net/service_notify.h"

#include <systemd/sd-daemon.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>

namespace ringmx {

namespace {

// While a shard stands still, how soon to look again.
constexpr int64_t kRecheckMs = 250;

uint64_t monotonic_usec() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

}  // namespace

std::string one_line(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    if (c == '\n') {
      out += "; ";
    } else if (c != '\r') {
      out += c;
    }
  }
  return out;
}

// ---- ShardWatchdog ------------------------------------------------------------

ShardWatchdog::ShardWatchdog(int64_t interval_ms, int64_t now_ms)
    : period_ms_(std::max<int64_t>(interval_ms / 2, 1)),
      stall_ms_(std::max(kMinStallMs, interval_ms / 2)),
      next_ping_ms_(now_ms),
      last_sample_ms_(now_ms) {}

bool ShardWatchdog::sample(int64_t now_ms, std::span<const ShardPulse> shards) {
  last_sample_ms_ = now_ms;
  if (last_loops_.size() != shards.size()) {
    last_loops_.assign(shards.size(), 0);
    last_change_ms_.assign(shards.size(), now_ms);
    for (size_t i = 0; i < shards.size(); ++i) last_loops_[i] = shards[i].loops;
  }
  stalled_ = -1;
  for (size_t i = 0; i < shards.size(); ++i) {
    if (shards[i].loops != last_loops_[i]) {
      last_loops_[i] = shards[i].loops;
      last_change_ms_[i] = now_ms;
    } else if (!shards[i].finished && now_ms - last_change_ms_[i] > stall_ms_ && stalled_ < 0) {
      stalled_ = static_cast<int>(i);
    }
  }
  if (stalled_ >= 0 || now_ms < next_ping_ms_) return false;
  next_ping_ms_ = now_ms + period_ms_;
  return true;
}

int64_t ShardWatchdog::next_ms() const {
  return std::max(next_ping_ms_, last_sample_ms_ + (stalled_ >= 0 ? kRecheckMs : 0));
}

// ---- ServiceNotify ------------------------------------------------------------

ServiceNotify::ServiceNotify() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  enabled_ = socket != nullptr && socket[0] != '\0';
  uint64_t usec = 0;
  // > 0 only when $WATCHDOG_USEC is set and $WATCHDOG_PID is unset or this process.
  if (enabled_ && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    watchdog_ms_ = static_cast<int64_t>(std::max<uint64_t>(usec / 1000, 1));
  }
}

void ServiceNotify::send(const std::string& state) {
  if (!enabled_) return;
  // A manager that went away is nothing to stop for: the result is ignored.
  (void)sd_notify(0, state.c_str());
}

void ServiceNotify::ready(std::string_view status) {
  send("READY=1\nSTATUS=" + one_line(status));
}

void ServiceNotify::reloading(std::string_view status) {
  send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(monotonic_usec()) +
       "\nSTATUS=" + one_line(status));
}

void ServiceNotify::reloaded(std::string_view status) {
  send("READY=1\nSTATUS=" + one_line(status));
}

void ServiceNotify::stopping(std::string_view status, int64_t extend_ms) {
  send("STOPPING=1\nEXTEND_TIMEOUT_USEC=" + std::to_string(std::max<int64_t>(extend_ms, 0) * 1000) +
       "\nSTATUS=" + one_line(status));
}

void ServiceNotify::status(std::string_view status) {
  send("STATUS=" + one_line(status));
}

void ServiceNotify::watchdog() {
  send("WATCHDOG=1");
}

}  // namespace ringmx
