// A shard: one thread pinned to one CPU, owning one io_uring ring and every
// connection, timer, spool write and counter its connections touch. Shards
// share nothing on the hot path; the few cross-shard facts (connection counts
// for limits, spool size) are atomics touched once per connection or message.
#pragma once

#include <liburing.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/auth_failures.h"
#include "core/client_memory.h"
#include "core/config.h"
#include "core/ip_network.h"
#include "core/metrics.h"
#include "core/recipient_table.h"
#include "core/sender_logins.h"
#include "core/session.h"
#include "core/users_file.h"
#include "net/auth_backend.h"
#include "net/buffer_ring.h"
#include "net/log.h"
#include "net/milter_link.h"
#include "net/mpsc_queue.h"
#include "net/password_workers.h"
#include "net/queue_request.h"
#include "net/relay.h"
#include "net/resolver.h"
#include "net/ring.h"
#include "net/timer_wheel.h"
#include "pipeline/check_set.h"
#include "pipeline/delivery_journal.h"
#include "pipeline/policy.h"
#include "tls/tls_context.h"

namespace ringmx {

// A listener's TLS and front-end trust as the shards use it.
struct ListenerRuntime {
  ListenerTls mode = ListenerTls::none;  // never `unset` here
  bool require_tls = false;
  std::shared_ptr<const TlsServerContext> tls;  // null when mode is none
  ListenerProxy proxy = ListenerProxy::none;
  NetworkSet trusted_proxies;
  NetworkSet xclient_hosts;
};

// A config snapshot as the shards use it. Immutable once built.
struct RuntimeConfig {
  ServerConfig server;
  std::shared_ptr<const SessionSettings> session;
  std::vector<ListenerRuntime> listeners;  // same order as server.listeners
  std::vector<CertificateMetric> certificates;
  std::shared_ptr<const RouteTable> routes;  // server.routes, ready for lookups
  std::shared_ptr<const CheckSet> checks;    // the policy checks ([checks], [[dnsbl]], ...)
  std::shared_ptr<const SenderLogins> sender_logins;  // [auth] sender_logins_file; null: none
  std::shared_ptr<const UsersFile> users;             // [auth] users_file (backend "file")
  std::vector<ResolvedDestination> destinations;      // server.routes' destinations, same order
  // server.recipients.file, read when this snapshot was made; null: no check.
  std::shared_ptr<const RecipientTable> recipients;
  // Loads every certificate the listeners need (one context per distinct
  // certificate and key). Throws std::runtime_error naming the file on any
  // TLS loading error; expired certificates load (see `certificates`), and
  // ListFileLoadError (net/list_files.h) naming file and line.
  static std::shared_ptr<const RuntimeConfig> make(ServerConfig cfg);
};

// Facts every shard reads and updates (rarely: per connection or per message).
struct SharedState {
  std::atomic<uint32_t> connections{0};
  // Connections per client address, by hash bucket. A collision can only make
  // the limit stricter for the two addresses involved, never looser.
  std::array<std::atomic<uint32_t>, 1 << 16> per_ip{};
  // Likewise per client network (checks.rate.max_connections_per_network).
  std::array<std::atomic<uint32_t>, 1 << 16> per_net{};
  std::atomic<int64_t> spool_bytes{0};
  std::atomic<int64_t> spool_messages{0};
  uint32_t shards = 1;                      // set before the shards start
  std::atomic<int64_t> queued_messages{0};  // waiting for delivery, all shards
  PasswordWorkers* passwords = nullptr;     // [auth] backend "file"; set before the shards start
};

struct Connection;
struct Spill;
struct SpoolJob;
struct SpoolBatch;
struct SegmentJournal;

class Shard {
 public:
  struct alignas(16) Listener {
    int fd = -1;
    uint32_t index = 0;  // position in the config's listener list
    bool armed = false;
    bool paused = false;  // out of file descriptors: re-armed later
  };

