// The shard event loop: multishot accept, multishot recv into a provided-
// buffer ring, one send in flight per connection, a timer wheel for every
// session deadline, and durable spool writes (write + fdatasync + rename +
// one directory fsync per batch) through the same ring.
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
#include <stdexcept>

#include "core/received_header.h"
#include "net/uring_probe.h"
#include "pipeline/spool_format.h"

namespace ringmx {

namespace {

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
  kOpDirSync = 9,
};
constexpr uint64_t kOpMask = 15;

uint64_t tag(const void* p, Op op) {
  return reinterpret_cast<uint64_t>(p) | op;
}

// Input held while a session waits for a verdict; past this the socket is
// not read any more until the session catches up (back-pressure).
constexpr size_t kMaxPendingInput = size_t{256} * 1024;
// Receive buffers: count must be a power of two.
constexpr uint32_t kBufCount = 1024;
constexpr uint32_t kBufSize = 4096;
constexpr uint16_t kBufGroup = 0;
// A spool batch: at most this many messages (3 iovecs each, under IOV_MAX)
// and, beyond its first message, this many bytes.
constexpr size_t kMaxBatchMessages = 256;
constexpr size_t kMaxBatchBytes = size_t{64} << 20;
// A segment file takes batches until it is this large; then a new one starts.
constexpr uint64_t kMaxSegmentBytes = uint64_t{64} << 20;

int64_t mono_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

int64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

std::string peer_ip(int fd, uint16_t& port) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  port = 0;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return "unknown";
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    port = ntohs(a->sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
      inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], buf, sizeof buf);
    } else {
      inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    }
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    port = ntohs(a->sin_port);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
  }
  return buf;
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

std::shared_ptr<const RuntimeConfig> RuntimeConfig::make(ServerConfig cfg) {
  auto rc = std::make_shared<RuntimeConfig>();
  rc->session = std::make_shared<SessionSettings>(cfg.smtp);
  rc->server = std::move(cfg);
  return rc;
}

// ---- connection -------------------------------------------------------------

struct alignas(16) Connection final : SessionHandler {
  enum class Stage : uint8_t { greeting_delay, open, closing };

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
  std::string pending_in;  // input the waiting session has not taken yet
  struct Timer : TimerNode {
    Connection* owner = nullptr;
  } timer;
  Connection* prev = nullptr;
  Connection* next = nullptr;
  SpoolJob* job = nullptr;
  uint32_t txns = 0;
  Session session;

  static Connection& from_timer(TimerNode& n) { return *static_cast<Timer&>(n).owner; }

  Verdict on_data(Session&, const Envelope&) override {
    if (shard.spool_full()) {
      return Verdict::reject(452, "4.3.1", "Error: insufficient system storage, try again later");
    }
    return Verdict::accept();
  }

