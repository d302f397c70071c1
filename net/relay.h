// Delivery on the shard's ring: each shard hands what it accepted to its own
// Relays, which keep, per route, a queue of tasks (a message and the
// recipients that route takes) and a pool of outbound connections to the
// route's destination (LMTP or SMTP). Connections are driven like inbound
// ones: connect, recv and send through the shard's ring (net/ring.h
// Completion), deadlines on the shard's timer wheel, the SMTP/LMTP dialogue
// in core/smtp_client (sans-I/O), TLS in tls/client_connection. A connection
// takes one message at a time, is reused for the next (up to
// delivery.max_messages_per_connection) and closes after
// delivery.idle_timeout_ms with nothing to do.
//
// Outcomes are per recipient: 2xx delivered, 5xx failed, anything else (4xx,
// no reply, a broken connection, a timeout) deferred and tried again after a
// back-off with jitter (pipeline/delivery.h), until delivery.max_age_s. A
// connection that cannot be set up (refused, timed out, banner or greeting
// refused) defers every task waiting for that destination: a destination
// that is down holds mail, it never loses or bounces it early.
//
// Shard thread only.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/routes.h"
#include "net/client_stream.h"
#include "pipeline/delivery.h"
#include "tls/client_connection.h"

namespace ringmx {

class Shard;
struct RuntimeConfig;
struct RelayConn;
struct RelayTask;
struct SpoolLoad;
struct QueueRequest;

// A route's destination, resolved (at start-up and reload: names are looked
// up then, never on a shard).
struct ResolvedDestination {
  std::string name;   // the route's name
  std::string label;  // the destination as configured, for logs
  Destination dest;
  RouteTls tls = RouteTls::none;                        // resolved: never unset
  std::shared_ptr<const TlsClientContext> tls_context;  // when tls is not none
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
};

// Resolves every route's destination; throws std::runtime_error naming the
// route when one cannot be resolved.
std::vector<ResolvedDestination> resolve_destinations(const std::vector<RouteConfig>& routes);

struct RelayPool {
  ResolvedDestination dest;
  ClientSettings settings;  // the template each connection copies
  TlsClientOptions tls;
  uint32_t max_conns = 1;
  std::deque<RelayTask*> waiting;  // ready to go, in order
  std::vector<RelayConn*> conns;
  // Opportunistic TLS whose handshake failed: plaintext until then.
  int64_t plaintext_until_ms = 0;
};

class Relays {
 public:
  explicit Relays(Shard& shard);
  ~Relays();
  Relays(const Relays&) = delete;
  Relays& operator=(const Relays&) = delete;

  // The routes of `cfg` (start-up and every reload).
  void configure(const RuntimeConfig& cfg);
  bool active() const { return !pools_.empty(); }
  // Takes an accepted message; its recipients are routed by their domains
  // (a recipient no route takes waits, deferred, for a reload that adds one).
  void submit(const std::shared_ptr<QueuedMessage>& m);
  // Shutting down: connections close, nothing new starts.
  void stop();

  // An operator's queue request (net/queue_request.h): appends this shard's
  // answer to `out`; returns how many messages it found or changed. A list
  // that stops with more to come sets `stopped_at` to its last queue id.
  uint64_t queue_request(const QueueRequest& r, std::string& out, std::string& stopped_at);
  uint64_t held_bytes() const { return held_bytes_; }

  // ---- used by connections and tasks ----
  Shard& shard() { return shard_; }
  void conn_ready(RelayConn& c);
  void conn_closed(RelayConn& c, bool set_up_failed, const ReplyText& why);
  void task_finished(RelayTask& t, const MessageResult& r);
  void retry_due(RelayTask& t);
  // Starts waiting tasks on ready connections; opens more while allowed.
  void dispatch(RelayPool& p);
  // A busy connection may take one more task behind its data (PIPELINING).
  void queue_next(RelayConn& c);
  void loaded(SpoolLoad& l, bool ok, int err);
  // A connection of `p` is gone (a retired pool with none left is freed).
  void pool_emptied(RelayPool& p);

 private:
  // Queues recipients `which` of `m` on their routes' pools, one task per route.
  void enqueue(const std::shared_ptr<QueuedMessage>& m, const std::vector<uint32_t>& which);
  void task_failed_all(RelayTask& t, const ReplyText& why, bool permanent);
  void next_for(RelayConn& c);
  // Queues tasks on their pools (their message's bytes are at hand).
  void queue_tasks(std::vector<RelayTask*>& tasks);
  // Reads a message's bytes back from the spool, then queues `tasks`.
  void load(std::vector<RelayTask*> tasks);
  void open_conn(RelayPool& p);
  void start_task(RelayConn& c, RelayTask& t);
  void record(RelayTask& t, size_t k, const ReplyText& reply, DeliveryResult result);
  void after_attempt(RelayTask& t);
  void message_done(QueuedMessage& m);
  // DSNs for the recipients of `t` that failed (bouncing), or, asking for
  // it, were delivered where the destination does not carry DSN on, or have
  // waited delivery.delay_notice_s (NOTIFY=DELAY).
  void make_dsns(RelayTask& t, const std::vector<uint32_t>& failed,
                 const std::vector<uint32_t>& succeeded, const std::vector<uint32_t>& delayed);
  uint64_t random() { return rng_(); }

  Shard& shard_;
  std::vector<std::unique_ptr<RelayPool>> pools_;    // by route index
  std::vector<std::unique_ptr<RelayPool>> retired_;  // replaced by a reload, conns still open
  std::shared_ptr<const RouteTable> routes_;
  uint64_t held_bytes_ = 0;
  // Tasks waiting on the wheel for their next attempt, and loads in flight:
  // what only the wheel or the ring points at, freed with the relays.
  std::unordered_set<RelayTask*> retrying_;
  std::unordered_set<SpoolLoad*> loading_;
  // Every message not yet done, by queue id (the operator's view), and the
  // tasks of held messages, parked until released.
  std::unordered_map<std::string, std::shared_ptr<QueuedMessage>> by_id_;
  // The same, oldest first (ringmx_queue_oldest_message_age_seconds).
  std::set<std::pair<int64_t, const QueuedMessage*>> by_age_;
  std::vector<RelayTask*> parked_;
  bool stopping_ = false;
  std::mt19937_64 rng_;
};

}  // namespace ringmx
