// Contract: what a load run counts and how it is reported. RunStats is filled
// by one worker thread (no locking) and merged at the end. record() takes each
// message's one outcome: sent == ok + failed always holds, every failure is
// counted once, by reply code or by error kind. Latency phases (nanoseconds):
//   connect      connect() submitted -> banner received (with implicit TLS
//                the handshake is part of it)
//   handshake    TLS handshake: ClientHello queued -> handshake done
//   wait         intended start -> MAIL queued (waiting for a free connection)
//   transaction  MAIL queued -> final reply
//   data         end of the message data queued -> final reply ("DATA -> 250")
//   message      intended start -> final reply (no coordinated omission)
// Intended start: the open loop's schedule; in the closed loop, the moment a
// connection takes the message (for a connection's first message, the moment
// the connection was opened, so connecting and EHLO count).
// Connection mode (--per-connection 0): each "message" is one connection set
// up and closed without mail; `message` is then intended start -> ready.
// Latencies are recorded for every message that got a final reply code (2xx
// or not); errors without a reply (timeout, reset, ...) have none.
// format_human() and format_json() render a summary; the JSON keys are stable
// (scripts read them): see format_json in stats.cc.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bench/histogram.h"
#include "core/smtp_client.h"

namespace ringmx::bench {

struct RunStats {
  uint64_t sent = 0;
  uint64_t ok = 0;
  uint64_t failed = 0;
  std::array<uint64_t, 1000> by_code{};  // failed messages by reply code
  std::array<uint64_t, kErrorKindCount> by_kind{};
  uint64_t transactions = 0;   // MAIL sent
  uint64_t rcpt_rejected = 0;  // recipients refused (the message may still be ok with LMTP)
  uint64_t data_bytes = 0;     // message octets of the messages accepted
  uint64_t bytes_out = 0;      // on the wire
  uint64_t bytes_in = 0;
  // Connections.
  uint64_t conn_attempts = 0;
  uint64_t conn_ready = 0;  // greeted and EHLO done
  uint64_t conn_failed = 0;
  std::array<uint64_t, 1000> conn_by_code{};  // setup refused by banner/EHLO code
  std::array<uint64_t, kErrorKindCount> conn_by_kind{};
  // TLS handshakes (one per connection that started one).
  uint64_t tls_full = 0;
  uint64_t tls_resumed = 0;
  uint64_t tls_failed = 0;
  uint64_t tls_v12 = 0;  // done handshakes by negotiated version
  uint64_t tls_v13 = 0;
  std::string tls_cipher;       // of the first handshake done
  std::string tls_first_error;  // why the first failed one failed
  // Latency.
  Histogram connect;
  Histogram handshake;
  Histogram wait;
  Histogram transaction;
  Histogram data;
  Histogram message;

  void record(const MessageResult& r);
  void record_setup_failure(uint16_t code, ErrorKind kind);
  void record_handshake(int64_t ns, bool resumed, std::string_view version,
                        std::string_view cipher);
  void record_handshake_failure(std::string_view reason);
  uint64_t tls_done() const { return tls_full + tls_resumed; }
  void merge(const RunStats& o);
  double success_rate() const {
    return sent ? static_cast<double>(ok) / static_cast<double>(sent) : 0.0;
  }
};

// What was asked for and what the run cost, for the report.
struct RunInfo {
  std::string target;
  bool open_loop = false;
  bool poisson = false;
  double rate = 0;
  uint32_t threads = 1;
  uint64_t connections = 0;
  uint64_t per_connection = 0;  // 0: connection mode (no mail)
  uint64_t messages_limit = 0;
  double duration_limit_s = 0;
  uint64_t size = 0;  // one --size; 0 with a size list or --eml-dir
  // The sizes used: {size, weight} each ({size, 1} for one --size), or, with
  // --eml-dir, empty; mean_size is the weighted mean (or the files' mean).
  std::vector<std::pair<uint64_t, uint64_t>> size_distribution;
  double mean_size = 0;
  std::string eml_dir;  // empty: generated messages
  uint64_t eml_files = 0;
  uint32_t recipients = 1;
  bool lmtp = false;
  bool bdat = false;
  bool pipelining = true;
  std::string greeting = "ehlo";  // "ehlo" (HELO if refused), "helo"; LHLO with lmtp
  std::string tls = "none";       // "none", "starttls", "implicit"
  std::string tls_max_version = "1.3";
  bool tls_resume = true;
  std::string proxy = "none";  // "none", "v1", "v2"
  uint64_t issued = 0;         // messages the workers issued (each must have one outcome)
  double elapsed_s = 0;
  double cpu_user_s = 0;
  double cpu_sys_s = 0;
  bool interrupted = false;
};

// True when every issued message has exactly one outcome in the stats.
bool outcomes_consistent(const RunInfo& info, const RunStats& s);

std::string format_human(const RunInfo& info, const RunStats& s);
std::string format_json(const RunInfo& info, const RunStats& s);

}  // namespace ringmx::bench
