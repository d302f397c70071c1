// Contract: the load generator's engine. run_load() starts `threads` workers,
// each with its own io_uring ring (single issuer, deferred task running), its
// share of the connections and of the messages, and SmtpClient state machines
// driven by multishot recv into a provided-buffer ring, one send in flight per
// connection, and IORING_OP_CONNECT. It returns when every issued message has
// its one outcome and every connection is closed.
//
// Closed loop (rate == 0): each worker keeps its connections busy: a new
// connection reserves up to `per_connection` messages of the worker's share of
// `messages`, sends them one after the other, then QUITs (pipelined behind the
// last message's data) and a new one takes its place, so M messages at K per
// connection take ceil(M / K) connections. With PIPELINING each connection
// keeps a second message queued behind the one in progress (its commands leave
// with the first one's end of data): one round trip per message.
// Open loop (rate > 0): messages are issued at the arrival schedule's intended
// times whatever the server does; a message takes an idle connection from the
// pool, or opens a new one while the worker has fewer than its share of
// `connections`, or is queued behind a message in progress on a pipelining
// connection, or waits in a backlog (its latency runs from the intended start:
// waiting counts).
// Bounds: no message is issued after `duration` or beyond `messages`; what is
// in flight then has `timeout` more to finish, after which it fails with
// ErrorKind::timeout (in flight) or not_started (still in the backlog). Every
// wait for the server (connect, banner, each reply) is bounded by `timeout`.
// A failed connection set-up (refused, banner or EHLO refused, ...) ends one
// waiting message with that outcome, so a dead target cannot loop forever.
// LoadControl::stop: 1 = issue no more and finish (as at the deadline), 2 = as
// at the hard end (now). Progress counters are updated as outcomes arrive.
// The open-loop backlog is bounded (2^20 messages per worker): a message
// issued beyond it fails at once as not_started.
// Connection mode (per_connection == 0): a connection carries no message; it
// connects, sets up (banner, EHLO, STARTTLS and the handshake, EHLO) and
// QUITs, and counts as one "message" of `messages`: ok (code 250, latency
// from its intended start to ready) or the set-up failure's outcome.
// TLS (cfg.tls): STARTTLS or implicit TLS through ClientConnection. With
// tls_resume each worker keeps the last saved session of the target and
// offers it to its next connection. PROXY (cfg.proxy): each connection's
// first bytes are the header, source = the next of proxy_sources (cycled per
// worker) with the real local port, or the real local address and port;
// destination = the target.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "bench/arrival.h"
#include "bench/message_source.h"
#include "bench/proxy_header.h"
#include "bench/stats.h"
#include "core/smtp_client.h"
#include "tls/client_connection.h"

namespace ringmx::bench {

struct LoadConfig {
  sockaddr_storage target{};
  socklen_t target_len = 0;
  std::vector<sockaddr_in> sources;  // bound before connect, round robin (IPv4 targets)
  uint32_t threads = 1;
  uint64_t connections = 1;
  uint64_t messages = 1;
  uint64_t per_connection = 1;
  double rate = 0;  // messages/s; 0 = closed loop
  ArrivalKind arrival = ArrivalKind::uniform;
  int64_t duration_ns = int64_t{60} * 1'000'000'000;
  int64_t timeout_ns = int64_t{30} * 1'000'000'000;
  uint64_t seed = 1;
  ClientSettings client;
  TlsClientOptions tls;
  bool tls_resume = true;
  ProxyVersion proxy = ProxyVersion::none;
  std::vector<sockaddr_in> proxy_sources;  // empty: the real local address
};

// The messages of a run, built once before it, kept dot-stuffed (with the
// final ".\r\n") for DATA or raw for BDAT.
// Generated: message i's size class c is draw_size_class(mix, seed, i) (always
// 0 for one size); class c keeps n_c distinct bodies make_message(seed + 64 c
// + j, size_c), j < n_c, and message i takes body i % n_c of its class. n_c is
// at most 64, at most `messages`, and no more than fit in the class's share
// (1 / classes) of about 64 MiB (at least one).
// Given messages (--eml-dir: CRLF, not stuffed): message i is messages[i % n].
class MessagePool {
 public:
  MessagePool(uint64_t seed, size_t size, uint64_t messages, bool bdat = false);
  MessagePool(uint64_t seed, const SizeMix& mix, uint64_t messages, bool bdat = false);
  MessagePool(const std::vector<std::string>& messages, bool bdat);
  MessageBody body(uint64_t id) const;
  size_t distinct() const { return bodies_.size(); }
  size_t distinct_in_class(size_t c) const { return classes_[c].count; }
  // Message `id`'s size class (0 for one size or given messages).
  size_t size_class(uint64_t id) const;

 private:
  struct Range {
    size_t first = 0;
    size_t count = 0;
  };
  void add(const std::string& message);
  uint64_t seed_ = 0;
  SizeMix mix_;
  bool bdat_ = false;
  std::vector<Range> classes_;
  std::vector<std::string> bodies_;  // stuffed for DATA, raw for BDAT
};

// The default --threads: one per CPU, but half the CPUs (at least one) when
// the target is a loopback address (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104):
// the server under test then runs on the same CPUs, and a generator that
// takes them all measures itself rather than the server.
uint32_t default_threads(const sockaddr_storage& target, unsigned cpus);
bool is_loopback(const sockaddr_storage& target);

struct alignas(64) Progress {
  std::atomic<uint64_t> sent{0};
  std::atomic<uint64_t> ok{0};
  std::atomic<uint64_t> failed{0};
  std::atomic<uint64_t> connections{0};  // greeted
  std::atomic<uint64_t> open{0};         // open now
};

struct LoadControl {
  std::atomic<int> stop{0};
};

struct LoadResult {
  RunStats stats;
  uint64_t issued = 0;
  int64_t start_ns = 0;             // the workers' common start
  int64_t end_ns = 0;               // the last worker done
  std::vector<std::string> errors;  // workers that could not run (ring set-up, ...)
};

int64_t mono_ns();

// Runs min(threads, connections, messages, progress.size()) workers (at least
// one); progress[i] is worker i's. Blocks until the run is over.
LoadResult run_load(const LoadConfig& cfg, const MessagePool& pool, std::vector<Progress>& progress,
                    const LoadControl& control);

}  // namespace ringmx::bench
