// The admin HTTP endpoint (/metrics, /healthz, /readyz, /queue) on its own thread, off
// the shard rings: a scrape never takes time from a shard. Clients are served
// concurrently by one epoll loop, each with bounded state (an 8 KiB request
// head, its reply) and a deadline for its request; at the connection limit a
// new client takes the slot of the one that has been reading longest, so
// slow or hostile clients cannot keep a health check or a scrape out. The
// serving thread never throws and logs nothing.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <string>
#include <thread>
#include <utility>

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
    // /queue and below (GET, and POST for the operations): status and a JSON
    // body. `target` is the request target, its query included.
    std::function<std::pair<int, std::string>(std::string_view method, std::string_view target)>
        queue;
  };

  struct Limits {
    uint32_t max_connections = 64;      // clients served at once
    int64_t request_timeout_ms = 2000;  // from accept to the end of the request head
  };

  // Binds and listens (blocking, at start-up) on an IPv4 or IPv6 literal; throws
  // std::runtime_error naming the address on failure. Port 0 picks a free port.
  AdminHttp(const std::string& host, uint16_t port, Handlers h, Limits limits);
  AdminHttp(const std::string& host, uint16_t port, Handlers h)
      : AdminHttp(host, port, std::move(h), Limits{}) {}
  ~AdminHttp();  // stops and joins the thread
  AdminHttp(const AdminHttp&) = delete;
  AdminHttp& operator=(const AdminHttp&) = delete;

  void start();  // starts the serving thread; once
  void stop();   // wakes the thread (even mid-request) and joins it; idempotent
  uint16_t port() const { return port_; }  // the bound port

 private:
  struct Client;
  void run() noexcept;
  void accept_clients(int ep, std::list<Client>& clients, int64_t now, int64_t& accept_resume);
  bool step(int ep, Client& c, int64_t now);

  Handlers handlers_;
  Limits limits_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: readable once stop() was called
  uint16_t port_ = 0;
  std::thread thread_;
};

}  // namespace ringmx
