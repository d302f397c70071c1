// Start-up, reload and drain orchestration (main thread only).
#include "net/server.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/config_load.h"
#include "net/listener.h"
#include "net/uring_probe.h"
#include "pipeline/delivery_journal.h"
#include "pipeline/durable_dir.h"
#include "pipeline/spool_format.h"

namespace ringmx {

namespace {

// This process, from /proc/self (the fields Prometheus clients export).
ProcessStats process_stats() {
  ProcessStats p;
  if (FILE* f = std::fopen("/proc/self/stat", "r")) {
    char buf[1024];
    const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = '\0';
    // Fields after the command name, which is in parentheses and may hold spaces.
    if (const char* rp = std::strrchr(buf, ')')) {
      unsigned long long vsize = 0;
      long long rss = 0;
      // state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
      // cutime cstime priority nice threads itrealvalue starttime vsize rss
      if (std::sscanf(rp + 2,
                      "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d "
                      "%*d %*d %*u %llu %lld",
                      &vsize, &rss) == 2) {
        p.virtual_bytes = static_cast<int64_t>(vsize);
        p.resident_bytes = rss * sysconf(_SC_PAGESIZE);
      }
    }
  }
  if (DIR* d = opendir("/proc/self/fd")) {
    int64_t count = 0;
    while (const dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') ++count;
    }
    closedir(d);
    p.open_fds = count - 1;  // not the one reading the directory
  }
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) p.max_fds = static_cast<int64_t>(rl.rlim_cur);
  // CPU from getrusage: microseconds, where /proc/self/stat counts clock ticks.
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) == 0) {
    p.cpu_seconds = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                    static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  }
  return p;
}

}  // namespace

namespace {

int64_t mono_now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

std::string join_host_port(const std::string& host, uint16_t port) {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
         std::to_string(port);
}

}  // namespace

Server::Server(ServerConfig cfg, Logger& logger)
    : cfg_(RuntimeConfig::make(std::move(cfg))), logger_(logger) {}

