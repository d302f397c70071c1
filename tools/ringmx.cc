// ringmx: the SMTP ingress daemon. Command line and config file, start-up,
// then signals: SIGHUP reloads the config, SIGTERM/SIGINT drain and exit 0.
// Under systemd (Type=notify) it reports each step and feeds the watchdog
// while every shard's loop is alive (net/service_notify.h).
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "core/config_diff.h"
#include "core/config_load.h"
#include "net/list_files.h"
#include "net/log.h"
#include "net/server.h"
#include "net/service_notify.h"

namespace {

using namespace ringmx;

struct Overrides {
  std::vector<std::string> listen;
  std::string spool_dir;
  std::string admin_listen;
  bool admin_set = false;
  std::string hostname;
  int64_t shards = -1;
  int64_t max_message_size = -1;
  std::string log_level;
  std::string log_format;
  std::string tls_cert;
  std::string tls_key;
  std::vector<std::string> listen_implicit_tls;
  std::string relay;                       // --relay DEST
  std::vector<std::string> relay_domains;  // --relay-domain DOMAIN (repeatable)
};

// Which mail is taken, for the start-up log line.
std::string describe_routes(const ServerConfig& cfg) {
  if (cfg.routes.empty()) {
    return "no [[route]] configured: mail for any recipient domain is kept in the local spool";
  }
  std::string out = "routes:";
  for (const RouteConfig& r : cfg.routes) {
    out += " " + r.name + " (";
    for (size_t i = 0; i < r.domains.size(); ++i) out += (i ? " " : "") + r.domains[i];
    out += " -> " + r.destination + ")";
  }
  out += "; other recipient domains are refused (550 5.7.1)";
  return out;
}

// Where build_config reports: plain lines for --check-config (a command's
// output), log lines (the configured format) for the daemon.
bool g_report_as_log = false;
bool g_running = false;  // the server runs: a config is a reload's

void report(std::string_view problem) {
  if (!g_report_as_log) {
    std::cerr << problem << "\n";
    return;
  }
  LogLine l(LogLevel::error, "config_error", wall_ms());
  l.kv("error", problem);
  const std::string_view line = l.finish();
  std::cerr << line;
}

bool read_file(const std::string& path, std::string& out, std::string& err) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    err = path + ": " + std::strerror(errno);
    return false;
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  out = ss.str();
  return true;
}

// File (if any) over the embedded defaults, then command-line flags, then
// validation. Errors go to stderr; returns false if there were any.
bool build_config(const std::string& path, const Overrides& o, ServerConfig& out,
                  std::string* text_out = nullptr) {
  ServerConfig cfg;
  if (!path.empty()) {
    std::string text, err;
    if (!read_file(path, text, err)) {
      report("ringmx: cannot read config " + err);
      return false;
    }
    ConfigLoadResult r = load_config(text, path, cfg);
    if (!r.ok()) {
      // The file's other keys still say how to write these errors (unless
      // --log-format does, or the file is not TOML at all).
      if (g_report_as_log && !g_running && o.log_format.empty()) {
        set_log_format(r.config.log_format);
      }
      for (const auto& e : r.errors) report(e.to_string());
      return false;
    }
    cfg = std::move(r.config);
    if (text_out != nullptr) *text_out = std::move(text);
  }
  if (!o.log_format.empty()) {
    if (o.log_format == "json") {
      cfg.log_format = LogFormat::json;
    } else if (o.log_format == "logfmt") {
      cfg.log_format = LogFormat::logfmt;
    } else {
      report("--log-format: must be logfmt or json");
      return false;
    }
  }
  // At start-up, what the file (or the flag) chose is the format from here on
  // (a reload switches only once it has succeeded).
  if (g_report_as_log && !g_running) set_log_format(cfg.log_format);
  if (!o.listen.empty()) {
    cfg.listeners.clear();
    for (const auto& a : o.listen) cfg.listeners.push_back({a, a});
  }
  if (!o.tls_cert.empty()) cfg.tls.cert_file = o.tls_cert;
  if (!o.tls_key.empty()) cfg.tls.key_file = o.tls_key;
  for (const auto& a : o.listen_implicit_tls) {
    ListenerConfig l{a, a};
    l.tls = ListenerTls::implicit;
    cfg.listeners.push_back(std::move(l));
  }
  if (!o.relay.empty() || !o.relay_domains.empty()) {
    if (o.relay.empty() || o.relay_domains.empty()) {
      report("ringmx: --relay DEST and --relay-domain DOMAIN go together");
      return false;
    }
    // Like --listen, the flags replace the file's routes.
    cfg.routes = {RouteConfig{"relay", o.relay_domains, o.relay, RouteTls::unset, ""}};
  }
  if (!o.spool_dir.empty()) cfg.spool.dir = o.spool_dir;
  if (o.admin_set) cfg.admin_listen = o.admin_listen;
  if (!o.hostname.empty()) cfg.smtp.hostname = o.hostname;
  if (o.shards >= 0) cfg.shards = static_cast<uint32_t>(o.shards);
  if (o.max_message_size >= 0)
    cfg.smtp.limits.max_message_size = static_cast<uint64_t>(o.max_message_size);
  if (!o.log_level.empty() && !parse_log_level(o.log_level, cfg.log_level)) {
    report("--log-level: must be one of debug, info, warn, error");
    return false;
  }
  auto errors = validate_config(cfg);
  for (const auto& e : errors) report("ringmx: " + e.to_string());
  if (!errors.empty()) return false;
  out = std::move(cfg);
  return true;
}

