// Per-shard metric counters and their Prometheus text rendering. A shard is
// the only writer of its block (plain relaxed load+store, no atomic RMW on the
// hot path); the admin thread reads every block at scrape time and sums.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ringmx {

class Counter {
 public:
  void inc(uint64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

class Gauge {
 public:
  void add(int64_t n) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void set(int64_t n) { v_.store(n, std::memory_order_relaxed); }
  int64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

// Fixed log-spaced buckets for durations: 50 us .. 10 s.
class Histogram {
 public:
  static constexpr std::array<double, 16> kBounds = {
      0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
      0.025,   0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   10.0};
  void observe_ns(uint64_t ns);
  uint64_t bucket(size_t i) const { return counts_[i].get(); }  // i == kBounds.size(): +Inf
  uint64_t count() const { return count_.get(); }
  uint64_t sum_ns() const { return sum_ns_.get(); }

 private:
  std::array<Counter, kBounds.size() + 1> counts_;
  Counter count_;
  Counter sum_ns_;
};

enum class ConnResult : uint8_t {
  accepted,
  limit_total,        // over max_connections: 421 4.3.2
  limit_per_ip,       // over max_connections_per_ip: 421 4.7.0
  pregreet,           // talked before the greeting
  error,              // accept/set-up failed
  queue_full,         // the delivery queue far over its limit: 421 4.3.2
  proxy_untrusted,    // PROXY listener, peer not in trusted_proxies: closed unserved
  proxy_error,        // PROXY header malformed, or the peer closed before sending one
  proxy_timeout,      // PROXY header not complete within server.proxy_timeout_ms
  limit_per_network,  // over checks.rate.max_connections_per_network: 421 4.7.0
  count_,
};
std::string_view conn_result_name(ConnResult r);

enum class TxnResult : uint8_t {
  accepted,  // 250 after end of data
  rejected,  // 5xx to the message (size, loop, bare line ending, policy)
  tempfail,  // 4xx to the message (spool error, policy)
  aborted,   // client left or RSET after MAIL without finishing
  count_,
};
std::string_view txn_result_name(TxnResult r);

inline constexpr size_t kMaxListeners = 16;
// Routes with their own delivery series (kMaxRouteCount in core/routes.h: no more are allowed).
inline constexpr size_t kMaxRoutes = 64;

// How one recipient's delivery attempt ended.
enum class DeliveryResult : uint8_t {
  delivered,  // 2xx from the destination
  deferred,   // 4xx, no reply, a connection that failed: tried again later
  failed,     // 5xx, or too old to try again: bounced
  count_,
};
inline constexpr size_t kDeliveryResults = static_cast<size_t>(DeliveryResult::count_);
std::string_view delivery_result_name(DeliveryResult r);

// TLS handshakes: how they ended, and the protocol version ("none" when the
// handshake did not finish).
enum class TlsResult : uint8_t { ok, failed, timeout, count_ };
std::string_view tls_result_name(TlsResult r);
enum class TlsVersionLabel : uint8_t { none, tls1_2, tls1_3, count_ };
std::string_view tls_version_label(TlsVersionLabel v);
inline constexpr size_t kTlsResults = static_cast<size_t>(TlsResult::count_);
inline constexpr size_t kTlsVersions = static_cast<size_t>(TlsVersionLabel::count_);

// DNS on the shard's ring (net/resolver.h), by query type and outcome.
inline constexpr size_t kDnsTypes = 6;    // a, aaaa, mx, txt, ptr, other
inline constexpr size_t kDnsResults = 4;  // found, not_found, timeout, error
struct DnsMetrics {
  std::array<std::array<Counter, kDnsResults>, kDnsTypes> queries;  // DnsOutcome order
  Histogram seconds;   // a query sent until its answer (or failure)
  Counter cache_hits;  // answered from the cache, or joined a query in flight
  Counter cache_misses;
  Gauge in_flight;
};

// What refused a client, for ringmx_rejects_total{stage,check}: the
// built-in checks by name, "score" when the connection's score did, "other"
// for a check added in code. Stages: the check stages, then "command" for
// the protocol discipline of the command phase.
enum class RejectCheck : uint8_t {
  score,
  dnsbl,
  dnswl,
  ptr,
  helo,
  sender,
  recipients,
  headers,
  pregreet,
  http_probe,
  unoffered_pipelining,
  slow_command,
  rate,    // checks.rate: per-client rates and per-network connections
  karma,   // checks.karma: too many recent refusals
  milter,  // a [[milter]] (its own series: ringmx_milter_calls_total)
  other,
  count_,
};
inline constexpr size_t kRejectChecks = static_cast<size_t>(RejectCheck::count_);
inline constexpr size_t kRejectStages = 7;  // connect helo mail rcpt data message command
std::string_view reject_check_name(RejectCheck c);
// The RejectCheck of a check's name ("other" if none; "milter_*": milter).
RejectCheck reject_check_of(std::string_view name);

// Milters ([[milter]], at most 16): each step's outcome by stage (connect,
// helo, mail, rcpt, data, message) and result (continue, accept, reject,
// tempfail, discard, shutdown, failed: milter::StepResult::Kind's order).
inline constexpr size_t kMaxMilters = 16;
inline constexpr size_t kMilterStages = 6;
inline constexpr size_t kMilterResults = 7;
struct MilterMetrics {
  std::array<std::array<Counter, kMilterResults>, kMilterStages> calls;
  Histogram seconds;  // a step, asked to answered
  Counter timeouts;   // steps that failed on a deadline
  Counter failures;   // connections lost: refused, broken, protocol errors, timeouts
  Gauge connections;  // open now
  Counter reused;     // SMTP sessions served by a connection kept from an earlier one
};

// SMTP AUTH attempts by listener, mechanism (PLAIN, LOGIN) and result:
// success; failure (535); tempfail (454: the backend could not say, or was
// not there); timeout (454 after auth.timeout_ms); blocked (refused without
// asking: too many failures of that address or user).
inline constexpr size_t kAuthMechanisms = 2;
inline constexpr size_t kAuthResults = 5;
inline constexpr std::array<std::string_view, kAuthMechanisms> kAuthMechanismNames = {"PLAIN",
                                                                                      "LOGIN"};
inline constexpr std::array<std::string_view, kAuthResults> kAuthResultNames = {
    "success", "failure", "tempfail", "timeout", "blocked"};
enum class AuthResult : uint8_t { success, failure, tempfail, timeout, blocked };

struct alignas(64) ShardMetrics {
  std::array<std::array<Counter, static_cast<size_t>(ConnResult::count_)>, kMaxListeners>
      connections;
  Gauge sessions_active;
  std::array<Counter, static_cast<size_t>(TxnResult::count_)> transactions;
  std::array<Counter, 600> replies;  // by reply code
  Counter messages_accepted;
  Counter message_bytes;  // bytes of accepted messages, as stored
  Counter bytes_in;       // every byte read from clients
  Counter spool_writes;
  Counter spool_write_errors;
  Histogram fsync_seconds;  // write+fsync of one spool batch
  Counter loop_iterations;
  Counter timeouts;
  Counter send_timeouts;         // connections closed because the client did not read
  Counter ring_deferrals;        // SQE chains that waited for room in the submission queue
  Counter ring_full;             // the submission queue was full and went to the kernel early
  Gauge body_memory_bytes;       // message bodies held in memory by the shard's sessions
  Counter body_memory_refusals;  // bodies no longer stored: the shard's budget was full
  Counter body_spills;           // bodies streamed to disk as they came: past the budget
  Counter relay_denied;          // recipients refused: their domain matches no route
  Counter accept_pauses;         // accepting stopped for a moment: out of descriptors or memory
  Gauge spool_free_bytes;        // free space for the shard's spool directory (last check)
  // Delivery (net/relay.cc): per recipient and route; the queue it works from.
  std::array<std::array<Counter, kDeliveryResults>, kMaxRoutes> deliveries;
  Histogram delivery_seconds;          // one transaction with a destination, start to final reply
  Histogram delivery_latency_seconds;  // accepted (on disk, 250) to delivered, per recipient
  Gauge queue_messages;                // accepted messages not yet done
  Gauge queue_bytes;                   // their size
  Gauge queue_oldest_unix;             // arrival (unix s) of the oldest of them; 0: none
  Gauge relay_connections_open;
  Counter relay_connections;         // opened
  Counter relay_connections_reused;  // a transaction on a connection that already had one
  Counter relay_connect_failures;    // could not be set up (refused, timeout, greeting refused)
  Counter segments_reclaimed;        // spool segments removed: every message in them done
  Counter dsn_queued;                // DSNs made and queued to the sender
  Counter dsn_no_route;              // DSNs dropped: no route reaches the sender
  Counter queue_full_refusals;       // MAIL answered 452 4.3.1: the delivery queue is full
  std::array<std::array<std::array<Counter, kTlsResults>, kTlsVersions>, kMaxListeners>
      tls_handshakes;
  Histogram tls_handshake_seconds;  // successful handshakes, first byte to finished
  std::array<Gauge, kTlsVersions> tls_sessions_active;  // by version
  Counter tls_resumed;
  DnsMetrics dns;
  std::array<std::array<Counter, kRejectChecks>, kRejectStages> rejects;  // [stage][check]
  Counter quarantined;  // accepted messages held by the checks (checks.quarantine_score)
  Counter discarded;    // messages a milter said to discard (250, not stored)
  std::array<MilterMetrics, kMaxMilters> milters;
  std::array<std::array<std::array<Counter, kAuthResults>, kAuthMechanisms>, kMaxListeners> auth;
  Histogram auth_backend_seconds;    // a verification, asked to answered (or timed out)
  Counter auth_blocked_connections;  // refused at connect: the address failed AUTH too often
};

// A loaded certificate, for its expiry gauge.
struct CertificateMetric {
  std::string listener;
  std::string name;  // "default" or the SNI server name
  std::string subject;
  int64_t not_after = 0;  // unix seconds
  bool expired = false;   // already when it was loaded
};

// The process as the standard process_* series describe it (read from /proc
// by the runtime at scrape time).
struct ProcessStats {
  double cpu_seconds = 0;  // user + system
  int64_t resident_bytes = 0;
  int64_t virtual_bytes = 0;
  int64_t open_fds = 0;
  int64_t max_fds = 0;  // RLIMIT_NOFILE soft limit
};

// What the renderer needs besides the shard blocks.
struct MetricsView {
  std::vector<const ShardMetrics*> shards;
  std::vector<std::string> listener_names;  // index = listener id
  std::vector<bool> auth_listeners;         // index = listener id: offers AUTH (ringmx_auth_*)
  std::vector<std::string> route_names;     // index = route id
  std::vector<std::string> milter_names;    // index = position in the chain
  int64_t spool_bytes = 0;
  int64_t spool_messages = 0;
  uint64_t spool_recovery_bad_records = 0;  // set aside in corrupt/ by the last start-up
  int64_t start_time_unix = 0;
  int64_t now_unix = 0;  // the scrape's time (the queue's oldest message's age)
  std::string version;
  uint64_t log_lines_dropped = 0;  // log lines lost to a full log ring
  ProcessStats process;
  std::vector<CertificateMetric> certificates;
};

// Appends the Prometheus text exposition format (version 0.0.4).
void render_prometheus(std::string& out, const MetricsView& view);

}  // namespace ringmx
