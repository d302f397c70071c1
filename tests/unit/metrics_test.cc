// Metric counters, histogram bucket placement and the Prometheus text
// rendering: exact output, summing across shards, escaping, promtool lint.
#include "core/metrics.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace ringmx {
namespace {

constexpr size_t kInf = Histogram::kBounds.size();

// Index of the only non-zero bucket after one observation.
size_t bucket_of(uint64_t ns) {
  Histogram h;
  h.observe_ns(ns);
  size_t found = kInf + 1;
  for (size_t i = 0; i <= kInf; ++i) {
    if (h.bucket(i) != 0) {
      EXPECT_EQ(found, kInf + 1) << "two buckets bumped for " << ns;
      found = i;
    }
  }
  return found;
}

TEST(Histogram, PlacementAtAndAroundBounds) {
  EXPECT_EQ(bucket_of(0), 0u);
  EXPECT_EQ(bucket_of(1), 0u);
  EXPECT_EQ(bucket_of(49'999), 0u);
  EXPECT_EQ(bucket_of(50'000), 0u);  // le="5e-05" includes the bound
  EXPECT_EQ(bucket_of(50'001), 1u);
  EXPECT_EQ(bucket_of(100'000), 1u);
  EXPECT_EQ(bucket_of(100'001), 2u);
  EXPECT_EQ(bucket_of(250'000), 2u);
  EXPECT_EQ(bucket_of(1'000'000), 4u);     // 1 ms
  EXPECT_EQ(bucket_of(1'000'001), 5u);     // just over 1 ms
  EXPECT_EQ(bucket_of(999'999'999), 13u);  // just under 1 s
  EXPECT_EQ(bucket_of(1'000'000'000), 13u);
  EXPECT_EQ(bucket_of(1'000'000'001), 14u);
  EXPECT_EQ(bucket_of(10'000'000'000), 15u);  // last finite bound
  EXPECT_EQ(bucket_of(10'000'000'001), kInf);
  EXPECT_EQ(bucket_of(UINT64_MAX), kInf);
  // Every bound, exactly and one nanosecond past it.
  for (size_t i = 0; i < kInf; ++i) {
    auto ns = static_cast<uint64_t>(Histogram::kBounds[i] * 1e9 + 0.5);
    EXPECT_EQ(bucket_of(ns), i) << Histogram::kBounds[i];
    EXPECT_EQ(bucket_of(ns + 1), i + 1) << Histogram::kBounds[i];
  }
}

TEST(Histogram, CountAndSum) {
  Histogram h;
  h.observe_ns(30'000);
  h.observe_ns(30'000);
  h.observe_ns(2'000'000);
  EXPECT_EQ(h.count(), 3u);
  EXPECT_EQ(h.sum_ns(), 2'060'000u);
  EXPECT_EQ(h.bucket(0), 2u);
  EXPECT_EQ(h.bucket(5), 1u);  // 2 ms <= 2.5 ms
}

TEST(Metrics, ResultNames) {
  EXPECT_EQ(conn_result_name(ConnResult::accepted), "accepted");
  EXPECT_EQ(conn_result_name(ConnResult::limit_total), "limit_total");
  EXPECT_EQ(conn_result_name(ConnResult::limit_per_ip), "limit_per_ip");
  EXPECT_EQ(conn_result_name(ConnResult::pregreet), "pregreet");
  EXPECT_EQ(conn_result_name(ConnResult::error), "error");
  EXPECT_EQ(conn_result_name(ConnResult::proxy_untrusted), "proxy_untrusted");
  EXPECT_EQ(conn_result_name(ConnResult::proxy_error), "proxy_error");
  EXPECT_EQ(conn_result_name(ConnResult::proxy_timeout), "proxy_timeout");
  EXPECT_EQ(txn_result_name(TxnResult::accepted), "accepted");
  EXPECT_EQ(txn_result_name(TxnResult::rejected), "rejected");
  EXPECT_EQ(txn_result_name(TxnResult::tempfail), "tempfail");
  EXPECT_EQ(txn_result_name(TxnResult::aborted), "aborted");
}

Counter& conn(ShardMetrics& m, size_t listener, ConnResult r) {
  return m.connections[listener][static_cast<size_t>(r)];
}

Counter& txn(ShardMetrics& m, TxnResult r) {
  return m.transactions[static_cast<size_t>(r)];
}

std::string render(const MetricsView& v) {
  std::string out;
  render_prometheus(out, v);
  return out;
}

TEST(Metrics, ExactTextForASmallView) {
  auto m = std::make_unique<ShardMetrics>();
  conn(*m, 0, ConnResult::accepted).inc(3);
  conn(*m, 0, ConnResult::pregreet).inc();
  m->sessions_active.add(2);
  txn(*m, TxnResult::accepted).inc(2);
  txn(*m, TxnResult::aborted).inc();
  m->replies[250].inc(7);
  m->replies[354].inc(2);
  m->messages_accepted.inc(2);
  m->message_bytes.inc(4096);
  m->rejects[0][static_cast<size_t>(RejectCheck::dnsbl)].inc(2);
  m->rejects[3][static_cast<size_t>(RejectCheck::other)].inc();  // shown once it happened
  m->bytes_in.inc(5000);
  m->spool_writes.inc(2);
  m->spool_write_errors.inc(0);
  m->fsync_seconds.observe_ns(40'000);     // <= 5e-05
  m->fsync_seconds.observe_ns(1'500'000);  // <= 0.0025
  m->loop_iterations.inc(99);
  m->timeouts.inc();
  m->tls_handshakes[0][static_cast<size_t>(TlsVersionLabel::tls1_3)]
                   [static_cast<size_t>(TlsResult::ok)]
                       .inc(4);
  m->tls_handshakes[0][static_cast<size_t>(TlsVersionLabel::none)]
                   [static_cast<size_t>(TlsResult::timeout)]
                       .inc();
  m->tls_handshake_seconds.observe_ns(3'000'000);  // <= 0.005
  m->tls_sessions_active[static_cast<size_t>(TlsVersionLabel::tls1_3)].add(1);
  m->tls_resumed.inc(2);
  m->deliveries[0][static_cast<size_t>(DeliveryResult::delivered)].inc(5);
  m->deliveries[0][static_cast<size_t>(DeliveryResult::deferred)].inc(2);
  m->delivery_seconds.observe_ns(700'000);  // <= 0.001
  m->queue_messages.add(1);
  m->queue_bytes.add(2048);
  m->queue_oldest_unix.set(1700000900);
  m->relay_connections_open.add(1);
  m->relay_connections.inc(2);
  m->relay_connections_reused.inc(3);
  m->relay_connect_failures.inc(1);

  MetricsView v;
  v.shards = {m.get()};
  v.listener_names = {"smtp"};
  v.route_names = {"store"};
  v.certificates = {{"smtp", "default", "mx.example.org", 1800000000}};
  v.spool_bytes = 8192;
  v.spool_messages = 2;
  v.start_time_unix = 1700000000;
  v.now_unix = 1700001000;
  v.version = "0.1.0";
  v.log_lines_dropped = 4;
  v.process = {1.25, 1048576, 4194304, 12, 1024};
  m->accept_pauses.inc(3);
  m->spool_free_bytes.set(123456789);

  const std::string expected =
      "# HELP ringmx_connections_total Inbound SMTP connections by listener and accept outcome.\n"
      "# TYPE ringmx_connections_total counter\n"
      "ringmx_connections_total{listener=\"smtp\",result=\"accepted\"} 3\n"
      "ringmx_connections_total{listener=\"smtp\",result=\"limit_total\"} 0\n"
      "ringmx_connections_total{listener=\"smtp\",result=\"limit_per_ip\"} 0\n"
      "ringmx_connections_total{listener=\"smtp\",result=\"pregreet\"} 1\n"
      "ringmx_connections_total{listener=\"smtp\",result=\"error\"} 0\n"
      "ringmx_connections_total{listener=\"smtp\",result=\"queue_full\"} 0\n"
      "ringmx_connections_total{listener=\"smtp\",result=\"proxy_untrusted\"} 0\n"
      "ringmx_connections_total{listener=\"smtp\",result=\"proxy_error\"} 0\n"
      "ringmx_connections_total{listener=\"smtp\",result=\"proxy_timeout\"} 0\n"
      "ringmx_connections_total{listener=\"smtp\",result=\"limit_per_network\"} 0\n"
      "# HELP ringmx_sessions_active SMTP sessions currently open.\n"
      "# TYPE ringmx_sessions_active gauge\n"
      "ringmx_sessions_active 2\n"
      "# HELP ringmx_transactions_total Mail transactions (MAIL FROM onwards) by outcome.\n"
      "# TYPE ringmx_transactions_total counter\n"
      "ringmx_transactions_total{result=\"accepted\"} 2\n"
      "ringmx_transactions_total{result=\"rejected\"} 0\n"
      "ringmx_transactions_total{result=\"tempfail\"} 0\n"
      "ringmx_transactions_total{result=\"aborted\"} 1\n"
      "# HELP ringmx_replies_total SMTP replies sent, by reply code.\n"
      "# TYPE ringmx_replies_total counter\n"
      "ringmx_replies_total{code=\"250\"} 7\n"
      "ringmx_replies_total{code=\"354\"} 2\n"
      "# HELP ringmx_messages_accepted_total Messages accepted into the spool.\n"
      "# TYPE ringmx_messages_accepted_total counter\n"
      "ringmx_messages_accepted_total 2\n"
      "# HELP ringmx_message_bytes_total Bytes of accepted messages, as stored.\n"
      "# TYPE ringmx_message_bytes_total counter\n"
      "ringmx_message_bytes_total 4096\n"
      "# HELP ringmx_received_bytes_total Bytes read from SMTP clients.\n"
      "# TYPE ringmx_received_bytes_total counter\n"
      "ringmx_received_bytes_total 5000\n"
      "# HELP ringmx_spool_writes_total Spool batch writes.\n"
      "# TYPE ringmx_spool_writes_total counter\n"
      "ringmx_spool_writes_total 2\n"
      "# HELP ringmx_spool_write_errors_total Spool batch writes that failed.\n"
      "# TYPE ringmx_spool_write_errors_total counter\n"
      "ringmx_spool_write_errors_total 0\n"
      "# HELP ringmx_session_timeouts_total SMTP sessions closed by a timeout.\n"
      "# TYPE ringmx_session_timeouts_total counter\n"
      "ringmx_session_timeouts_total 1\n"
      "# HELP ringmx_send_timeouts_total Connections closed because the client took none of its "
      "output for send_timeout_ms.\n"
      "# TYPE ringmx_send_timeouts_total counter\n"
      "ringmx_send_timeouts_total 0\n"
      "# HELP ringmx_ring_deferrals_total Submission chains that waited for room in a shard's "
      "io_uring queue.\n"
      "# TYPE ringmx_ring_deferrals_total counter\n"
      "ringmx_ring_deferrals_total 0\n"
      "# HELP ringmx_ring_queue_full_total Times a shard's io_uring submission queue was full and "
      "was submitted early.\n"
      "# TYPE ringmx_ring_queue_full_total counter\n"
      "ringmx_ring_queue_full_total 0\n"
      "# HELP ringmx_body_memory_bytes Message bodies held in memory while they are received and "
      "written.\n"
      "# TYPE ringmx_body_memory_bytes gauge\n"
      "ringmx_body_memory_bytes 0\n"
      "# HELP ringmx_body_memory_refusals_total Message bodies not stored because a shard's body "
      "memory was full and the spool could not take them (452 4.3.1).\n"
      "# TYPE ringmx_body_memory_refusals_total counter\n"
      "ringmx_body_memory_refusals_total 0\n"
      "# HELP ringmx_body_spills_total Message bodies streamed to the spool as they arrived: past "
      "the body memory.\n"
      "# TYPE ringmx_body_spills_total counter\n"
      "ringmx_body_spills_total 0\n"
      "# HELP ringmx_relay_denied_total Recipients refused with 550 5.7.1: their domain matches "
      "no route.\n"
      "# TYPE ringmx_relay_denied_total counter\n"
      "ringmx_relay_denied_total 0\n"
      "# HELP ringmx_delivery_total Recipients' delivery attempts by route and result (delivered, "
      "deferred: tried again later, failed: bounced).\n"
      "# TYPE ringmx_delivery_total counter\n"
      "ringmx_delivery_total{route=\"store\",result=\"delivered\"} 5\n"
      "ringmx_delivery_total{route=\"store\",result=\"deferred\"} 2\n"
      "ringmx_delivery_total{route=\"store\",result=\"failed\"} 0\n"
      "# HELP ringmx_delivery_duration_seconds One transaction with a destination, from its MAIL "
      "to its last reply.\n"
      "# TYPE ringmx_delivery_duration_seconds histogram\n"
      "ringmx_delivery_duration_seconds_bucket{le=\"5e-05\"} 0\n"
      "ringmx_delivery_duration_seconds_bucket{le=\"0.0001\"} 0\n"
      "ringmx_delivery_duration_seconds_bucket{le=\"0.00025\"} 0\n"
      "ringmx_delivery_duration_seconds_bucket{le=\"0.0005\"} 0\n"
      "ringmx_delivery_duration_seconds_bucket{le=\"0.001\"} 1\n"
      "ringmx_delivery_duration_seconds_bucket{le=\"0.0025\"} 1\n"
      "ringmx_delivery_duration_seconds_bucket{le=\"0.005\"} 1\n"
      "ringmx_delivery_duration_seconds_bucket{le=\"0.01\"} 1\n"
      "ringmx_delivery_duration_seconds_bucket{le=\"0.025\"} 1\n"
      "ringmx_delivery_duration_seconds_bucket{le=\"0.05\"} 1\n"
      "ringmx_delivery_duration_seconds_bucket{le=\"0.1\"} 1\n"
      "ringmx_delivery_duration_seconds_bucket{le=\"0.25\"} 1\n"
      "ringmx_delivery_duration_seconds_bucket{le=\"0.5\"} 1\n"
      "ringmx_delivery_duration_seconds_bucket{le=\"1\"} 1\n"
      "ringmx_delivery_duration_seconds_bucket{le=\"2.5\"} 1\n"
      "ringmx_delivery_duration_seconds_bucket{le=\"10\"} 1\n"
      "ringmx_delivery_duration_seconds_bucket{le=\"+Inf\"} 1\n"
      "ringmx_delivery_duration_seconds_sum 0.0007\n"
      "ringmx_delivery_duration_seconds_count 1\n"
      "# HELP ringmx_delivery_latency_seconds From a message's acceptance (on disk, 250 sent) to "
      "its delivery, per recipient.\n"
      "# TYPE ringmx_delivery_latency_seconds histogram\n"
      "ringmx_delivery_latency_seconds_bucket{le=\"5e-05\"} 0\n"
      "ringmx_delivery_latency_seconds_bucket{le=\"0.0001\"} 0\n"
      "ringmx_delivery_latency_seconds_bucket{le=\"0.00025\"} 0\n"
      "ringmx_delivery_latency_seconds_bucket{le=\"0.0005\"} 0\n"
      "ringmx_delivery_latency_seconds_bucket{le=\"0.001\"} 0\n"
      "ringmx_delivery_latency_seconds_bucket{le=\"0.0025\"} 0\n"
      "ringmx_delivery_latency_seconds_bucket{le=\"0.005\"} 0\n"
      "ringmx_delivery_latency_seconds_bucket{le=\"0.01\"} 0\n"
      "ringmx_delivery_latency_seconds_bucket{le=\"0.025\"} 0\n"
      "ringmx_delivery_latency_seconds_bucket{le=\"0.05\"} 0\n"
      "ringmx_delivery_latency_seconds_bucket{le=\"0.1\"} 0\n"
      "ringmx_delivery_latency_seconds_bucket{le=\"0.25\"} 0\n"
      "ringmx_delivery_latency_seconds_bucket{le=\"0.5\"} 0\n"
      "ringmx_delivery_latency_seconds_bucket{le=\"1\"} 0\n"
      "ringmx_delivery_latency_seconds_bucket{le=\"2.5\"} 0\n"
      "ringmx_delivery_latency_seconds_bucket{le=\"10\"} 0\n"
      "ringmx_delivery_latency_seconds_bucket{le=\"+Inf\"} 0\n"
      "ringmx_delivery_latency_seconds_sum 0\n"
      "ringmx_delivery_latency_seconds_count 0\n"
      "# HELP ringmx_dns_queries_total DNS queries sent by the shards' resolvers, by record type "
      "and outcome (found, not_found: NXDOMAIN or no data, timeout, error: SERVFAIL, refused, "
      "malformed, too many in flight).\n"
      "# TYPE ringmx_dns_queries_total counter\n"
      "ringmx_dns_queries_total{type=\"a\",result=\"found\"} 0\n"
      "ringmx_dns_queries_total{type=\"a\",result=\"not_found\"} 0\n"
      "ringmx_dns_queries_total{type=\"a\",result=\"timeout\"} 0\n"
      "ringmx_dns_queries_total{type=\"a\",result=\"error\"} 0\n"
      "ringmx_dns_queries_total{type=\"aaaa\",result=\"found\"} 0\n"
      "ringmx_dns_queries_total{type=\"aaaa\",result=\"not_found\"} 0\n"
      "ringmx_dns_queries_total{type=\"aaaa\",result=\"timeout\"} 0\n"
      "ringmx_dns_queries_total{type=\"aaaa\",result=\"error\"} 0\n"
      "ringmx_dns_queries_total{type=\"mx\",result=\"found\"} 0\n"
      "ringmx_dns_queries_total{type=\"mx\",result=\"not_found\"} 0\n"
      "ringmx_dns_queries_total{type=\"mx\",result=\"timeout\"} 0\n"
      "ringmx_dns_queries_total{type=\"mx\",result=\"error\"} 0\n"
      "ringmx_dns_queries_total{type=\"txt\",result=\"found\"} 0\n"
      "ringmx_dns_queries_total{type=\"txt\",result=\"not_found\"} 0\n"
      "ringmx_dns_queries_total{type=\"txt\",result=\"timeout\"} 0\n"
      "ringmx_dns_queries_total{type=\"txt\",result=\"error\"} 0\n"
      "ringmx_dns_queries_total{type=\"ptr\",result=\"found\"} 0\n"
      "ringmx_dns_queries_total{type=\"ptr\",result=\"not_found\"} 0\n"
      "ringmx_dns_queries_total{type=\"ptr\",result=\"timeout\"} 0\n"
      "ringmx_dns_queries_total{type=\"ptr\",result=\"error\"} 0\n"
      "ringmx_dns_queries_total{type=\"other\",result=\"found\"} 0\n"
      "ringmx_dns_queries_total{type=\"other\",result=\"not_found\"} 0\n"
      "ringmx_dns_queries_total{type=\"other\",result=\"timeout\"} 0\n"
      "ringmx_dns_queries_total{type=\"other\",result=\"error\"} 0\n"
      "# HELP ringmx_rejects_total Clients, commands and messages refused by a policy check, by "
      "stage and check (score: the connection's score reached checks.reject_score).\n"
      "# TYPE ringmx_rejects_total counter\n"
      "ringmx_rejects_total{stage=\"connect\",check=\"score\"} 0\n"
      "ringmx_rejects_total{stage=\"connect\",check=\"dnsbl\"} 2\n"
      "ringmx_rejects_total{stage=\"connect\",check=\"dnswl\"} 0\n"
      "ringmx_rejects_total{stage=\"connect\",check=\"ptr\"} 0\n"
      "ringmx_rejects_total{stage=\"connect\",check=\"pregreet\"} 0\n"
      "ringmx_rejects_total{stage=\"connect\",check=\"rate\"} 0\n"
      "ringmx_rejects_total{stage=\"connect\",check=\"karma\"} 0\n"
      "ringmx_rejects_total{stage=\"connect\",check=\"milter\"} 0\n"
      "ringmx_rejects_total{stage=\"helo\",check=\"score\"} 0\n"
      "ringmx_rejects_total{stage=\"helo\",check=\"helo\"} 0\n"
      "ringmx_rejects_total{stage=\"helo\",check=\"milter\"} 0\n"
      "ringmx_rejects_total{stage=\"mail\",check=\"score\"} 0\n"
      "ringmx_rejects_total{stage=\"mail\",check=\"sender\"} 0\n"
      "ringmx_rejects_total{stage=\"mail\",check=\"rate\"} 0\n"
      "ringmx_rejects_total{stage=\"mail\",check=\"milter\"} 0\n"
      "ringmx_rejects_total{stage=\"rcpt\",check=\"score\"} 0\n"
      "ringmx_rejects_total{stage=\"rcpt\",check=\"recipients\"} 0\n"
      "ringmx_rejects_total{stage=\"rcpt\",check=\"rate\"} 0\n"
      "ringmx_rejects_total{stage=\"rcpt\",check=\"milter\"} 0\n"
      "ringmx_rejects_total{stage=\"rcpt\",check=\"other\"} 1\n"
      "ringmx_rejects_total{stage=\"data\",check=\"milter\"} 0\n"
      "ringmx_rejects_total{stage=\"message\",check=\"headers\"} 0\n"
      "ringmx_rejects_total{stage=\"message\",check=\"milter\"} 0\n"
      "ringmx_rejects_total{stage=\"command\",check=\"http_probe\"} 0\n"
      "ringmx_rejects_total{stage=\"command\",check=\"unoffered_pipelining\"} 0\n"
      "ringmx_rejects_total{stage=\"command\",check=\"slow_command\"} 0\n"
      "# HELP ringmx_quarantined_total Accepted messages held in the queue by the checks until "
      "an operator releases them.\n"
      "# TYPE ringmx_quarantined_total counter\n"
      "ringmx_quarantined_total 0\n"
      "# HELP ringmx_discarded_total Messages a milter said to discard: answered 250 and not "
      "stored.\n"
      "# TYPE ringmx_discarded_total counter\n"
      "ringmx_discarded_total 0\n"
      "# HELP ringmx_dns_duration_seconds Time from a DNS query's sending to its answer or "
      "failure.\n"
      "# TYPE ringmx_dns_duration_seconds histogram\n"
      "ringmx_dns_duration_seconds_bucket{le=\"5e-05\"} 0\n"
      "ringmx_dns_duration_seconds_bucket{le=\"0.0001\"} 0\n"
      "ringmx_dns_duration_seconds_bucket{le=\"0.00025\"} 0\n"
      "ringmx_dns_duration_seconds_bucket{le=\"0.0005\"} 0\n"
      "ringmx_dns_duration_seconds_bucket{le=\"0.001\"} 0\n"
      "ringmx_dns_duration_seconds_bucket{le=\"0.0025\"} 0\n"
      "ringmx_dns_duration_seconds_bucket{le=\"0.005\"} 0\n"
      "ringmx_dns_duration_seconds_bucket{le=\"0.01\"} 0\n"
      "ringmx_dns_duration_seconds_bucket{le=\"0.025\"} 0\n"
      "ringmx_dns_duration_seconds_bucket{le=\"0.05\"} 0\n"
      "ringmx_dns_duration_seconds_bucket{le=\"0.1\"} 0\n"
      "ringmx_dns_duration_seconds_bucket{le=\"0.25\"} 0\n"
      "ringmx_dns_duration_seconds_bucket{le=\"0.5\"} 0\n"
      "ringmx_dns_duration_seconds_bucket{le=\"1\"} 0\n"
      "ringmx_dns_duration_seconds_bucket{le=\"2.5\"} 0\n"
      "ringmx_dns_duration_seconds_bucket{le=\"10\"} 0\n"
      "ringmx_dns_duration_seconds_bucket{le=\"+Inf\"} 0\n"
      "ringmx_dns_duration_seconds_sum 0\n"
      "ringmx_dns_duration_seconds_count 0\n"
      "# HELP ringmx_dns_cache_hits_total DNS lookups answered from a shard's cache or joined to a "
      "query in flight.\n"
      "# TYPE ringmx_dns_cache_hits_total counter\n"
      "ringmx_dns_cache_hits_total 0\n"
      "# HELP ringmx_dns_cache_misses_total DNS lookups that needed a query.\n"
      "# TYPE ringmx_dns_cache_misses_total counter\n"
      "ringmx_dns_cache_misses_total 0\n"
      "# HELP ringmx_dns_queries_in_flight DNS queries waiting for an answer.\n"
      "# TYPE ringmx_dns_queries_in_flight gauge\n"
      "ringmx_dns_queries_in_flight 0\n"
      "# HELP ringmx_queue_depth Accepted messages not yet delivered or bounced.\n"
      "# TYPE ringmx_queue_depth gauge\n"
      "ringmx_queue_depth 1\n"
      "# HELP ringmx_queue_bytes Size of the messages in ringmx_queue_depth.\n"
      "# TYPE ringmx_queue_bytes gauge\n"
      "ringmx_queue_bytes 2048\n"
      "# HELP ringmx_queue_oldest_message_age_seconds Time since the oldest message in "
      "ringmx_queue_depth arrived; 0 when none.\n"
      "# TYPE ringmx_queue_oldest_message_age_seconds gauge\n"
      "ringmx_queue_oldest_message_age_seconds 100\n"
      "# HELP ringmx_relay_connections_open Outbound connections to destinations.\n"
      "# TYPE ringmx_relay_connections_open gauge\n"
      "ringmx_relay_connections_open 1\n"
      "# HELP ringmx_relay_connections_total Outbound connections opened.\n"
      "# TYPE ringmx_relay_connections_total counter\n"
      "ringmx_relay_connections_total 2\n"
      "# HELP ringmx_relay_connections_reused_total Transactions sent on a connection that had "
      "carried one before.\n"
      "# TYPE ringmx_relay_connections_reused_total counter\n"
      "ringmx_relay_connections_reused_total 3\n"
      "# HELP ringmx_relay_connect_failures_total Outbound connections that could not be set up "
      "(refused, timed out, greeting refused).\n"
      "# TYPE ringmx_relay_connect_failures_total counter\n"
      "ringmx_relay_connect_failures_total 1\n"
      "# HELP ringmx_dsn_total Delivery status notifications: queued to the sender, or dropped "
      "because no route reaches the sender's domain.\n"
      "# TYPE ringmx_dsn_total counter\n"
      "ringmx_dsn_total{result=\"queued\"} 0\n"
      "ringmx_dsn_total{result=\"no_route\"} 0\n"
      "# HELP ringmx_queue_full_refusals_total Transactions refused at MAIL with 452 4.3.1: "
      "more messages wait for delivery than delivery.max_queue_messages.\n"
      "# TYPE ringmx_queue_full_refusals_total counter\n"
      "ringmx_queue_full_refusals_total 0\n"
      "# HELP ringmx_accept_pauses_total Times a shard stopped accepting for a moment: out of file "
      "descriptors or memory.\n"
      "# TYPE ringmx_accept_pauses_total counter\n"
      "ringmx_accept_pauses_total 3\n"
      "# HELP ringmx_spool_fsync_duration_seconds Time to write and fsync one spool batch.\n"
      "# TYPE ringmx_spool_fsync_duration_seconds histogram\n"
      "ringmx_spool_fsync_duration_seconds_bucket{le=\"5e-05\"} 1\n"
      "ringmx_spool_fsync_duration_seconds_bucket{le=\"0.0001\"} 1\n"
      "ringmx_spool_fsync_duration_seconds_bucket{le=\"0.00025\"} 1\n"
      "ringmx_spool_fsync_duration_seconds_bucket{le=\"0.0005\"} 1\n"
      "ringmx_spool_fsync_duration_seconds_bucket{le=\"0.001\"} 1\n"
      "ringmx_spool_fsync_duration_seconds_bucket{le=\"0.0025\"} 2\n"
      "ringmx_spool_fsync_duration_seconds_bucket{le=\"0.005\"} 2\n"
      "ringmx_spool_fsync_duration_seconds_bucket{le=\"0.01\"} 2\n"
      "ringmx_spool_fsync_duration_seconds_bucket{le=\"0.025\"} 2\n"
      "ringmx_spool_fsync_duration_seconds_bucket{le=\"0.05\"} 2\n"
      "ringmx_spool_fsync_duration_seconds_bucket{le=\"0.1\"} 2\n"
      "ringmx_spool_fsync_duration_seconds_bucket{le=\"0.25\"} 2\n"
      "ringmx_spool_fsync_duration_seconds_bucket{le=\"0.5\"} 2\n"
      "ringmx_spool_fsync_duration_seconds_bucket{le=\"1\"} 2\n"
      "ringmx_spool_fsync_duration_seconds_bucket{le=\"2.5\"} 2\n"
      "ringmx_spool_fsync_duration_seconds_bucket{le=\"10\"} 2\n"
      "ringmx_spool_fsync_duration_seconds_bucket{le=\"+Inf\"} 2\n"
      "ringmx_spool_fsync_duration_seconds_sum 0.00154\n"
      "ringmx_spool_fsync_duration_seconds_count 2\n"
      "# HELP ringmx_spool_bytes Bytes of messages in the spool.\n"
      "# TYPE ringmx_spool_bytes gauge\n"
      "ringmx_spool_bytes 8192\n"
      "# HELP ringmx_spool_free_bytes Free space (for an unprivileged writer) on the spool's file "
      "system; -1 before the first check.\n"
      "# TYPE ringmx_spool_free_bytes gauge\n"
      "ringmx_spool_free_bytes 123456789\n"
      "# HELP ringmx_spool_messages Messages in the spool.\n"
      "# TYPE ringmx_spool_messages gauge\n"
      "ringmx_spool_messages 2\n"
      "# HELP ringmx_spool_segments_removed_total Spool segment files removed because every "
      "message in them was done.\n"
      "# TYPE ringmx_spool_segments_removed_total counter\n"
      "ringmx_spool_segments_removed_total 0\n"
      "# HELP ringmx_spool_recovery_bad_records_total Damaged spool records start-up recovery "
      "set aside in corrupt/.\n"
      "# TYPE ringmx_spool_recovery_bad_records_total counter\n"
      "ringmx_spool_recovery_bad_records_total 0\n"
      "# HELP ringmx_tls_handshakes_total TLS handshakes by listener, protocol version and "
      "outcome.\n"
      "# TYPE ringmx_tls_handshakes_total counter\n"
      "ringmx_tls_handshakes_total{listener=\"smtp\",version=\"none\",result=\"failed\"} 0\n"
      "ringmx_tls_handshakes_total{listener=\"smtp\",version=\"none\",result=\"timeout\"} 1\n"
      "ringmx_tls_handshakes_total{listener=\"smtp\",version=\"TLS1_2\",result=\"ok\"} 0\n"
      "ringmx_tls_handshakes_total{listener=\"smtp\",version=\"TLS1_3\",result=\"ok\"} 4\n"
      "# HELP ringmx_tls_handshake_duration_seconds Time from the first handshake byte to a "
      "finished TLS handshake.\n"
      "# TYPE ringmx_tls_handshake_duration_seconds histogram\n"
      "ringmx_tls_handshake_duration_seconds_bucket{le=\"5e-05\"} 0\n"
      "ringmx_tls_handshake_duration_seconds_bucket{le=\"0.0001\"} 0\n"
      "ringmx_tls_handshake_duration_seconds_bucket{le=\"0.00025\"} 0\n"
      "ringmx_tls_handshake_duration_seconds_bucket{le=\"0.0005\"} 0\n"
      "ringmx_tls_handshake_duration_seconds_bucket{le=\"0.001\"} 0\n"
      "ringmx_tls_handshake_duration_seconds_bucket{le=\"0.0025\"} 0\n"
      "ringmx_tls_handshake_duration_seconds_bucket{le=\"0.005\"} 1\n"
      "ringmx_tls_handshake_duration_seconds_bucket{le=\"0.01\"} 1\n"
      "ringmx_tls_handshake_duration_seconds_bucket{le=\"0.025\"} 1\n"
      "ringmx_tls_handshake_duration_seconds_bucket{le=\"0.05\"} 1\n"
      "ringmx_tls_handshake_duration_seconds_bucket{le=\"0.1\"} 1\n"
      "ringmx_tls_handshake_duration_seconds_bucket{le=\"0.25\"} 1\n"
      "ringmx_tls_handshake_duration_seconds_bucket{le=\"0.5\"} 1\n"
      "ringmx_tls_handshake_duration_seconds_bucket{le=\"1\"} 1\n"
      "ringmx_tls_handshake_duration_seconds_bucket{le=\"2.5\"} 1\n"
      "ringmx_tls_handshake_duration_seconds_bucket{le=\"10\"} 1\n"
      "ringmx_tls_handshake_duration_seconds_bucket{le=\"+Inf\"} 1\n"
      "ringmx_tls_handshake_duration_seconds_sum 0.003\n"
      "ringmx_tls_handshake_duration_seconds_count 1\n"
      "# HELP ringmx_tls_resumed_total TLS handshakes that resumed a session.\n"
      "# TYPE ringmx_tls_resumed_total counter\n"
      "ringmx_tls_resumed_total 2\n"
      "# HELP ringmx_tls_sessions_active SMTP sessions over TLS now open, by protocol version.\n"
      "# TYPE ringmx_tls_sessions_active gauge\n"
      "ringmx_tls_sessions_active{version=\"TLS1_2\"} 0\n"
      "ringmx_tls_sessions_active{version=\"TLS1_3\"} 1\n"
      "# HELP ringmx_tls_certificate_expiry_timestamp_seconds When each loaded certificate "
      "expires, seconds since the epoch.\n"
      "# TYPE ringmx_tls_certificate_expiry_timestamp_seconds gauge\n"
      "ringmx_tls_certificate_expiry_timestamp_seconds{listener=\"smtp\",name=\"default\","
      "subject=\"mx.example.org\"} 1800000000\n"
      "# HELP ringmx_shard_loop_iterations_total Event loop iterations per shard.\n"
      "# TYPE ringmx_shard_loop_iterations_total counter\n"
      "ringmx_shard_loop_iterations_total{shard=\"0\"} 99\n"
      "# HELP ringmx_build_info Build information; the value is always 1.\n"
      "# TYPE ringmx_build_info gauge\n"
      "ringmx_build_info{version=\"0.1.0\"} 1\n"
      "# HELP ringmx_start_time_seconds Process start time, seconds since the epoch.\n"
      "# TYPE ringmx_start_time_seconds gauge\n"
      "ringmx_start_time_seconds 1700000000\n"
      "# HELP ringmx_log_lines_dropped_total Log lines lost because a shard's log ring was full.\n"
      "# TYPE ringmx_log_lines_dropped_total counter\n"
      "ringmx_log_lines_dropped_total 4\n"
      "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
      "# TYPE process_cpu_seconds_total counter\n"
      "process_cpu_seconds_total 1.25\n"
      "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
      "# TYPE process_resident_memory_bytes gauge\n"
      "process_resident_memory_bytes 1048576\n"
      "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
      "# TYPE process_virtual_memory_bytes gauge\n"
      "process_virtual_memory_bytes 4194304\n"
      "# HELP process_open_fds Number of open file descriptors.\n"
      "# TYPE process_open_fds gauge\n"
      "process_open_fds 12\n"
      "# HELP process_max_fds Maximum number of open file descriptors.\n"
      "# TYPE process_max_fds gauge\n"
      "process_max_fds 1024\n"
      "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
      "# TYPE process_start_time_seconds gauge\n"
      "process_start_time_seconds 1700000000\n";
  EXPECT_EQ(render(v), expected);
}

TEST(Metrics, TheQueuesOldestMessageIsTheOldestOfAnyShard) {
  ShardMetrics a;
  ShardMetrics b;
  ShardMetrics none;
  a.queue_oldest_unix.set(1700000500);
  b.queue_oldest_unix.set(1700000100);
  MetricsView v;
  v.now_unix = 1700001000;
  const auto age = [&v] {
    const std::string out = render(v);
    const std::string key = "\nringmx_queue_oldest_message_age_seconds ";
    const size_t at = out.find(key);
    return at == std::string::npos
               ? std::string("missing")
               : out.substr(at + key.size(), out.find('\n', at + 1) - at - key.size());
  };
  v.shards = {&none, &a, &b};
  EXPECT_EQ(age(), "900");
  v.shards = {&a, &none};
  EXPECT_EQ(age(), "500");
  v.shards = {&none};
  EXPECT_EQ(age(), "0");    // an empty queue: 0, not the time since 1970
  v.now_unix = 1700000000;  // a clock stepped back: never negative
  v.shards = {&a};
  EXPECT_EQ(age(), "0");
}

TEST(Metrics, RenderAppends) {
  MetricsView v;
  std::string out = "prefix\n";
  render_prometheus(out, v);
  EXPECT_EQ(out.rfind("prefix\n# HELP ringmx_connections_total ", 0), 0u);
  EXPECT_EQ(out.back(), '\n');
}

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.rfind(line + "\n", 0) == 0;
}

TEST(Metrics, SumsAcrossThreeShards) {
  std::vector<std::unique_ptr<ShardMetrics>> shards;
  for (int i = 0; i < 3; ++i) shards.push_back(std::make_unique<ShardMetrics>());
  MetricsView v;
  v.listener_names = {"mx", "submission"};
  for (size_t i = 0; i < shards.size(); ++i) {
    ShardMetrics& m = *shards[i];
    v.shards.push_back(&m);
    conn(m, 0, ConnResult::accepted).inc(i + 1);             // 1+2+3
    conn(m, 1, ConnResult::limit_per_ip).inc(10 * (i + 1));  // 10+20+30
    m.sessions_active.add(static_cast<int64_t>(i) - 1);      // -1+0+1
    txn(m, TxnResult::tempfail).inc(5);
    m.replies[250].inc(100);
    if (i == 2) m.replies[421].inc();
    m.messages_accepted.inc(i);
    m.message_bytes.inc(1000);
    m.bytes_in.inc(2000);
    m.spool_writes.inc(4);
    m.spool_write_errors.inc(i == 1 ? 1 : 0);
    m.timeouts.inc(i);
    m.fsync_seconds.observe_ns(100'000 * (i + 1));  // 0.0001, 0.0002, 0.0003
    m.loop_iterations.inc(1000 + i);
  }
  std::string out = render(v);
  EXPECT_TRUE(has_line(out, "ringmx_connections_total{listener=\"mx\",result=\"accepted\"} 6"));
  EXPECT_TRUE(has_line(out, "ringmx_connections_total{listener=\"mx\",result=\"limit_per_ip\"} 0"));
  EXPECT_TRUE(has_line(
      out, "ringmx_connections_total{listener=\"submission\",result=\"limit_per_ip\"} 60"));
  EXPECT_TRUE(
      has_line(out, "ringmx_connections_total{listener=\"submission\",result=\"accepted\"} 0"));
  EXPECT_TRUE(has_line(out, "ringmx_sessions_active 0"));
  EXPECT_TRUE(has_line(out, "ringmx_transactions_total{result=\"tempfail\"} 15"));
  EXPECT_TRUE(has_line(out, "ringmx_replies_total{code=\"250\"} 300"));
  EXPECT_TRUE(has_line(out, "ringmx_replies_total{code=\"421\"} 1"));
  EXPECT_EQ(out.find("ringmx_replies_total{code=\"220\"}"), std::string::npos);
  EXPECT_TRUE(has_line(out, "ringmx_messages_accepted_total 3"));
  EXPECT_TRUE(has_line(out, "ringmx_message_bytes_total 3000"));
  EXPECT_TRUE(has_line(out, "ringmx_received_bytes_total 6000"));
  EXPECT_TRUE(has_line(out, "ringmx_spool_writes_total 12"));
  EXPECT_TRUE(has_line(out, "ringmx_spool_write_errors_total 1"));
  EXPECT_TRUE(has_line(out, "ringmx_session_timeouts_total 3"));
  EXPECT_TRUE(has_line(out, "ringmx_spool_fsync_duration_seconds_bucket{le=\"5e-05\"} 0"));
  EXPECT_TRUE(has_line(out, "ringmx_spool_fsync_duration_seconds_bucket{le=\"0.0001\"} 1"));
  EXPECT_TRUE(has_line(out, "ringmx_spool_fsync_duration_seconds_bucket{le=\"0.00025\"} 2"));
  EXPECT_TRUE(has_line(out, "ringmx_spool_fsync_duration_seconds_bucket{le=\"0.0005\"} 3"));
  EXPECT_TRUE(has_line(out, "ringmx_spool_fsync_duration_seconds_bucket{le=\"+Inf\"} 3"));
  EXPECT_TRUE(has_line(out, "ringmx_spool_fsync_duration_seconds_sum 0.0006"));
  EXPECT_TRUE(has_line(out, "ringmx_spool_fsync_duration_seconds_count 3"));
  // Loop iterations stay per shard.
  EXPECT_TRUE(has_line(out, "ringmx_shard_loop_iterations_total{shard=\"0\"} 1000"));
  EXPECT_TRUE(has_line(out, "ringmx_shard_loop_iterations_total{shard=\"1\"} 1001"));
  EXPECT_TRUE(has_line(out, "ringmx_shard_loop_iterations_total{shard=\"2\"} 1002"));
  EXPECT_EQ(out.find("{shard=\"3\"}"), std::string::npos);
}

TEST(Metrics, LargeHistogramSumIsExact) {
  auto m = std::make_unique<ShardMetrics>();
  m->fsync_seconds.observe_ns(12'000'000'007);
  m->fsync_seconds.observe_ns(3'000'000'000);
  MetricsView v;
  v.shards = {m.get()};
  std::string out = render(v);
  EXPECT_TRUE(has_line(out, "ringmx_spool_fsync_duration_seconds_sum 15.000000007"));
  EXPECT_TRUE(has_line(out, "ringmx_spool_fsync_duration_seconds_bucket{le=\"10\"} 1"));
  EXPECT_TRUE(has_line(out, "ringmx_spool_fsync_duration_seconds_bucket{le=\"+Inf\"} 2"));
}

TEST(Metrics, LabelValuesAreEscaped) {
  auto m = std::make_unique<ShardMetrics>();
  MetricsView v;
  v.shards = {m.get()};
  v.listener_names = {"a\"b\\c\nd"};
  v.version = "1.0 \"x\"\\\n";
  std::string out = render(v);
  EXPECT_TRUE(has_line(
      out, "ringmx_connections_total{listener=\"a\\\"b\\\\c\\nd\",result=\"accepted\"} 0"));
  EXPECT_TRUE(has_line(out, "ringmx_build_info{version=\"1.0 \\\"x\\\"\\\\\\n\"} 1"));
  // Exactly one physical line per sample: the raw newline never leaks.
  EXPECT_EQ(out.find("\nd\""), std::string::npos);
}

TEST(Metrics, ListenersBeyondTheArrayAreIgnored) {
  auto m = std::make_unique<ShardMetrics>();
  MetricsView v;
  v.shards = {m.get(), nullptr};
  for (size_t i = 0; i < kMaxListeners + 2; ++i)
    v.listener_names.push_back("l" + std::to_string(i));
  std::string out = render(v);
  EXPECT_NE(out.find("listener=\"l15\""), std::string::npos);
  EXPECT_EQ(out.find("listener=\"l16\""), std::string::npos);
  EXPECT_EQ(out.find("{shard=\"1\"}"), std::string::npos);  // null shard skipped
}

// Runs `promtool check metrics` on `text`; returns its exit status and output.
int promtool_check(const std::string& text, std::string& output) {
  char path[] = "/tmp/ringmx_promtool_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return -1;
  close(fd);
  std::string cmd = std::string("promtool check metrics >") + path + " 2>&1";
  FILE* p = popen(cmd.c_str(), "w");
  if (p == nullptr) {
    unlink(path);
    return -1;
  }
  fwrite(text.data(), 1, text.size(), p);
  int status = pclose(p);
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  output = ss.str();
  unlink(path);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(Metrics, PromtoolLintClean) {
  if (access("/usr/bin/promtool", X_OK) != 0) {
    GTEST_SKIP() << "promtool not installed (apt-get install prometheus)";
  }
  std::vector<std::unique_ptr<ShardMetrics>> shards;
  MetricsView v;
  for (size_t i = 0; i < 3; ++i) {
    shards.push_back(std::make_unique<ShardMetrics>());
    ShardMetrics& m = *shards.back();
    v.shards.push_back(&m);
    conn(m, 0, ConnResult::accepted).inc(5);
    conn(m, 1, ConnResult::error).inc();
    m.sessions_active.add(1);
    txn(m, TxnResult::rejected).inc();
    m.replies[220].inc(5);
    m.replies[550].inc();
    m.messages_accepted.inc();
    m.fsync_seconds.observe_ns(700'000 * (i + 1));
    m.fsync_seconds.observe_ns(20'000'000'000);
    m.loop_iterations.inc(10);
  }
  v.listener_names = {"mx", "odd \"name\"\\\n"};
  v.spool_bytes = 123456;
  v.spool_messages = 7;
  v.start_time_unix = 1700000000;
  v.version = "0.1.0-dev";

  std::string output;
  EXPECT_EQ(promtool_check(render(v), output), 0) << output;
  EXPECT_EQ(output, "") << "lint warnings";

  // An empty view (no shards, no listeners) is lint clean too.
  EXPECT_EQ(promtool_check(render(MetricsView{}), output), 0) << output;
  EXPECT_EQ(output, "") << "lint warnings";
}

}  // namespace
}  // namespace ringmx

namespace ringmx {
namespace {

TEST(Metrics, AuthSeriesOnlyForListenersThatOfferIt) {
  std::vector<std::unique_ptr<ShardMetrics>> shards;
  for (int i = 0; i < 2; ++i) shards.push_back(std::make_unique<ShardMetrics>());
  MetricsView v;
  v.listener_names = {"mx", "submission"};
  v.auth_listeners = {false, true};
  for (auto& s : shards) {
    v.shards.push_back(s.get());
    s->auth[1][1][static_cast<size_t>(AuthResult::failure)].inc(2);  // LOGIN
    s->auth[1][0][static_cast<size_t>(AuthResult::success)].inc();   // PLAIN
    s->auth_backend_seconds.observe_ns(2'000'000);
    s->auth_blocked_connections.inc();
  }
  const std::string out = render(v);
  EXPECT_TRUE(has_line(
      out, "ringmx_auth_total{listener=\"submission\",mechanism=\"LOGIN\",result=\"failure\"} 4"));
  EXPECT_TRUE(has_line(
      out, "ringmx_auth_total{listener=\"submission\",mechanism=\"PLAIN\",result=\"success\"} 2"));
  EXPECT_TRUE(has_line(
      out, "ringmx_auth_total{listener=\"submission\",mechanism=\"PLAIN\",result=\"blocked\"} 0"));
  EXPECT_EQ(out.find("ringmx_auth_total{listener=\"mx\""), std::string::npos);
  EXPECT_TRUE(has_line(out, "ringmx_auth_backend_duration_seconds_count 2"));
  EXPECT_TRUE(has_line(out, "ringmx_auth_blocked_connections_total 2"));
  // No listener offers AUTH: no auth series at all.
  v.auth_listeners = {false, false};
  EXPECT_EQ(render(v).find("ringmx_auth"), std::string::npos);
}

TEST(Metrics, MilterSeriesPerMilterSummedOverShards) {
  std::vector<std::unique_ptr<ShardMetrics>> shards;
  for (int i = 0; i < 2; ++i) shards.push_back(std::make_unique<ShardMetrics>());
  MetricsView v;
  v.milter_names = {"rspamd", "dkim"};
  for (auto& s : shards) {
    v.shards.push_back(s.get());
    s->milters[0].calls[3][2].inc(2);  // rcpt, reject
    s->milters[1].calls[5][0].inc();   // message, continue
    s->milters[1].seconds.observe_ns(3'000'000);
    s->milters[1].timeouts.inc();
    s->milters[0].failures.inc(3);
    s->milters[0].connections.add(4);
    s->milters[1].reused.inc(5);
  }
  const std::string out = render(v);
  EXPECT_TRUE(has_line(
      out, "ringmx_milter_calls_total{milter=\"rspamd\",stage=\"rcpt\",result=\"reject\"} 4"));
  EXPECT_TRUE(has_line(
      out, "ringmx_milter_calls_total{milter=\"dkim\",stage=\"message\",result=\"continue\"} 2"));
  EXPECT_TRUE(has_line(
      out, "ringmx_milter_calls_total{milter=\"dkim\",stage=\"connect\",result=\"failed\"} 0"));
  EXPECT_TRUE(
      has_line(out, "ringmx_milter_duration_seconds_bucket{milter=\"dkim\",le=\"0.0025\"} 0"));
  EXPECT_TRUE(
      has_line(out, "ringmx_milter_duration_seconds_bucket{milter=\"dkim\",le=\"0.005\"} 2"));
  EXPECT_TRUE(has_line(out, "ringmx_milter_duration_seconds_count{milter=\"dkim\"} 2"));
  EXPECT_TRUE(has_line(out, "ringmx_milter_duration_seconds_sum{milter=\"dkim\"} 0.006"));
  EXPECT_TRUE(has_line(out, "ringmx_milter_timeouts_total{milter=\"dkim\"} 2"));
  EXPECT_TRUE(has_line(out, "ringmx_milter_failures_total{milter=\"rspamd\"} 6"));
  EXPECT_TRUE(has_line(out, "ringmx_milter_connections{milter=\"rspamd\"} 8"));
  EXPECT_TRUE(has_line(out, "ringmx_milter_connections_reused_total{milter=\"dkim\"} 10"));
  // No milters configured: no milter series at all.
  v.milter_names.clear();
  EXPECT_EQ(render(v).find("ringmx_milter_"), std::string::npos);
}

}  // namespace
}  // namespace ringmx
