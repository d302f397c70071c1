// Structured logs that never block a shard: each shard appends lines (logfmt
// or JSON, one per line, with an RFC 3339 UTC timestamp in milliseconds) to
// its own single-producer ring; one logger thread drains every ring to
// stderr. A full ring drops lines and counts them, it never waits.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/config.h"

namespace ringmx {

class Logger;

class LogRing {
 public:
  // `owner` (may be null) is woken when a line arrives while it sleeps.
  explicit LogRing(size_t capacity = 1 << 20, Logger* owner = nullptr);
  // Producer side (one thread). Returns false (and counts) if it does not fit.
  bool push(std::string_view line);
  // Consumer side: appends what is available to `out`.
  void drain(std::string& out);
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  std::unique_ptr<char[]> buf_;
  size_t cap_;
  Logger* owner_;
  alignas(64) std::atomic<uint64_t> head_{0};  // written by the producer
  alignas(64) std::atomic<uint64_t> tail_{0};  // written by the consumer
  std::atomic<uint64_t> dropped_{0};
};

// The format every LogLine is built in, process-wide (server.log_format;
// set at start-up and on reload, from the main thread).
void set_log_format(LogFormat f);
LogFormat log_format();

// "2026-12-05T07:09:51.123Z" for a Unix time in milliseconds.
void append_rfc3339_ms(std::string& out, int64_t unix_ms);

// A log line under construction, in the process's format:
//   logfmt: ts=2026-12-05T07:09:51.123Z level=info event=connect client=192.0.2.1 port=4711
//           (a value with spaces, quotes, '=' or control characters is quoted and escaped)
//   json:   {"ts":"2026-12-05T07:09:51.123Z","level":"info","event":"connect",
//            "client":"192.0.2.1","port":4711}
//           (numbers as numbers; an octet that is not UTF-8 becomes the code point of its value)
class LogLine {
 public:
  LogLine(LogLevel level, std::string_view event, int64_t unix_ms);
  LogLine& kv(std::string_view key, std::string_view value);
  LogLine& kv(std::string_view key, int64_t value);
  LogLine& kv(std::string_view key, uint64_t value);
  LogLine& kv(std::string_view key, uint32_t value) { return kv(key, uint64_t{value}); }
  LogLine& kv(std::string_view key, int value) { return kv(key, int64_t{value}); }
  std::string_view finish();  // closes the line (and the JSON object); once only
  LogLevel level() const { return level_; }

 private:
  LogLevel level_;
  bool json_;
  bool finished_ = false;
  void key(std::string_view k);
  std::string s_;
};

class Logger {
 public:
  explicit Logger(LogLevel level, int fd = 2);
  ~Logger();
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;

  // A ring for one producer thread; owned by the logger.
  LogRing& make_ring();
  bool enabled(LogLevel l) const { return l >= level_.load(std::memory_order_relaxed); }
  void set_level(LogLevel l) { level_.store(l, std::memory_order_relaxed); }
  // Start-up and shutdown messages from the main thread (written directly).
  void write_now(std::string_view line);
  // A line from a thread without a ring (main, start-up), if its level is on.
  void emit(LogLine& line) {
    if (enabled(line.level())) write_now(line.finish());
  }
  void start();
  void stop();  // drains everything, then joins
  // A producer pushed a line: wakes the logger thread if it sleeps. Costs a
  // fence and a load while the logger is awake (it is, under load: it sleeps
  // only when a drain found nothing).
  void notify() {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (sleeping_.load(std::memory_order_relaxed)) wake();
  }
  // Lines every ring has dropped so far (full rings).
  uint64_t dropped() const;
  // Times the logger thread has woken up from sleeping (for tests).
  uint64_t wakeups() const { return wakeups_.load(std::memory_order_relaxed); }

 private:
  void run();
  void wake();
  // Drains every ring to fd_ (with a note of lines dropped); true if it wrote.
  bool drain_all(uint64_t& reported_drops);
  std::atomic<LogLevel> level_;
  int fd_;
  mutable std::mutex mu_;  // guards rings_ (changed only at start-up) and write_now
  std::vector<std::unique_ptr<LogRing>> rings_;
  std::string batch_;  // the logger thread's write buffer
  std::atomic<bool> stop_{false};
  std::atomic<bool> sleeping_{false};
  std::atomic<uint32_t> wake_seq_{0};  // futex word the logger sleeps on
  std::atomic<uint64_t> wakeups_{0};
  std::thread thread_;
};

std::string_view log_level_name(LogLevel l);
// Wall-clock milliseconds, for LogLine timestamps outside the shards.
int64_t wall_ms();
bool parse_log_level(std::string_view s, LogLevel& out);

}  // namespace ringmx