Server::~Server() {
  if (admin_) admin_->stop();
  for (auto& s : shards_) s->join();
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

void Server::start() {
  start_time_ = std::time(nullptr);
  const ServerConfig& sc = cfg_->server;
  warn_expired(*cfg_);
  if (std::string missing = check_uring_support(); !missing.empty()) {
    throw std::runtime_error("this kernel's io_uring lacks what ringmx needs:\n" + missing);
  }
  uint32_t nshards = sc.shards;
  if (nshards == 0) nshards = std::max(1u, std::thread::hardware_concurrency());
  shared_.shards = nshards;

  // Spool: recover every shard directory there is (the shard count may have
  // changed since the last run), then make sure ours exist. Every directory
  // the spool depends on is durable (created or not) before the first 250.
  make_durable_dirs(sc.spool.dir);
  // One ringmx per spool: a second one's recovery would delete the first
  // one's files in flight. The lock lives as long as the process.
  const std::string lock_path = sc.spool.dir + "/.lock";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (lock_fd_ < 0) {
    throw std::runtime_error("cannot open " + lock_path + ": " + std::strerror(errno));
  }
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) < 0) {
    throw std::runtime_error("spool directory " + sc.spool.dir + " is in use by another ringmx (" +
                             lock_path + " is locked)");
  }
  std::vector<std::string> dirs;
  if (DIR* d = ::opendir(sc.spool.dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name.rfind("shard-", 0) == 0) dirs.push_back(sc.spool.dir + "/" + name);
    }
    ::closedir(d);
  }
  for (uint32_t i = 0; i < nshards; ++i) {
    std::string dir = sc.spool.dir + "/shard-" + std::to_string(i);
    if (std::find(dirs.begin(), dirs.end(), dir) == dirs.end()) dirs.push_back(dir);
  }
  for (const auto& dir : dirs) {
    RecoveryReport r = recover_spool_dir(dir);
    shared_.spool_bytes += static_cast<int64_t>(r.bytes);
    shared_.spool_messages += static_cast<int64_t>(r.kept);
    LogLine l(LogLevel::info, "spool_recovered", wall_ms());
    l.kv("dir", dir).kv("kept", r.kept).kv("removed_partial", r.removed_temp);
    l.kv("tails_cut", r.truncated).kv("checksum_failures", r.checksum_failures);
    l.kv("corrupt", r.bad);
    spool_recovery_bad_ += r.bad;
    logger_.emit(l);
    for (const auto& p : r.problems) {
      LogLine w(LogLevel::warn, "spool_recovery", wall_ms());
      w.kv("dir", dir).kv("problem", p);
      logger_.emit(w);
    }
  }

  // Delivery: what the spool still had to deliver goes back on the queue of
  // the shard owning its directory; a directory no shard owns now (fewer
  // shards than last time) hands its segments and journals to shard
  // (N mod shards) first.
  std::vector<DeliveryScan> scans(nshards);
  if (!sc.routes.empty()) {
    for (const auto& dir : dirs) {
      const std::string base = dir.substr(dir.rfind('/') + 1);
      uint32_t n = 0;
      if (std::sscanf(base.c_str(), "shard-%u", &n) != 1 || n < nshards) continue;
      adopt_spool_dir(dir, sc.spool.dir + "/shard-" + std::to_string(n % nshards));
    }
    for (uint32_t i = 0; i < nshards; ++i) {
      const std::string dir = sc.spool.dir + "/shard-" + std::to_string(i);
      scans[i] = scan_for_delivery(dir);
      LogLine l(LogLevel::info, "delivery_recovered", wall_ms());
      l.kv("dir", dir)
          .kv("pending", uint64_t{scans[i].pending.size()})
          .kv("done", scans[i].messages_done)
          .kv("segments_removed", scans[i].segments_removed)
          .kv("journal_bad_lines", scans[i].journal_bad_lines);
      logger_.emit(l);
      for (const auto& p : scans[i].problems) {
        LogLine w(LogLevel::warn, "delivery_recovery", wall_ms());
        w.kv("dir", dir).kv("problem", p);
        logger_.emit(w);
      }
    }
  }

  // Listeners: one SO_REUSEPORT socket per shard. The first shard's socket
  // fixes the port when 0 was asked, the others join it.
  std::vector<std::vector<Shard::Listener>> per_shard(nshards);
  for (uint32_t li = 0; li < sc.listeners.size(); ++li) {
    std::string host;
    uint16_t port = 0;
    if (!split_host_port(sc.listeners[li].address, host, port)) {
      throw std::runtime_error("listener " + sc.listeners[li].address + ": bad address");
    }
    ensure_port_free(host, port);
    for (uint32_t s = 0; s < nshards; ++s) {
      int fd = open_listener(host, port);
      if (port == 0) port = bound_port(fd);
      Shard::Listener l;
      l.fd = fd;
      l.index = li;
      per_shard[s].push_back(l);
    }
    listen_addresses_.push_back(join_host_port(host, port));
  }

  if (!sc.admin_listen.empty()) {
    std::string host;
    uint16_t port = 0;
    if (!split_host_port(sc.admin_listen, host, port)) {
      throw std::runtime_error("admin listener " + sc.admin_listen + ": bad address");
    }
    AdminHttp::Handlers h;
    h.metrics = [this] { return render_metrics(); };
    h.healthy = [this] { return !shard_failed(); };
    h.ready = [this] { return !draining_ && !shard_failed(); };
    h.queue = [this](std::string_view method, std::string_view target) {
      return queue_http(method, target);
    };
    AdminHttp::Limits limits;
    limits.max_connections = sc.admin_max_connections;
    limits.request_timeout_ms = sc.admin_request_timeout_ms;
    admin_ = std::make_unique<AdminHttp>(host, port, std::move(h), limits);
  }

  passwords_ = std::make_unique<PasswordWorkers>(sc.auth.hash_workers,
                                                 size_t{nshards} * kMaxFileVerifications);
  shared_.passwords = passwords_.get();
  for (uint32_t i = 0; i < nshards; ++i) {
    metrics_.push_back(std::make_unique<ShardMetrics>());
    shards_.push_back(std::make_unique<Shard>(i, cfg_, shared_, *metrics_.back(), logger_,
                                              std::move(per_shard[i]),
                                              sc.spool.dir + "/shard-" + std::to_string(i)));
    shards_.back()->preload(std::move(scans[i]));
  }
  for (auto& s : shards_) s->start();
  if (admin_) admin_->start();
}

