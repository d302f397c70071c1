// What the shard's source files share and nothing else sees: the tagged
// user_data of ring operations, a connection (socket + optional TLS + SMTP
// session), and the spool batch records.
#pragma once

#include <liburing.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstdint>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "core/metrics.h"
#include "core/received_header.h"
#include "core/reply.h"
#include "core/session.h"
#include "net/proxy_protocol.h"
#include "net/shard.h"
#include "net/timer_wheel.h"
#include "pipeline/policy.h"
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
  kOpSpillOpen = 10,    // a spilled body's file (points at the Connection)
  kOpSpillWrite = 11,   // a piece of it
  kOpSpillSeal = 12,    // size digits, trailer, fdatasync: linked
  kOpSpillName = 13,    // rename to its final name, directory fsync: linked
  kOpSpillUnlink = 14,  // a discarded one's file (points at the Spill)
  kOpCompletion = 15,   // any Completion (net/ring.h): its complete() is called
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

// A transaction log line names at most this many recipients (and counts all).
inline constexpr size_t kLoggedRcpts = 20;

// A spilled body is written in pieces of this size; reading from its client
// pauses while twice this waits for the disk.
inline constexpr size_t kSpillChunk = size_t{64} * 1024;

// A body streamed to disk as it arrives (over the shard's body budget), as
// one record in a file of its own: written as ID.tmp (start-up removes those:
// never acknowledged), then sealed (size digits, trailer, fdatasync), renamed
// to ID.msg and its directory synced — only then 250. One write in flight;
// the pieces that arrive meanwhile wait in `pending`. Its buffers count in
// the shard's body memory until they are on disk.
struct alignas(16) Spill {
  int fd = -1;
  std::string tmp_name;
  std::string final_name;
  size_t size_at = 0;     // offset of the message-size digits in the file
  uint32_t crc_head = 0;  // CRC32C of the octets before the digits
  uint32_t crc_tail = 0;  // ... of everything after them, as far as it came
  uint64_t tail_len = 0;
  uint64_t off = 0;              // where the next write goes
  uint64_t message_size = 0;     // Received header + body octets so far
  const Message* msg = nullptr;  // set at the end of data: the session's, for the hand-off
  std::string lead;              // envelope block + Received header: the first write
  ByteBuffer held;               // the body held when spilling began: written with the lead
  bool lead_written = false;
  iovec lead_iov[2] = {};
  std::string pending;  // octets waiting for the write in flight
  std::string inflight;
  uint64_t accounted = 0;  // what the shard's body memory counts for it
  std::string digits;      // the seal's pieces, alive while written
  SpoolTrailer trailer{};
  bool opening = false;
  bool writing = false;
  bool committing = false;  // end of data came: seal and name it
  bool created = false;     // the open made the file: ours to unlink
  bool named = false;       // renamed to final_name
  bool discarded = false;   // thrown away; removed once nothing is in flight
  uint8_t seal_cqes = 0;    // completions still due from the chain in flight
  int error = 0;
  int64_t started_ns = 0;
  bool busy() const { return opening || writing || seal_cqes != 0; }
};

