// Metric updates on the shard side and the Prometheus text rendering (format
// 0.0.4) on the admin side. Rendering sums every shard block; it allocates only
// into the caller's string and reads no clock (the start time comes in the view).
#include "core/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace ringmx {

namespace {

// The (stage, check) pairs ringmx_rejects_total always shows, zero or not,
// so a dashboard's rate() has a series from the start.
bool reject_pair_expected(size_t stage, size_t check) {
  constexpr size_t kConnect = 0, kHelo = 1, kMail = 2, kRcpt = 3, kMessage = 5, kCommand = 6;
  switch (static_cast<RejectCheck>(check)) {
    case RejectCheck::score: return stage <= kRcpt;
    case RejectCheck::dnsbl:
    case RejectCheck::dnswl:
    case RejectCheck::ptr:
    case RejectCheck::pregreet: return stage == kConnect;
    case RejectCheck::helo: return stage == kHelo;
    case RejectCheck::sender: return stage == kMail;
    case RejectCheck::recipients: return stage == kRcpt;
    case RejectCheck::headers: return stage == kMessage;
    case RejectCheck::http_probe:
    case RejectCheck::unoffered_pipelining:
    case RejectCheck::slow_command: return stage == kCommand;
    case RejectCheck::rate: return stage == kConnect || stage == kMail || stage == kRcpt;
    case RejectCheck::karma: return stage == kConnect;
    case RejectCheck::milter: return stage <= kMessage;
    default: return false;
  }
}

constexpr std::array<std::string_view, static_cast<size_t>(ConnResult::count_)> kConnResultNames = {
    "accepted",   "limit_total",     "limit_per_ip", "pregreet",      "error",
    "queue_full", "proxy_untrusted", "proxy_error",  "proxy_timeout", "limit_per_network"};
constexpr std::array<std::string_view, static_cast<size_t>(TxnResult::count_)> kTxnResultNames = {
    "accepted", "rejected", "tempfail", "aborted"};

constexpr std::array<std::string_view, kTlsResults> kTlsResultNames = {"ok", "failed", "timeout"};
constexpr std::array<std::string_view, kTlsVersions> kTlsVersionNames = {"none", "TLS1_2",
                                                                         "TLS1_3"};

constexpr uint64_t kNsPerSecond = 1'000'000'000;

// Bucket bounds in whole nanoseconds, so placement at a bound is exact (a
// value equal to a bound belongs to that bound's bucket, as `le` says).
constexpr std::array<uint64_t, Histogram::kBounds.size()> kBoundsNs = {
    50'000,      100'000,      250'000,       500'000,          1'000'000,   2'500'000,
    5'000'000,   10'000'000,   25'000'000,    50'000'000,       100'000'000, 250'000'000,
    500'000'000, kNsPerSecond, 2'500'000'000, 10 * kNsPerSecond};

constexpr bool bounds_match() {
  for (size_t i = 0; i < kBoundsNs.size(); ++i) {
    double d = static_cast<double>(kBoundsNs[i]) / 1e9 - Histogram::kBounds[i];
    if (d > 1e-15 || d < -1e-15) return false;
  }
  return true;
}
static_assert(bounds_match(), "kBoundsNs must follow Histogram::kBounds");

void append_u64(std::string& out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_i64(std::string& out, int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// Shortest round-trip form, choosing between plain and exponent notation the
// way Go's strconv.FormatFloat(v, 'g', -1, 64) does (as the Prometheus client
// libraries print `le`): exponent form when the decimal exponent is < -4 or
// >= 6. So 5e-05, 0.0001, 2.5, 10, 1e+06.
void append_double(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  char buf[64];
  auto sci = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string_view s(buf, static_cast<size_t>(sci.ptr - buf));
  int exp = 0;
  size_t e = s.find('e');
  if (e != std::string_view::npos) {
    std::string_view digits = s.substr(e + 1);
    if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
    std::from_chars(digits.data(), digits.data() + digits.size(), exp);
  }
  if (exp < -4 || exp >= 6) {
    out.append(s);
    return;
  }
  auto fixed = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed);
  out.append(buf, fixed.ptr);
}

// Nanoseconds as exact decimal seconds: 1500000 -> "0.0015", 2000000000 -> "2".
void append_ns_as_seconds(std::string& out, uint64_t ns) {
  append_u64(out, ns / kNsPerSecond);
  uint64_t frac = ns % kNsPerSecond;
  if (frac == 0) return;
  char digits[9];
  for (int i = 8; i >= 0; --i) {
    digits[i] = static_cast<char>('0' + frac % 10);
    frac /= 10;
  }
  size_t len = 9;
  while (digits[len - 1] == '0') --len;
  out.push_back('.');
  out.append(digits, len);
}

// Label value escaping of the text format: backslash, double quote, newline.
void append_label_value(std::string& out, std::string_view v) {
  for (char c : v) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out.push_back(c); break;
    }
  }
}

void append_family(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help) {
  out += "# HELP ";
  out += name;
  out.push_back(' ');
  out += help;
  out += "\n# TYPE ";
  out += name;
  out.push_back(' ');
  out += type;
  out.push_back('\n');
}

// One unlabelled counter family.
void append_counter(std::string& out, std::string_view name, std::string_view help,
                    uint64_t value) {
  append_family(out, name, "counter", help);
  out += name;
  out.push_back(' ');
  append_u64(out, value);
  out.push_back('\n');
}

// One unlabelled gauge family.
void append_gauge(std::string& out, std::string_view name, std::string_view help, int64_t value) {
  append_family(out, name, "gauge", help);
  out += name;
  out.push_back(' ');
  append_i64(out, value);
  out.push_back('\n');
}

// Every shard block summed (everything but the per-shard loop counters).
struct Totals {
  std::array<std::array<uint64_t, static_cast<size_t>(ConnResult::count_)>, kMaxListeners>
      connections{};
  int64_t sessions_active = 0;
  std::array<uint64_t, static_cast<size_t>(TxnResult::count_)> transactions{};
  std::array<uint64_t, std::tuple_size_v<decltype(ShardMetrics::replies)>> replies{};
  uint64_t messages_accepted = 0;
  uint64_t message_bytes = 0;
  uint64_t bytes_in = 0;
  uint64_t spool_writes = 0;
  uint64_t spool_write_errors = 0;
  uint64_t timeouts = 0;
  uint64_t send_timeouts = 0;
  uint64_t ring_deferrals = 0;
  uint64_t ring_full = 0;
  int64_t body_memory_bytes = 0;
  uint64_t body_memory_refusals = 0;
  uint64_t body_spills = 0;
  uint64_t accept_pauses = 0;
  uint64_t relay_denied = 0;
  std::array<std::array<uint64_t, kDeliveryResults>, kMaxRoutes> deliveries{};
  std::array<uint64_t, Histogram::kBounds.size() + 1> delivery_buckets{};
  uint64_t delivery_sum_ns = 0;
  std::array<uint64_t, Histogram::kBounds.size() + 1> latency_buckets{};
  uint64_t latency_sum_ns = 0;
  std::array<std::array<uint64_t, kDnsResults>, kDnsTypes> dns_queries{};
  std::array<uint64_t, Histogram::kBounds.size() + 1> dns_buckets{};
  uint64_t dns_sum_ns = 0;
  uint64_t dns_hits = 0;
  uint64_t dns_misses = 0;
  int64_t dns_in_flight = 0;
  std::array<std::array<uint64_t, kRejectChecks>, kRejectStages> rejects{};
  uint64_t quarantined = 0;
  uint64_t discarded = 0;
  struct Milter {
    std::array<std::array<uint64_t, kMilterResults>, kMilterStages> calls{};
    std::array<uint64_t, Histogram::kBounds.size() + 1> buckets{};
    uint64_t sum_ns = 0;
    uint64_t timeouts = 0;
    uint64_t failures = 0;
    int64_t connections = 0;
    uint64_t reused = 0;
  };
  std::array<Milter, kMaxMilters> milters{};
  std::array<std::array<std::array<uint64_t, kAuthResults>, kAuthMechanisms>, kMaxListeners> auth{};
  std::array<uint64_t, Histogram::kBounds.size() + 1> auth_buckets{};
  uint64_t auth_sum_ns = 0;
  uint64_t auth_blocked_connections = 0;
  int64_t queue_messages = 0;
  int64_t queue_bytes = 0;
  int64_t queue_oldest_unix = 0;  // the oldest of every shard's; 0: none
  int64_t relay_open = 0;
  uint64_t relay_connections = 0;
  uint64_t relay_reused = 0;
  uint64_t relay_connect_failures = 0;
  uint64_t segments_reclaimed = 0;
  uint64_t dsn_queued = 0;
  uint64_t dsn_no_route = 0;
  uint64_t queue_full_refusals = 0;
  int64_t spool_free_bytes = -1;  // the least any shard saw; -1 before a check
  std::array<uint64_t, Histogram::kBounds.size() + 1> fsync_buckets{};
  uint64_t fsync_sum_ns = 0;
  std::array<std::array<std::array<uint64_t, kTlsResults>, kTlsVersions>, kMaxListeners>
      tls_handshakes{};
  std::array<uint64_t, Histogram::kBounds.size() + 1> tls_buckets{};
  uint64_t tls_sum_ns = 0;
  std::array<int64_t, kTlsVersions> tls_active{};
  uint64_t tls_resumed = 0;
};

void add_shard(Totals& t, const ShardMetrics& m) {
  for (size_t l = 0; l < kMaxListeners; ++l) {
    for (size_t r = 0; r < t.connections[l].size(); ++r) {
      t.connections[l][r] += m.connections[l][r].get();
    }
  }
  t.sessions_active += m.sessions_active.get();
  for (size_t r = 0; r < t.transactions.size(); ++r) t.transactions[r] += m.transactions[r].get();
  for (size_t c = 0; c < t.replies.size(); ++c) t.replies[c] += m.replies[c].get();
  t.messages_accepted += m.messages_accepted.get();
  t.message_bytes += m.message_bytes.get();
  t.bytes_in += m.bytes_in.get();
  t.spool_writes += m.spool_writes.get();
  t.spool_write_errors += m.spool_write_errors.get();
  t.timeouts += m.timeouts.get();
  t.send_timeouts += m.send_timeouts.get();
  t.ring_deferrals += m.ring_deferrals.get();
  t.ring_full += m.ring_full.get();
  t.body_memory_bytes += m.body_memory_bytes.get();
  t.body_memory_refusals += m.body_memory_refusals.get();
  t.body_spills += m.body_spills.get();
  t.accept_pauses += m.accept_pauses.get();
  t.relay_denied += m.relay_denied.get();
  for (size_t st = 0; st < kRejectStages; ++st) {
    for (size_t c = 0; c < kRejectChecks; ++c) t.rejects[st][c] += m.rejects[st][c].get();
  }
  t.quarantined += m.quarantined.get();
  t.discarded += m.discarded.get();
  for (size_t l = 0; l < kMaxListeners; ++l) {
    for (size_t k = 0; k < kAuthMechanisms; ++k) {
      for (size_t r = 0; r < kAuthResults; ++r) t.auth[l][k][r] += m.auth[l][k][r].get();
    }
  }
  for (size_t b = 0; b < t.auth_buckets.size(); ++b) {
    t.auth_buckets[b] += m.auth_backend_seconds.bucket(b);
  }
  t.auth_sum_ns += m.auth_backend_seconds.sum_ns();
  t.auth_blocked_connections += m.auth_blocked_connections.get();
  for (size_t i = 0; i < kMaxMilters; ++i) {
    Totals::Milter& to = t.milters[i];
    const MilterMetrics& from = m.milters[i];
    for (size_t st = 0; st < kMilterStages; ++st) {
      for (size_t r = 0; r < kMilterResults; ++r) to.calls[st][r] += from.calls[st][r].get();
    }
    for (size_t b = 0; b < to.buckets.size(); ++b) to.buckets[b] += from.seconds.bucket(b);
    to.sum_ns += from.seconds.sum_ns();
    to.timeouts += from.timeouts.get();
    to.failures += from.failures.get();
    to.connections += from.connections.get();
    to.reused += from.reused.get();
  }
  for (size_t r = 0; r < kMaxRoutes; ++r) {
    for (size_t k = 0; k < kDeliveryResults; ++k) t.deliveries[r][k] += m.deliveries[r][k].get();
  }
  for (size_t i = 0; i < t.delivery_buckets.size(); ++i) {
    t.delivery_buckets[i] += m.delivery_seconds.bucket(i);
  }
  t.delivery_sum_ns += m.delivery_seconds.sum_ns();
  for (size_t i = 0; i < t.latency_buckets.size(); ++i) {
    t.latency_buckets[i] += m.delivery_latency_seconds.bucket(i);
  }
  t.latency_sum_ns += m.delivery_latency_seconds.sum_ns();
  for (size_t ty = 0; ty < kDnsTypes; ++ty) {
    for (size_t r = 0; r < kDnsResults; ++r) t.dns_queries[ty][r] += m.dns.queries[ty][r].get();
  }
  for (size_t i = 0; i < t.dns_buckets.size(); ++i) t.dns_buckets[i] += m.dns.seconds.bucket(i);
  t.dns_sum_ns += m.dns.seconds.sum_ns();
  t.dns_hits += m.dns.cache_hits.get();
  t.dns_misses += m.dns.cache_misses.get();
  t.dns_in_flight += m.dns.in_flight.get();
  t.queue_messages += m.queue_messages.get();
  t.queue_bytes += m.queue_bytes.get();
  if (const int64_t o = m.queue_oldest_unix.get(); o > 0) {
    t.queue_oldest_unix = t.queue_oldest_unix == 0 ? o : std::min(t.queue_oldest_unix, o);
  }
  t.relay_open += m.relay_connections_open.get();
  t.relay_connections += m.relay_connections.get();
  t.relay_reused += m.relay_connections_reused.get();
  t.relay_connect_failures += m.relay_connect_failures.get();
  t.segments_reclaimed += m.segments_reclaimed.get();
  t.dsn_queued += m.dsn_queued.get();
  t.dsn_no_route += m.dsn_no_route.get();
  t.queue_full_refusals += m.queue_full_refusals.get();
  // Every shard's directory is in the one spool: the smallest figure is the freshest.
  const int64_t free_bytes = m.spool_free_bytes.get();
  if (free_bytes >= 0 && (t.spool_free_bytes < 0 || free_bytes < t.spool_free_bytes)) {
    t.spool_free_bytes = free_bytes;
  }
  for (size_t i = 0; i < t.fsync_buckets.size(); ++i) {
    t.fsync_buckets[i] += m.fsync_seconds.bucket(i);
  }
  t.fsync_sum_ns += m.fsync_seconds.sum_ns();
  for (size_t l = 0; l < kMaxListeners; ++l) {
    for (size_t v = 0; v < kTlsVersions; ++v) {
      for (size_t r = 0; r < kTlsResults; ++r) {
        t.tls_handshakes[l][v][r] += m.tls_handshakes[l][v][r].get();
      }
    }
  }
  for (size_t i = 0; i < t.tls_buckets.size(); ++i) {
    t.tls_buckets[i] += m.tls_handshake_seconds.bucket(i);
  }
  t.tls_sum_ns += m.tls_handshake_seconds.sum_ns();
  for (size_t v = 0; v < kTlsVersions; ++v) t.tls_active[v] += m.tls_sessions_active[v].get();
  t.tls_resumed += m.tls_resumed.get();
}

// One histogram series from summed buckets (the last is +Inf); `labels`
// ("milter=\"x\"") go in front of le.
void append_histogram_series(std::string& out, std::string_view name, std::string_view labels,
                             const std::array<uint64_t, Histogram::kBounds.size() + 1>& buckets,
                             uint64_t sum_ns) {
  const std::string braced = labels.empty() ? std::string() : "{" + std::string(labels) + "}";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < buckets.size(); ++i) {
    cumulative += buckets[i];
    out += name;
    out += "_bucket{";
    if (!labels.empty()) {
      out += labels;
      out += ',';
    }
    out += "le=\"";
    if (i < Histogram::kBounds.size()) {
      append_double(out, Histogram::kBounds[i]);
    } else {
      out += "+Inf";
    }
    out += "\"} ";
    append_u64(out, cumulative);
    out.push_back('\n');
  }
  out += name;
  out += "_sum";
  out += braced;
  out += ' ';
  append_ns_as_seconds(out, sum_ns);
  out.push_back('\n');
  // The count is the +Inf bucket so the two agree even when a scrape races an
  // observation (a bucket is bumped before the count).
  out += name;
  out += "_count";
  out += braced;
  out += ' ';
  append_u64(out, cumulative);
  out.push_back('\n');
}

