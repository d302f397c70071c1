// The shard event loop: multishot accept, multishot recv into a provided-
// buffer ring, one send in flight per connection, a timer wheel for every
// session deadline (the loop sleeps until the next one), and durable spool
// writes through the same ring: batches appended to the shard's segment file
// (writev + fdatasync, a directory fsync when a segment starts:
// shard_spool.cc) and bodies past the memory budget streamed to files of
// their own (shard_spill.cc).
#include "net/shard.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>
#include <stdexcept>

#include "net/connection.h"
#include "net/list_files.h"
#include "net/listener.h"
#include "net/uring_probe.h"

namespace ringmx {

namespace {

// Input held while a session waits for a verdict; past this the socket is
// not read any more until the session catches up (back-pressure).
constexpr size_t kMaxPendingInput = size_t{256} * 1024;
// Held input is fed to a session this much at a time (one receive buffer).
constexpr size_t kFeedSlice = 4096;
// Receive buffers: count must be a power of two.
constexpr uint32_t kBufCount = 1024;
constexpr uint32_t kBufSize = 4096;
constexpr uint16_t kBufGroup = 0;
// The longest a shard sleeps with nothing due (the disk check comes sooner).
constexpr int64_t kMaxWaitMs = 60'000;
// A closing connection reads and discards what still comes for this long, or
// this much, waiting for the client's FIN (begin_close).
constexpr int64_t kLingerMs = 1000;
constexpr size_t kLingerMaxBytes = size_t{64} * 1024;

std::string peer_ip(int fd, uint16_t& port) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  port = 0;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return "unknown";
  return ip_text(ss, port);
}

bool is_v4_mapped(const IpBytes& ip) {
  for (size_t i = 0; i < 10; ++i) {
    if (ip[i] != 0) return false;
  }
  return ip[10] == 0xff && ip[11] == 0xff;
}

// The bucket of the network of `ip` with `prefix` bits (over the 128-bit form).
size_t network_bucket(const IpBytes& ip, uint32_t prefix) {
  uint64_t h = 1469598103934665603ull;
  for (uint32_t i = 0; i < 16; ++i) {
    const uint32_t bits = prefix > i * 8 ? std::min<uint32_t>(8, prefix - i * 8) : 0;
    const auto mask = static_cast<uint8_t>(bits == 0 ? 0 : 0xff << (8 - bits));
    h ^= static_cast<uint8_t>(ip[i] & mask);
    h *= 1099511628211ull;
  }
  h ^= prefix;
  h *= 1099511628211ull;
  return static_cast<size_t>((h ^ (h >> 32)) & 0xffff);
}

size_t ip_bucket(std::string_view ip) {
  // FNV-1a: cheap and good enough to spread addresses over 64 Ki buckets.
  uint64_t h = 1469598103934665603ull;
  for (char c : ip) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return static_cast<size_t>((h ^ (h >> 32)) & 0xffff);
}

}  // namespace

namespace {

// The engine's view of one listener's TLS settings: its own certificate or
// the [tls] one, and everything else from [tls].
TlsServerConfig tls_server_config(const TlsConfig& t, const ListenerConfig& l) {
  TlsServerConfig sc;
  sc.cert_chain_file = l.cert_file.empty() ? t.cert_file : l.cert_file;
  sc.key_file = l.cert_file.empty() ? t.key_file : l.key_file;
  for (const TlsSniConfig& e : t.sni) sc.sni.push_back({e.name, e.cert_file, e.key_file});
  sc.min_version = t.min_version == TlsMinVersion::tls1_3 ? TlsVersion::tls1_3 : TlsVersion::tls1_2;
  if (!t.ciphers.empty()) sc.ciphers = t.ciphers;
  if (!t.groups.empty()) sc.groups = t.groups;
  sc.session_tickets = t.session_tickets;
  sc.request_client_cert = t.request_client_cert;
  return sc;
}

}  // namespace

std::shared_ptr<const RuntimeConfig> RuntimeConfig::make(ServerConfig cfg) {
  auto rc = std::make_shared<RuntimeConfig>();
  rc->session = std::make_shared<SessionSettings>(cfg.smtp);
  // One TLS context per distinct certificate: listeners on the default one
  // share it (and its session-ticket keys).
  std::map<std::string, std::shared_ptr<const TlsServerContext>> contexts;
  for (const ListenerConfig& l : cfg.listeners) {
    ListenerRuntime lr;
    lr.mode = effective_tls(cfg, l);
    lr.require_tls = l.require_tls && lr.mode == ListenerTls::starttls;
    lr.proxy = l.proxy_protocol;
    lr.trusted_proxies = NetworkSet(l.trusted_proxies);
    lr.xclient_hosts = NetworkSet(l.xclient_hosts);
    if (lr.mode != ListenerTls::none) {
      const TlsServerConfig sc = tls_server_config(cfg.tls, l);
      std::shared_ptr<const TlsServerContext>& ctx =
          contexts[sc.cert_chain_file + '\n' + sc.key_file];
      if (!ctx) ctx = TlsServerContext::create(sc);
      lr.tls = ctx;
      for (const TlsCertificateInfo& ci : ctx->certificates()) {
        rc->certificates.push_back({l.name, ci.name.empty() ? "default" : ci.name, ci.subject_cn,
                                    ci.not_after, ci.expired});
      }
    }
    rc->listeners.push_back(std::move(lr));
  }
  rc->routes = std::make_shared<const RouteTable>(cfg.routes);
  rc->checks = CheckSet::build(cfg);
  rc->recipients = load_recipient_file(cfg.recipients);
  rc->sender_logins = load_sender_logins(cfg.auth);
  rc->users = load_users_file(cfg.auth);
  rc->destinations = resolve_destinations(cfg.routes);
  rc->server = std::move(cfg);
  return rc;
}

// ---- set-up -------------------------------------------------------------------

