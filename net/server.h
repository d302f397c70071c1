// The daemon's top level: checks the kernel, recovers the spool, opens the
// listeners, starts one shard per core, the admin endpoint and the logger,
// and carries reload and drain requests from the main thread to the shards.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/metrics.h"
#include "net/admin_http.h"
#include "net/log.h"
#include "net/service_notify.h"
#include "net/shard.h"
#include "net/version.h"

namespace ringmx {

class Server {
 public:
  Server(ServerConfig cfg, Logger& logger);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Throws std::runtime_error with a message for the operator on any
  // start-up failure (missing io_uring feature, port in use, bad spool dir).
  void start();
  // New config for new sessions. Listener and shard changes need a restart
  // (reported in the returned text); limits, banner, extensions apply at once.
  std::string reload(ServerConfig cfg);
  // Stops accepting, lets transactions finish up to the drain deadline, waits
  // for every shard; returns when all are done.
  void drain_and_wait();
  // The same in steps, for a caller that reports progress while it waits:
  // begin_drain() asks every shard to drain; drained() is true once every
  // shard thread has ended; finish_drain() joins them (blocks until then).
  void begin_drain();
  bool drained() const;
  void finish_drain();
  // When the drain deadline passes (CLOCK_MONOTONIC ms); 0 before begin_drain().
  int64_t drain_deadline_ms() const { return drain_deadline_ms_; }
  // True if a shard thread ended on its own (it logged why).
  bool shard_failed() const;

  // Each shard's loop counter and whether its thread ended (the watchdog's
  // view of shard health), and the SMTP sessions open over all shards.
  std::vector<ShardPulse> shard_pulses() const;
  int64_t sessions_active() const;

  std::string render_metrics() const;
  // The admin endpoint's /queue requests: asks every shard and merges.
  std::pair<int, std::string> queue_http(std::string_view method, std::string_view target);
  // "127.0.0.1:2525" for each listener, with the real port when 0 was asked.
  std::vector<std::string> listen_addresses() const { return listen_addresses_; }
  uint16_t admin_port() const { return admin_ ? admin_->port() : 0; }
  ServerConfig config() const { return current()->server; }

 private:
  std::shared_ptr<const RuntimeConfig> current() const;
  void warn_expired(const RuntimeConfig& rc);

  mutable std::mutex cfg_mu_;  // cfg_ is replaced by reload() and read by the admin thread
  std::shared_ptr<const RuntimeConfig> cfg_;
  Logger& logger_;
  SharedState shared_;
  std::vector<std::unique_ptr<ShardMetrics>> metrics_;
  std::vector<std::unique_ptr<Shard>> shards_;
  // [auth] backend "file": hash verification off the shards. Declared after
  // shards_ so it stops (joins) before they go: its threads post to them.
  std::unique_ptr<PasswordWorkers> passwords_;
  std::unique_ptr<AdminHttp> admin_;
  std::vector<std::string> listen_addresses_;
  int64_t start_time_ = 0;
  int lock_fd_ = -1;                 // flock on SPOOL/.lock
  uint64_t spool_recovery_bad_ = 0;  // set at start-up, read at scrape time
  std::atomic<bool> draining_{false};
  int64_t drain_deadline_ms_ = 0;
};

}  // namespace ringmx