// One unlabelled histogram family.
void append_histogram(std::string& out, std::string_view name, std::string_view help,
                      const std::array<uint64_t, Histogram::kBounds.size() + 1>& buckets,
                      uint64_t sum_ns) {
  append_family(out, name, "histogram", help);
  append_histogram_series(out, name, {}, buckets, sum_ns);
}

void append_milters(std::string& out, const Totals& t, const MetricsView& view) {
  const size_t n = std::min(view.milter_names.size(), kMaxMilters);
  if (n == 0) return;
  static constexpr std::string_view kStages[kMilterStages] = {"connect", "helo", "mail",
                                                              "rcpt",    "data", "message"};
  static constexpr std::string_view kResults[kMilterResults] = {
      "continue", "accept", "reject", "tempfail", "discard", "shutdown", "failed"};
  const auto label = [&](size_t i) {
    std::string l = "milter=\"";
    append_label_value(l, view.milter_names[i]);
    l += '"';
    return l;
  };
  append_family(out, "ringmx_milter_calls_total", "counter",
                "Milter steps by milter, stage and result (failed: no usable answer, the "
                "milter's default_action applied).");
  for (size_t i = 0; i < n; ++i) {
    for (size_t st = 0; st < kMilterStages; ++st) {
      for (size_t r = 0; r < kMilterResults; ++r) {
        out += "ringmx_milter_calls_total{";
        out += label(i);
        out += ",stage=\"";
        out += kStages[st];
        out += "\",result=\"";
        out += kResults[r];
        out += "\"} ";
        append_u64(out, t.milters[i].calls[st][r]);
        out.push_back('\n');
      }
    }
  }
  append_family(out, "ringmx_milter_duration_seconds", "histogram",
                "Time from a milter step's first command to its answer.");
  for (size_t i = 0; i < n; ++i) {
    append_histogram_series(out, "ringmx_milter_duration_seconds", label(i), t.milters[i].buckets,
                            t.milters[i].sum_ns);
  }
  // One labelled sample per milter.
  const auto per_milter = [&](std::string_view name, std::string_view type, std::string_view help,
                              auto value) {
    append_family(out, name, type, help);
    for (size_t i = 0; i < n; ++i) {
      out += name;
      out += '{';
      out += label(i);
      out += "} ";
      out += std::to_string(value(t.milters[i]));
      out.push_back('\n');
    }
  };
  per_milter("ringmx_milter_timeouts_total", "counter",
             "Milter steps that got no answer in time (command_timeout_ms, eom_timeout_ms, "
             "connect_timeout_ms).",
             [](const Totals::Milter& m) { return m.timeouts; });
  per_milter("ringmx_milter_failures_total", "counter",
             "Milter connections that failed: refused, lost, broke the protocol or timed out.",
             [](const Totals::Milter& m) { return m.failures; });
  per_milter("ringmx_milter_connections_reused_total", "counter",
             "SMTP sessions served by a milter connection kept from an earlier session "
             "(reuse_connections).",
             [](const Totals::Milter& m) { return m.reused; });
  per_milter("ringmx_milter_connections", "gauge", "Milter connections open.",
             [](const Totals::Milter& m) { return m.connections; });
}