Shard::Shard(uint32_t id, std::shared_ptr<const RuntimeConfig> cfg, SharedState& shared,
             ShardMetrics& metrics, Logger& logger, std::vector<Listener> listeners,
             std::string spool_dir)
    : id_(id),
      cfg_(std::move(cfg)),
      shared_(shared),
      metrics_(metrics),
      logger_(logger),
      log_(logger.make_ring()),
      listeners_(std::move(listeners)),
      spool_dir_(std::move(spool_dir)),
      wheel_(mono_ms()) {
  metrics_.spool_free_bytes.set(-1);  // until the first check
}

Shard::~Shard() {
  join();
  while (conns_) {
    Connection* c = conns_;
    conns_ = c->next;
    if (c->fd >= 0) ::close(c->fd);
    delete c;
  }
  resolver_.reset();  // after the connections (their checks cancel lookups), before the ring
  for (auto& l : listeners_)
    if (l.fd >= 0) ::close(l.fd);
  ring_.exit();
  if (control_fd_ >= 0) ::close(control_fd_);
  if (seg_fd_ >= 0) ::close(seg_fd_);
  if (spool_dir_fd_ >= 0) ::close(spool_dir_fd_);
}

void Shard::setup_ring() {
  ring_.init(cfg_->server.ring_entries, 65536, shard_ring_flags());
}

void Shard::setup_buffers() {
  bufs_.setup(ring_.raw(), kBufCount, kBufSize, kBufGroup);
}