namespace {

// GET /queue's query: limit=N (1..QueueRequest::kMaxLimit) and after=ID, in
// any order; returns why it is refused, or "".
std::string parse_list_query(std::string_view query, QueueRequest& r) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view kv = query.substr(0, amp);
    query = amp == std::string_view::npos ? "" : query.substr(amp + 1);
    const size_t eq = kv.find('=');
    const std::string_view key = kv.substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? "" : kv.substr(eq + 1);
    if (key == "limit") {
      uint32_t n = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || end != value.data() + value.size() || n == 0 ||
          n > QueueRequest::kMaxLimit) {
        return "limit must be 1 to " + std::to_string(QueueRequest::kMaxLimit);
      }
      r.limit = n;
    } else if (key == "after") {
      const bool ok = value.size() <= 64 && std::all_of(value.begin(), value.end(), [](char c) {
                        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-';
                      });
      if (!ok) return "after must be a queue id";
      r.after = std::string(value);
    } else {
      return "unknown query parameter";
    }
  }
  return {};
}

// The shards' lists merged into one page: in queue-id order (every line
// starts {"queue_id":"ID", so the lines sort as their ids do), no further
// than the lowest id a shard stopped at, at most `limit` lines; then, when
// more may follow, a last line {"next":"ID"} to ask for with after=ID.
std::string list_page(const QueueRequest& r) {
  std::vector<std::string_view> lines;
  std::string_view all = r.out;
  while (!all.empty()) {
    const size_t nl = all.find('\n');
    lines.push_back(all.substr(0, nl == std::string_view::npos ? all.size() : nl + 1));
    all.remove_prefix(lines.back().size());
  }
  std::sort(lines.begin(), lines.end());
  const auto id_of = [](std::string_view line) {
    constexpr std::string_view kHead = "{\"queue_id\":\"";
    line.remove_prefix(std::min(line.size(), kHead.size()));
    return line.substr(0, line.find('"'));
  };
  std::string page;
  std::string_view last;
  size_t n = 0;
  bool more = !r.cutoff.empty();
  for (const std::string_view line : lines) {
    if ((!r.cutoff.empty() && id_of(line) > r.cutoff) || n == r.limit) {
      more = true;
      break;
    }
    page += line;
    last = id_of(line);
    ++n;
  }
  if (more && !last.empty()) page += "{\"next\":\"" + std::string(last) + "\"}\n";
  return page;
}

}  // namespace

std::pair<int, std::string> Server::queue_http(std::string_view method, std::string_view target) {
  // GET /queue[?limit=N&after=ID], GET /queue/ID, POST /queue/flush, POST /queue/ID/OP.
  auto req = std::make_shared<QueueRequest>();
  const size_t q = target.find('?');
  const std::string_view path = target.substr(0, q);
  const std::string_view query = q == std::string_view::npos ? "" : target.substr(q + 1);
  std::string_view rest = path.substr(std::min(path.size(), std::string_view("/queue").size()));
  if (!rest.empty()) rest.remove_prefix(1);  // the "/"
  const size_t slash = rest.find('/');
  const std::string_view id = rest.substr(0, slash);
  const std::string_view op = slash == std::string_view::npos ? "" : rest.substr(slash + 1);
  const bool id_ok =
      !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-';
      });
  const auto error = [](int status, std::string_view why) {
    return std::pair<int, std::string>(status, "{\"error\":\"" + std::string(why) + "\"}\n");
  };
  if (!query.empty() && !(method == "GET" && rest.empty())) return error(400, "no query here");
  if (method == "GET") {
    if (rest.empty()) {
      req->op = QueueOp::list;
      if (std::string why = parse_list_query(query, *req); !why.empty()) return error(400, why);
    } else if (id_ok && op.empty()) {
      req->op = QueueOp::show;
      req->id = std::string(id);
    } else {
      return error(404, "not found");
    }
  } else if (rest == "flush") {
    req->op = QueueOp::flush;
  } else if (id_ok && (op == "retry" || op == "delete" || op == "hold" || op == "release")) {
    req->op = op == "retry"    ? QueueOp::retry
              : op == "delete" ? QueueOp::remove
              : op == "hold"   ? QueueOp::hold
                               : QueueOp::release;
    req->id = std::string(id);
  } else {
    return error(404, "not found");
  }
  {
    std::lock_guard<std::mutex> g(req->mu);
    req->remaining = static_cast<uint32_t>(shards_.size());
  }
  for (auto& s : shards_) {
    if (!s->request_queue(req)) req->answer("", 0);  // that shard is swamped: not counted
  }
  std::unique_lock<std::mutex> lk(req->mu);
  if (!req->cv.wait_for(lk, std::chrono::seconds(5), [&req] { return req->remaining == 0; })) {
    return error(503, "shards did not answer in time");
  }
  if (req->op == QueueOp::list) return {200, list_page(*req)};
  if (req->matched == 0 && req->op != QueueOp::flush) return error(404, "no such message");
  if (req->op == QueueOp::show) return {200, std::move(req->out)};
  return {200, "{\"ok\":true,\"matched\":" + std::to_string(req->matched) + "}\n"};
}