struct alignas(16) Connection final : SessionHandler {
  // handshake: TLS (implicit, or after STARTTLS's 220) before the session
  // goes on; no SMTP input is read meanwhile.
  // proxy_header: a PROXY listener's connection before its header is read.
  enum class Stage : uint8_t { proxy_header, greeting_delay, handshake, open, closing };

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
  bool counted = false;     // holds a slot in the connection limit
  bool ip_counted = false;  // ... and in its client address's (ip_slot)
  size_t ip_slot = 0;
  bool net_counted = false;  // ... and in its client network's (net_slot)
  size_t net_slot = 0;
  // Refused something for what it did (a check, an unknown recipient, the
  // protocol discipline): the end of the connection counts against the
  // client's karma. Refusals for volume (rates, limits, karma) do not.
  bool refused = false;
  bool recv_armed = false;
  bool pregreeted = false;  // talked before the greeting (pregreet_action = "score")
  bool recv_paused = false;
  bool send_busy = false;
  bool shut = false;
  bool input_done = false;  // the client closed its sending side (FIN or close_notify)
  bool lingering = false;   // our FIN is out; reading and discarding until the client's
  size_t lingered = 0;      // octets discarded while lingering
  uint32_t ops = 0;         // operations in flight that point at this object
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
  std::unique_ptr<Spill> spill;  // a body streamed to its own file, past the body budget
  uint64_t body_bytes = 0;       // this connection's share of the shard's body memory
  uint32_t txns = 0;
  // TLS: set from the first handshake byte on; plaintext before it (STARTTLS).
  std::shared_ptr<const TlsServerContext> tls_context;  // the listener's, at accept
  std::shared_ptr<const RouteTable> routes;             // the config's, at accept
  std::shared_ptr<const RecipientTable> recipients;     // likewise; null: no check
  uint32_t unknown_limit = 0;                           // recipients.unknown_limit, at accept
  uint32_t unknown_rcpts = 0;  // recipients the table refused, over the whole connection
  std::unique_ptr<TlsSession> tls;
  std::unique_ptr<ProxyParser> proxy;  // while the PROXY header is read
  // The policy checks (pipeline/policy.h); null when the config has none.
  std::unique_ptr<Policy> policy;
  Message* checked_message = nullptr;   // waits for its end-of-message checks
  std::unique_ptr<AuthWait> auth_wait;  // an AUTH the backend is verifying
  // A submission listener's connect or HELO refusal, held for MAIL: dropped
  // if the client authenticates first (Shard::check_submission).
  std::unique_ptr<PolicyDecision> deferred_refusal;
  // A failed AUTH's refusal, sent when its delay (brute force) is over.
  struct AuthDelay : TimerNode {
    Connection* conn = nullptr;
    Verdict verdict;
  };
  std::unique_ptr<AuthDelay> auth_delay;
  ~Connection() override {
    if (auth_delay) shard.wheel().cancel(*auth_delay);
  }
  std::string proxy_peer;  // the proxy's address, when a header named the client
  int64_t tls_started_ns = 0;
  TlsVersionLabel tls_version = TlsVersionLabel::none;  // counted in the active gauge
  bool implicit_tls = false;
  Session session;

  static Connection& from_timer(TimerNode& n) { return *static_cast<Timer&>(n).owner; }

  // Output not yet handed to the kernel.
  size_t unsent() const { return send_queued.size() + (send_inflight.size() - send_off); }
  // The client owes us reads: take no more of its input for now.
  bool output_full() const { return unsent() > session.config().limits.max_output_buffer; }

  // The policy's stages (net/shard_policy.cc): the shard's own limits
  // first, then the checks.
  Verdict on_connect(Session&) override {
    Verdict v = shard.check_auth_block(*this);
    if (v.kind != Verdict::Kind::accept) return v;
    return shard.run_checks(*this, CheckStage::connect);
  }

  Verdict on_helo(Session&, std::string_view name) override {
    if (policy) policy->context().helo = name;
    return shard.run_checks(*this, CheckStage::helo);
  }

  Verdict on_mail(Session&, const Envelope& env) override {
    Verdict v = shard.check_submission(*this, env);
    if (v.kind != Verdict::Kind::accept) return v;
    v = shard.check_mail(*this);
    if (v.kind != Verdict::Kind::accept) return v;
    if (policy) policy->context().envelope = &env;
    return shard.run_checks(*this, CheckStage::mail);
  }

  Verdict on_rcpt(Session&, const Envelope& env, const Recipient& r) override {
    Verdict v = shard.check_route(*this, r);
    if (v.kind != Verdict::Kind::accept) return v;
    v = shard.check_recipient(*this, r);
    if (v.kind != Verdict::Kind::accept) return v;
    if (policy) {
      policy->context().envelope = &env;
      policy->context().rcpt = &r;
    }
    return shard.run_checks(*this, CheckStage::rcpt);
  }