void Shard::start() {
  control_fd_ = eventfd(0, EFD_CLOEXEC);
  if (control_fd_ < 0) throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
  // Server::start recovered this directory and made it durable
  // (make_durable_dirs) before any shard starts.
  spool_dir_fd_ = ::open(spool_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (spool_dir_fd_ < 0) {
    throw std::runtime_error("spool directory " + spool_dir_ + ": " + std::strerror(errno));
  }
  thread_ = std::thread([this] {
    // One shard per CPU: pin it, so its ring, caches and heap stay on one core.
    const unsigned ncpu = std::max(1u, std::thread::hardware_concurrency());
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(id_ % ncpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    // The ring is created on its own thread: SINGLE_ISSUER binds it to the creator.
    try {
      setup_ring();
      setup_buffers();
    } catch (const std::exception& e) {
      LogLine l(LogLevel::error, "shard_setup_failed", wall_ms());
      l.kv("shard", id_).kv("error", e.what());
      logger_.emit(l);
      finished_.store(true, std::memory_order_release);
      return;
    }
    run();
    tls_thread_exit();
    finished_.store(true, std::memory_order_release);
  });
}

void Shard::join() {
  if (thread_.joinable()) thread_.join();
}

void Shard::request_drain(int64_t deadline_mono_ms) {
  {
    std::lock_guard<std::mutex> g(control_mu_);
    control_drain_ = true;
    control_drain_deadline_ = deadline_mono_ms;
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(control_fd_, &one, sizeof one);
}

void Shard::post_password_result(PasswordResult r) {
  if (!password_results_.push(r)) return;
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(control_fd_, &one, sizeof one);
}

bool Shard::request_queue(std::shared_ptr<QueueRequest> r) {
  if (!queue_requests_.push(std::move(r))) return false;
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(control_fd_, &one, sizeof one);
  return true;
}

void Shard::request_reload(std::shared_ptr<const RuntimeConfig> cfg) {
  {
    std::lock_guard<std::mutex> g(control_mu_);
    control_cfg_ = std::move(cfg);
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(control_fd_, &one, sizeof one);
}

void Shard::update_clock() {
  const int64_t ns = mono_ns();
  now_.mono_ms = ns / 1'000'000;
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  unix_ms_ = int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
  now_.unix_s = ts.tv_sec;
  if (resolver_) resolver_->set_now(now_.mono_ms, ns);
  clients_.set_now(now_.mono_ms);
}

uint64_t Shard::next_session_id() {
  // Queue ids and spool file names derive from this, so it must not repeat
  // across shards or restarts (a crash loop restarts within the same
  // second): see compose_session_id. Should two segment names still meet,
  // O_EXCL turns it into a 451, never an overwritten file.
  ++session_seq_;
  return compose_session_id(unix_ms_, id_, session_seq_);
}

// ---- loop -------------------------------------------------------------------

void Shard::run() {
  update_clock();
  uint16_t seed = 0;
  if (getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = static_cast<uint16_t>(mono_ns());
  session_seq_ = seed;
  for (auto& l : listeners_) arm_accept(l);
  arm_control();
  journal_timer_.shard = this;
  journal_timer_.fire = [](TimerNode& n) { static_cast<JournalTimer&>(n).shard->flush_journals(); };
  start_resolver();
  configure_clients();
  relays_ = std::make_unique<Relays>(*this);
  relays_->configure(*cfg_);
  if (!preload_.pending.empty()) {
    // What the spool still had to deliver when ringmx last stopped.
    for (const auto& [segment, s] : preload_.live) {
      segment_add(segment, s.pending, s.messages, true, s.bytes);
    }
    for (const auto& m : preload_.pending) relays_->submit(m);
    preload_ = {};
  }
  next_disk_check_ms_ = 0;
  check_disk();
  while (!stopping_) {
    // Chains that found the queue full go first; if some still cannot go (the
    // kernel refused a submission), do not sleep on them.
    const size_t waiting = ring_.run_deferred();
    // Completions already waiting: no sleep, so no need to find the next deadline.
    const bool ready = waiting != 0 || io_uring_cq_ready(&ring_.raw()) != 0;
    const int64_t wait_ms = ready ? 0 : wait_budget_ms();
    __kernel_timespec ts{};
    ts.tv_sec = wait_ms / 1000;
    ts.tv_nsec = (wait_ms % 1000) * 1'000'000;
    io_uring_cqe* cqe = nullptr;
    int r = io_uring_submit_and_wait_timeout(&ring_.raw(), &cqe, 1, &ts, nullptr);
    if (r < 0 && r != -ETIME && r != -EINTR && r != -EBUSY) {
      LogLine l(LogLevel::error, "ring_wait_failed", unix_ms_);
      l.kv("shard", id_).kv("error", std::strerror(-r));
      log(l);
    }
    update_clock();
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(&ring_.raw(), head, cqe) {
      handle_cqe(cqe);
      ++seen;
    }
    io_uring_cq_advance(&ring_.raw(), seen);
    wheel_.advance(now_.mono_ms, [this](TimerNode& n) { on_timer(n); });
    if (accept_resume_ms_ && now_.mono_ms >= accept_resume_ms_ && !draining_) {
      accept_resume_ms_ = 0;
      for (auto& l : listeners_)
        if (l.paused) arm_accept(l);
    }
    if (now_.mono_ms >= next_disk_check_ms_) check_disk();
    if (draining_) {
      if (now_.mono_ms >= drain_deadline_ms_) {
        // Past the deadline: close whoever is still here, except sessions whose
        // message is being written (their file is on its way to disk).
        for (Connection* c = conns_; c; c = c->next) {
          if (c->lingering) {
            end_linger(*c);
          } else if (!c->writing_message()) {
            begin_close(*c);
          }
        }
      }
      // The cancelled accepts must have completed too: until then the ring
      // holds the listening sockets open, and the kernel would still take
      // connections nobody serves.
      const bool accepting = std::any_of(listeners_.begin(), listeners_.end(),
                                         [](const Listener& l) { return l.armed; });
      if (live_ == 0 && !batch_ && ring_.deferred() == 0 && dead_spills_.empty() && !accepting) {
        stopping_ = true;
      }
    }
    metrics_.loop_iterations.inc();
    if (ring_.deferrals() != deferrals_seen_) {
      metrics_.ring_deferrals.inc(ring_.deferrals() - deferrals_seen_);
      deferrals_seen_ = ring_.deferrals();
    }
    if (ring_.full_submits() != full_seen_) {
      metrics_.ring_full.inc(ring_.full_submits() - full_seen_);
      full_seen_ = ring_.full_submits();
    }
  }
  ring_.run_deferred();
  ring_.submit();
  flush_journals_at_exit();
  LogLine l(LogLevel::info, "shard_stopped", unix_ms_);
  l.kv("shard", id_)
      .kv("ring_queue_full", ring_.full_submits())
      .kv("ring_deferrals", ring_.deferrals());
  log(l);
}

// No open relay: with routes configured, a recipient whose domain none of
// them takes is refused. A bare <postmaster> is always taken (RFC 5321 4.5.1).
Verdict Shard::check_mail(Connection& c) {
  const int64_t queued = shared_.queued_messages.load(std::memory_order_relaxed);
  const uint32_t max = cfg_->server.delivery.max_queue_messages;
  if (queued < int64_t{max} && !spool_full()) return Verdict::accept();
  metrics_.queue_full_refusals.inc();
  if (log_enabled(LogLevel::info)) {
    LogLine l(LogLevel::info, "queue_full", unix_ms_);
    l.kv("sid", format_session_id(c.session.conn().session_id))
        .kv("client", c.session.conn().client_ip)
        .kv("queued", queued)
        .kv("spool_full", spool_full() ? "true" : "false");
    log(l);
  }
  return Verdict::reject(452, "4.3.1", "Error: insufficient system resources, try again later");
}

Verdict Shard::check_route(Connection& c, const Recipient& r) {
  if (!c.routes || c.routes->empty()) return Verdict::accept();  // the local-spool default
  const std::string_view domain = mailbox_domain(r.address);
  const int route = domain.empty() ? -1 : c.routes->find(domain);
  if (domain.empty()) return Verdict::accept();
  // "*" relays for the clients that authenticated, and for nobody else.
  if (route >= 0 && (route != c.routes->catch_all() || !c.session.conn().login.empty())) {
    return Verdict::accept();
  }
  metrics_.relay_denied.inc();
  c.refused = true;
  if (log_enabled(LogLevel::info)) {
    LogLine l(LogLevel::info, "relay_denied", unix_ms_);
    l.kv("sid", format_session_id(c.session.conn().session_id))
        .kv("client", c.session.conn().client_ip)
        .kv("rcpt", r.address);
    log(l);
  }
  return Verdict::reject(550, "5.7.1", "Error: relay access denied");
}

Verdict Shard::check_recipient(Connection& c, const Recipient& r) {
  if (!c.recipients || c.recipients->accepts(r.address)) return Verdict::accept();
  // Counted over the connection, not the transaction: a harvester gains
  // nothing by RSET or a new MAIL.
  ++c.unknown_rcpts;
  c.refused = true;
  const bool over = c.unknown_rcpts > c.unknown_limit;
  metrics_
      .rejects[static_cast<size_t>(CheckStage::rcpt)][static_cast<size_t>(RejectCheck::recipients)]
      .inc();
  if (log_enabled(LogLevel::info)) {
    LogLine l(LogLevel::info, "reject", unix_ms_);
    l.kv("stage", "rcpt").kv("check", "recipients");
    l.kv("sid", format_session_id(c.session.conn().session_id))
        .kv("client", c.session.conn().client_ip)
        .kv("rcpt", r.address)
        .kv("unknown", c.unknown_rcpts)
        .kv("action", over ? "close" : "refuse");
    log(l);
  }
  if (over) return Verdict::reject(421, "4.7.0", "Error: too many unknown recipients");
  return Verdict::reject(550, "5.1.1",
                         "<" + r.address + ">: Recipient address rejected: user unknown");
}

// How long the loop may sleep: until the next deadline of any kind (a
// session timer, the disk check, resuming accepts, the drain deadline), so a
// shard with nothing to do does not wake at all in between.
int64_t Shard::wait_budget_ms() const {
  int64_t until = std::min(wheel_.next_wake_ms(), next_disk_check_ms_);
  if (accept_resume_ms_) until = std::min(until, accept_resume_ms_);
  if (draining_ && now_.mono_ms < drain_deadline_ms_) until = std::min(until, drain_deadline_ms_);
  return std::clamp<int64_t>(until - now_.mono_ms, 0, kMaxWaitMs);
}

void Shard::handle_cqe(io_uring_cqe* cqe) {
  const uint64_t ud = cqe->user_data;
  const auto op = static_cast<unsigned>(ud & kOpMask);
  // NOLINTNEXTLINE(performance-no-int-to-ptr): user_data carries a tagged pointer.
  void* p = reinterpret_cast<void*>(ud & ~kOpMask);
  switch (op) {
    case kOpIgnore: return;
    case kOpAccept: on_accept(*static_cast<Listener*>(p), cqe->res, cqe->flags); return;
    case kOpRecv: on_recv(*static_cast<Connection*>(p), cqe->res, cqe->flags); return;
    case kOpSend: on_send(*static_cast<Connection*>(p), cqe->res); return;
    case kOpControl: on_control(cqe->res); return;
    case kOpCancelRecv: {
      auto& c = *static_cast<Connection*>(p);
      --c.ops;
      maybe_free(c);
      return;
    }
    case kOpSpillOpen:
    case kOpSpillWrite:
    case kOpSpillSeal:
    case kOpSpillName: on_spill_cqe(*static_cast<Connection*>(p), op, cqe->res); return;
    case kOpSpillUnlink: on_spill_unlinked(static_cast<Spill*>(p)); return;
    case kOpCompletion: static_cast<Completion*>(p)->complete(cqe->res, cqe->flags); return;
    case kOpSpoolOpen:
    case kOpSpoolWrite:
    case kOpSpoolSync:
    case kOpDirSync: on_spool_cqe(*static_cast<SpoolBatch*>(p), op, cqe->res); return;
    default: return;
  }
}

// ---- control --------------------------------------------------------------------

void Shard::arm_control() {
  ring_.prep(1, [this](io_uring_sqe** s) {
    io_uring_prep_read(s[0], control_fd_, &control_buf_, sizeof control_buf_, 0);
    io_uring_sqe_set_data64(s[0], tag(nullptr, kOpControl));
  });
}

void Shard::on_control(int /*res*/) {
  apply_control();
  if (!stopping_) arm_control();
}

void Shard::apply_control() {
  while (auto r = password_results_.pop()) auth_.password_answered(r->token, r->match);
  while (auto r = queue_requests_.pop()) {
    std::string out;
    std::string stopped_at;
    const uint64_t n = relays_ ? relays_->queue_request(**r, out, stopped_at) : 0;
    (*r)->answer(out, n, stopped_at);
  }
  bool drain = false;
  int64_t deadline = 0;
  std::shared_ptr<const RuntimeConfig> cfg;
  {
    std::lock_guard<std::mutex> g(control_mu_);
    drain = control_drain_;
    deadline = control_drain_deadline_;
    cfg = std::move(control_cfg_);
  }
  if (cfg) {
    // New sessions use the new snapshot; sessions in flight keep theirs.
    cfg_ = std::move(cfg);
    if (relays_) relays_->configure(*cfg_);
    configure_clients();
    LogLine l(LogLevel::info, "config_reloaded", unix_ms_);
    l.kv("shard", id_);
    log(l);
  }
  if (drain && !draining_) {
    draining_ = true;
    if (relays_) relays_->stop();
    drain_deadline_ms_ = deadline;
    stop_accepting();
    for (Connection* c = conns_; c; c = c->next) {
      if (c->stage == Connection::Stage::open) {
        c->session.drain(now_);
        flush(*c);
      } else if (c->stage == Connection::Stage::greeting_delay ||
                 c->stage == Connection::Stage::handshake ||
                 c->stage == Connection::Stage::proxy_header) {
        begin_close(*c);
      }
    }
  }
}

void Shard::stop_accepting() {
  for (auto& l : listeners_) {
    if (l.armed) cancel_accept(l);
    l.paused = false;
    // Close the socket too, so new clients are refused at once instead of
    // waiting in a backlog nobody reads (the ring drops its own reference
    // when the cancelled accept completes).
    if (l.fd >= 0) {
      ::close(l.fd);
      l.fd = -1;
    }
  }
  accept_resume_ms_ = 0;
}

// ---- accept -------------------------------------------------------------------

void Shard::arm_accept(Listener& l) {
  l.armed = true;
  l.paused = false;
  ring_.prep(1, [&l](io_uring_sqe** s) {
    if (l.fd < 0) {  // closed (drain) while this waited for room in the ring
      io_uring_prep_nop(s[0]);
      io_uring_sqe_set_data64(s[0], tag(nullptr, kOpIgnore));
      l.armed = false;
      return;
    }
    io_uring_prep_multishot_accept(s[0], l.fd, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(s[0], tag(&l, kOpAccept));
  });
}

void Shard::cancel_accept(Listener& l) {
  ring_.prep(1, [&l](io_uring_sqe** s) {
    io_uring_prep_cancel64(s[0], tag(&l, kOpAccept), 0);
    io_uring_sqe_set_data64(s[0], tag(nullptr, kOpIgnore));
  });
}

void Shard::on_accept(Listener& l, int res, uint32_t flags) {
  if (!(flags & IORING_CQE_F_MORE)) l.armed = false;
  if (res < 0) {
    if (res == -ECANCELED) return;
    metrics_.connections[l.index][static_cast<size_t>(ConnResult::error)].inc();
    if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM) {
      // Out of descriptors or memory: stop accepting for a moment instead of
      // spinning; the backlog keeps the clients waiting.
      if (l.armed) cancel_accept(l);
      l.paused = true;
      accept_resume_ms_ = now_.mono_ms + 100;
      metrics_.accept_pauses.inc();
      LogLine line(LogLevel::warn, "accept_paused", unix_ms_);
      line.kv("shard", id_).kv("error", std::strerror(-res));
      log(line);
      return;
    }
    if (!l.armed && !draining_) arm_accept(l);
    return;
  }
  if (!l.armed && !draining_ && !l.paused) arm_accept(l);
  const int fd = res;
  if (draining_) {
    ::close(fd);
    return;
  }
  ConnInfo info;
  info.session_id = next_session_id();
  info.client_ip = peer_ip(fd, info.client_port);
  const ListenerRuntime& lr = cfg_->listeners[l.index];
  info.tls_available = lr.mode == ListenerTls::starttls;
  info.tls_required = lr.require_tls;
  auto* c = new Connection(*this, fd, l.index, std::move(info), now_);
  c->tls_context = lr.tls;
  c->routes = cfg_->routes;
  c->recipients = cfg_->recipients;
  c->unknown_limit = cfg_->server.recipients.unknown_limit;
  c->implicit_tls = lr.mode == ListenerTls::implicit;
  c->next = conns_;
  if (conns_) conns_->prev = c;
  conns_ = c;
  ++live_;
  metrics_.sessions_active.add(1);

  // Limits: the total now; per client address once the client is known
  // (on a PROXY listener, after its header).
  const uint32_t total = shared_.connections.fetch_add(1, std::memory_order_relaxed) + 1;
  c->counted = true;
  if (lr.proxy != ListenerProxy::none) {
    start_proxy(*c, lr);
    return;
  }
  admit(*c, total);
}

// The client is known: the per-address limit and the back-pressure gate,
// then the TLS handshake or the greeting.
void Shard::admit(Connection& c, uint32_t total) {
  const ServerConfig& sc = cfg_->server;
  c.session.allow_xclient(
      cfg_->listeners[c.listener].xclient_hosts.contains(c.session.conn().client_ip));
  c.session.set_auth(sc.listeners[c.listener].auth);
  c.ip_slot = ip_bucket(c.session.conn().client_ip);
  const uint32_t from_ip = shared_.per_ip[c.ip_slot].fetch_add(1, std::memory_order_relaxed) + 1u;
  c.ip_counted = true;
  ConnResult verdict = ConnResult::accepted;
  if (total > sc.max_connections) {
    verdict = ConnResult::limit_total;
  } else if (from_ip > sc.max_connections_per_ip) {
    verdict = ConnResult::limit_per_ip;
  } else if (!admit_network(c)) {
    verdict = ConnResult::limit_per_network;
  } else if (shared_.queued_messages.load(std::memory_order_relaxed) >=
             2 * int64_t{sc.delivery.max_queue_messages}) {
    verdict = ConnResult::queue_full;  // far over: not even a MAIL to refuse
  }
  metrics_.connections[c.listener][static_cast<size_t>(verdict)].inc();
  if (log_enabled(LogLevel::info)) {
    LogLine line(LogLevel::info, "connect", unix_ms_);
    line.kv("sid", format_session_id(c.session.conn().session_id))
        .kv("client", c.session.conn().client_ip);
    line.kv("port", uint64_t{c.session.conn().client_port});
    if (!c.proxy_peer.empty()) line.kv("proxy", c.proxy_peer);
    line.kv("listener", sc.listeners[c.listener].name).kv("result", conn_result_name(verdict));
    log(line);
  }
  if (verdict != ConnResult::accepted && c.implicit_tls) {
    // No handshake for a connection we will not serve: a plaintext reply
    // would only be garbage to a TLS client.
    begin_close(c);
    return;
  }
  if (verdict != ConnResult::accepted) {
    std::string reply;
    if (verdict == ConnResult::limit_total) {
      append_reply(reply, 421, "4.3.2", sc.smtp.hostname + " Service busy, too many connections");
    } else if (verdict == ConnResult::queue_full) {
      append_reply(reply, 421, "4.3.2",
                   sc.smtp.hostname + " Service busy, too much mail waiting, try again later");
    } else if (verdict == ConnResult::limit_per_network) {
      append_reply(reply, 421, "4.7.0",
                   sc.smtp.hostname + " Error: too many connections from your network");
    } else {
      append_reply(reply, 421, "4.7.0",
                   sc.smtp.hostname + " Too many connections from your address");
    }
    metrics_.replies[421].inc();
    c.stage = Connection::Stage::closing;
    c.send_queued = std::move(reply);
    start_send(c);
    return;
  }
  arm_recv(c);
  start_policy(c);
  if (c.implicit_tls) {
    start_tls(c);  // handshake first, then the greeting
    return;
  }
  start_session(c);
}

// checks.rate.max_connections_per_network: the client's network (its /24,
// its /64) takes a slot in the shared per-network buckets, touched once per
// connection like the per-address ones (exact over all shards, up to two
// networks sharing a bucket, which only makes the limit stricter for them).
// False, counted and logged as a refusal of the rate check, when over.
bool Shard::admit_network(Connection& c) {
  const RateCheckConfig& rc = cfg_->server.checks.rate;
  if (rc.max_connections_per_network == 0) return true;
  const std::optional<IpBytes> ip = parse_ip(c.session.conn().client_ip);
  if (!ip || clients_.exempt(*ip)) return true;
  const uint32_t prefix = is_v4_mapped(*ip) ? 96 + rc.network_prefix_v4 : rc.network_prefix_v6;
  c.net_slot = network_bucket(*ip, prefix);
  const uint32_t n = shared_.per_net[c.net_slot].fetch_add(1, std::memory_order_relaxed) + 1u;
  c.net_counted = true;
  if (n <= rc.max_connections_per_network) return true;
  metrics_.rejects[static_cast<size_t>(CheckStage::connect)][static_cast<size_t>(RejectCheck::rate)]
      .inc();
  if (log_enabled(LogLevel::info)) {
    LogLine l(LogLevel::info, "reject", unix_ms_);
    l.kv("sid", format_session_id(c.session.conn().session_id))
        .kv("client", c.session.conn().client_ip);
    l.kv("stage", "connect").kv("check", "rate").kv("code", uint64_t{421});
    l.kv("reason",
         "connections from the network over " + std::to_string(rc.max_connections_per_network));
    log(l);
  }
  return false;
}

// The greeting, now or after the configured delay.
void Shard::start_session(Connection& c) {
  // Not on a submission listener: one's own users' clients wait for nothing.
  const uint32_t delay =
      c.session.conn().auth != AuthMode::none ? 0 : cfg_->server.greeting_delay_ms;
  // A client the connect checks refused at once (karma, its rate) gets its
  // refusal without the wait: nothing is gained by holding it.
  if (delay > 0 && !(c.policy && c.policy->connect_refused())) {
    c.stage = Connection::Stage::greeting_delay;
    wheel_.schedule(c.timer, now_.mono_ms + delay);
    if (cfg_->server.greeting_teaser) {
      queue_output(c, "220-" + cfg_->server.smtp.hostname + " ESMTP\r\n");
      c.session.set_teaser_sent();
      start_send(c);
    }
    return;
  }
  c.stage = Connection::Stage::open;
  c.session.start(now_);
  flush(c);
}

// ---- receive ----------------------------------------------------------------------

void Shard::arm_recv(Connection& c) {
  if (c.recv_armed || c.shut || c.input_done) return;
  c.recv_armed = true;
  ++c.ops;
  ring_.prep(1, [this, &c](io_uring_sqe** s) {
    bufs_.prep_recv_multishot(s[0], c.fd);
    io_uring_sqe_set_data64(s[0], tag(&c, kOpRecv));
  });
}

// Stops reading from a client (back-pressure). The cancel is counted as an
// operation on the connection, so the connection outlives it.
void Shard::pause_recv(Connection& c) {
  c.recv_paused = true;
  ++c.ops;
  ring_.prep(1, [&c](io_uring_sqe** s) {
    io_uring_prep_cancel64(s[0], tag(&c, kOpRecv), 0);
    io_uring_sqe_set_data64(s[0], tag(&c, kOpCancelRecv));
  });
}

void Shard::on_recv(Connection& c, int res, uint32_t flags) {
  const bool more = flags & IORING_CQE_F_MORE;
  if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
    const uint16_t bid = ProvidedBufferRing::buffer_id(flags);
    metrics_.bytes_in.inc(static_cast<uint64_t>(res));
    if (c.stage == Connection::Stage::proxy_header) {
      on_proxy_input(c, bufs_.data(bid, static_cast<size_t>(res)));
    } else if (c.stage != Connection::Stage::closing) {
      if (c.tls) {
        on_tls_input(c, bufs_.data(bid, static_cast<size_t>(res)));
      } else {
        feed(c, bufs_.data(bid, static_cast<size_t>(res)));
      }
    }
    bufs_.recycle(bid);  // the session copied what it keeps
    if (c.lingering) {
      c.lingered += static_cast<size_t>(res);
      if (c.lingered > kLingerMaxBytes) end_linger(c);  // the recv is still armed: no free
    }
  }
  if (!more) {
    c.recv_armed = false;
    --c.ops;
    if (c.lingering) {  // the client's FIN (or an error) ends the linger
      c.lingering = false;
      wheel_.cancel(c.timer);
      maybe_free(c);
      return;
    }
    if (res == 0 || (res < 0 && res != -ENOBUFS && res != -ECANCELED)) {
      if (c.stage == Connection::Stage::proxy_header) {
        proxy_refused(c, ConnResult::proxy_error,
                      res == 0 ? "closed before the PROXY header" : std::strerror(-res));
        return;
      }
      if (c.stage == Connection::Stage::handshake) {
        tls_failed(c, TlsResult::failed,
                   res == 0 ? "client closed during the handshake" : std::strerror(-res));
        return;
      }
      if (res == 0) {
        input_ended(c);
      } else {
        client_gone(c, false);
      }
      return;
    }
    // -ENOBUFS (buffer ring empty) or the end of a multishot run: re-arm,
    // unless we paused reading on purpose.
    if (c.stage != Connection::Stage::closing && !c.recv_paused) arm_recv(c);
    maybe_free(c);
  }
}

// The client closed its sending side (FIN, or TLS close_notify): it will
// say nothing more, but it is owed the replies to everything it said. What
// was read is finished (a message on its way to disk included), every reply
// goes out, then the server closes (flush() ends the session once nothing is
// left to do).
void Shard::input_ended(Connection& c) {
  if (c.input_done) {  // the FIN after a close_notify
    maybe_free(c);
    return;
  }
  c.input_done = true;
  if (c.stage == Connection::Stage::greeting_delay) {
    begin_close(c);  // never greeted: nothing is owed
    return;
  }
  if (c.stage == Connection::Stage::closing) {
    if (!c.send_busy && !c.writing_message()) begin_close(c);
    return;
  }
  flush(c);
}

// The socket failed (reset, error). A message being written is finished
// first (finish_batch closes): accepted mail is never dropped. Replies
// already on their way still go out when the failure allows (clean_eof).
void Shard::client_gone(Connection& c, bool clean_eof) {
  c.stage = Connection::Stage::closing;
  wheel_.cancel(c.timer);
  if (c.writing_message()) return;
  if (c.send_busy && clean_eof) {  // on_send closes when it is done
    arm_send_deadline(c);
    return;
  }
  begin_close(c);
}

void Shard::feed(Connection& c, std::string_view data) {
  if (c.stage == Connection::Stage::greeting_delay &&
      cfg_->server.pregreet_action == PregreetAction::score) {
    // Scored, not refused: the input waits for the greeting (and the session
    // then judges it: commands sent ahead are still not pipelining it was offered).
    if (!c.pregreeted) {
      c.pregreeted = true;
      if (c.policy)
        c.policy->add_score(static_cast<int32_t>(cfg_->server.pregreet_score),
                            "talked before the greeting");
      if (log_enabled(LogLevel::info)) {
        LogLine l(LogLevel::info, "pregreet", unix_ms_);
        l.kv("sid", format_session_id(c.session.conn().session_id))
            .kv("client", c.session.conn().client_ip)
            .kv("action", "score");
        log(l);
      }
    }
    c.pending_in.append(data);
    if (c.pending_in.size() > kMaxPendingInput && c.recv_armed && !c.recv_paused) pause_recv(c);
    return;
  }
  if (c.stage == Connection::Stage::greeting_delay) {
    // Talked before the greeting: a robot that does not wait for the server.
    wheel_.cancel(c.timer);
    metrics_.connections[c.listener][static_cast<size_t>(ConnResult::pregreet)].inc();
    metrics_.rejects[0][static_cast<size_t>(RejectCheck::pregreet)].inc();
    c.refused = true;
    std::string reply;
    append_reply(reply, 554, "5.5.1", "Error: talked before the greeting");
    metrics_.replies[554].inc();
    c.stage = Connection::Stage::closing;
    queue_output(c, reply);
    start_send(c);
    return;
  }
  if (!c.pending_in.empty() || c.output_full()) {
    c.pending_in.append(data);
    feed_pending(c);
  } else {
    const size_t used = c.session.feed(data, now_);
    if (used < data.size() && !c.session.closed()) c.pending_in.assign(data.substr(used));
  }
  flush(c);
  if ((c.pending_in.size() > kMaxPendingInput || c.output_full() || c.spill_backlog()) &&
      c.recv_armed && !c.recv_paused) {
    // Back-pressure: stop reading until the session catches up, or until the
    // client reads the replies it is owed.
    pause_recv(c);
  }
}

// Feeds input held while the session was waiting or the client's output was
// full, a slice at a time, so the replies it makes stay near the output limit.
void Shard::feed_pending(Connection& c) {
  while (!c.pending_in.empty() && !c.session.waiting() && !c.session.closed()) {
    if (c.unsent() + c.session.output().size() > c.session.config().limits.max_output_buffer) {
      break;
    }
    const std::string_view slice = std::string_view(c.pending_in).substr(0, kFeedSlice);
    const size_t used = c.session.feed(slice, now_);
    c.pending_in.erase(0, used);
    if (used == 0) break;
    if (!c.session.output().empty()) {
      queue_output(c, c.session.output());
      c.session.consume_output(c.session.output().size());
    }
  }
  if (c.session.closed()) c.pending_in.clear();
  maybe_resume_recv(c);
}

void Shard::maybe_resume_recv(Connection& c) {
  if (c.recv_paused && c.pending_in.size() < kMaxPendingInput / 2 &&
      c.unsent() <= c.session.config().limits.max_output_buffer / 2 && !c.spill_backlog()) {
    c.recv_paused = false;
    arm_recv(c);
  }
}

// ---- send -------------------------------------------------------------------------

void Shard::flush(Connection& c) {
  std::string_view out = c.session.output();
  if (!out.empty()) {
    queue_output(c, out);
    c.session.consume_output(out.size());
  }
  if (c.stage == Connection::Stage::open && c.input_done && !c.session.closed() &&
      !c.session.waiting() && c.pending_in.empty() && !c.writing_message()) {
    // The client closed its side and everything it sent is answered.
    c.session.end_of_input();
  }
  if (c.stage == Connection::Stage::open && c.session.closed()) {
    c.stage = Connection::Stage::closing;
    wheel_.cancel(c.timer);
    release_slot(c);
    if (c.tls && c.tls->handshake_done()) {
      c.tls->close();  // close_notify after the last reply
      queue_ciphertext(c);
    }
  }
  // Replies are held while the session waits for a verdict (a check, a
  // milter): they can only be replies to commands sent before the one it
  // waits on, so the client pipelined and reads them with the next one
  // (RFC 2920). They leave together once the wait is over, not one send each.
  const bool hold =
      c.stage == Connection::Stage::open && c.session.waiting() && !c.session.closed();
  if (!hold) start_send(c);
  if (c.stage == Connection::Stage::open) {
    schedule_timer(c);
  } else if (c.stage == Connection::Stage::closing) {
    if (!c.send_busy) {
      begin_close(c);
      return;
    }
    arm_send_deadline(c);  // the last replies may still never be read
  }
}

void Shard::start_send(Connection& c) {
  if (c.send_busy || c.shut) return;
  if (c.send_off >= c.send_inflight.size()) {
    if (c.send_queued.empty()) return;
    c.send_inflight.swap(c.send_queued);
    c.send_queued.clear();
    c.send_off = 0;
  }
  // Issued from idle, or right after a send that moved bytes: progress.
  c.send_progress_ms = now_.mono_ms;
  c.send_busy = true;
  ++c.ops;
  // The buffer is read when the SQE is filled: nothing touches send_inflight
  // while send_busy is set.
  ring_.prep(1, [&c](io_uring_sqe** s) {
    io_uring_prep_send(s[0], c.fd, c.send_inflight.data() + c.send_off,
                       c.send_inflight.size() - c.send_off, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s[0], tag(&c, kOpSend));
  });
}

void Shard::on_send(Connection& c, int res) {
  c.send_busy = false;
  --c.ops;
  if (res < 0) {
    c.send_inflight.clear();
    c.send_queued.clear();
    c.send_off = 0;
    if (c.writing_message()) {  // the message still goes to disk; the client just never hears
      c.stage = Connection::Stage::closing;
      return;  // finish_job closes
    }
    begin_close(c);
    return;
  }
  c.send_off += static_cast<size_t>(res);
  if (c.send_off >= c.send_inflight.size()) {
    c.send_inflight.clear();
    c.send_off = 0;
  }
  if (c.stage == Connection::Stage::open && !c.pending_in.empty() && !c.output_full()) {
    // The client read its replies: take the input held back meanwhile.
    feed_pending(c);
    flush(c);
    return;
  }
  if (c.stage == Connection::Stage::open) maybe_resume_recv(c);
  start_send(c);
  if (!c.send_busy && c.stage == Connection::Stage::closing) {
    begin_close(c);
    return;
  }
  if (c.stage == Connection::Stage::closing) arm_send_deadline(c);
  maybe_free(c);
}

// A connection whose output waits: the send deadline runs from its last
// progress (a client that stopped reading can hold it no longer than this).
int64_t Shard::send_deadline(const Connection& c) const {
  return c.send_progress_ms + c.session.config().limits.send_timeout_ms;
}

void Shard::arm_send_deadline(Connection& c) {
  if (c.send_busy) wheel_.schedule(c.timer, send_deadline(c));
}

// The client has not taken any output for send_timeout_ms: no reply can
// reach it, so the connection ends without one.
void Shard::send_timed_out(Connection& c) {
  metrics_.send_timeouts.inc();
  if (log_enabled(LogLevel::info)) {
    LogLine l(LogLevel::info, "send_timeout", unix_ms_);
    l.kv("sid", format_session_id(c.session.conn().session_id))
        .kv("client", c.session.conn().client_ip)
        .kv("unsent", uint64_t{c.unsent()});
    log(l);
  }
  c.pending_in.clear();
  c.send_queued.clear();
  if (c.send_busy) {
    ring_.prep(1, [&c](io_uring_sqe** s) {
      io_uring_prep_cancel64(s[0], tag(&c, kOpSend), 0);
      io_uring_sqe_set_data64(s[0], tag(nullptr, kOpIgnore));
    });
  }
  if (c.writing_message()) {  // the message still goes to disk; its completion closes
    c.stage = Connection::Stage::closing;
    wheel_.cancel(c.timer);
    return;
  }
  begin_close(c);
}

// ---- timers ------------------------------------------------------------------------

void Shard::schedule_timer(Connection& c) {
  int64_t d = c.session.deadline_ms();
  if (c.send_busy) d = std::min(d, send_deadline(c));
  // Later deadlines are re-filed lazily when the old one comes round; an
  // earlier one (entering DATA) must be filed now.
  if (!c.timer.linked() || d < c.timer.deadline_ms) {
    wheel_.schedule(c.timer, d);
  } else {
    c.timer.deadline_ms = d;
  }
}

void Shard::on_timer(TimerNode& n) {
  if (n.fire) return n.fire(n);
  Connection& c = Connection::from_timer(n);
  if (c.lingering) {
    end_linger(c);
    return;
  }
  if (c.stage == Connection::Stage::handshake) {
    tls_failed(c, TlsResult::timeout, "handshake timeout");
    return;
  }
  if (c.stage == Connection::Stage::proxy_header) {
    proxy_refused(c, ConnResult::proxy_timeout, "no complete PROXY header in time");
    return;
  }
  if (c.stage == Connection::Stage::greeting_delay) {
    c.stage = Connection::Stage::open;
    c.session.start(now_);
    if (!c.pending_in.empty()) feed_pending(c);  // a scored early talker's input
    flush(c);
    return;
  }
  if (c.send_busy && now_.mono_ms >= send_deadline(c)) {
    send_timed_out(c);
    return;
  }
  if (c.stage == Connection::Stage::closing) {
    arm_send_deadline(c);
    return;
  }
  if (c.stage != Connection::Stage::open) return;
  if (c.session.on_timer(now_)) {
    metrics_.timeouts.inc();
    if (log_enabled(LogLevel::info)) {
      LogLine l(LogLevel::info, "timeout", unix_ms_);
      l.kv("sid", format_session_id(c.session.conn().session_id))
          .kv("client", c.session.conn().client_ip);
      log(l);
    }
    flush(c);
  } else {
    int64_t d = c.session.deadline_ms();
    if (c.send_busy) d = std::min(d, send_deadline(c));
    wheel_.schedule(c.timer, d);
  }
}

// ---- close ---------------------------------------------------------------------------

// The session is over (its last reply queued: the client may have it before
// this shard sees the send complete, and reconnect to another shard; or the
// client is gone): its place in the connection limits is free from now, not
// from when the close completes, so a client reconnecting at once is not
// refused. What the connection still holds until then is bounded by the
// output limit, the send timeout and the lingering close (1 s, 64 KiB).
void Shard::release_slot(Connection& c) {
  if (!c.counted) return;
  c.counted = false;
  shared_.connections.fetch_sub(1, std::memory_order_relaxed);
  if (c.ip_counted) shared_.per_ip[c.ip_slot].fetch_sub(1, std::memory_order_relaxed);
  c.ip_counted = false;
  if (c.net_counted) shared_.per_net[c.net_slot].fetch_sub(1, std::memory_order_relaxed);
  c.net_counted = false;
}

// Closing is lingering: our FIN goes out at once (SHUT_WR) but reading goes
// on, discarding, until the client's own FIN, kLingerMs or kLingerMaxBytes.
// Closing with input still arriving (a close_notify or a FIN sent after our
// last reply, a command sent after QUIT) would answer it with a reset, and a
// reset can destroy replies the client has not read yet.
void Shard::begin_close(Connection& c) {
  c.stage = Connection::Stage::closing;
  wheel_.cancel(c.timer);
  release_slot(c);
  if (!c.shut) {
    const bool out_of_time = draining_ && now_.mono_ms >= drain_deadline_ms_;
    if (!c.recv_paused && !c.input_done && !out_of_time) {
      // A multishot recv that ended (a completion without MORE) is not armed
      // again once the session closes: linger needs one.
      arm_recv(c);
      c.shut = true;
      ::shutdown(c.fd, SHUT_WR);
      c.lingering = true;
      wheel_.schedule(c.timer, now_.mono_ms + kLingerMs);
      return;  // the recv's end frees the connection (on_recv)
    }
    // shutdown() ends the armed multishot recv and sends the FIN (a plain
    // close with a recv still armed would not).
    c.shut = true;
    ::shutdown(c.fd, SHUT_RDWR);
  }
  maybe_free(c);
}

// Enough lingering: stop reading (ending the recv, whose completion frees).
void Shard::end_linger(Connection& c) {
  if (!c.lingering) return;
  c.lingering = false;
  wheel_.cancel(c.timer);
  ::shutdown(c.fd, SHUT_RDWR);
  maybe_free(c);
}

void Shard::maybe_free(Connection& c) {
  if (c.stage != Connection::Stage::closing || !c.shut || c.ops > 0 || c.writing_message()) {
    return;
  }
  if (c.recv_armed || c.send_busy) return;
  c.session.end_of_input();      // a transaction in progress is abandoned
  if (c.spill) spill_remove(c);  // a body the client abandoned half-way
  remember_client(c);
  if (log_enabled(LogLevel::info)) {
    LogLine l(LogLevel::info, "disconnect", unix_ms_);
    l.kv("sid", format_session_id(c.session.conn().session_id))
        .kv("client", c.session.conn().client_ip);
    l.kv("txns", uint64_t{c.txns}).kv("ms", now_.mono_ms - c.started_ms);
    log(l);
  }
  ::close(c.fd);
  tls_end(c);
  hold_body(c, 0);  // a session that ended in the middle of a message
  release_slot(c);
  if (c.prev) c.prev->next = c.next;
  if (c.next) c.next->prev = c.prev;
  if (conns_ == &c) conns_ = c.next;
  --live_;
  metrics_.sessions_active.add(-1);
  delete &c;
}

}  // namespace ringmx