// Only when some listener offers AUTH, and only those listeners' series.
void append_auth(std::string& out, const Totals& t, const MetricsView& view, size_t listeners) {
  listeners = std::min(listeners, view.auth_listeners.size());
  if (std::find(view.auth_listeners.begin(), view.auth_listeners.begin() + listeners, true) ==
      view.auth_listeners.begin() + listeners) {
    return;
  }
  append_family(out, "ringmx_auth_total", "counter",
                "SMTP AUTH attempts by listener, mechanism and result (success, failure: 535, "
                "tempfail and timeout: 454, blocked: too many failures).");
  for (size_t l = 0; l < listeners; ++l) {
    if (!view.auth_listeners[l]) continue;
    for (size_t k = 0; k < kAuthMechanisms; ++k) {
      for (size_t r = 0; r < kAuthResults; ++r) {
        out += "ringmx_auth_total{listener=\"";
        append_label_value(out, view.listener_names[l]);
        out += "\",mechanism=\"";
        out += kAuthMechanismNames[k];
        out += "\",result=\"";
        out += kAuthResultNames[r];
        out += "\"} ";
        append_u64(out, t.auth[l][k][r]);
        out.push_back('\n');
      }
    }
  }
  append_histogram(out, "ringmx_auth_backend_duration_seconds",
                   "Time from an AUTH's credentials to the backend's answer (or its timeout).",
                   t.auth_buckets, t.auth_sum_ns);
  append_counter(out, "ringmx_auth_blocked_connections_total",
                 "Connections refused at connect (421 4.7.0): their address failed AUTH too often.",
                 t.auth_blocked_connections);
}

