// Contract: see stats.h. The JSON document (one object, stable keys):
//   target, mode ("closed"|"open"), arrival ("uniform"|"poisson"|null),
//   rate_target, threads, connections, per_connection, messages_limit,
//   duration_limit_s, size (one --size, else null), size_distribution
//   ([{size, weight}], empty with --eml-dir), mean_size, eml_dir (or null),
//   eml_files, recipients, protocol ("smtp"|"lmtp"), greeting ("ehlo"|"helo"), bdat,
//   pipelining, elapsed_s, interrupted, sent, ok, failed, success_rate,
//   outcomes_consistent, messages_per_s (ok / elapsed), sent_per_s,
//   transactions_per_s, bytes_per_s (message octets accepted / elapsed),
//   connections_per_s (connections greeted / elapsed), handshakes_per_s (TLS
//   handshakes done / elapsed), rcpt_rejected,
//   errors {by_code {"451": n}, by_kind {"refused": n, ...}},
//   connection_stats {attempts, ready, failed, failed_by_code, failed_by_kind},
//   wire {bytes_out, bytes_in},
//   tls {mode ("none"|"starttls"|"implicit"), max_version, resume,
//        handshakes {full, resumed, failed}, versions {"TLS1_2", "TLS1_3"},
//        cipher, first_error}, proxy ("none"|"v1"|"v2"),
//   latency_us {connect|handshake|wait|transaction|data|message:
//               {count, mean, p50, p90, p99, p99.9, max}},
//   cpu {user_s, sys_s, percent_of_one_core, us_per_message}.
#include "bench/stats.h"

#include <fmt/format.h>

#include <cmath>
#include <string_view>

