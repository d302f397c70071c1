// DNS for one shard: a c-ares channel driven by the shard's ring (its sockets
// polled with one-shot IORING_OP_POLL_ADD, re-armed after each completion:
// c-ares 1.18 reads a TCP answer in two calls, see ../shared/PLATFORM.md),
// its retransmits on the shard's timer wheel, and a cache in front of it.
// No resolver thread, no getaddrinfo: nothing here blocks the shard.
//
// Every answer is one of found, not found (NXDOMAIN or no data of that type)
// or a temporary failure (timeout, SERVFAIL, a malformed reply, too many
// queries in flight). Found and not found are cached for their TTL (positive
// and negative, capped by the config); a temporary failure never is. Lookups
// of a name already in flight wait for that query instead of sending another.
// Shard thread only.
#pragma once

#include <ares.h>

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/config.h"
#include "core/dns_lookup.h"
#include "core/dns_message.h"
#include "core/metrics.h"
#include "net/ring.h"
#include "net/timer_wheel.h"

namespace ringmx {

// What the metrics count: a temporary failure split into timeout and the rest.
enum class DnsOutcome : uint8_t { found, not_found, timeout, error };

class Resolver final : public DnsLookup {
 public:
  // `metrics` may be null (tests).
  Resolver(Ring& ring, TimerWheel& wheel, const DnsConfig& cfg, DnsMetrics* metrics);
  ~Resolver() override;
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // Sets up the channel (servers from the config, else /etc/resolv.conf).
  // False with the reason in `error`.
  bool init(std::string& error);

  // The shard's clock, set before completions and timers are handled.
  void set_now(int64_t mono_ms, int64_t mono_ns) {
    now_ms_ = mono_ms;
    now_ns_ = mono_ns;
  }

  // Looks up `name` (no trailing dot) for records of `type` (dns_type::*).
  // `done` runs once: now (a cached answer, or a refusal) or when the answer
  // comes; it may call lookup() again. Returns a ticket for cancel().
  uint64_t lookup(uint16_t type, std::string_view name, Done done) override;
  // The caller went away: its `done` will not run (the query, shared with
  // others, goes on and its answer is still cached).
  void cancel(uint64_t ticket) override;

  size_t cached() const { return cache_.size(); }
  size_t in_flight() const { return in_flight_; }

 private:
  struct Waiter {
    uint64_t ticket;
    Done done;
  };
  struct Entry {
    uint16_t type = 0;
    std::string name;
    bool pending = false;
    std::shared_ptr<const DnsAnswer> answer;  // shared: a hit costs no copy
    int64_t expires_ms = 0;
    int64_t started_ns = 0;
    std::vector<Waiter> waiters;
    std::list<std::string>::iterator lru;  // position in lru_ (most recent first)
  };
  struct Watch;

  static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable);
  static void on_answer(void* arg, int status, int timeouts, unsigned char* abuf, int alen);
  static void on_timer(TimerNode& n);
  void sock_state(int fd, bool readable, bool writable);
  void answered(const std::string& key, int status, const unsigned char* abuf, int alen);
  void poll_done(Watch& w, int res);
  void arm(Watch& w);
  void process(int read_fd, int write_fd);
  void reschedule();
  void touch(Entry& e);
  void evict();
  void count(uint16_t type, DnsOutcome o);

  Ring& ring_;
  TimerWheel& wheel_;
  DnsConfig cfg_;
  DnsMetrics* metrics_;
  ares_channel channel_ = nullptr;
  int64_t now_ms_ = 0;
  int64_t now_ns_ = 0;
  uint64_t next_ticket_ = 1;
  size_t in_flight_ = 0;
  std::unordered_map<std::string, Entry> cache_;  // "type:name"
  std::list<std::string> lru_;
  std::unordered_map<uint64_t, std::string> tickets_;  // waiting tickets -> their entry
  std::unordered_map<int, std::unique_ptr<Watch>> watches_;
  std::vector<std::unique_ptr<Watch>> dying_;  // closed by c-ares, a poll still pointing at them
  struct Timer : TimerNode {
    Resolver* owner = nullptr;
  } timer_;
  bool destroying_ = false;
};

}  // namespace ringmx
