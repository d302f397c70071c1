// Contract: the load generator's counters and report: each outcome is counted
// once (by code or by kind), latencies go to the right phases, merge adds up,
// outcomes_consistent() catches a lost message, and both reports carry the
// figures (the JSON with its stable keys).
#include "bench/stats.h"

#include <gtest/gtest.h>

#include <string>

namespace ringmx::bench {
namespace {

MessageResult ok_result(uint64_t id, int64_t t0) {
  MessageResult r;
  r.id = id;
  r.code = 250;
  r.intended_ns = t0;
  r.started_ns = t0 + 1000;
  r.data_end_ns = t0 + 50'000;
  r.final_ns = t0 + 150'000;
  r.data_bytes = 1024;
  r.rcpt_accepted = 1;
  return r;
}

TEST(BenchStats, RecordCountsEachOutcomeOnce) {
  RunStats s;
  s.record(ok_result(1, 0));
  MessageResult rejected = ok_result(2, 0);
  rejected.code = 554;
  s.record(rejected);
  MessageResult lost;
  lost.id = 3;
  lost.error = ErrorKind::reset;
  lost.intended_ns = 10;
  lost.started_ns = 20;
  lost.final_ns = 30;
  s.record(lost);
  MessageResult never;
  never.id = 4;
  never.error = ErrorKind::not_started;
  s.record(never);

  EXPECT_EQ(s.sent, 4u);
  EXPECT_EQ(s.ok, 1u);
  EXPECT_EQ(s.failed, 3u);
  EXPECT_EQ(s.by_code[554], 1u);
  EXPECT_EQ(s.by_kind[static_cast<size_t>(ErrorKind::reset)], 1u);
  EXPECT_EQ(s.by_kind[static_cast<size_t>(ErrorKind::not_started)], 1u);
  EXPECT_EQ(s.data_bytes, 1024u);  // accepted messages only
  EXPECT_EQ(s.transactions, 3u);   // the one never started is no transaction
  // Latency for the messages with a reply code (250 and 554).
  EXPECT_EQ(s.message.count(), 2u);
  EXPECT_EQ(s.transaction.count(), 2u);
  EXPECT_EQ(s.data.count(), 2u);
  EXPECT_EQ(s.wait.count(), 3u);
  EXPECT_EQ(s.message.max(), 150'000);
  EXPECT_EQ(s.transaction.max(), 149'000);
  EXPECT_EQ(s.data.max(), 100'000);
  EXPECT_DOUBLE_EQ(s.success_rate(), 0.25);

  RunInfo info;
  info.issued = 4;
  EXPECT_TRUE(outcomes_consistent(info, s));
  info.issued = 5;  // one message without an outcome
  EXPECT_FALSE(outcomes_consistent(info, s));
}

TEST(BenchStats, MergeAddsUp) {
  RunStats a;
  RunStats b;
  for (uint64_t i = 0; i < 10; ++i) a.record(ok_result(i, 0));
  MessageResult t;
  t.error = ErrorKind::timeout;
  b.record(t);
  b.record_setup_failure(421, ErrorKind::none);
  b.record_setup_failure(0, ErrorKind::refused);
  a.merge(b);
  EXPECT_EQ(a.sent, 11u);
  EXPECT_EQ(a.ok, 10u);
  EXPECT_EQ(a.failed, 1u);
  EXPECT_EQ(a.conn_failed, 2u);
  EXPECT_EQ(a.conn_by_code[421], 1u);
  EXPECT_EQ(a.conn_by_kind[static_cast<size_t>(ErrorKind::refused)], 1u);
  EXPECT_EQ(a.message.count(), 10u);
}

TEST(BenchStats, EmptyRunSucceedsNowhere) {
  RunStats s;
  EXPECT_EQ(s.success_rate(), 0.0);
  RunInfo info;
  EXPECT_TRUE(outcomes_consistent(info, s));
  const std::string json = format_json(info, s);
  EXPECT_NE(json.find("\"sent\": 0,"), std::string::npos);
  EXPECT_NE(json.find("\"messages_per_s\": 0.000,"), std::string::npos);
}

TEST(BenchStats, Reports) {
  RunStats s;
  for (uint64_t i = 0; i < 100; ++i) s.record(ok_result(i, 0));
  MessageResult r = ok_result(100, 0);
  r.code = 451;
  s.record(r);
  s.conn_attempts = 101;
  s.conn_ready = 101;
  RunInfo info;
  info.target = "127.0.0.1:25";
  info.issued = 101;
  info.elapsed_s = 2.0;
  info.connections = 4;
  info.per_connection = 1;
  info.messages_limit = 101;
  info.size = 1024;

  const std::string json = format_json(info, s);
  EXPECT_EQ(json.front(), '{');
  EXPECT_EQ(json.substr(json.size() - 2), "}\n");
  for (const char* key :
       {"\"target\": \"127.0.0.1:25\"", "\"mode\": \"closed\"", "\"arrival\": null",
        "\"sent\": 101,", "\"ok\": 100,", "\"failed\": 1,", "\"outcomes_consistent\": true",
        "\"messages_per_s\": 50.000,", "\"errors\": {\"by_code\": {\"451\": 1}",
        "\"latency_us\": {", "\"p99.9\": ", "\"connect\": {\"count\": 0", "\"cpu\": {"}) {
    EXPECT_NE(json.find(key), std::string::npos) << key << "\n" << json;
  }
  // Balanced braces, no NaN.
  int depth = 0;
  for (char c : json) depth += c == '{' ? 1 : c == '}' ? -1 : 0;
  EXPECT_EQ(depth, 0);
  EXPECT_EQ(json.find("nan"), std::string::npos);

  const std::string text = format_human(info, s);
  EXPECT_NE(text.find("101 sent = 100 ok + 1 failed"), std::string::npos) << text;
  EXPECT_NE(text.find("451: 1"), std::string::npos) << text;
  EXPECT_NE(text.find("50.0 messages/s"), std::string::npos) << text;
  EXPECT_EQ(text.find("INCONSISTENT"), std::string::npos);
  info.issued = 102;
  EXPECT_NE(format_human(info, s).find("INCONSISTENT"), std::string::npos);
  EXPECT_NE(json.find("\"greeting\": \"ehlo\""), std::string::npos) << json;
  info.greeting = "helo";
  EXPECT_NE(format_json(info, s).find("\"greeting\": \"helo\""), std::string::npos);
  EXPECT_NE(format_human(info, s).find("SMTP (HELO)"), std::string::npos);
}

TEST(BenchStats, ReportsTheSizeDistributionAndTheEmlDirectory) {
  RunStats s;
  for (uint64_t i = 0; i < 4; ++i) s.record(ok_result(i, 0));
  RunInfo info;
  info.target = "127.0.0.1:25";
  info.issued = 4;
  info.elapsed_s = 1.0;
  info.per_connection = 1;
  info.size_distribution = {{1024, 70}, {10240, 25}, {1048576, 5}};
  info.mean_size = 55705.6;
  std::string json = format_json(info, s);
  for (const char* key :
       {"\"size\": null,",
        "\"size_distribution\": [{\"size\": 1024, \"weight\": 70}, {\"size\": 10240, \"weight\": "
        "25}, {\"size\": 1048576, \"weight\": 5}],",
        "\"mean_size\": 55705.6,", "\"eml_dir\": null,", "\"eml_files\": 0,",
        "\"bytes_per_s\": 4096.000,"}) {
    EXPECT_NE(json.find(key), std::string::npos) << key << "\n" << json;
  }
  EXPECT_NE(format_human(info, s).find("messages of 1024:70,10240:25,1048576:5 octets (mean "
                                       "55705.6)"),
            std::string::npos)
      << format_human(info, s);

  info.size_distribution = {{2048, 1}};
  info.size = 2048;
  info.mean_size = 2048;
  EXPECT_NE(format_json(info, s).find("\"size\": 2048,"), std::string::npos);
  EXPECT_NE(format_human(info, s).find("messages of 2048 octets,"), std::string::npos);

  info.size_distribution.clear();
  info.size = 0;
  info.eml_dir = "/tmp/m\"x";
  info.eml_files = 3;
  info.mean_size = 812;
  json = format_json(info, s);
  for (const char* key : {"\"size\": null,", "\"size_distribution\": [],",
                          "\"eml_dir\": \"/tmp/m\\\"x\",", "\"eml_files\": 3,"}) {
    EXPECT_NE(json.find(key), std::string::npos) << key << "\n" << json;
  }
  EXPECT_NE(format_human(info, s).find("messages from eml-dir /tmp/m\"x (3 files, mean 812.0 "
                                       "octets)"),
            std::string::npos)
      << format_human(info, s);
}

TEST(BenchStats, TlsHandshakesAreCountedAndReported) {
  RunStats a;
  a.record_handshake(2'000'000, false, "TLS1_3", "TLS_AES_128_GCM_SHA256");
  a.record_handshake(1'000'000, true, "TLS1_3", "TLS_AES_128_GCM_SHA256");
  RunStats b;
  b.record_handshake(3'000'000, false, "TLS1_2", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256");
  b.record_handshake_failure("peer sent fatal alert handshake_failure");
  b.record_handshake_failure("second reason, not kept");
  a.merge(b);
  EXPECT_EQ(a.tls_full, 2U);
  EXPECT_EQ(a.tls_resumed, 1U);
  EXPECT_EQ(a.tls_failed, 2U);
  EXPECT_EQ(a.tls_done(), 3U);
  EXPECT_EQ(a.tls_v13, 2U);
  EXPECT_EQ(a.tls_v12, 1U);
  EXPECT_EQ(a.handshake.count(), 3U);
  EXPECT_EQ(a.tls_cipher, "TLS_AES_128_GCM_SHA256");
  EXPECT_EQ(a.tls_first_error, "peer sent fatal alert handshake_failure");

  RunInfo info;
  info.target = "127.0.0.1:465";
  info.elapsed_s = 1.5;
  info.connections = 2;
  info.per_connection = 0;  // connection mode
  info.tls = "implicit";
  info.proxy = "v2";
  const std::string json = format_json(info, a);
  for (const char* key :
       {"\"handshakes_per_s\": 2.000,", "\"mode\": \"implicit\"",
        "\"handshakes\": {\"full\": 2, \"resumed\": 1, \"failed\": 2}",
        "\"versions\": {\"TLS1_2\": 1, \"TLS1_3\": 2}", "\"proxy\": \"v2\"",
        "\"handshake\": {\"count\": 3", "\"first_error\": \"peer sent fatal alert"}) {
    EXPECT_NE(json.find(key), std::string::npos) << key << "\n" << json;
  }
  const std::string text = format_human(info, a);
  EXPECT_NE(text.find("2 full + 1 resumed = 2.0 handshakes/s; 2 failed"), std::string::npos)
      << text;
  EXPECT_NE(text.find("connection mode"), std::string::npos) << text;
  EXPECT_NE(text.find("PROXY v2"), std::string::npos) << text;
  EXPECT_EQ(text.find("messages of"), std::string::npos) << text;
  // Without TLS the human report has no handshake line.
  info.tls = "none";
  EXPECT_EQ(format_human(info, a).find("TLS handshakes"), std::string::npos);
}

}  // namespace
}  // namespace ringmx::bench