void append_tls(std::string& out, const Totals& t, const MetricsView& view, size_t listeners) {
  append_family(out, "ringmx_tls_handshakes_total", "counter",
                "TLS handshakes by listener, protocol version and outcome.");
  for (size_t l = 0; l < listeners; ++l) {
    for (size_t v = 0; v < kTlsVersions; ++v) {
      for (size_t r = 0; r < kTlsResults; ++r) {
        // Only combinations that can happen: a version with ok, "none" with a failure.
        if ((v == 0) == (r == 0)) continue;
        out += "ringmx_tls_handshakes_total{listener=\"";
        append_label_value(out, view.listener_names[l]);
        out += "\",version=\"";
        out += kTlsVersionNames[v];
        out += "\",result=\"";
        out += kTlsResultNames[r];
        out += "\"} ";
        append_u64(out, t.tls_handshakes[l][v][r]);
        out.push_back('\n');
      }
    }
  }
  append_histogram(out, "ringmx_tls_handshake_duration_seconds",
                   "Time from the first handshake byte to a finished TLS handshake.", t.tls_buckets,
                   t.tls_sum_ns);
  append_counter(out, "ringmx_tls_resumed_total", "TLS handshakes that resumed a session.",
                 t.tls_resumed);
  append_family(out, "ringmx_tls_sessions_active", "gauge",
                "SMTP sessions over TLS now open, by protocol version.");
  for (size_t v = 1; v < kTlsVersions; ++v) {
    out += "ringmx_tls_sessions_active{version=\"";
    out += kTlsVersionNames[v];
    out += "\"} ";
    append_i64(out, t.tls_active[v]);
    out.push_back('\n');
  }
  append_family(out, "ringmx_tls_certificate_expiry_timestamp_seconds", "gauge",
                "When each loaded certificate expires, seconds since the epoch.");
  for (const CertificateMetric& c : view.certificates) {
    out += "ringmx_tls_certificate_expiry_timestamp_seconds{listener=\"";
    append_label_value(out, c.listener);
    out += "\",name=\"";
    append_label_value(out, c.name);
    out += "\",subject=\"";
    append_label_value(out, c.subject);
    out += "\"} ";
    append_i64(out, c.not_after);
    out.push_back('\n');
  }
}

}  // namespace

