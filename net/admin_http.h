// The admin HTTP endpoint (/metrics, /healthz, /readyz) on its own thread, off
// the shard rings: scrapes are rare. One client at a time; every read and write
// is bounded by a deadline and requests are capped at 8 KiB, so a slow or
// hostile client delays a scrape by at most a few seconds and cannot wedge the
// thread. The serving thread never throws and logs nothing.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <thread>

namespace ringmx {

class AdminHttp {
 public:
  // Called on the admin thread. An empty handler makes its path answer 404; a
  // handler that throws makes the request answer 500. `ready` is false while
  // starting or draining.
  struct Handlers {
    std::function<std::string()> metrics;  // Prometheus text
    std::function<bool()> healthy;         // /healthz: 200 "ok\n" or 503 "unhealthy\n"
    std::function<bool()> ready;           // /readyz: 200 "ready\n" or 503 "not ready\n"
  };

  // Binds and listens (blocking, at start-up) on an IPv4 or IPv6 literal; throws
  // std::runtime_error naming the address on failure. Port 0 picks a free port.
  AdminHttp(const std::string& host, uint16_t port, Handlers h);
  ~AdminHttp();  // stops and joins the thread
  AdminHttp(const AdminHttp&) = delete;
  AdminHttp& operator=(const AdminHttp&) = delete;

  void start();  // starts the serving thread; once
  void stop();   // wakes the thread (even mid-request) and joins it; idempotent
  uint16_t port() const { return port_; }  // the bound port

 private:
  void run() noexcept;
  void serve_client(int fd);

  Handlers handlers_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: readable once stop() was called
  uint16_t port_ = 0;
  std::thread thread_;
};

}  // namespace ringmx
