// What the shard's source files share and nothing else sees: the tagged
// user_data of ring operations, a connection (socket + optional TLS + SMTP
// session), and the spool batch records.
#pragma once

#include <liburing.h>
#include <sys/uio.h>

#include <cstdint>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "core/metrics.h"
#include "core/received_header.h"
#include "core/reply.h"
#include "core/session.h"
#include "net/shard.h"
#include "net/timer_wheel.h"
#include "pipeline/spool_format.h"
#include "tls/tls_session.h"

namespace ringmx {

// user_data = pointer | op; every object an operation points to is 16-aligned.
enum Op : unsigned {
  kOpIgnore = 0,
  kOpAccept = 1,
  kOpRecv = 2,
  kOpSend = 3,
  kOpControl = 4,
  kOpSpoolOpen = 5,
  kOpSpoolWrite = 6,
  kOpSpoolSync = 7,
  kOpCancelRecv = 8,
  kOpDirSync = 9,
};
inline constexpr uint64_t kOpMask = 15;

inline uint64_t tag(const void* p, Op op) {
  return reinterpret_cast<uint64_t>(p) | op;
}

inline int64_t mono_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

inline int64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

struct alignas(16) Connection final : SessionHandler {
  // handshake: TLS (implicit, or after STARTTLS's 220) before the session
  // goes on; no SMTP input is read meanwhile.
  enum class Stage : uint8_t { greeting_delay, handshake, open, closing };

  Connection(Shard& s, int sock, uint32_t listener_index, ConnInfo info, Now now)
      : shard(s),
        fd(sock),
        listener(listener_index),
        started_ms(now.mono_ms),
        session(s.cfg().session, *this, std::move(info), now) {
    timer.owner = this;
  }

  Shard& shard;
  int fd;
  uint32_t listener;
  int64_t started_ms;
  Stage stage = Stage::open;
  bool counted = false;  // holds a slot in the connection limits
  size_t ip_slot = 0;
  bool recv_armed = false;
  bool recv_paused = false;
  bool send_busy = false;
  bool shut = false;
  uint32_t ops = 0;  // operations in flight that point at this object
  std::string send_inflight;
  size_t send_off = 0;
  std::string send_queued;
  int64_t send_progress_ms = 0;  // when output last moved (or started waiting)
  std::string pending_in;        // input the session has not taken yet (waiting, or output full)
  struct Timer : TimerNode {
    Connection* owner = nullptr;
  } timer;
  Connection* prev = nullptr;
  Connection* next = nullptr;
  SpoolJob* job = nullptr;
  uint64_t body_bytes = 0;  // this connection's share of the shard's body memory
  uint32_t txns = 0;
  // TLS: set from the first handshake byte on; plaintext before it (STARTTLS).
  std::shared_ptr<const TlsServerContext> tls_context;  // the listener's, at accept
  std::unique_ptr<TlsSession> tls;
  int64_t tls_started_ns = 0;
  TlsVersionLabel tls_version = TlsVersionLabel::none;  // counted in the active gauge
  bool implicit_tls = false;
  Session session;

  static Connection& from_timer(TimerNode& n) { return *static_cast<Timer&>(n).owner; }

  // Output not yet handed to the kernel.
  size_t unsent() const { return send_queued.size() + (send_inflight.size() - send_off); }
  // The client owes us reads: take no more of its input for now.
  bool output_full() const { return unsent() > session.config().limits.max_output_buffer; }

  Verdict on_data(Session&, const Envelope&) override {
    if (shard.spool_full()) {
      return Verdict::reject(452, "4.3.1", "Error: insufficient system storage, try again later");
    }
    if (shard.body_memory_full()) {
      return Verdict::reject(452, "4.3.1", "Error: insufficient system resources, try again later");
    }
    return Verdict::accept();
  }

  bool on_body_bytes(Session&, uint64_t bytes) override { return shard.hold_body(*this, bytes); }

  Verdict on_message(Session&, Message& msg) override {
    shard.spool_message(*this, msg);
    return Verdict::pending();
  }

  void on_starttls(Session&) override { shard.start_tls(*this); }

  void on_reply(Session& s, Verb verb, uint16_t code) override {
    if (code < 600) shard.metrics().replies[code].inc();
    if (code >= 400 && shard.log_enabled(LogLevel::info)) {
      LogLine l(LogLevel::info, "reply", shard.unix_ms());
      l.kv("sid", format_session_id(s.conn().session_id))
          .kv("client", s.conn().client_ip)
          .kv("verb", verb_name(verb));
      l.kv("code", uint64_t{code});
      shard.log(l);
    } else if (shard.log_enabled(LogLevel::debug)) {
      LogLine l(LogLevel::debug, "reply", shard.unix_ms());
      l.kv("sid", format_session_id(s.conn().session_id))
          .kv("verb", verb_name(verb))
          .kv("code", uint64_t{code});
      shard.log(l);
    }
  }

  void on_transaction_end(Session& s, const Envelope& env, uint16_t code, uint64_t size) override {
    ShardMetrics& m = shard.metrics();
    TxnResult r = code < 300   ? TxnResult::accepted
                  : code < 500 ? TxnResult::tempfail
                               : TxnResult::rejected;
    m.transactions[static_cast<size_t>(r)].inc();
    if (r == TxnResult::accepted) {
      m.messages_accepted.inc();
      m.message_bytes.inc(size);
    }
    ++txns;
    if (shard.log_enabled(LogLevel::info)) {
      LogLine l(LogLevel::info, "transaction", shard.unix_ms());
      l.kv("sid", format_session_id(s.conn().session_id))
          .kv("qid", env.queue_id)
          .kv("from", env.sender);
      l.kv("rcpts", uint64_t{env.recipients.size()}).kv("size", size).kv("code", uint64_t{code});
      shard.log(l);
    }
  }
};

// One message on its way to disk: its record (envelope block + message +
// checksum trailer) is gathered by reference, the session keeps the bytes
// alive while it waits.
struct SpoolJob {
  Connection* conn = nullptr;
  std::string header;
  SpoolTrailer trailer = {};
  iovec iov[4] = {};
  size_t total = 0;
};

// Every message that completed while the previous batch was being written:
// one file, one write, one fdatasync, one rename, one directory fsync.
struct alignas(16) SpoolBatch {
  std::vector<SpoolJob*> jobs;
  std::vector<iovec> iov;
  std::string segment_name;  // set when this batch starts a new segment
  size_t total = 0;
  size_t written = 0;   // bytes of the batch already written (short writes go on)
  size_t iov_done = 0;  // iovecs written whole
  int error = 0;
  uint8_t pending_cqes = 0;  // write + fsync of the linked pair
  bool write_ok = false;
  bool sync_ok = false;
  int64_t started_ns = 0;

  void advance(size_t n);
};

}  // namespace ringmx