// The spool directory must exist and be writable, or be creatable.
bool check_paths(const std::string& file, const ServerConfig& cfg) {
  std::string dir = cfg.spool.dir;
  while (!dir.empty()) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode)) {
        std::cerr << file << ": spool.dir: " << cfg.spool.dir << ": " << dir
                  << " is not a directory\n";
        return false;
      }
      if (::access(dir.c_str(), W_OK | X_OK) != 0) {
        std::cerr << file << ": spool.dir: " << cfg.spool.dir << ": " << dir
                  << " is not writable: " << std::strerror(errno) << "\n";
        return false;
      }
      return true;
    }
    const size_t slash = dir.find_last_of('/');
    if (slash == std::string::npos) return ::access(".", W_OK | X_OK) == 0;
    dir = slash == 0 ? "/" : dir.substr(0, slash);
  }
  return true;
}

// Loads every certificate and the recipients file the config names (as
// start-up would). False, with the reason on stderr, when one cannot be used;
// expired certificates only warn.
bool check_tls(const std::string& where, const ServerConfig& cfg) {
  try {
    // Held in a local: a range-for over make(cfg)->certificates would outlive the temporary.
    const auto rc = RuntimeConfig::make(cfg);
    for (const auto& c : rc->certificates) {
      if (!c.expired) continue;
      std::cerr << where << ": warning: listener " << c.listener << ": certificate " << c.name
                << " (" << c.subject << ") expired\n";
    }
  } catch (const ListFileLoadError& e) {
    std::cerr << where << ": " << e.what() << "\n";
    return false;
  } catch (const std::exception& e) {
    std::cerr << where << ": tls: " << e.what() << "\n";
    return false;
  }
  return true;
}

int64_t mono_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

timespec ms_to_timespec(int64_t ms) {
  timespec ts{};
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1'000'000;
  return ts;
}

// Feeds the service manager's watchdog while every shard's loop moves, and
// says in the service status when one stands still (and when it moves again).
class WatchdogFeeder {
 public:
  WatchdogFeeder(ServiceNotify& notify, Logger& logger) : notify_(notify), logger_(logger) {
    if (notify.watchdog_interval_ms() > 0) dog_.emplace(notify.watchdog_interval_ms(), mono_ms());
  }
  // Samples the shards, pings if due; returns how long the caller may wait
  // before calling again (at most max_wait_ms).
  int64_t tick(const Server& server, int64_t max_wait_ms, const std::string& healthy_status) {
    if (!dog_) return max_wait_ms;
    const int64_t now = mono_ms();
    const std::vector<ShardPulse> pulses = server.shard_pulses();
    if (dog_->sample(now, pulses)) notify_.watchdog();
    const int stalled = dog_->stalled_shard();
    if (stalled != reported_) {
      LogLine l(stalled >= 0 ? LogLevel::error : LogLevel::info,
                stalled >= 0 ? "shard_stalled" : "shard_moving", wall_ms());
      l.kv("shard", stalled >= 0 ? stalled : reported_).kv("stall_ms", dog_->stall_ms());
      logger_.emit(l);
      if (stalled >= 0) {
        notify_.status("shard " + std::to_string(stalled) + "'s event loop has not moved for " +
                       std::to_string(dog_->stall_ms() / 1000) + " s: watchdog no longer fed; " +
                       healthy_status);
      } else {
        notify_.status(healthy_status);
      }
      reported_ = stalled;
    }
    return std::clamp<int64_t>(dog_->next_ms() - now, 1, max_wait_ms);
  }

 private:
  ServiceNotify& notify_;
  Logger& logger_;
  std::optional<ShardWatchdog> dog_;
  int reported_ = -1;
};