  Shard(uint32_t id, std::shared_ptr<const RuntimeConfig> cfg, SharedState& shared,
        ShardMetrics& metrics, Logger& logger, std::vector<Listener> listeners,
        std::string spool_dir);
  ~Shard();
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  // Sets up the ring (throws std::runtime_error on failure) and starts the thread.
  void start();
  void join();
  // Thread-safe requests from the main thread.
  void request_drain(int64_t deadline_mono_ms);
  void request_reload(std::shared_ptr<const RuntimeConfig> cfg);
  // An operator's queue request: false when this shard's request queue is
  // full (the request is not counted as waiting for it then).
  bool request_queue(std::shared_ptr<QueueRequest> r);
  // A password worker's answer (any thread); dropped when the queue is full
  // (the AUTH then times out: 454).
  void post_password_result(PasswordResult r);
  bool finished() const { return finished_.load(std::memory_order_acquire); }

  // ---- used by connections (shard thread only) ----
  const RuntimeConfig& cfg() const { return *cfg_; }
  ShardMetrics& metrics() { return metrics_; }
  Now now() const { return now_; }
  int64_t unix_ms() const { return unix_ms_; }
  uint32_t id() const { return id_; }
  bool log_enabled(LogLevel l) const { return logger_.enabled(l); }
  void log(LogLine& line) { log_.push(line.finish()); }

  void flush(Connection& c);
  void arm_recv(Connection& c);
  void schedule_timer(Connection& c);
  void spool_message(Connection& c, Message& msg);
  // STARTTLS was answered with 220: the next bytes from the client are TLS.
  void start_tls(Connection& c);
  bool spool_full() const;
  // Body memory (limits.body_memory_per_shard): a connection's message body
  // now holds `bytes`; false when that would cross the budget (the session
  // then stops storing it).
  BodyRoom hold_body(Connection& c, uint64_t bytes);
  // RCPT: refused (550 5.7.1) when routes are configured and none takes its domain.
  Verdict check_route(Connection& c, const Recipient& r);
  // RCPT, after the route check: with a recipients file, a recipient it does
  // not list gets 550 5.1.1, and the one past recipients.unknown_limit on a
  // connection gets 421 4.7.0 (which closes it).
  Verdict check_recipient(Connection& c, const Recipient& r);
  // MAIL: refused (452 4.3.1) while the delivery queue or the spool is full.
  Verdict check_mail(Connection& c);
  // The policy checks of `stage` (net/shard_policy.cc): their verdict now,
  // or pending (the session waits; policy_decided() resumes it).
  Verdict run_checks(Connection& c, CheckStage stage);
  void policy_decided(Connection& c, const PolicyDecision& d);
  // A command the session does not know: the milters already talking to
  // this connection hear it (SMFIC_UNKNOWN); one may give its own refusal.
  Verdict unknown_command(Connection& c, std::string_view line);
  // A verdict the session waited for (a check, a milter): the session takes
  // it, then the input held meanwhile.
  void resume_session(Connection& c, const Verdict& v);
  // AUTH (net/shard_auth.cc): the credentials go to the backend; pending
  // until it answers (auth_answered() resumes the session), or 454 at once.
  Verdict authenticate(Connection& c, sasl::Mechanism m, const sasl::Credentials& cr);
  // `blocked`: refused without asking (the user failed too often).
  void auth_answered(Connection& c, sasl::Mechanism m, AuthAnswer a, bool blocked);
  // MAIL on a submission listener: a refusal held from connect or HELO for
  // a client that did not authenticate; for one that did, a sender its
  // login does not own (553 5.7.1, [auth] sender_logins_file).
  Verdict check_submission(Connection& c, const Envelope& env);
  // Connect on a submission listener: an address blocked for failing AUTH
  // too often gets 421 4.7.0.
  Verdict check_auth_block(Connection& c);
  // End of data: the message-stage checks, then the spool (or the spill's
  // commit). Pending while either works; a refusal is returned.
  Verdict message_checks(Connection& c, Message& msg);
  // The checks passed: the milters' changes, then the spool (pending) or a discard.
  Verdict take_message(Connection& c, Message& msg);
  void store_message(Connection& c, Message& msg);
  // The shard's resolver; null when it could not start (checks then see
  // every lookup fail for now).
  DnsLookup* dns();
  // A body past the budget streams to a file of its own (net/shard_spill.cc).
  void spill_start(Connection& c, Message& msg);
  // A spill's buffers count in the body memory until they are on disk.
  void account_spill(Connection& c);
  void spill_append(Connection& c, std::string_view piece);
  void spill_commit(Connection& c, Message& msg);
  void spill_discard(Connection& c);
  SharedState& shared() { return shared_; }
  // ---- delivery's journal (net/shard_delivery.cc; shard thread only) ----
  // Segment `segment` holds `messages` more messages on their way out; a
  // closed one takes no more appends. Removed (with its journal) once closed
  // and every message in it is done.
  void segment_add(const std::string& segment, uint32_t pending, uint32_t records, bool closed,
                   uint64_t bytes);
  void journal_rcpt_done(const QueuedMessage& m, uint32_t index);
  void journal_retry(const QueuedMessage& m, uint32_t attempts, int64_t next_unix_ms);
  void journal_message_done(const QueuedMessage& m);
  void journal_hold(const QueuedMessage& m, bool held);
  // A journal's ring operation completed (SegmentJournal::StepOp).
  void journal_done(SegmentJournal& j, unsigned step, int res);
  // The journals whose lines have waited long enough: written and synced now.
  void flush_journals();
  void flush_journals_at_exit();
  // Start-up: what the spool directory still had to deliver (before start()).
  void preload(DeliveryScan scan) { preload_ = std::move(scan); }
  Ring& ring() { return ring_; }
  TimerWheel& wheel() { return wheel_; }
  // The provided buffers connections receive into (inbound and relays alike).
  ProvidedBufferRing& buffers() { return bufs_; }
  uint32_t shard_count() const { return shared_.shards; }
  int spool_dir_fd() const { return spool_dir_fd_; }

