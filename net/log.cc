// Log rings and the logger thread.
#include "net/log.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "core/civil_date.h"

namespace ringmx {

LogRing::LogRing(size_t capacity, Logger* owner)
    : buf_(new char[capacity]), cap_(capacity), owner_(owner) {}

bool LogRing::push(std::string_view line) {
  const uint64_t head = head_.load(std::memory_order_relaxed);
  const uint64_t tail = tail_.load(std::memory_order_acquire);
  if (line.size() > cap_ - (head - tail)) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  const size_t at = static_cast<size_t>(head % cap_);
  const size_t first = std::min(line.size(), cap_ - at);
  std::memcpy(buf_.get() + at, line.data(), first);
  std::memcpy(buf_.get(), line.data() + first, line.size() - first);
  head_.store(head + line.size(), std::memory_order_release);
  if (owner_) owner_->notify();
  return true;
}

void LogRing::drain(std::string& out) {
  const uint64_t tail = tail_.load(std::memory_order_relaxed);
  const uint64_t head = head_.load(std::memory_order_acquire);
  const size_t n = static_cast<size_t>(head - tail);
  if (n == 0) return;
  const size_t at = static_cast<size_t>(tail % cap_);
  const size_t first = std::min(n, cap_ - at);
  out.append(buf_.get() + at, first);
  out.append(buf_.get(), n - first);
  tail_.store(head, std::memory_order_release);
}

namespace {

bool needs_quotes(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || c == '"' || c == '=' || c == '\\' || u == 0x7f) return true;
  }
  return false;
}

void append_value(std::string& s, std::string_view v) {
  if (!needs_quotes(v)) {
    s.append(v);
    return;
  }
  s.push_back('"');
  for (char c : v) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      s.push_back('\\');
      s.push_back(c);
    } else if (c == '\n') {
      s.append("\\n");
    } else if (c == '\r') {
      s.append("\\r");
    } else if (u < 0x20 || u == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      s.append("\\x");
      s.push_back(kHex[u >> 4]);
      s.push_back(kHex[u & 15]);
    } else {
      s.push_back(c);
    }
  }
  s.push_back('"');
}

void write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // nowhere to report a failing log fd
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace

std::string_view log_level_name(LogLevel l) {
  switch (l) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warn: return "warn";
    case LogLevel::error: return "error";
  }
  return "info";
}

bool parse_log_level(std::string_view s, LogLevel& out) {
  for (LogLevel l : {LogLevel::debug, LogLevel::info, LogLevel::warn, LogLevel::error}) {
    if (s == log_level_name(l)) {
      out = l;
      return true;
    }
  }
  return false;
}

int64_t wall_ms() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

namespace {

std::atomic<LogFormat> g_format{LogFormat::logfmt};

void append_2(std::string& s, unsigned v) {
  s.push_back(static_cast<char>('0' + v / 10 % 10));
  s.push_back(static_cast<char>('0' + v % 10));
}

// The UTF-8 sequence at s[i] is well-formed: its length, else 0.
size_t utf8_length(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n = 0;
  uint32_t cp = 0;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
    cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (b & 0x3f);
  }
  // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
      (cp >= 0xd800 && cp <= 0xdfff)) {
    return 0;
  }
  return n;
}

void append_json_string(std::string& s, std::string_view v) {
  static constexpr char kHex[] = "0123456789abcdef";
  s.push_back('"');
  for (size_t i = 0; i < v.size();) {
    const char c = v[i];
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      s.push_back('\\');
      s.push_back(c);
    } else if (c == '\n') {
      s.append("\\n");
    } else if (c == '\r') {
      s.append("\\r");
    } else if (c == '\t') {
      s.append("\\t");
    } else if (u < 0x20 || u == 0x7f) {
      s.append("\\u00");
      s.push_back(kHex[u >> 4]);
      s.push_back(kHex[u & 15]);
    } else if (u >= 0x80) {
      const size_t n = utf8_length(v, i);
      if (n == 0) {  // not UTF-8: the octet as the code point of the same value
        s.append("\\u00");
        s.push_back(kHex[u >> 4]);
        s.push_back(kHex[u & 15]);
        ++i;
        continue;
      }
      s.append(v.substr(i, n));
      i += n;
      continue;
    } else {
      s.push_back(c);
    }
    ++i;
  }
  s.push_back('"');
}

}  // namespace

void set_log_format(LogFormat f) {
  g_format.store(f, std::memory_order_relaxed);
}

LogFormat log_format() {
  return g_format.load(std::memory_order_relaxed);
}