std::string default_hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) == 0 && buf[0]) return buf;
  return "localhost";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ringmx: io_uring SMTP ingress server (edge MX)"};
  std::string config_path, check_path;
  Overrides o;
  bool version = false;
  app.add_option("-c,--config", config_path, "TOML config file (see deploy/ringmx.toml)");
  app.add_option("--check-config", check_path, "validate FILE and exit (0: valid)");
  app.add_flag("--version", version, "print the version and exit");
  app.add_option("--listen", o.listen, "ADDR:PORT to accept SMTP on (repeatable)");
  app.add_option("--spool-dir", o.spool_dir, "spool directory");
  app.add_option_function<std::string>(
      "--admin-listen",
      [&](const std::string& v) {
        o.admin_listen = v;
        o.admin_set = true;
      },
      "ADDR:PORT for /metrics and /healthz (\"\" disables)");
  app.add_option("--hostname", o.hostname, "name in the greeting and Received headers");
  app.add_option("--shards", o.shards, "shard threads (0: one per CPU)");
  app.add_option("--max-message-size", o.max_message_size, "largest message in bytes");
  app.add_option("--log-level", o.log_level, "debug, info, warn or error");
  app.add_option("--log-format", o.log_format, "logfmt or json (log lines on stderr)");
  app.add_option("--tls-cert", o.tls_cert,
                 "PEM certificate chain; listeners without a tls mode then offer STARTTLS");
  app.add_option("--tls-key", o.tls_key, "PEM private key of --tls-cert");
  app.add_option("--listen-implicit-tls", o.listen_implicit_tls,
                 "ADDR:PORT to accept SMTP over implicit TLS on (repeatable; port 465 style)");
  app.add_option("--relay", o.relay,
                 "destination for --relay-domain mail: lmtp://HOST:PORT, lmtp:unix:/PATH or "
                 "smtp://HOST[:PORT] (replaces the file's routes)");
  app.add_option("--relay-domain", o.relay_domains,
                 "recipient domain to take mail for, \"*.example.org\" for its subdomains "
                 "(repeatable); any other is refused");
  CLI11_PARSE(app, argc, argv);

  if (version) {
    std::cout << "ringmx " << kVersion << "\n";
    return 0;
  }
  if (!check_path.empty()) {
    ServerConfig cfg;
    if (!build_config(check_path, o, cfg)) return 1;
    if (!check_paths(check_path, cfg)) return 1;
    if (!check_tls(check_path, cfg)) return 1;
    std::cout << check_path << ": ok\n";
    return 0;
  }
  // From here on every line the daemon writes is a log line.
  g_report_as_log = true;
  if (o.log_format == "json") set_log_format(LogFormat::json);
  ServerConfig cfg;
  std::string config_text;  // the file as loaded: a reload logs the keys it changes
  cfg.smtp.hostname = default_hostname();
  {
    // The embedded default hostname is this machine's name, unless set.
    ServerConfig loaded;
    if (!build_config(config_path, o, loaded, &config_text)) return 2;
    if (loaded.smtp.hostname == ServerConfig{}.smtp.hostname && o.hostname.empty()) {
      loaded.smtp.hostname = cfg.smtp.hostname;
    }
    cfg = std::move(loaded);
  }

  // Signals are taken by sigwait in this thread only: block them before any
  // other thread starts so every thread inherits the mask.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  ServiceNotify notify;
  Logger logger(cfg.log_level);
  logger.start();
  std::unique_ptr<Server> owned;
  try {
    owned = std::make_unique<Server>(cfg, logger);
    owned->start();
  } catch (const std::exception& e) {
    LogLine l(LogLevel::error, "start_failed", wall_ms());
    l.kv("reason", e.what());
    logger.write_now(l.finish());
    notify.status(std::string("cannot start: ") + e.what());
    logger.stop();
    return 1;
  }
  Server& server = *owned;
  g_running = true;
  std::string running;  // the service status while all is well
  {
    std::string where;
    for (const auto& a : server.listen_addresses()) where += (where.empty() ? "" : ", ") + a;
    std::string admin = server.admin_port() ? "http://" + cfg.admin_listen + "/metrics" : "off";
    if (server.admin_port()) {
      std::string host = cfg.admin_listen.substr(0, cfg.admin_listen.rfind(':'));
      admin = "http://" + host + ":" + std::to_string(server.admin_port()) + "/metrics";
    }
    // Always written (whatever log_level says): where it listens and where mail goes.
    LogLine l(LogLevel::info, "started", wall_ms());
    l.kv("version", kVersion).kv("smtp", where).kv("hostname", cfg.smtp.hostname);
    l.kv("spool", cfg.spool.dir).kv("admin", admin).kv("mail", describe_routes(cfg));
    logger.write_now(l.finish());
    running = "SMTP on " + where + " (" + std::to_string(server.shard_pulses().size()) +
              " shards); spool " + cfg.spool.dir + "; admin " + admin;
  }
  // Listeners are open (the kernel queues connections from here on) and the
  // shards run: the service is up.
  notify.ready(running);
  WatchdogFeeder feeder(notify, logger);

  int exit_code = 0;
  int stop_sig = 0;
  for (;;) {
    const timespec ts = ms_to_timespec(feeder.tick(server, 1000, running));
    int sig = sigtimedwait(&sigs, nullptr, &ts);
    if (sig < 0) {
      if (server.shard_failed()) {
        LogLine l(LogLevel::error, "shard_failed", wall_ms());
        l.kv("reason", "a shard stopped unexpectedly; shutting down");
        logger.write_now(l.finish());
        exit_code = 1;
        break;
      }
      continue;
    }
    if (sig == SIGHUP) {
      notify.reloading("reloading " +
                       (config_path.empty() ? "the embedded defaults" : config_path));
      ServerConfig next;
      std::string next_text;
      if (!build_config(config_path, o, next, &next_text)) {
        LogLine l(LogLevel::error, "reload_failed", wall_ms());
        l.kv("reason", "invalid config, keeping the old one");
        logger.emit(l);
        notify.reloaded("reload failed: invalid config (see the log), running the previous one; " +
                        running);
        continue;
      }
      if (next.smtp.hostname == ServerConfig{}.smtp.hostname && o.hostname.empty()) {
        next.smtp.hostname = cfg.smtp.hostname;
      }
      std::string notes;
      const LogFormat next_format = next.log_format;
      try {
        notes = server.reload(std::move(next));
      } catch (const std::exception& e) {
        LogLine f(LogLevel::error, "reload_failed", wall_ms());
        f.kv("reason", e.what());
        logger.emit(f);
        notify.reloaded(std::string("reload failed: ") + e.what() + ", running the previous one; " +
                        running);
        continue;
      }
      std::string changed;
      for (const std::string& k : changed_config_keys(config_text, next_text)) {
        changed += (changed.empty() ? "" : ",") + k;
      }
      config_text = std::move(next_text);
      set_log_format(next_format);
      LogLine l(LogLevel::info, "reload_done", wall_ms());
      l.kv("changed", changed.empty() ? "none" : changed);
      logger.emit(l);
      // Each note (a key that cannot change without a restart, ...) as its own line.
      for (size_t at = 0; at < notes.size();) {
        size_t end = notes.find('\n', at);
        if (end == std::string::npos) end = notes.size();
        if (end > at) {
          LogLine n(LogLevel::warn, "reload_note", wall_ms());
          n.kv("note", std::string_view(notes).substr(at, end - at));
          logger.emit(n);
        }
        at = end + 1;
      }
      notify.reloaded(running + "; reloaded" + (notes.empty() ? "" : ": " + notes));
      continue;
    }
    LogLine l(LogLevel::info, "draining", wall_ms());
    l.kv("signal", sig == SIGINT ? "SIGINT" : "SIGTERM");
    logger.emit(l);
    stop_sig = sig;
    break;
  }
  if (!notify.enabled()) {
    server.drain_and_wait();
  } else {
    // The same drain, with the service status saying what is left each second.
    const std::string why = stop_sig == SIGINT    ? "SIGINT"
                            : stop_sig == SIGTERM ? "SIGTERM"
                                                  : "a shard stopped unexpectedly";
    const int64_t drain_ms = static_cast<int64_t>(server.config().drain_timeout_ms);
    const auto left = [&] {
      const int64_t to_go = std::max<int64_t>(server.drain_deadline_ms() - mono_ms(), 0);
      return "draining (" + why + "): " + std::to_string(server.sessions_active()) +
             " SMTP sessions left, " + std::to_string((to_go + 999) / 1000) + " s to the deadline";
    };
    server.begin_drain();
    // Past the deadline the shards close what is left; messages being written finish first.
    notify.stopping(left(), drain_ms + 15'000);
    int64_t next_status = mono_ms() + 1000;
    while (!server.drained()) {
      const timespec ts = ms_to_timespec(feeder.tick(server, 50, left()));
      nanosleep(&ts, nullptr);
      if (mono_ms() >= next_status) {
        notify.status(left());
        next_status += 1000;
      }
    }
    server.finish_drain();
  }
  LogLine stopped(LogLevel::info, "stopped", wall_ms());
  stopped.kv("exit", exit_code);
  logger.emit(stopped);
  logger.stop();
  return exit_code;
}