 private:
  void run();
  void setup_ring();
  void setup_buffers();
  void arm_accept(Listener& l);
  void cancel_accept(Listener& l);
  void pause_recv(Connection& c);
  void maybe_resume_recv(Connection& c);
  int64_t send_deadline(const Connection& c) const;
  void arm_send_deadline(Connection& c);
  void send_timed_out(Connection& c);
  void arm_control();
  void handle_cqe(io_uring_cqe* cqe);
  void on_accept(Listener& l, int res, uint32_t flags);
  void on_recv(Connection& c, int res, uint32_t flags);
  void on_send(Connection& c, int res);
  void on_control(int res);
  void on_timer(TimerNode& n);
  void start_send(Connection& c);
  void begin_close(Connection& c);
  void maybe_free(Connection& c);
  void feed(Connection& c, std::string_view data);
  void on_tls_input(Connection& c, std::string_view data);
  void tls_handshake_done(Connection& c);
  void tls_failed(Connection& c, TlsResult result, std::string_view reason);
  void tls_end(Connection& c);
  void queue_ciphertext(Connection& c);
  void start_session(Connection& c);
  void admit(Connection& c, uint32_t total);
  bool admit_network(Connection& c);
  // net/shard_policy.cc: the resolver, and each connection's checks (the
  // connect stage starts at once: its lookups overlap the handshake and the
  // greeting delay).
  void start_resolver();
  void start_policy(Connection& c);
  // PROXY listeners (net/shard_proxy.cc): the header comes first.
  void start_proxy(Connection& c, const ListenerRuntime& lr);
  void on_proxy_input(Connection& c, std::string_view data);
  void proxy_refused(Connection& c, ConnResult why, std::string_view reason);
  int64_t wait_budget_ms() const;
  void end_linger(Connection& c);
  void release_slot(Connection& c);
  void input_ended(Connection& c);
  void client_gone(Connection& c, bool clean_eof);
  void queue_output(Connection& c, std::string_view plaintext);
  void feed_pending(Connection& c);
  void update_clock();
  void check_disk();
  void stop_accepting();
  void apply_control();
  void start_batch();
  void submit_write(SpoolBatch& b);
  void close_segment();
  void on_spool_cqe(SpoolBatch& b, unsigned op, int res);
  void finish_batch(SpoolBatch& b, bool ok, int err);
  // The message of `c` is on disk (ok) or failed: the session answers.
  void message_written(Connection& c, bool ok);
  // An accepted message goes to delivery (routes configured): its envelope,
  // where it is in the spool, and its bytes when memory allows.
  void hand_off(Connection& c, const Message& msg, std::string segment, uint64_t offset,
                uint64_t size, bool held, uint64_t record_bytes);
  void segment_closed(const std::string& segment);
  // Writes what waits (now: at once, else after kJournalDelayMs), or
  // removes the segment and its journal once every message in it is done.
  void kick_journal(SegmentJournal& j, bool now = false);
  void on_spill_cqe(Connection& c, unsigned op, int res);
  void spill_write(Connection& c);
  void spill_seal(Connection& c);
  void spill_done(Connection& c, bool ok);
  void spill_remove(Connection& c);
  void drop_spill(Connection& c);
  void on_spill_unlinked(Spill* sp);
  uint64_t next_session_id();