namespace ringmx::bench {

namespace {

constexpr double kPercentiles[] = {50.0, 90.0, 99.0, 99.9};
constexpr const char* kPercentileNames[] = {"p50", "p90", "p99", "p99.9"};

struct Phase {
  const char* key;
  const char* label;
  const Histogram RunStats::*hist;
};
constexpr Phase kPhases[] = {
    {"connect", "connect -> banner", &RunStats::connect},
    {"handshake", "TLS handshake", &RunStats::handshake},
    {"wait", "wait for a connection", &RunStats::wait},
    {"transaction", "transaction (MAIL -> final)", &RunStats::transaction},
    {"data", "end of data -> final", &RunStats::data},
    {"message", "message (intended -> final)", &RunStats::message},
};

double per_s(double n, double elapsed_s) {
  return elapsed_s > 0 ? n / elapsed_s : 0.0;
}

// A finite number for JSON (NaN and infinity are not JSON).
double finite(double x) {
  return std::isfinite(x) ? x : 0.0;
}

template <size_t N>
std::string json_code_map(const std::array<uint64_t, N>& codes) {
  std::string out = "{";
  bool first = true;
  for (size_t c = 0; c < N; ++c) {
    if (!codes[c]) continue;
    out += fmt::format("{}\"{}\": {}", first ? "" : ", ", c, codes[c]);
    first = false;
  }
  return out + "}";
}

std::string json_kind_map(const std::array<uint64_t, kErrorKindCount>& kinds) {
  std::string out = "{";
  for (size_t k = 1; k < kErrorKindCount; ++k) {
    out += fmt::format("{}\"{}\": {}", k == 1 ? "" : ", ",
                       error_kind_name(static_cast<ErrorKind>(k)), kinds[k]);
  }
  return out + "}";
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string human_counts(const std::array<uint64_t, 1000>& codes,
                         const std::array<uint64_t, kErrorKindCount>& kinds) {
  std::string out;
  for (size_t c = 0; c < codes.size(); ++c) {
    if (codes[c]) out += fmt::format("{}{}: {}", out.empty() ? "" : ", ", c, codes[c]);
  }
  for (size_t k = 1; k < kErrorKindCount; ++k) {
    if (kinds[k]) {
      out += fmt::format("{}{}: {}", out.empty() ? "" : ", ",
                         error_kind_name(static_cast<ErrorKind>(k)), kinds[k]);
    }
  }
  return out.empty() ? "none" : out;
}

double ms(int64_t ns) {
  return static_cast<double>(ns) / 1e6;
}

// "of 1024 octets", "of 1024:70,10240:25 octets (mean 3276.8)", "from eml-dir
// DIR (3 files, mean 812.0 octets)".
std::string describe_sizes(const RunInfo& info) {
  if (!info.eml_dir.empty()) {
    return fmt::format("from eml-dir {} ({} file{}, mean {:.1f} octets)", info.eml_dir,
                       info.eml_files, info.eml_files == 1 ? "" : "s", info.mean_size);
  }
  if (info.size_distribution.size() <= 1) return fmt::format("of {} octets", info.size);
  std::string list;
  for (const auto& [size, weight] : info.size_distribution) {
    list += fmt::format("{}{}:{}", list.empty() ? "" : ",", size, weight);
  }
  return fmt::format("of {} octets (mean {:.1f})", list, info.mean_size);
}

}  // namespace

void RunStats::record(const MessageResult& r) {
  ++sent;
  if (r.ok()) {
    ++ok;
    data_bytes += r.data_bytes;
  } else {
    ++failed;
    if (r.error != ErrorKind::none) {
      ++by_kind[static_cast<size_t>(r.error)];
    } else {
      ++by_code[r.code < by_code.size() ? r.code : 0];
    }
  }
  rcpt_rejected += r.rcpt_rejected;
  const bool started =
      r.started_ns != 0 && r.error != ErrorKind::not_started && r.error != ErrorKind::unsupported;
  if (started) {
    ++transactions;
    wait.record(r.started_ns - r.intended_ns);
  }
  if (r.error != ErrorKind::none) return;
  if (started) transaction.record(r.final_ns - r.started_ns);
  if (r.data_end_ns) data.record(r.final_ns - r.data_end_ns);
  message.record(r.final_ns - r.intended_ns);
}

void RunStats::record_setup_failure(uint16_t code, ErrorKind kind) {
  ++conn_failed;
  if (code) {
    ++conn_by_code[code < conn_by_code.size() ? code : 0];
  } else {
    ++conn_by_kind[static_cast<size_t>(kind)];
  }
}

void RunStats::record_handshake(int64_t ns, bool resumed, std::string_view version,
                                std::string_view cipher) {
  ++(resumed ? tls_resumed : tls_full);
  if (version == "TLS1_3") ++tls_v13;
  if (version == "TLS1_2") ++tls_v12;
  if (tls_cipher.empty()) tls_cipher = cipher;
  handshake.record(ns);
}

void RunStats::record_handshake_failure(std::string_view reason) {
  ++tls_failed;
  if (tls_first_error.empty()) tls_first_error = reason;
}

void RunStats::merge(const RunStats& o) {
  sent += o.sent;
  ok += o.ok;
  failed += o.failed;
  for (size_t i = 0; i < by_code.size(); ++i) by_code[i] += o.by_code[i];
  for (size_t i = 0; i < by_kind.size(); ++i) by_kind[i] += o.by_kind[i];
  transactions += o.transactions;
  rcpt_rejected += o.rcpt_rejected;
  data_bytes += o.data_bytes;
  bytes_out += o.bytes_out;
  bytes_in += o.bytes_in;
  conn_attempts += o.conn_attempts;
  conn_ready += o.conn_ready;
  conn_failed += o.conn_failed;
  for (size_t i = 0; i < conn_by_code.size(); ++i) conn_by_code[i] += o.conn_by_code[i];
  for (size_t i = 0; i < conn_by_kind.size(); ++i) conn_by_kind[i] += o.conn_by_kind[i];
  tls_full += o.tls_full;
  tls_resumed += o.tls_resumed;
  tls_failed += o.tls_failed;
  tls_v12 += o.tls_v12;
  tls_v13 += o.tls_v13;
  if (tls_cipher.empty()) tls_cipher = o.tls_cipher;
  if (tls_first_error.empty()) tls_first_error = o.tls_first_error;
  connect.merge(o.connect);
  handshake.merge(o.handshake);
  wait.merge(o.wait);
  transaction.merge(o.transaction);
  data.merge(o.data);
  message.merge(o.message);
}

bool outcomes_consistent(const RunInfo& info, const RunStats& s) {
  uint64_t by_code = 0;
  uint64_t by_kind = 0;
  for (uint64_t n : s.by_code) by_code += n;
  for (uint64_t n : s.by_kind) by_kind += n;
  return s.sent == info.issued && s.sent == s.ok + s.failed && s.failed == by_code + by_kind;
}

std::string format_human(const RunInfo& info, const RunStats& s) {
  const double e = info.elapsed_s;
  const bool conn_mode = info.per_connection == 0;
  std::string out;
  out += fmt::format(
      "ringmx-bench: {}, {} loop{}, {} connections x {}, {} thread{}\n", info.target,
      info.open_loop ? "open" : "closed",
      info.open_loop
          ? fmt::format(" at {:g} msg/s ({})", info.rate, info.poisson ? "poisson" : "uniform")
          : std::string(),
      info.connections,
      conn_mode ? std::string("no message (connection mode: each \"message\" is a connection)")
                : fmt::format("{} message{} per connection", info.per_connection,
                              info.per_connection == 1 ? "" : "s"),
      info.threads, info.threads == 1 ? "" : "s");
  if (info.tls != "none" || info.proxy != "none") {
    out += fmt::format("  {}{}\n",
                       info.tls == "none"
                           ? std::string("plaintext")
                           : fmt::format("TLS: {}, up to TLS {}, resumption {}", info.tls,
                                         info.tls_max_version, info.tls_resume ? "on" : "off"),
                       info.proxy == "none" ? "" : fmt::format(", PROXY {}", info.proxy));
  }
  if (!conn_mode) {
    out += fmt::format("  messages {}, {} recipient{}, {}{}{}\n", describe_sizes(info),
                       info.recipients, info.recipients == 1 ? "" : "s",
                       info.lmtp                 ? "LMTP"
                       : info.greeting == "helo" ? "SMTP (HELO)"
                                                 : "SMTP",
                       info.bdat ? ", BDAT" : ", DATA",
                       info.pipelining ? ", pipelining when offered" : ", no pipelining");
  }
  out += fmt::format("  elapsed          {:.3f} s (limits: {} messages, {:g} s){}\n", e,
                     info.messages_limit, info.duration_limit_s,
                     info.interrupted ? ", interrupted" : "");
  out += fmt::format(
      "  messages         {} sent = {} ok + {} failed; success rate {:.4f}{}\n", s.sent, s.ok,
      s.failed, s.success_rate(),
      outcomes_consistent(info, s) ? "" : fmt::format(" (INCONSISTENT: {} issued)", info.issued));
  out += fmt::format(
      "  throughput       {:.1f} messages/s, {:.1f} transactions/s, {:.2f} MB/s of message data, "
      "{:.1f} connections/s{}\n",
      per_s(static_cast<double>(s.ok), e), per_s(static_cast<double>(s.transactions), e),
      per_s(static_cast<double>(s.data_bytes), e) / 1e6,
      per_s(static_cast<double>(s.conn_ready), e),
      info.open_loop ? fmt::format(" (sent {:.1f}/s)", per_s(static_cast<double>(s.sent), e))
                     : std::string());
  if (info.tls != "none") {
    out += fmt::format(
        "  TLS handshakes   {} full + {} resumed = {:.1f} handshakes/s; {} failed{}{}{}\n",
        s.tls_full, s.tls_resumed, per_s(static_cast<double>(s.tls_done()), e), s.tls_failed,
        s.tls_first_error.empty() ? "" : fmt::format(" (first: {})", s.tls_first_error),
        s.tls_v12 + s.tls_v13 > 0 ? fmt::format("; TLS1_3 {}, TLS1_2 {}", s.tls_v13, s.tls_v12)
                                  : std::string(),
        s.tls_cipher.empty() ? "" : fmt::format(", {}", s.tls_cipher));
  }
  out += fmt::format("  {:<44} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n", "latency (ms)",
                     "count", "mean", "p50", "p90", "p99", "p99.9", "max");
  for (const Phase& p : kPhases) {
    const Histogram& h = s.*(p.hist);
    out += fmt::format("    {:<42} {:>9} {:>9.3f}", p.label, h.count(), h.mean() / 1e6);
    for (double q : kPercentiles) out += fmt::format(" {:>9.3f}", ms(h.percentile(q)));
    out += fmt::format(" {:>9.3f}\n", ms(h.max()));
  }
  out += fmt::format("  failed messages  {}\n", human_counts(s.by_code, s.by_kind));
  if (s.rcpt_rejected) out += fmt::format("  recipients refused {}\n", s.rcpt_rejected);
  out += fmt::format("  connections      {} attempted, {} ready, {} failed ({})\n", s.conn_attempts,
                     s.conn_ready, s.conn_failed, human_counts(s.conn_by_code, s.conn_by_kind));
  out += fmt::format("  wire             {} octets out, {} in\n", s.bytes_out, s.bytes_in);
  const double cpu = info.cpu_user_s + info.cpu_sys_s;
  out += fmt::format(
      "  client CPU       {:.2f} s user + {:.2f} s sys = {:.0f} % of one core, {:.1f} us per "
      "message\n",
      info.cpu_user_s, info.cpu_sys_s, e > 0 ? 100 * cpu / e : 0.0,
      s.sent ? cpu * 1e6 / static_cast<double>(s.sent) : 0.0);
  return out;
}

std::string format_json(const RunInfo& info, const RunStats& s) {
  const double e = info.elapsed_s;
  const double cpu = info.cpu_user_s + info.cpu_sys_s;
  std::string out = "{\n";
  out += fmt::format("  \"target\": {},\n", json_string(info.target));
  out += fmt::format("  \"mode\": \"{}\",\n", info.open_loop ? "open" : "closed");
  out += fmt::format("  \"arrival\": {},\n", !info.open_loop ? "null"
                                             : info.poisson  ? "\"poisson\""
                                                             : "\"uniform\"");
  out += fmt::format("  \"rate_target\": {},\n", finite(info.rate));
  out += fmt::format("  \"threads\": {},\n", info.threads);
  out += fmt::format("  \"connections\": {},\n", info.connections);
  out += fmt::format("  \"per_connection\": {},\n", info.per_connection);
  out += fmt::format("  \"messages_limit\": {},\n", info.messages_limit);
  out += fmt::format("  \"duration_limit_s\": {},\n", finite(info.duration_limit_s));
  out += fmt::format("  \"size\": {},\n", info.size ? std::to_string(info.size) : "null");
  out += "  \"size_distribution\": [";
  for (size_t i = 0; i < info.size_distribution.size(); ++i) {
    out += fmt::format("{}{{\"size\": {}, \"weight\": {}}}", i ? ", " : "",
                       info.size_distribution[i].first, info.size_distribution[i].second);
  }
  out += "],\n";
  out += fmt::format("  \"mean_size\": {:.1f},\n", finite(info.mean_size));
  out += fmt::format("  \"eml_dir\": {},\n",
                     info.eml_dir.empty() ? "null" : json_string(info.eml_dir));
  out += fmt::format("  \"eml_files\": {},\n", info.eml_files);
  out += fmt::format("  \"recipients\": {},\n", info.recipients);
  out += fmt::format("  \"protocol\": \"{}\",\n", info.lmtp ? "lmtp" : "smtp");
  out += fmt::format("  \"greeting\": {},\n", json_string(info.greeting));
  out += fmt::format("  \"bdat\": {},\n", info.bdat);
  out += fmt::format("  \"pipelining\": {},\n", info.pipelining);
  out += fmt::format("  \"elapsed_s\": {:.6f},\n", e);
  out += fmt::format("  \"interrupted\": {},\n", info.interrupted);
  out += fmt::format("  \"sent\": {},\n", s.sent);
  out += fmt::format("  \"ok\": {},\n", s.ok);
  out += fmt::format("  \"failed\": {},\n", s.failed);
  out += fmt::format("  \"success_rate\": {:.6f},\n", s.success_rate());
  out += fmt::format("  \"outcomes_consistent\": {},\n", outcomes_consistent(info, s));
  out += fmt::format("  \"messages_per_s\": {:.3f},\n", per_s(static_cast<double>(s.ok), e));
  out += fmt::format("  \"sent_per_s\": {:.3f},\n", per_s(static_cast<double>(s.sent), e));
  out += fmt::format("  \"transactions_per_s\": {:.3f},\n",
                     per_s(static_cast<double>(s.transactions), e));
  out += fmt::format("  \"bytes_per_s\": {:.3f},\n", per_s(static_cast<double>(s.data_bytes), e));
  out += fmt::format("  \"connections_per_s\": {:.3f},\n",
                     per_s(static_cast<double>(s.conn_ready), e));
  out += fmt::format("  \"rcpt_rejected\": {},\n", s.rcpt_rejected);
  out += fmt::format("  \"errors\": {{\"by_code\": {}, \"by_kind\": {}}},\n",
                     json_code_map(s.by_code), json_kind_map(s.by_kind));
  out += fmt::format(
      "  \"connection_stats\": {{\"attempts\": {}, \"ready\": {}, \"failed\": {}, "
      "\"failed_by_code\": {}, \"failed_by_kind\": {}}},\n",
      s.conn_attempts, s.conn_ready, s.conn_failed, json_code_map(s.conn_by_code),
      json_kind_map(s.conn_by_kind));
  out += fmt::format("  \"wire\": {{\"bytes_out\": {}, \"bytes_in\": {}}},\n", s.bytes_out,
                     s.bytes_in);
  out +=
      fmt::format("  \"handshakes_per_s\": {:.3f},\n", per_s(static_cast<double>(s.tls_done()), e));
  out += fmt::format(
      "  \"tls\": {{\"mode\": {}, \"max_version\": {}, \"resume\": {}, \"handshakes\": "
      "{{\"full\": {}, \"resumed\": {}, \"failed\": {}}}, \"versions\": {{\"TLS1_2\": {}, "
      "\"TLS1_3\": {}}}, \"cipher\": {}, \"first_error\": {}}},\n",
      json_string(info.tls), json_string(info.tls_max_version), info.tls_resume, s.tls_full,
      s.tls_resumed, s.tls_failed, s.tls_v12, s.tls_v13, json_string(s.tls_cipher),
      json_string(s.tls_first_error));
  out += fmt::format("  \"proxy\": {},\n", json_string(info.proxy));
  out += "  \"latency_us\": {\n";
  bool first = true;
  for (const Phase& p : kPhases) {
    const Histogram& h = s.*(p.hist);
    out += fmt::format("{}    \"{}\": {{\"count\": {}, \"mean\": {:.3f}", first ? "" : ",\n", p.key,
                       h.count(), h.mean() / 1e3);
    for (size_t i = 0; i < std::size(kPercentiles); ++i) {
      out += fmt::format(", \"{}\": {:.3f}", kPercentileNames[i],
                         static_cast<double>(h.percentile(kPercentiles[i])) / 1e3);
    }
    out += fmt::format(", \"max\": {:.3f}}}", static_cast<double>(h.max()) / 1e3);
    first = false;
  }
  out += "\n  },\n";
  out += fmt::format(
      "  \"cpu\": {{\"user_s\": {:.3f}, \"sys_s\": {:.3f}, \"percent_of_one_core\": {:.1f}, "
      "\"us_per_message\": {:.3f}}}\n",
      info.cpu_user_s, info.cpu_sys_s, e > 0 ? 100 * cpu / e : 0.0,
      s.sent ? cpu * 1e6 / static_cast<double>(s.sent) : 0.0);
  out += "}\n";
  return out;
}

}  // namespace ringmx::bench