std::string_view tls_result_name(TlsResult r) {
  auto i = static_cast<size_t>(r);
  return i < kTlsResultNames.size() ? kTlsResultNames[i] : "unknown";
}

std::string_view tls_version_label(TlsVersionLabel v) {
  auto i = static_cast<size_t>(v);
  return i < kTlsVersionNames.size() ? kTlsVersionNames[i] : "unknown";
}

void Histogram::observe_ns(uint64_t ns) {
  size_t i = 0;
  while (i < kBoundsNs.size() && ns > kBoundsNs[i]) ++i;
  counts_[i].inc();
  sum_ns_.inc(ns);
  count_.inc();
}

std::string_view conn_result_name(ConnResult r) {
  auto i = static_cast<size_t>(r);
  return i < kConnResultNames.size() ? kConnResultNames[i] : "unknown";
}

std::string_view txn_result_name(TxnResult r) {
  auto i = static_cast<size_t>(r);
  return i < kTxnResultNames.size() ? kTxnResultNames[i] : "unknown";
}

void render_prometheus(std::string& out, const MetricsView& view) {
  Totals t;
  for (const ShardMetrics* m : view.shards) {
    if (m != nullptr) add_shard(t, *m);
  }
  size_t listeners = std::min(view.listener_names.size(), kMaxListeners);

  append_family(out, "ringmx_connections_total", "counter",
                "Inbound SMTP connections by listener and accept outcome.");
  for (size_t l = 0; l < listeners; ++l) {
    for (size_t r = 0; r < kConnResultNames.size(); ++r) {
      out += "ringmx_connections_total{listener=\"";
      append_label_value(out, view.listener_names[l]);
      out += "\",result=\"";
      out += kConnResultNames[r];
      out += "\"} ";
      append_u64(out, t.connections[l][r]);
      out.push_back('\n');
    }
  }

  append_gauge(out, "ringmx_sessions_active", "SMTP sessions currently open.", t.sessions_active);

  append_family(out, "ringmx_transactions_total", "counter",
                "Mail transactions (MAIL FROM onwards) by outcome.");
  for (size_t r = 0; r < kTxnResultNames.size(); ++r) {
    out += "ringmx_transactions_total{result=\"";
    out += kTxnResultNames[r];
    out += "\"} ";
    append_u64(out, t.transactions[r]);
    out.push_back('\n');
  }

  append_family(out, "ringmx_replies_total", "counter", "SMTP replies sent, by reply code.");
  for (size_t c = 0; c < t.replies.size(); ++c) {
    if (t.replies[c] == 0) continue;
    out += "ringmx_replies_total{code=\"";
    append_u64(out, c);
    out += "\"} ";
    append_u64(out, t.replies[c]);
    out.push_back('\n');
  }

  append_counter(out, "ringmx_messages_accepted_total", "Messages accepted into the spool.",
                 t.messages_accepted);
  append_counter(out, "ringmx_message_bytes_total", "Bytes of accepted messages, as stored.",
                 t.message_bytes);
  append_counter(out, "ringmx_received_bytes_total", "Bytes read from SMTP clients.", t.bytes_in);
  append_counter(out, "ringmx_spool_writes_total", "Spool batch writes.", t.spool_writes);
  append_counter(out, "ringmx_spool_write_errors_total", "Spool batch writes that failed.",
                 t.spool_write_errors);
  append_counter(out, "ringmx_session_timeouts_total", "SMTP sessions closed by a timeout.",
                 t.timeouts);
  append_counter(out, "ringmx_send_timeouts_total",
                 "Connections closed because the client took none of its output for "
                 "send_timeout_ms.",
                 t.send_timeouts);
  append_counter(out, "ringmx_ring_deferrals_total",
                 "Submission chains that waited for room in a shard's io_uring queue.",
                 t.ring_deferrals);
  append_counter(out, "ringmx_ring_queue_full_total",
                 "Times a shard's io_uring submission queue was full and was submitted early.",
                 t.ring_full);
  append_gauge(out, "ringmx_body_memory_bytes",
               "Message bodies held in memory while they are received and written.",
               t.body_memory_bytes);
  append_counter(out, "ringmx_body_memory_refusals_total",
                 "Message bodies not stored because a shard's body memory was full and the spool "
                 "could not take them (452 4.3.1).",
                 t.body_memory_refusals);
  append_counter(out, "ringmx_body_spills_total",
                 "Message bodies streamed to the spool as they arrived: past the body memory.",
                 t.body_spills);
  append_counter(out, "ringmx_relay_denied_total",
                 "Recipients refused with 550 5.7.1: their domain matches no route.",
                 t.relay_denied);
  append_family(out, "ringmx_delivery_total", "counter",
                "Recipients' delivery attempts by route and result (delivered, deferred: tried "
                "again later, failed: bounced).");
  const size_t routes = std::min(view.route_names.size(), kMaxRoutes);
  for (size_t r = 0; r < routes; ++r) {
    for (size_t k = 0; k < kDeliveryResults; ++k) {
      out += "ringmx_delivery_total{route=\"";
      append_label_value(out, view.route_names[r]);
      out += "\",result=\"";
      out += delivery_result_name(static_cast<DeliveryResult>(k));
      out += "\"} ";
      append_u64(out, t.deliveries[r][k]);
      out.push_back('\n');
    }
  }
  append_histogram(out, "ringmx_delivery_duration_seconds",
                   "One transaction with a destination, from its MAIL to its last reply.",
                   t.delivery_buckets, t.delivery_sum_ns);
  append_histogram(
      out, "ringmx_delivery_latency_seconds",
      "From a message's acceptance (on disk, 250 sent) to its delivery, per recipient.",
      t.latency_buckets, t.latency_sum_ns);
  append_family(out, "ringmx_dns_queries_total", "counter",
                "DNS queries sent by the shards' resolvers, by record type and outcome "
                "(found, not_found: NXDOMAIN or no data, timeout, error: SERVFAIL, refused, "
                "malformed, too many in flight).");
  static constexpr std::string_view kDnsTypeNames[kDnsTypes] = {"a",   "aaaa", "mx",
                                                                "txt", "ptr",  "other"};
  static constexpr std::string_view kDnsResultNames[kDnsResults] = {"found", "not_found", "timeout",
                                                                    "error"};
  for (size_t ty = 0; ty < kDnsTypes; ++ty) {
    for (size_t r = 0; r < kDnsResults; ++r) {
      out += "ringmx_dns_queries_total{type=\"";
      out += kDnsTypeNames[ty];
      out += "\",result=\"";
      out += kDnsResultNames[r];
      out += "\"} ";
      out += std::to_string(t.dns_queries[ty][r]);
      out += '\n';
    }
  }
  append_family(out, "ringmx_rejects_total", "counter",
                "Clients, commands and messages refused by a policy check, by stage and check "
                "(score: the connection's score reached checks.reject_score).");
  static constexpr std::string_view kRejectStageNames[kRejectStages] = {
      "connect", "helo", "mail", "rcpt", "data", "message", "command"};
  for (size_t st = 0; st < kRejectStages; ++st) {
    for (size_t c = 0; c < kRejectChecks; ++c) {
      // Only the pairs that can happen: a check at the stages it runs at.
      if (t.rejects[st][c] == 0 && !reject_pair_expected(st, c)) continue;
      out += "ringmx_rejects_total{stage=\"";
      out += kRejectStageNames[st];
      out += "\",check=\"";
      out += reject_check_name(static_cast<RejectCheck>(c));
      out += "\"} ";
      out += std::to_string(t.rejects[st][c]);
      out += '\n';
    }
  }
  append_counter(out, "ringmx_quarantined_total",
                 "Accepted messages held in the queue by the checks until an operator releases "
                 "them.",
                 t.quarantined);
  append_counter(out, "ringmx_discarded_total",
                 "Messages a milter said to discard: answered 250 and not stored.", t.discarded);
  append_milters(out, t, view);
  append_histogram(out, "ringmx_dns_duration_seconds",
                   "Time from a DNS query's sending to its answer or failure.", t.dns_buckets,
                   t.dns_sum_ns);
  append_counter(out, "ringmx_dns_cache_hits_total",
                 "DNS lookups answered from a shard's cache or joined to a query in flight.",
                 t.dns_hits);
  append_counter(out, "ringmx_dns_cache_misses_total", "DNS lookups that needed a query.",
                 t.dns_misses);
  append_gauge(out, "ringmx_dns_queries_in_flight", "DNS queries waiting for an answer.",
               t.dns_in_flight);
  append_gauge(out, "ringmx_queue_depth", "Accepted messages not yet delivered or bounced.",
               t.queue_messages);
  append_gauge(out, "ringmx_queue_bytes", "Size of the messages in ringmx_queue_depth.",
               t.queue_bytes);
  append_gauge(
      out, "ringmx_queue_oldest_message_age_seconds",
      "Time since the oldest message in ringmx_queue_depth arrived; 0 when none.",
      t.queue_oldest_unix == 0 ? 0 : std::max<int64_t>(0, view.now_unix - t.queue_oldest_unix));
  append_gauge(out, "ringmx_relay_connections_open", "Outbound connections to destinations.",
               t.relay_open);
  append_counter(out, "ringmx_relay_connections_total", "Outbound connections opened.",
                 t.relay_connections);
  append_counter(out, "ringmx_relay_connections_reused_total",
                 "Transactions sent on a connection that had carried one before.", t.relay_reused);
  append_counter(out, "ringmx_relay_connect_failures_total",
                 "Outbound connections that could not be set up (refused, timed out, greeting "
                 "refused).",
                 t.relay_connect_failures);
  append_family(out, "ringmx_dsn_total", "counter",
                "Delivery status notifications: queued to the sender, or dropped because no route "
                "reaches the sender's domain.");
  out += "ringmx_dsn_total{result=\"queued\"} ";
  append_u64(out, t.dsn_queued);
  out += "\nringmx_dsn_total{result=\"no_route\"} ";
  append_u64(out, t.dsn_no_route);
  out.push_back('\n');
  append_counter(out, "ringmx_queue_full_refusals_total",
                 "Transactions refused at MAIL with 452 4.3.1: more messages wait for delivery "
                 "than delivery.max_queue_messages.",
                 t.queue_full_refusals);
  append_counter(out, "ringmx_accept_pauses_total",
                 "Times a shard stopped accepting for a moment: out of file descriptors or memory.",
                 t.accept_pauses);

  append_histogram(out, "ringmx_spool_fsync_duration_seconds",
                   "Time to write and fsync one spool batch.", t.fsync_buckets, t.fsync_sum_ns);

  append_gauge(out, "ringmx_spool_bytes", "Bytes of messages in the spool.", view.spool_bytes);
  append_gauge(out, "ringmx_spool_free_bytes",
               "Free space (for an unprivileged writer) on the spool's file system; -1 before the "
               "first check.",
               t.spool_free_bytes);
  append_gauge(out, "ringmx_spool_messages", "Messages in the spool.", view.spool_messages);
  append_counter(out, "ringmx_spool_segments_removed_total",
                 "Spool segment files removed because every message in them was done.",
                 t.segments_reclaimed);
  append_counter(out, "ringmx_spool_recovery_bad_records_total",
                 "Damaged spool records start-up recovery set aside in corrupt/.",
                 view.spool_recovery_bad_records);

  append_tls(out, t, view, listeners);
  append_auth(out, t, view, listeners);

  append_family(out, "ringmx_shard_loop_iterations_total", "counter",
                "Event loop iterations per shard.");
  for (size_t s = 0; s < view.shards.size(); ++s) {
    if (view.shards[s] == nullptr) continue;
    out += "ringmx_shard_loop_iterations_total{shard=\"";
    append_u64(out, s);
    out += "\"} ";
    append_u64(out, view.shards[s]->loop_iterations.get());
    out.push_back('\n');
  }

  append_family(out, "ringmx_build_info", "gauge", "Build information; the value is always 1.");
  out += "ringmx_build_info{version=\"";
  append_label_value(out, view.version);
  out += "\"} 1\n";

  append_gauge(out, "ringmx_start_time_seconds", "Process start time, seconds since the epoch.",
               view.start_time_unix);
  append_counter(out, "ringmx_log_lines_dropped_total",
                 "Log lines lost because a shard's log ring was full.", view.log_lines_dropped);

  // The standard process series (Prometheus client conventions).
  const ProcessStats& p = view.process;
  append_family(out, "process_cpu_seconds_total", "counter",
                "Total user and system CPU time spent in seconds.");
  out += "process_cpu_seconds_total ";
  append_double(out, p.cpu_seconds);
  out.push_back('\n');
  append_gauge(out, "process_resident_memory_bytes", "Resident memory size in bytes.",
               p.resident_bytes);
  append_gauge(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.",
               p.virtual_bytes);
  append_gauge(out, "process_open_fds", "Number of open file descriptors.", p.open_fds);
  append_gauge(out, "process_max_fds", "Maximum number of open file descriptors.", p.max_fds);
  append_gauge(out, "process_start_time_seconds",
               "Start time of the process since unix epoch in seconds.", view.start_time_unix);
}