std::string Server::reload(ServerConfig cfg) {
  std::string notes;
  const ServerConfig& old = cfg_->server;
  bool same_listeners = cfg.listeners.size() == old.listeners.size();
  for (size_t i = 0; same_listeners && i < cfg.listeners.size(); ++i) {
    same_listeners = cfg.listeners[i].address == old.listeners[i].address;
  }
  if (!same_listeners) {
    notes += "listener changes need a restart; keeping the current listeners\n";
    cfg.listeners = old.listeners;
  }
  if (cfg.shards != old.shards) notes += "shard count changes need a restart\n";
  if (cfg.spool.dir != old.spool.dir) {
    notes += "spool.dir changes need a restart; keeping " + old.spool.dir + "\n";
    cfg.spool.dir = old.spool.dir;
  }
  if (cfg.admin_listen != old.admin_listen) notes += "admin.listen changes need a restart\n";
  // Certificates are loaded before anything changes: a bad one keeps the old
  // config (the caller logs why).
  auto next = RuntimeConfig::make(std::move(cfg));
  logger_.set_level(next->server.log_level);
  warn_expired(*next);
  {
    std::lock_guard<std::mutex> g(cfg_mu_);
    cfg_ = next;
  }
  for (auto& s : shards_) s->request_reload(next);
  return notes;
}

void Server::drain_and_wait() {
  begin_drain();
  finish_drain();
}

void Server::begin_drain() {
  draining_ = true;
  drain_deadline_ms_ = mono_now_ms() + cfg_->server.drain_timeout_ms;
  for (auto& s : shards_) s->request_drain(drain_deadline_ms_);
}

bool Server::drained() const {
  return std::all_of(shards_.begin(), shards_.end(), [](const auto& s) { return s->finished(); });
}

void Server::finish_drain() {
  for (auto& s : shards_) s->join();
  if (admin_) admin_->stop();
}

std::vector<ShardPulse> Server::shard_pulses() const {
  std::vector<ShardPulse> out;
  out.reserve(shards_.size());
  for (size_t i = 0; i < shards_.size(); ++i) {
    out.push_back({metrics_[i]->loop_iterations.get(), shards_[i]->finished()});
  }
  return out;
}

int64_t Server::sessions_active() const {
  int64_t n = 0;
  for (const auto& m : metrics_) n += m->sessions_active.get();
  return n;
}

// MX TLS is opportunistic: an expired certificate still beats plaintext, so
// it is a loud warning (and the expiry gauge), not a refusal to start.
void Server::warn_expired(const RuntimeConfig& rc) {
  for (const CertificateMetric& c : rc.certificates) {
    if (!c.expired) continue;
    LogLine l(LogLevel::warn, "tls_certificate_expired", wall_ms());
    l.kv("listener", c.listener).kv("name", c.name).kv("subject", c.subject);
    l.kv("not_after", c.not_after);
    logger_.emit(l);
  }
}

std::shared_ptr<const RuntimeConfig> Server::current() const {
  std::lock_guard<std::mutex> g(cfg_mu_);
  return cfg_;
}

bool Server::shard_failed() const {
  if (draining_) return false;
  for (const auto& s : shards_)
    if (s->finished()) return true;
  return false;
}

std::string Server::render_metrics() const {
  MetricsView v;
  for (const auto& m : metrics_) v.shards.push_back(m.get());
  const std::shared_ptr<const RuntimeConfig> rc = current();
  for (const auto& l : rc->server.listeners) {
    v.listener_names.push_back(l.name);
    v.auth_listeners.push_back(l.auth != AuthMode::none);
  }
  for (const auto& d : rc->destinations) v.route_names.push_back(d.name);
  for (const MilterConfig& m : rc->server.checks.milters) v.milter_names.push_back(m.name);
  v.certificates = rc->certificates;
  v.spool_bytes = shared_.spool_bytes.load(std::memory_order_relaxed);
  v.spool_messages = shared_.spool_messages.load(std::memory_order_relaxed);
  v.spool_recovery_bad_records = spool_recovery_bad_;
  v.start_time_unix = start_time_;
  v.now_unix = static_cast<int64_t>(std::time(nullptr));
  v.version = kVersion;
  v.log_lines_dropped = logger_.dropped();
  v.process = process_stats();
  std::string out;
  render_prometheus(out, v);
  return out;
}

}  // namespace ringmx