  Verdict on_message(Session&, Message& msg) override {
    shard.spool_message(*this, msg);
    return Verdict::pending();
  }

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

// One message on its way to disk: its record (envelope block + message) is
// gathered by reference, the session keeps the bytes alive while it waits.
struct SpoolJob {
  Connection* conn = nullptr;
  std::string header;
  iovec iov[3] = {};
  size_t total = 0;
};

// Every message that completed while the previous batch was being written:
// one file, one write, one fdatasync, one rename, one directory fsync.
struct alignas(16) SpoolBatch {
  std::vector<SpoolJob*> jobs;
  std::vector<iovec> iov;
  std::string segment_name;  // set when this batch starts a new segment
  size_t total = 0;
  int error = 0;
  uint8_t pending_cqes = 0;  // write + fsync of the linked pair
  bool write_ok = false;
  bool sync_ok = false;
  int64_t started_ns = 0;
};

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
      wheel_(mono_ms()) {}

Shard::~Shard() {
  join();
  while (conns_) {
    Connection* c = conns_;
    conns_ = c->next;
    if (c->fd >= 0) ::close(c->fd);
    delete c;
  }
  for (auto& l : listeners_)
    if (l.fd >= 0) ::close(l.fd);
  if (ring_ready_) io_uring_queue_exit(&ring_);
  if (control_fd_ >= 0) ::close(control_fd_);
  if (seg_fd_ >= 0) ::close(seg_fd_);
  if (spool_dir_fd_ >= 0) ::close(spool_dir_fd_);
}

void Shard::setup_ring() {
  io_uring_params p{};
  p.flags = shard_ring_flags();
  p.cq_entries = 65536;
  int r = io_uring_queue_init_params(4096, &ring_, &p);
  if (r < 0) throw std::runtime_error(std::string("io_uring_queue_init: ") + std::strerror(-r));
  ring_ready_ = true;
}

void Shard::setup_buffers() {
  bufs_.setup(ring_, kBufCount, kBufSize, kBufGroup);
}

void Shard::start() {
  control_fd_ = eventfd(0, EFD_CLOEXEC);
  if (control_fd_ < 0) throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
  ::mkdir(spool_dir_.c_str(), 0750);
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

void Shard::request_reload(std::shared_ptr<const RuntimeConfig> cfg) {
  {
    std::lock_guard<std::mutex> g(control_mu_);
    control_cfg_ = std::move(cfg);
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(control_fd_, &one, sizeof one);
}

io_uring_sqe* Shard::sqe() {
  io_uring_sqe* s = io_uring_get_sqe(&ring_);
  if (!s) {
    io_uring_submit(&ring_);
    s = io_uring_get_sqe(&ring_);
  }
  if (!s) throw std::runtime_error("submission queue full");
  return s;
}

void Shard::update_clock() {
  now_.mono_ms = mono_ms();
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  unix_ms_ = int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
  now_.unix_s = ts.tv_sec;
}

uint64_t Shard::next_session_id() {
  // Queue ids and spool file names derive from this, so it must not repeat
  // across restarts (a crash loop restarts within the same second): 43 bits
  // of wall-clock milliseconds, 5 of shard id, 16 of a counter that starts at
  // a random value in every process. Should two segment names still meet,
  // O_EXCL turns it into a 451, never an overwritten file.
  ++session_seq_;
  return (static_cast<uint64_t>(unix_ms_) & ((1ull << 43) - 1)) << 21 |
         static_cast<uint64_t>(id_ & 31) << 16 | (session_seq_ & 0xffff);
}

// ---- loop -------------------------------------------------------------------

void Shard::run() {
  update_clock();
  uint16_t seed = 0;
  if (getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = static_cast<uint16_t>(mono_ns());
  session_seq_ = seed;
  for (auto& l : listeners_) arm_accept(l);
  arm_control();
  next_disk_check_ms_ = 0;
  check_disk();
  while (!stopping_) {
    const int64_t wait_ms = wheel_.size() ? wheel_.tick_ms() : 500;
    __kernel_timespec ts{};
    ts.tv_sec = wait_ms / 1000;
    ts.tv_nsec = (wait_ms % 1000) * 1'000'000;
    io_uring_cqe* cqe = nullptr;
    int r = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
    if (r < 0 && r != -ETIME && r != -EINTR && r != -EBUSY) {
      LogLine l(LogLevel::error, "ring_wait_failed", unix_ms_);
      l.kv("shard", id_).kv("error", std::strerror(-r));
      log(l);
    }
    update_clock();
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      handle_cqe(cqe);
      ++seen;
    }
    io_uring_cq_advance(&ring_, seen);
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
        for (Connection* c = conns_; c; c = c->next)
          if (!c->job) begin_close(*c);
      }
      if (live_ == 0 && !batch_) stopping_ = true;
    }
    metrics_.loop_iterations.inc();
  }
  io_uring_submit(&ring_);
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
    case kOpSpoolOpen:
    case kOpSpoolWrite:
    case kOpSpoolSync:
    case kOpDirSync: on_spool_cqe(*static_cast<SpoolBatch*>(p), op, cqe->res); return;
    default: return;
  }
}

// ---- control --------------------------------------------------------------------

void Shard::arm_control() {
  io_uring_sqe* s = sqe();
  io_uring_prep_read(s, control_fd_, &control_buf_, sizeof control_buf_, 0);
  io_uring_sqe_set_data64(s, tag(nullptr, kOpControl));
}