void append_rfc3339_ms(std::string& out, int64_t unix_ms) {
  int64_t secs = unix_ms / 1000;
  auto ms = static_cast<unsigned>(unix_ms % 1000);
  if (unix_ms < 0 && ms != 0) {  // before 1970: floor, not truncate
    secs -= 1;
    ms = static_cast<unsigned>(unix_ms % 1000 + 1000);
  }
  int64_t days = secs / 86400;
  int64_t rem = secs % 86400;
  if (rem < 0) {
    rem += 86400;
    days -= 1;
  }
  const auto [year, month, day] = civil_from_days(days);
  const auto y = static_cast<unsigned>(year);
  out.push_back(static_cast<char>('0' + y / 1000 % 10));
  out.push_back(static_cast<char>('0' + y / 100 % 10));
  append_2(out, y);
  out.push_back('-');
  append_2(out, month);
  out.push_back('-');
  append_2(out, day);
  out.push_back('T');
  const auto r = static_cast<unsigned>(rem);
  append_2(out, r / 3600);
  out.push_back(':');
  append_2(out, r / 60 % 60);
  out.push_back(':');
  append_2(out, r % 60);
  out.push_back('.');
  out.push_back(static_cast<char>('0' + ms / 100));
  append_2(out, ms);
  out.push_back('Z');
}

LogLine::LogLine(LogLevel level, std::string_view event, int64_t unix_ms)
    : level_(level), json_(log_format() == LogFormat::json) {
  s_.reserve(256);
  if (json_) {
    s_.append("{\"ts\":\"");
    append_rfc3339_ms(s_, unix_ms);
    s_.append("\",\"level\":\"");
    s_.append(log_level_name(level));
    s_.append("\",\"event\":");
    append_json_string(s_, event);
    return;
  }
  s_.append("ts=");
  append_rfc3339_ms(s_, unix_ms);
  s_.append(" level=");
  s_.append(log_level_name(level));
  s_.append(" event=");
  append_value(s_, event);
}

void LogLine::key(std::string_view k) {
  if (json_) {
    s_.push_back(',');
    append_json_string(s_, k);
    s_.push_back(':');
    return;
  }
  s_.push_back(' ');
  s_.append(k);
  s_.push_back('=');
}

LogLine& LogLine::kv(std::string_view k, std::string_view value) {
  key(k);
  if (json_) {
    append_json_string(s_, value);
  } else {
    append_value(s_, value);
  }
  return *this;
}

LogLine& LogLine::kv(std::string_view k, int64_t value) {
  key(k);
  s_.append(std::to_string(value));
  return *this;
}

LogLine& LogLine::kv(std::string_view k, uint64_t value) {
  key(k);
  s_.append(std::to_string(value));
  return *this;
}

std::string_view LogLine::finish() {
  if (!finished_) {
    finished_ = true;
    if (json_) s_.push_back('}');
    s_.push_back('\n');
  }
  return s_;
}

Logger::Logger(LogLevel level, int fd) : level_(level), fd_(fd) {}

Logger::~Logger() {
  stop();
}

LogRing& Logger::make_ring() {
  std::lock_guard<std::mutex> g(mu_);
  rings_.push_back(std::make_unique<LogRing>(size_t{1} << 20, this));
  return *rings_.back();
}

uint64_t Logger::dropped() const {
  std::lock_guard<std::mutex> g(mu_);
  uint64_t n = 0;
  for (const auto& r : rings_) n += r->dropped();
  return n;
}

void Logger::write_now(std::string_view line) {
  std::lock_guard<std::mutex> g(mu_);
  write_all(fd_, line);
}

void Logger::start() {
  thread_ = std::thread([this] { run(); });
}

void Logger::stop() {
  if (!thread_.joinable()) return;
  stop_.store(true, std::memory_order_release);
  wake();
  thread_.join();
}

void Logger::wake() {
  wake_seq_.fetch_add(1, std::memory_order_release);
  wake_seq_.notify_one();
}

bool Logger::drain_all(uint64_t& reported_drops) {
  std::string& batch = batch_;
  batch.clear();
  uint64_t drops = 0;
  std::lock_guard<std::mutex> g(mu_);
  for (auto& r : rings_) {
    r->drain(batch);
    drops += r->dropped();
  }
  if (drops > reported_drops) {
    LogLine l(LogLevel::warn, "log_lines_dropped", wall_ms());
    l.kv("count", drops - reported_drops);
    batch.append(l.finish());
    reported_drops = drops;
  }
  write_all(fd_, batch);
  return !batch.empty();
}

// Busy: drains every 20 ms, so lines are written in batches and producers
// never make a system call. Idle: sleeps on a futex until a producer's
// notify() (or stop()) wakes it, so a quiet server has no timer running here.
void Logger::run() {
  uint64_t reported_drops = 0;
  for (;;) {
    const bool stopping = stop_.load(std::memory_order_acquire);
    const bool wrote = drain_all(reported_drops);
    if (stopping) break;
    if (wrote) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    const uint32_t seq = wake_seq_.load(std::memory_order_acquire);
    sleeping_.store(true, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    // A line pushed before the fence is seen here; one pushed after it sees
    // sleeping_ and bumps wake_seq_, so the wait below returns at once.
    if (!drain_all(reported_drops) && !stop_.load(std::memory_order_acquire)) {
      wake_seq_.wait(seq, std::memory_order_acquire);
      wakeups_.fetch_add(1, std::memory_order_relaxed);
    }
    sleeping_.store(false, std::memory_order_relaxed);
  }
}

}  // namespace ringmx