  Verdict on_data(Session&, const Envelope& env) override {
    if (shard.spool_full()) {
      return Verdict::reject(452, "4.3.1", "Error: insufficient system storage, try again later");
    }
    if (policy) policy->context().envelope = &env;
    return shard.run_checks(*this, CheckStage::data);
  }

  Verdict on_unknown(Session&, std::string_view line) override {
    return shard.unknown_command(*this, line);
  }

  Verdict on_auth(Session&, sasl::Mechanism m, const sasl::Credentials& cr) override {
    return shard.authenticate(*this, m, cr);
  }

  BodyRoom on_body_bytes(Session&, uint64_t bytes) override {
    return shard.hold_body(*this, bytes);
  }
  void on_spill_start(Session&, Message& msg) override { shard.spill_start(*this, msg); }
  void on_body_spill(Session&, std::string_view piece) override {
    shard.spill_append(*this, piece);
  }
  void on_spill_end(Session&) override { shard.spill_discard(*this); }

  // The end-of-message checks first (net/shard_policy.cc), then the disk.
  Verdict on_message(Session&, Message& msg) override { return shard.message_checks(*this, msg); }

  // A message of this connection is on its way to disk: the connection stays
  // until it is there, whatever the client does.
  bool writing_message() const;
  // A spilled body's pieces wait for the disk: stop reading this client.
  bool spill_backlog() const { return spill && spill->pending.size() >= 2 * kSpillChunk; }
  uint64_t spill_memory() const {
    return spill ? spill->lead.size() + spill->held.size() + spill->pending.size() +
                       spill->inflight.size()
                 : 0;
  }

  void on_starttls(Session&) override { shard.start_tls(*this); }

  void on_reply(Session& s, Verb verb, uint16_t code, std::string_view enhanced,
                std::string_view text) override {
    if (code < 600) shard.metrics().replies[code].inc();
    if (code >= 400 && shard.log_enabled(LogLevel::info)) {
      // A refusal: what was refused (the command's argument) and what we said.
      LogLine l(LogLevel::info, "reply", shard.unix_ms());
      l.kv("sid", format_session_id(s.conn().session_id))
          .kv("client", s.conn().client_ip)
          .kv("verb", verb_name(verb));
      l.kv("code", uint64_t{code}).kv("enhanced", enhanced).kv("text", text);
      if (verb != Verb::unknown) l.kv("arg", s.current_arg());
      shard.log(l);
    } else if (shard.log_enabled(LogLevel::debug)) {
      LogLine l(LogLevel::debug, "reply", shard.unix_ms());
      l.kv("sid", format_session_id(s.conn().session_id))
          .kv("verb", verb_name(verb))
          .kv("code", uint64_t{code});
      shard.log(l);
    }
  }

  // A protocol discipline check dropped the client (its reply follows in a
  // `reply` line): counted in ringmx_rejects_total as stage "command".
  void on_protocol_reject(Session& s, std::string_view check) override {
    refused = true;  // the client's karma remembers it
    shard.metrics().rejects[kRejectStages - 1][static_cast<size_t>(reject_check_of(check))].inc();
    if (!shard.log_enabled(LogLevel::info)) return;
    LogLine l(LogLevel::info, "reject", shard.unix_ms());
    l.kv("stage", s.stage()).kv("check", check);
    l.kv("client", s.conn().client_ip).kv("sid", format_session_id(s.conn().session_id));
    shard.log(l);
  }

  void on_xclient(Session& s, std::string_view previous) override {
    if (policy) policy->reset_client();  // a new client: its own facts and score
    if (!shard.log_enabled(LogLevel::info)) return;
    const ConnInfo& ci = s.conn();
    LogLine l(LogLevel::info, "xclient", shard.unix_ms());
    l.kv("sid", format_session_id(ci.session_id)).kv("from", previous).kv("client", ci.client_ip);
    l.kv("port", uint64_t{ci.client_port}).kv("name", ci.client_ptr).kv("helo", ci.xclient_helo);
    l.kv("login", ci.login);
    shard.log(l);
  }