void Shard::on_control(int /*res*/) {
  apply_control();
  if (!stopping_) arm_control();
}

void Shard::apply_control() {
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
    LogLine l(LogLevel::info, "config_reloaded", unix_ms_);
    l.kv("shard", id_);
    log(l);
  }
  if (drain && !draining_) {
    draining_ = true;
    drain_deadline_ms_ = deadline;
    stop_accepting();
    for (Connection* c = conns_; c; c = c->next) {
      if (c->stage == Connection::Stage::open) {
        c->session.drain(now_);
        flush(*c);
      } else if (c->stage == Connection::Stage::greeting_delay) {
        begin_close(*c);
      }
    }
  }
}

void Shard::stop_accepting() {
  for (auto& l : listeners_) {
    if (l.armed) {
      io_uring_sqe* s = sqe();
      io_uring_prep_cancel64(s, tag(&l, kOpAccept), 0);
      io_uring_sqe_set_data64(s, tag(nullptr, kOpIgnore));
    }
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
  io_uring_sqe* s = sqe();
  io_uring_prep_multishot_accept(s, l.fd, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(s, tag(&l, kOpAccept));
  l.armed = true;
  l.paused = false;
}

void Shard::on_accept(Listener& l, int res, uint32_t flags) {
  if (!(flags & IORING_CQE_F_MORE)) l.armed = false;
  if (res < 0) {
    if (res == -ECANCELED) return;
    metrics_.connections[l.index][static_cast<size_t>(ConnResult::error)].inc();
    if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM) {
      // Out of descriptors or memory: stop accepting for a moment instead of
      // spinning; the backlog keeps the clients waiting.
      if (l.armed) {
        io_uring_sqe* s = sqe();
        io_uring_prep_cancel64(s, tag(&l, kOpAccept), 0);
        io_uring_sqe_set_data64(s, tag(nullptr, kOpIgnore));
      }
      l.paused = true;
      accept_resume_ms_ = now_.mono_ms + 100;
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
  const ServerConfig& sc = cfg_->server;
  auto* c = new Connection(*this, fd, l.index, std::move(info), now_);
  c->next = conns_;
  if (conns_) conns_->prev = c;
  conns_ = c;
  ++live_;
  metrics_.sessions_active.add(1);

  // Limits: total first, then per client address.
  const uint32_t total = shared_.connections.fetch_add(1, std::memory_order_relaxed) + 1;
  c->ip_slot = ip_bucket(c->session.conn().client_ip);
  const uint32_t from_ip = shared_.per_ip[c->ip_slot].fetch_add(1, std::memory_order_relaxed) + 1u;
  c->counted = true;
  ConnResult verdict = ConnResult::accepted;
  if (total > sc.max_connections) {
    verdict = ConnResult::limit_total;
  } else if (from_ip > sc.max_connections_per_ip) {
    verdict = ConnResult::limit_per_ip;
  }
  metrics_.connections[l.index][static_cast<size_t>(verdict)].inc();
  if (log_enabled(LogLevel::info)) {
    LogLine line(LogLevel::info, "connect", unix_ms_);
    line.kv("sid", format_session_id(c->session.conn().session_id))
        .kv("client", c->session.conn().client_ip);
    line.kv("port", uint64_t{c->session.conn().client_port});
    line.kv("listener", sc.listeners[l.index].name).kv("result", conn_result_name(verdict));
    log(line);
  }
  if (verdict != ConnResult::accepted) {
    std::string reply;
    if (verdict == ConnResult::limit_total) {
      append_reply(reply, 421, "4.3.2", sc.smtp.hostname + " Service busy, too many connections");
    } else {
      append_reply(reply, 421, "4.7.0",
                   sc.smtp.hostname + " Too many connections from your address");
    }
    metrics_.replies[421].inc();
    c->stage = Connection::Stage::closing;
    c->send_queued = std::move(reply);
    start_send(*c);
    return;
  }
  arm_recv(*c);
  if (sc.greeting_delay_ms > 0) {
    c->stage = Connection::Stage::greeting_delay;
    c->timer.deadline_ms = now_.mono_ms + sc.greeting_delay_ms;
    wheel_.schedule(c->timer, c->timer.deadline_ms);
    return;
  }
  c->session.start(now_);
  flush(*c);
}

// ---- receive ----------------------------------------------------------------------

void Shard::arm_recv(Connection& c) {
  if (c.recv_armed || c.shut) return;
  io_uring_sqe* s = sqe();
  bufs_.prep_recv_multishot(s, c.fd);
  io_uring_sqe_set_data64(s, tag(&c, kOpRecv));
  c.recv_armed = true;
  ++c.ops;
}

void Shard::on_recv(Connection& c, int res, uint32_t flags) {
  const bool more = flags & IORING_CQE_F_MORE;
  if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
    const uint16_t bid = ProvidedBufferRing::buffer_id(flags);
    metrics_.bytes_in.inc(static_cast<uint64_t>(res));
    if (c.stage != Connection::Stage::closing) {
      feed(c, bufs_.data(bid, static_cast<size_t>(res)));
    }
    bufs_.recycle(bid);  // the session copied what it keeps
  }
  if (!more) {
    c.recv_armed = false;
    --c.ops;
    if (res == 0 || (res < 0 && res != -ENOBUFS && res != -ECANCELED)) {
      // The client closed (or the socket failed). A message being written is
      // finished first (finish_job closes): accepted mail is never dropped.
      // Replies already on their way (221 after a pipelined QUIT) still go out.
      c.stage = Connection::Stage::closing;
      wheel_.cancel(c.timer);
      if (c.job) return;
      if (c.send_busy && res == 0) return;  // on_send closes when it is done
      begin_close(c);
      return;
    }
    // -ENOBUFS (buffer ring empty) or the end of a multishot run: re-arm,
    // unless we paused reading on purpose.
    if (c.stage != Connection::Stage::closing && !c.recv_paused) arm_recv(c);
    maybe_free(c);
  }
}

void Shard::feed(Connection& c, std::string_view data) {
  if (c.stage == Connection::Stage::greeting_delay) {
    // Talked before the greeting: a robot that does not wait for the server.
    wheel_.cancel(c.timer);
    metrics_.connections[c.listener][static_cast<size_t>(ConnResult::pregreet)].inc();
    std::string reply;
    append_reply(reply, 554, "5.5.1", "Error: talked before the greeting");
    metrics_.replies[554].inc();
    c.stage = Connection::Stage::closing;
    c.send_queued += reply;
    start_send(c);
    return;
  }
  if (!c.pending_in.empty()) {
    c.pending_in.append(data);
    feed_pending(c);
  } else {
    const size_t used = c.session.feed(data, now_);
    if (used < data.size() && !c.session.closed()) c.pending_in.assign(data.substr(used));
  }
  if (c.pending_in.size() > kMaxPendingInput && c.recv_armed && !c.recv_paused) {
    // Back-pressure: stop reading until the session catches up.
    c.recv_paused = true;
    io_uring_sqe* s = sqe();
    io_uring_prep_cancel64(s, tag(&c, kOpRecv), 0);
    io_uring_sqe_set_data64(s, tag(nullptr, kOpIgnore));
  }
  flush(c);
}

// Feeds input held while the session was waiting.
void Shard::feed_pending(Connection& c) {
  while (!c.pending_in.empty() && !c.session.waiting() && !c.session.closed()) {
    const size_t used = c.session.feed(c.pending_in, now_);
    c.pending_in.erase(0, used);
    if (used == 0) break;
  }
  if (c.session.closed()) c.pending_in.clear();
  if (c.recv_paused && c.pending_in.size() < kMaxPendingInput / 2) {
    c.recv_paused = false;
    arm_recv(c);
  }
}

// ---- send -------------------------------------------------------------------------

void Shard::flush(Connection& c) {
  std::string_view out = c.session.output();
  if (!out.empty()) {
    c.send_queued.append(out);
    c.session.consume_output(out.size());
  }
  if (c.stage == Connection::Stage::open) {
    if (c.session.closed()) {
      c.stage = Connection::Stage::closing;
      wheel_.cancel(c.timer);
    } else {
      schedule_timer(c);
    }
  }
  start_send(c);
  if (c.stage == Connection::Stage::closing && !c.send_busy) begin_close(c);
}

void Shard::start_send(Connection& c) {
  if (c.send_busy || c.shut) return;
  if (c.send_off >= c.send_inflight.size()) {
    if (c.send_queued.empty()) return;
    c.send_inflight.swap(c.send_queued);
    c.send_queued.clear();
    c.send_off = 0;
  }
  io_uring_sqe* s = sqe();
  io_uring_prep_send(s, c.fd, c.send_inflight.data() + c.send_off,
                     c.send_inflight.size() - c.send_off, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(s, tag(&c, kOpSend));
  c.send_busy = true;
  ++c.ops;
}

void Shard::on_send(Connection& c, int res) {
  c.send_busy = false;
  --c.ops;
  if (res < 0) {
    c.send_inflight.clear();
    c.send_queued.clear();
    c.send_off = 0;
    if (c.job) {  // the message still goes to disk; the client just never hears
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
  start_send(c);
  if (!c.send_busy && c.stage == Connection::Stage::closing) {
    begin_close(c);
    return;
  }
  maybe_free(c);
}

// ---- timers ------------------------------------------------------------------------

void Shard::schedule_timer(Connection& c) {
  const int64_t d = c.session.deadline_ms();
  // Later deadlines are re-filed lazily when the old one comes round; an
  // earlier one (entering DATA) must be filed now.
  if (!c.timer.linked() || d < c.timer.deadline_ms) {
    wheel_.schedule(c.timer, d);
  } else {
    c.timer.deadline_ms = d;
  }
}

void Shard::on_timer(TimerNode& n) {
  Connection& c = Connection::from_timer(n);
  if (c.stage == Connection::Stage::greeting_delay) {
    c.stage = Connection::Stage::open;
    c.session.start(now_);
    flush(c);
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
    wheel_.schedule(c.timer, c.session.deadline_ms());
  }
}

// ---- close ---------------------------------------------------------------------------

void Shard::begin_close(Connection& c) {
  c.stage = Connection::Stage::closing;
  wheel_.cancel(c.timer);
  if (!c.shut) {
    c.shut = true;
    // shutdown() ends the armed multishot recv and sends the FIN (a plain
    // close with a recv still armed would not).
    ::shutdown(c.fd, SHUT_RDWR);
  }
  maybe_free(c);
}

void Shard::maybe_free(Connection& c) {
  if (c.stage != Connection::Stage::closing || !c.shut || c.ops > 0 || c.job) return;
  if (c.recv_armed || c.send_busy) return;
  if (log_enabled(LogLevel::info)) {
    LogLine l(LogLevel::info, "disconnect", unix_ms_);
    l.kv("sid", format_session_id(c.session.conn().session_id))
        .kv("client", c.session.conn().client_ip);
    l.kv("txns", uint64_t{c.txns}).kv("ms", now_.mono_ms - c.started_ms);
    log(l);
  }
  ::close(c.fd);
  if (c.counted) {
    shared_.connections.fetch_sub(1, std::memory_order_relaxed);
    shared_.per_ip[c.ip_slot].fetch_sub(1, std::memory_order_relaxed);
  }
  if (c.prev) c.prev->next = c.next;
  if (c.next) c.next->prev = c.prev;
  if (conns_ == &c) conns_ = c.next;
  --live_;
  metrics_.sessions_active.add(-1);
  delete &c;
}

// ---- spool --------------------------------------------------------------------------

bool Shard::spool_full() const {
  const uint64_t max = cfg_->server.spool.max_bytes;
  if (max && static_cast<uint64_t>(shared_.spool_bytes.load(std::memory_order_relaxed)) >= max) {
    return true;
  }
  return disk_low_;
}

void Shard::check_disk() {
  next_disk_check_ms_ = now_.mono_ms + 1000;
  struct statvfs st {};
  if (spool_dir_fd_ >= 0 && fstatvfs(spool_dir_fd_, &st) == 0) {
    const uint64_t free_bytes = uint64_t{st.f_bavail} * st.f_frsize;
    const bool low = free_bytes < cfg_->server.spool.min_free_bytes;
    if (low != disk_low_) {
      LogLine l(low ? LogLevel::warn : LogLevel::info, low ? "spool_disk_low" : "spool_disk_ok",
                unix_ms_);
      l.kv("shard", id_).kv("free_bytes", free_bytes);
      log(l);
    }
    disk_low_ = low;
  }
}

void Shard::spool_message(Connection& c, Message& msg) {
  auto* job = new SpoolJob;
  job->conn = &c;
  c.job = job;
  const Session& s = c.session;
  SpoolClient client;
  client.ip = s.conn().client_ip;
  client.port = s.conn().client_port;
  client.helo = s.helo();
  client.ptr = s.conn().client_ptr;
  client.protocol =
      protocol_name(s.esmtp(), s.conn().tls_active, false, msg.envelope.mail.smtputf8);
  client.tls_version = s.conn().tls_version;
  client.tls_cipher = s.conn().tls_cipher;
  const uint64_t msize = msg.received.size() + msg.body.size();
  append_spool_envelope(job->header, msg, client, msize);
  job->iov[0] = {job->header.data(), job->header.size()};
  job->iov[1] = {msg.received.data(), msg.received.size()};
  job->iov[2] = {msg.body.data(), msg.body.size()};
  job->total = job->header.size() + msize;
  spool_queue_.push_back(job);
  if (!batch_) start_batch();
}

// Group commit: a batch takes everything queued; what arrives while it is on
// its way to disk waits for the next one, so under load batches grow by
// themselves. Batches are appended to the shard's current segment file: one
// writev and one fdatasync per batch, and no file to create except when a
// segment starts (then its directory entry is synced too).
void Shard::start_batch() {
  auto* b = new SpoolBatch;
  batch_ = b;
  size_t n = 0;
  while (n < spool_queue_.size() && n < kMaxBatchMessages &&
         (n == 0 || b->total + spool_queue_[n]->total <= kMaxBatchBytes)) {
    SpoolJob* j = spool_queue_[n++];
    b->jobs.push_back(j);
    b->iov.insert(b->iov.end(), j->iov, j->iov + 3);
    b->total += j->total;
  }
  spool_queue_.erase(spool_queue_.begin(), spool_queue_.begin() + static_cast<ptrdiff_t>(n));
  b->started_ns = mono_ns();
  if (seg_fd_ >= 0) return submit_write(*b);
  // A new segment, named after its first message's queue id (O_EXCL: a name
  // clash is an error, never an overwrite).
  b->segment_name = spool_final_name(b->jobs.front()->conn->session.current_queue_id());
  io_uring_sqe* sq = sqe();
  io_uring_prep_openat(sq, spool_dir_fd_, b->segment_name.c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  io_uring_sqe_set_data64(sq, tag(b, kOpSpoolOpen));
}

void Shard::submit_write(SpoolBatch& b) {
  // write at the segment's durable end, then fdatasync, linked: the sync runs
  // only after a complete write.
  io_uring_sqe* w = sqe();
  io_uring_prep_writev(w, seg_fd_, b.iov.data(), static_cast<unsigned>(b.iov.size()), seg_size_);
  w->flags |= IOSQE_IO_LINK;
  io_uring_sqe_set_data64(w, tag(&b, kOpSpoolWrite));
  io_uring_sqe* f = sqe();
  io_uring_prep_fsync(f, seg_fd_, IORING_FSYNC_DATASYNC);
  io_uring_sqe_set_data64(f, tag(&b, kOpSpoolSync));
  b.pending_cqes = 2;
}

void Shard::close_segment() {
  if (seg_fd_ < 0) return;
  ::close(seg_fd_);
  if (seg_size_ == 0) ::unlinkat(spool_dir_fd_, seg_name_.c_str(), 0);
  seg_fd_ = -1;
  seg_size_ = 0;
}

void Shard::on_spool_cqe(SpoolBatch& b, unsigned op, int res) {
  switch (op) {
    case kOpSpoolOpen:
      if (res < 0) return finish_batch(b, false, -res);
      seg_fd_ = res;
      seg_name_ = b.segment_name;
      seg_size_ = 0;
      seg_needs_dir_sync_ = true;
      return submit_write(b);
    case kOpSpoolWrite:
      // A short write also fails the link (the sync is cancelled).
      b.write_ok = res >= 0 && static_cast<size_t>(res) == b.total;
      if (res < 0) b.error = -res;
      if (res >= 0 && !b.write_ok) b.error = ENOSPC;
      break;
    case kOpSpoolSync:
      b.sync_ok = res >= 0;
      if (res < 0 && !b.error) b.error = -res;
      break;
    case kOpDirSync:
      if (res < 0) {
        // The segment's name may not survive a crash: nobody hears 250 for
        // it, and the next batch starts a new segment.
        close_segment();
        return finish_batch(b, false, -res);
      }
      return finish_batch(b, true, 0);
    default: return;
  }
  if (--b.pending_cqes > 0) return;
  if (!(b.write_ok && b.sync_ok)) {
    // Error path only: cut the segment back to what is durable (blocking
    // calls are acceptable here) and leave it; the next batch starts anew.
    if (::ftruncate(seg_fd_, static_cast<off_t>(seg_size_)) != 0) {
      LogLine l(LogLevel::error, "spool_truncate_failed", unix_ms_);
      l.kv("file", seg_name_).kv("error", std::strerror(errno));
      log(l);
    }
    close_segment();
    if (b.error == ENOSPC || b.error == EDQUOT) disk_low_ = true;
    return finish_batch(b, false, b.error ? b.error : EIO);
  }
  seg_size_ += b.total;
  if (seg_needs_dir_sync_) {
    seg_needs_dir_sync_ = false;
    io_uring_sqe* d = sqe();
    io_uring_prep_fsync(d, spool_dir_fd_, 0);
    io_uring_sqe_set_data64(d, tag(&b, kOpDirSync));
    return;
  }
  finish_batch(b, true, 0);
}

void Shard::finish_batch(SpoolBatch& b, bool ok, int err) {
  metrics_.fsync_seconds.observe_ns(static_cast<uint64_t>(mono_ns() - b.started_ns));
  if (ok && seg_size_ >= kMaxSegmentBytes) close_segment();  // the next batch starts a new one
  if (ok) {
    metrics_.spool_writes.inc();
    shared_.spool_bytes.fetch_add(static_cast<int64_t>(b.total), std::memory_order_relaxed);
    shared_.spool_messages.fetch_add(static_cast<int64_t>(b.jobs.size()),
                                     std::memory_order_relaxed);
  } else {
    metrics_.spool_write_errors.inc();
    LogLine l(LogLevel::error, "spool_write_failed", unix_ms_);
    l.kv("file", b.segment_name.empty() ? seg_name_ : b.segment_name)
        .kv("messages", uint64_t{b.jobs.size()})
        .kv("error", std::strerror(err));
    log(l);
  }
  std::vector<SpoolJob*> jobs;
  jobs.swap(b.jobs);
  batch_ = nullptr;
  delete &b;
  // The next batch goes to disk while these sessions answer their clients.
  if (!spool_queue_.empty()) start_batch();
  for (SpoolJob* job : jobs) {
    Connection& c = *job->conn;
    c.job = nullptr;
    delete job;
    if (ok) {
      c.session.resume(Verdict::accept(), now_);
    } else {
      c.session.resume(
          Verdict::reject(451, "4.3.0", "Error: local error writing the message, try again later"),
          now_);
    }
    if (c.stage == Connection::Stage::closing) {
      // The client is gone; the message is on disk all the same.
      c.session.consume_output(c.session.output().size());
      c.send_queued.clear();
      if (!c.send_busy) begin_close(c);
      continue;
    }
    feed_pending(c);
    flush(c);
  }
}

}  // namespace ringmx