  uint32_t id_;
  std::shared_ptr<const RuntimeConfig> cfg_;
  SharedState& shared_;
  ShardMetrics& metrics_;
  Logger& logger_;
  LogRing& log_;
  std::vector<Listener> listeners_;
  std::string spool_dir_;
  int spool_dir_fd_ = -1;

  Ring ring_;
  uint64_t deferrals_seen_ = 0;  // ring_.deferrals() already counted in the metrics
  uint64_t full_seen_ = 0;       // ring_.full_submits() likewise
  ProvidedBufferRing bufs_;

  int control_fd_ = -1;
  uint64_t control_buf_ = 0;
  std::mutex control_mu_;
  bool control_drain_ = false;
  int64_t control_drain_deadline_ = 0;
  std::shared_ptr<const RuntimeConfig> control_cfg_;
  MpscQueue<std::shared_ptr<QueueRequest>> queue_requests_{64};
  MpscQueue<PasswordResult> password_results_{kMaxFileVerifications};

  Now now_;
  int64_t unix_ms_ = 0;
  TimerWheel wheel_;
  uint64_t session_seq_ = 0;
  int64_t accept_resume_ms_ = 0;
  int64_t next_disk_check_ms_ = 0;
  bool disk_low_ = false;
  bool draining_ = false;
  int64_t drain_deadline_ms_ = 0;
  bool stopping_ = false;

  // Recent clients: their rates and karma (checks.rate, checks.karma).
  ClientMemory clients_;
  // Failed AUTHs by address and user ([auth] brute-force limits).
  AuthFailures auth_failures_;
  // Milter connections (net/milter_link.h): after the ring and the wheel, so
  // it is destroyed before them; the ring has exited by then.
  MilterLinks milters_{*this};
  // The AUTH backend's connection (net/auth_backend.h), likewise.
  AuthBackend auth_{*this};
  void configure_clients();
  // The connection ends: a refused or high-scoring one leaves its client
  // karma points.
  void remember_client(Connection& c);
  uint64_t body_memory_ = 0;  // bytes of message bodies held by this shard's sessions
  std::vector<std::unique_ptr<Spill>> dead_spills_;  // discarded, their unlink in flight
  Connection* conns_ = nullptr;                      // intrusive list of live connections
  size_t live_ = 0;

  std::vector<SpoolJob*> spool_queue_;  // complete messages waiting for the next batch
  SpoolBatch* batch_ = nullptr;         // the batch on its way to disk
  int seg_fd_ = -1;                     // the segment batches are appended to
  std::string seg_name_;
  uint64_t seg_size_ = 0;  // durable length: the next batch is written here
  bool seg_needs_dir_sync_ = false;

  std::string tls_plain_;  // scratch: decrypted input on its way to a session
  // Delivery of routed mail (net/relay.h). Freed with the shard, after the
  // ring: no operation can complete into it any more.
  std::unique_ptr<Relays> relays_;
  // DNS for the checks: created by run(), freed after the connections (whose
  // checks may still wait for it) and before the ring exits (closing its
  // sockets removes their polls).
  std::unique_ptr<Resolver> resolver_;
  // `may_hold`: a submission listener's connect or HELO refusal may wait for
  // MAIL (false when it is that refusal applied at MAIL).
  Verdict policy_verdict(Connection& c, const PolicyDecision& d, bool may_hold = true);
  std::unordered_map<std::string, std::unique_ptr<SegmentJournal>> journals_;  // by segment
  std::vector<std::string> journal_due_;  // segments whose journal lines wait for the flush
  struct JournalTimer : TimerNode {
    Shard* shard = nullptr;
  } journal_timer_;
  DeliveryScan preload_;

  std::thread thread_;
  std::atomic<bool> finished_{false};
};

}  // namespace ringmx