  void on_transaction_abort(Session&, const Envelope&) override {
    shard.metrics().transactions[static_cast<size_t>(TxnResult::aborted)].inc();
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
      const ConnInfo& ci = s.conn();
      LogLine l(LogLevel::info, "transaction", shard.unix_ms());
      l.kv("sid", format_session_id(ci.session_id))
          .kv("qid", env.queue_id)
          .kv("client", ci.client_ip)
          .kv("helo", ci.xclient_helo.empty() ? s.helo() : std::string_view(ci.xclient_helo))
          .kv("tls", ci.tls_active ? std::string_view(ci.tls_version) : "none")
          .kv("from", env.sender);
      // The recipients, the first kLoggedRcpts of them (a line stays bounded).
      std::string to;
      for (size_t i = 0; i < env.recipients.size() && i < kLoggedRcpts; ++i) {
        if (i) to.push_back(',');
        to.append(env.recipients[i].address);
      }
      l.kv("to", to).kv("rcpts", uint64_t{env.recipients.size()});
      l.kv("size", size).kv("code", uint64_t{code});
      shard.log(l);
    }
  }
};

// One message on its way to disk: its record (envelope block + message +
// checksum trailer) is gathered by reference, the session keeps the bytes
// alive while it waits.
struct SpoolJob {
  Connection* conn = nullptr;
  const Message* msg = nullptr;  // the session's, alive until the session hears the outcome
  std::string header;
  SpoolTrailer trailer = {};
  iovec iov[4] = {};
  size_t total = 0;
};

// The client facts a spool record's envelope carries.
SpoolClient spool_client(const Session& s, const Message& msg);

inline bool Connection::writing_message() const {
  return job != nullptr || (spill && spill->committing);
}

// Every message that completed while the previous batch was being written:
// appended to the shard's segment file with one write and one fdatasync (and
// a directory fsync when the batch starts a new segment).
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

// A segment's delivery journal (net/shard_delivery.cc): the segment's
// messages still on their way out, and the journal lines on their way to
// ID.done (one write + fdatasync in flight).
struct SegmentJournal final : Completion {
  enum Step : unsigned { kOpen, kWrite, kSync, kDirSync, kUnlinkSegment, kUnlinkJournal };
  struct StepOp final : Completion {
    SegmentJournal* j = nullptr;
    unsigned step = 0;
    void complete(int res, uint32_t /*flags*/) override { j->shard->journal_done(*j, step, res); }
  };

  SegmentJournal(Shard& s, std::string seg) : shard(&s), segment(std::move(seg)) {
    name = journal_name(segment);
    for (unsigned i = 0; i < std::size(ops); ++i) {
      ops[i].j = this;
      ops[i].step = i;
    }
  }
  ~SegmentJournal() {
    if (fd >= 0) ::close(fd);
  }
  SegmentJournal(const SegmentJournal&) = delete;
  SegmentJournal& operator=(const SegmentJournal&) = delete;
  void complete(int /*res*/, uint32_t /*flags*/) override {}

  Shard* shard;
  std::string segment;
  std::string name;
  uint32_t live = 0;
  uint32_t messages = 0;  // records in the segment (for the spool gauges)
  uint64_t bytes = 0;     // their size
  bool closed = false;
  int fd = -1;
  bool named = false;  // its directory entry synced
  uint64_t off = 0;
  std::string buf;       // lines waiting for the next write
  std::string inflight;  // lines being written
  unsigned pending = 0;  // completions still due
  bool failed = false;   // a write or sync failed: later lines are still tried
  bool reclaiming = false;
  bool due = false;  // its lines wait for the next journal flush (Shard::flush_journals)
  StepOp ops[6];
};

}  // namespace ringmx