std::string_view delivery_result_name(DeliveryResult r) {
  switch (r) {
    case DeliveryResult::delivered: return "delivered";
    case DeliveryResult::deferred: return "deferred";
    case DeliveryResult::failed: return "failed";
    case DeliveryResult::count_: break;
  }
  return "unknown";
}

std::string_view reject_check_name(RejectCheck c) {
  static constexpr std::string_view kNames[kRejectChecks] = {"score",
                                                             "dnsbl",
                                                             "dnswl",
                                                             "ptr",
                                                             "helo",
                                                             "sender",
                                                             "recipients",
                                                             "headers",
                                                             "pregreet",
                                                             "http_probe",
                                                             "unoffered_pipelining",
                                                             "slow_command",
                                                             "rate",
                                                             "karma",
                                                             "milter",
                                                             "other"};
  const auto i = static_cast<size_t>(c);
  return i < kRejectChecks ? kNames[i] : "other";
}

RejectCheck reject_check_of(std::string_view name) {
  if (name.starts_with("milter_")) return RejectCheck::milter;
  for (size_t i = 0; i < kRejectChecks; ++i) {
    if (reject_check_name(static_cast<RejectCheck>(i)) == name) return static_cast<RejectCheck>(i);
  }
  return RejectCheck::other;
}

}  // namespace ringmx
