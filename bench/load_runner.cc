// Contract: see load_runner.h. One Worker per thread, each with its own ring;
// a connection's socket and ring operations are a ClientStream (net/
// client_stream.h, the same layer the daemon's relays use), and a Conn is
// freed when its stream is released. Every message leaves the worker
// through finish_message() exactly once.
#include "bench/load_runner.h"

#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <deque>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <thread>

#include "bench/message_gen.h"
#include "net/buffer_ring.h"
#include "net/client_stream.h"
#include "net/ring.h"
#include "tls/tls_context.h"

namespace ringmx::bench {

namespace {

constexpr uint64_t kOpMask = 15;
constexpr uint64_t kOpCompletion = 15;  // net/ring.h completion_tag(); 0 is ignored
constexpr uint32_t kBufCount = 2048;    // power of two
constexpr uint32_t kBufSize = 4096;
constexpr uint16_t kBufGroup = 0;
constexpr int64_t kScanEveryNs = 20'000'000;  // timeout scan
constexpr int64_t kMaxWaitNs = 50'000'000;    // stop requests are seen this fast
constexpr int64_t kAbortGraceNs = 2'000'000'000;
constexpr int64_t kLingerNs = 1'000'000'000;  // at most, for the server's FIN after 221
constexpr size_t kPoolBytes = size_t{64} << 20;
constexpr uint64_t kMaxDistinct = 64;
constexpr size_t kMaxBacklog = size_t{1} << 20;  // messages waiting for a connection, per worker

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

struct Pending {
  uint64_t id;
  int64_t intended_ns;
};

class Worker;

struct Conn final : ClientStream::Owner {
  Conn(Worker& w, Ring& ring, ProvidedBufferRing& bufs, const LoadConfig& cfg, int64_t now,
       std::shared_ptr<const TlsSavedSession> resume)
      : worker(w),
        link(cfg.client, cfg.tls, now, std::move(resume)),
        client(link.smtp()),
        stream(ring, bufs, link, *this) {}
  void stream_connected() override;
  void stream_event() override;
  void stream_released() override;
  void stream_sent() override {}  // nothing follows a send but the next one
  int64_t stream_now() override;

  Worker& worker;
  ClientConnection link;  // the SMTP client with PROXY and TLS around it
  SmtpClient& client;
  ClientStream stream;
  bool in_idle = false;
  uint32_t carrying = 0;  // messages in progress (2 when one is queued behind another)
  bool opening = true;    // not ready yet
  bool banner_seen = false;
  bool retired = false;  // no longer counts against the connection cap
  bool handshake_counted = false;
  bool session_taken = false;
  int64_t linger_until = 0;
  uint64_t messages = 0;
  uint64_t quota = 0;  // closed loop: messages reserved for this connection, not issued yet
  Conn* prev = nullptr;
  Conn* next = nullptr;
};

class Worker {
 public:
  Worker(const LoadConfig& cfg, const MessagePool& pool, uint32_t index, int64_t start_ns,
         Progress& progress, const LoadControl& control)
      : cfg_(cfg),
        pool_(pool),
        index_(index),
        start_ns_(start_ns),
        progress_(progress),
        control_(control) {
    const uint64_t t = cfg.threads;
    cap_ = cfg.connections / t + (index < cfg.connections % t ? 1 : 0);
    budget_ = cfg.messages / t + (index < cfg.messages % t ? 1 : 0);
    deadline_ = start_ns + cfg.duration_ns;
    hard_end_ = deadline_ + cfg.timeout_ns;
    if (cfg.rate > 0) {
      schedule_.emplace(
          ArrivalSchedule(cfg.rate, start_ns, cfg.arrival, cfg.seed).share(index, cfg.threads));
    }
  }
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void run(LoadResult& out);

 private:
  friend struct Conn;
  void setup();
  void handle(io_uring_cqe* cqe);
  void issue();
  bool claim(Conn& c);
  void stop_issuing();
  void pump();
  bool open_conn();
  void start_on(Conn& c);
  void after_client(Conn& c);
  void finish_message(const MessageResult& r);
  void finish_connection_unit();
  void count_tls(Conn& c);
  void setup_failed(Conn& c);
  void begin_close(Conn& c);
  void set_proxy_header(Conn& c);
  void conn_released(Conn& c);
  void scan_timeouts();
  void abort_all();
  void fail_backlog_front(uint16_t code, ErrorKind kind);
  void fail_unopened(ErrorKind kind);
  int64_t next_wake() const;

  const LoadConfig& cfg_;
  const MessagePool& pool_;
  uint32_t index_;
  int64_t start_ns_;
  Progress& progress_;
  const LoadControl& control_;

  Ring ring_;
  ProvidedBufferRing bufs_;

  RunStats stats_;
  std::optional<ArrivalSchedule> schedule_;
  std::deque<Pending> backlog_;
  std::vector<Conn*> idle_;
  Conn* conns_ = nullptr;
  uint64_t cap_ = 0;
  uint64_t budget_ = 0;
  uint64_t issued_ = 0;
  uint64_t reserved_ = 0;  // closed loop: the sum of the connections' quotas
  uint64_t in_flight_ = 0;
  uint64_t live_ = 0;    // Conn objects
  uint64_t active_ = 0;  // connections that count against cap_ (not closing)
  uint64_t opening_ = 0;
  size_t source_rr_ = 0;
  size_t proxy_rr_ = 0;
  std::shared_ptr<const TlsSavedSession> resume_;  // the target's last TLS session
  bool issuing_ = true;
  bool aborted_ = false;
  int64_t now_ = 0;
  int64_t deadline_ = 0;
  int64_t hard_end_ = 0;
  int64_t next_scan_ = 0;
};

void Conn::stream_connected() {
  worker.set_proxy_header(*this);
}
void Conn::stream_event() {
  worker.after_client(*this);
}
void Conn::stream_released() {
  worker.conn_released(*this);
}
int64_t Conn::stream_now() {
  return worker.now_;  // read once per completion
}

Worker::~Worker() {
  ring_.exit();  // no completion arrives after this: the connections can go (closing their sockets)
  while (conns_) {
    Conn* c = conns_;
    conns_ = c->next;
    delete c;
  }
}

void Worker::setup() {
  ring_.init(4096, 65536, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
  bufs_.setup(ring_.raw(), kBufCount, kBufSize, kBufGroup);
}

// ---- the loop -------------------------------------------------------------------

void Worker::run(LoadResult& out) {
  try {
    setup();
  } catch (const std::exception& e) {
    out.errors.push_back(std::string("worker ") + std::to_string(index_) + ": " + e.what());
    return;
  }
  while ((now_ = mono_ns()) < start_ns_) {
    const int64_t d = start_ns_ - now_;
    timespec ts{d / 1'000'000'000, d % 1'000'000'000};
    nanosleep(&ts, nullptr);
  }
  issuing_ = budget_ > 0;
  next_scan_ = now_ + kScanEveryNs;
  for (;;) {
    now_ = mono_ns();
    const int stop = control_.stop.load(std::memory_order_relaxed);
    if (!aborted_ && (stop >= 2 || now_ >= hard_end_)) abort_all();
    if (aborted_ && (live_ == 0 || now_ >= hard_end_ + kAbortGraceNs)) break;
    if (issuing_ && (stop >= 1 || now_ >= deadline_)) stop_issuing();
    pump();
    if (now_ >= next_scan_) {
      scan_timeouts();
      next_scan_ = now_ + kScanEveryNs;
    }
    if (!issuing_ && backlog_.empty() && live_ == 0) break;
    const int64_t wait = std::max<int64_t>(next_wake() - now_, 1000);
    __kernel_timespec ts{wait / 1'000'000'000, wait % 1'000'000'000};
    io_uring_cqe* cqe = nullptr;
    ring_.run_deferred();
    io_uring_submit_and_wait_timeout(&ring_.raw(), &cqe, 1, &ts, nullptr);
    unsigned head = 0;
    unsigned n = 0;
    io_uring_for_each_cqe(&ring_.raw(), head, cqe) {
      now_ = mono_ns();
      handle(cqe);
      ++n;
    }
    io_uring_cq_advance(&ring_.raw(), n);
  }
  for (Conn* c = conns_; c; c = c->next) {  // still open after an abort: their bytes count too
    stats_.bytes_in += c->stream.bytes_in();
    stats_.bytes_out += c->stream.bytes_out();
  }
  out.stats = stats_;
  out.issued = issued_;
}

int64_t Worker::next_wake() const {
  int64_t next = std::min(now_ + kMaxWaitNs, next_scan_);
  if (issuing_) next = std::min(next, deadline_);
  if (issuing_ && schedule_) next = std::min(next, schedule_->peek());
  return std::min(next, aborted_ ? hard_end_ + kAbortGraceNs : hard_end_);
}

void Worker::handle(io_uring_cqe* cqe) {
  const uint64_t data = io_uring_cqe_get_data64(cqe);
  if ((data & kOpMask) != kOpCompletion) return;  // a cancel's own completion
  // NOLINTNEXTLINE(performance-no-int-to-ptr): user_data carries a tagged pointer.
  reinterpret_cast<Completion*>(data & ~kOpMask)->complete(cqe->res, cqe->flags);
}

// ---- messages ---------------------------------------------------------------------

void Worker::issue() {
  if (!issuing_) return;
  if (schedule_) {
    while (issued_ < budget_ && schedule_->peek() <= now_) {
      backlog_.push_back({index_ + issued_ * cfg_.threads, schedule_->pop()});
      ++issued_;
      // A server far behind the schedule: the backlog is bounded, the excess fails at once.
      if (backlog_.size() > kMaxBacklog) fail_backlog_front(0, ErrorKind::not_started);
    }
  }
  if (issued_ >= budget_) stop_issuing();
}

// Closed loop: the next message of connection c, from its quota (a new
// connection reserves up to per_connection messages of the budget, so the
// budget splits into whole connections as far as it can).
bool Worker::claim(Conn& c) {
  if (!issuing_ || c.quota == 0) return false;
  --c.quota;
  --reserved_;
  // The first message of a connection waited for it; the others start when
  // the connection takes them (their MAIL is queued).
  const int64_t intended = c.messages == 0 ? c.client.created_ns() : SmtpClient::kIntendedAtStart;
  backlog_.push_front({index_ + issued_ * cfg_.threads, intended});
  ++issued_;
  return true;
}

void Worker::stop_issuing() {
  issuing_ = false;
  if (!backlog_.empty()) return;  // idle connections still have work; pump() hands it out
  std::vector<Conn*> idle;
  idle.swap(idle_);
  for (Conn* c : idle) {
    c->in_idle = false;
    c->client.quit(now_);
    after_client(*c);
  }
}

void Worker::pump() {
  issue();
  if (!schedule_) {  // closed loop: keep the connections open, each with its claim
    while (issuing_ && active_ < cap_ && issued_ + reserved_ < budget_ && !aborted_) {
      if (!open_conn()) break;
    }
    if (issued_ >= budget_ && issuing_) stop_issuing();
    return;
  }
  while (!backlog_.empty() && !idle_.empty()) {
    Conn* c = idle_.back();
    idle_.pop_back();
    c->in_idle = false;
    start_on(*c);
    after_client(*c);
  }
  while (backlog_.size() > opening_ && active_ < cap_ && !aborted_) {
    if (!open_conn()) break;
  }
  if (!issuing_ && backlog_.empty() && !idle_.empty()) stop_issuing();
}

void Worker::start_on(Conn& c) {
  const Pending p = backlog_.front();
  backlog_.pop_front();
  ++c.carrying;
  ++in_flight_;
  ++c.messages;
  c.client.start_message(p.id, pool_.body(p.id), p.intended_ns, now_);
  const bool no_more =
      schedule_ ? (!issuing_ || issued_ >= budget_) && backlog_.empty() : c.quota == 0;
  if (c.messages >= cfg_.per_connection || no_more) c.client.quit(now_);
}

void Worker::finish_message(const MessageResult& r) {
  stats_.record(r);
  progress_.sent.fetch_add(1, std::memory_order_relaxed);
  (r.ok() ? progress_.ok : progress_.failed).fetch_add(1, std::memory_order_relaxed);
}

// Connection mode: the message at the front of the backlog is this
// connection's, and its set-up succeeded.
void Worker::finish_connection_unit() {
  if (backlog_.empty()) return;
  const Pending p = backlog_.front();
  backlog_.pop_front();
  MessageResult r;
  r.id = p.id;
  r.code = 250;
  r.intended_ns = p.intended_ns;
  r.final_ns = now_;
  finish_message(r);
}

// Handshake outcome (once per connection), and the session to resume.
void Worker::count_tls(Conn& c) {
  const ClientConnection& link = c.link;
  if (!c.handshake_counted) {
    switch (link.handshake_state()) {
      case ClientConnection::Handshake::done: {
        c.handshake_counted = true;
        stats_.record_handshake(link.handshake_done_ns() - link.handshake_started_ns(),
                                link.resumed(), link.tls_version(), link.tls_cipher());
        break;
      }
      case ClientConnection::Handshake::failed:
        c.handshake_counted = true;
        stats_.record_handshake_failure(link.tls_error());
        // A session the server refuses to resume is dropped: the next
        // connection does a full handshake and brings a fresh one.
        if (link.offered_session() && link.offered_session() == resume_) resume_.reset();
        break;
      case ClientConnection::Handshake::none:
      case ClientConnection::Handshake::running: break;
    }
  }
  // Only a full handshake's session is kept: with wolfSSL 5.5.4 as the client
  // and OpenSSL servers (Postfix), the session saved from a resumed
  // connection fails the next resumption ("binder does not verify" on the
  // server). A full handshake's ticket can be offered again and again.
  if (cfg_.tls_resume && !c.session_taken && c.client.ready_seen() &&
      link.handshake_state() == ClientConnection::Handshake::done) {
    c.session_taken = true;
    if (!link.resumed()) {
      if (auto saved = link.saved_session()) resume_ = std::move(saved);
    }
  }
}

void Worker::fail_backlog_front(uint16_t code, ErrorKind kind) {
  if (backlog_.empty()) return;
  const Pending p = backlog_.front();
  backlog_.pop_front();
  MessageResult r;
  r.id = p.id;
  r.code = code;
  r.error = code ? ErrorKind::none : kind;
  r.intended_ns = p.intended_ns;
  r.final_ns = now_;
  finish_message(r);
}

// Everything that follows a call into the client: outcomes, readiness, the
// next message, sending, closing.
void Worker::after_client(Conn& c) {
  for (;;) {
    while (auto r = c.client.take_result()) {
      --c.carrying;
      --in_flight_;
      finish_message(*r);
    }
    count_tls(c);
    if (!c.banner_seen && c.client.banner_ns() != 0) {
      c.banner_seen = true;
      stats_.connect.record(c.client.banner_ns() - c.client.created_ns());
    }
    if (c.opening && c.client.ready_seen()) {
      c.opening = false;
      --opening_;
      ++stats_.conn_ready;
      progress_.connections.fetch_add(1, std::memory_order_relaxed);
    }
    if (c.stream.closed() || c.retired) break;
    if (c.client.idle() && c.carrying == 0 && !c.in_idle && cfg_.per_connection == 0) {
      // Connection mode: set up is all this connection was for.
      if (schedule_ || claim(c)) finish_connection_unit();
      c.client.quit(now_);
      break;
    }
    if (c.client.idle() && c.carrying == 0 && !c.in_idle) {
      if (!schedule_) {
        if (claim(c)) {
          start_on(c);
          continue;  // an outcome may be there at once (BDAT unsupported)
        }
        c.client.quit(now_);
        break;
      }
      if (backlog_.empty()) issue();
      if (!backlog_.empty()) {
        start_on(c);
        continue;
      }
      if (c.messages >= cfg_.per_connection || !issuing_) {
        c.client.quit(now_);
      } else {
        idle_.push_back(&c);
        c.in_idle = true;
      }
    } else if (c.client.can_queue_next() && c.messages < cfg_.per_connection) {
      // Pipelined: one more message behind the one in progress. In the open
      // loop only for a backlog the idle and opening connections cannot take.
      if (!schedule_ ? claim(c) : backlog_.size() > opening_) {
        start_on(c);
        continue;
      }
    }
    break;
  }
  if (c.client.closed()) {
    begin_close(c);
  } else {
    c.stream.flush();
  }
}

// A connection that could not be set up takes one message with it: in the
// closed loop one of its quota, in the open loop the oldest one waiting.
void Worker::fail_unopened(ErrorKind kind) {
  stats_.record_setup_failure(0, kind);
  if (!schedule_) {
    if (!issuing_ || issued_ + reserved_ >= budget_) return;
    backlog_.push_front({index_ + issued_ * cfg_.threads, now_});
    ++issued_;
  }
  fail_backlog_front(0, kind);
}

void Worker::setup_failed(Conn& c) {
  c.opening = false;
  --opening_;
  uint16_t code = c.client.setup_code();
  ErrorKind kind = c.client.setup_error();
  if (code == 0 && kind == ErrorKind::none) kind = ErrorKind::closed;
  if (code >= 200 && code < 300) code = 0;  // e.g. 221 to a QUIT before ready
  stats_.record_setup_failure(code, kind);
  if (!schedule_ && !claim(c)) return;  // closed loop: one message of its quota
  fail_backlog_front(code, kind);
}

// ---- connections ------------------------------------------------------------------

bool Worker::open_conn() {
  const auto family = cfg_.target.ss_family;
  const int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ++stats_.conn_attempts;
  if (fd < 0) {
    fail_unopened(ErrorKind::connect);
    return false;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (!cfg_.sources.empty() && family == AF_INET) {
    ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    const sockaddr_in& src = cfg_.sources[source_rr_++ % cfg_.sources.size()];
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&src), sizeof src) < 0) {
      ::close(fd);
      fail_unopened(ErrorKind::connect);
      return false;
    }
  }
  auto* c = new Conn(*this, ring_, bufs_, cfg_, now_, cfg_.tls_resume ? resume_ : nullptr);
  if (!schedule_) {
    // Connection mode: the connection itself is the one unit it takes.
    const uint64_t unit = std::max<uint64_t>(cfg_.per_connection, 1);
    c->quota = std::min(unit, budget_ - issued_ - reserved_);
    reserved_ += c->quota;
  }
  c->next = conns_;
  if (conns_) conns_->prev = c;
  conns_ = c;
  ++live_;
  ++active_;
  ++opening_;
  progress_.open.fetch_add(1, std::memory_order_relaxed);
  c->stream.connect(fd, reinterpret_cast<const sockaddr*>(&cfg_.target), cfg_.target_len);
  return true;
}

// Connected: the PROXY header (when asked for) goes out first.
void Worker::set_proxy_header(Conn& c) {
  if (cfg_.proxy == ProxyVersion::none) return;
  sockaddr_storage local{};
  socklen_t len = sizeof local;
  ::getsockname(c.stream.fd(), reinterpret_cast<sockaddr*>(&local), &len);
  if (!cfg_.proxy_sources.empty() && local.ss_family == AF_INET) {
    auto& src = *reinterpret_cast<sockaddr_in*>(&local);
    src.sin_addr = cfg_.proxy_sources[proxy_rr_++ % cfg_.proxy_sources.size()].sin_addr;
  }
  c.link.set_preamble(proxy_header(cfg_.proxy, local, cfg_.target));
}

void Worker::begin_close(Conn& c) {
  if (!c.retired) {
    c.retired = true;
    --active_;
    if (c.in_idle) {
      idle_.erase(std::find(idle_.begin(), idle_.end(), &c));
      c.in_idle = false;
    }
    if (c.opening) setup_failed(c);
    reserved_ -= c.quota;  // what it did not send goes to the next connection
    c.quota = 0;
    if (c.client.server_closes() && !c.stream.eof() && c.stream.recv_armed()) {
      // After 221 (or 421) the server closes: its FIN comes with or right
      // after the reply. Waiting for it leaves the TIME_WAIT on its side
      // instead of using up this side's ephemeral ports.
      c.linger_until = now_ + std::min<int64_t>(cfg_.timeout_ns, kLingerNs);
      return;
    }
  }
  c.stream.close();  // may free c
}

void Worker::conn_released(Conn& c) {
  stats_.bytes_in += c.stream.bytes_in();
  stats_.bytes_out += c.stream.bytes_out();
  if (c.prev) c.prev->next = c.next;
  if (c.next) c.next->prev = c.prev;
  if (conns_ == &c) conns_ = c.next;
  --live_;
  progress_.open.fetch_sub(1, std::memory_order_relaxed);
  delete &c;
}

void Worker::scan_timeouts() {
  Conn* next = nullptr;
  for (Conn* c = conns_; c; c = next) {
    next = c->next;
    if (c->stream.closed()) continue;
    if (c->retired) {  // waiting for the server's FIN
      if (now_ >= c->linger_until) begin_close(*c);
      continue;
    }
    if (!(c->stream.connecting() || c->client.waiting())) continue;
    if (now_ - c->client.last_progress_ns() < cfg_.timeout_ns) continue;
    c->link.connection_lost(ErrorKind::timeout, now_);
    after_client(*c);
  }
}

void Worker::abort_all() {
  aborted_ = true;
  issuing_ = false;
  idle_.clear();
  Conn* next = nullptr;
  for (Conn* c = conns_; c; c = next) {
    next = c->next;
    c->in_idle = false;
    if (c->stream.closed()) continue;
    c->link.connection_lost(ErrorKind::timeout, now_);
    after_client(*c);
  }
  while (!backlog_.empty()) fail_backlog_front(0, ErrorKind::not_started);
}

}  // namespace

// ---- public -------------------------------------------------------------------------

int64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

MessagePool::MessagePool(uint64_t seed, size_t size, uint64_t messages, bool bdat)
    : MessagePool(seed, SizeMix{{SizeClass{size, 1}}}, messages, bdat) {}

MessagePool::MessagePool(uint64_t seed, const SizeMix& mix, uint64_t messages, bool bdat)
    : seed_(seed), mix_(mix), bdat_(bdat) {
  const size_t share = kPoolBytes / std::max<size_t>(1, mix_.classes.size());
  for (size_t c = 0; c < mix_.classes.size(); ++c) {
    const size_t size = mix_.classes[c].size;
    const uint64_t fit = std::max<uint64_t>(1, share / std::max<size_t>(size, 1));
    const uint64_t n = std::max<uint64_t>(1, std::min({messages, kMaxDistinct, fit}));
    classes_.push_back({bodies_.size(), static_cast<size_t>(n)});
    for (uint64_t j = 0; j < n; ++j) add(make_message(seed + kMaxDistinct * c + j, size));
  }
}

MessagePool::MessagePool(const std::vector<std::string>& messages, bool bdat) : bdat_(bdat) {
  if (messages.empty()) throw std::invalid_argument("MessagePool: no messages");
  classes_.push_back({0, messages.size()});
  for (const std::string& m : messages) add(m);
}

void MessagePool::add(const std::string& message) {
  bodies_.push_back(bdat_ ? message : dot_stuff(message) + ".\r\n");
}

size_t MessagePool::size_class(uint64_t id) const {
  return draw_size_class(mix_, seed_, id);
}

MessageBody MessagePool::body(uint64_t id) const {
  const Range& r = classes_[size_class(id)];
  const std::string& b = bodies_[r.first + static_cast<size_t>(id % r.count)];
  return bdat_ ? MessageBody{std::string_view(), b} : MessageBody{b, std::string_view()};
}

bool is_loopback(const sockaddr_storage& target) {
  if (target.ss_family == AF_INET) {
    sockaddr_in sa{};
    std::memcpy(&sa, &target, sizeof sa);
    return (ntohl(sa.sin_addr.s_addr) >> 24) == 127;
  }
  if (target.ss_family == AF_INET6) {
    sockaddr_in6 sa{};
    std::memcpy(&sa, &target, sizeof sa);
    const uint8_t* b = sa.sin6_addr.s6_addr;
    static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return IN6_IS_ADDR_LOOPBACK(&sa.sin6_addr) ||
           (std::memcmp(b, kMapped, sizeof kMapped) == 0 && b[12] == 127);
  }
  return false;
}

uint32_t default_threads(const sockaddr_storage& target, unsigned cpus) {
  const uint32_t n = std::max(1U, cpus);
  return is_loopback(target) ? std::max(1U, n / 2) : n;
}

LoadResult run_load(const LoadConfig& cfg, const MessagePool& pool, std::vector<Progress>& progress,
                    const LoadControl& control) {
  // Every worker gets at least one connection and one message.
  LoadConfig run_cfg = cfg;
  run_cfg.threads = static_cast<uint32_t>(std::max<uint64_t>(
      1, std::min<uint64_t>({cfg.threads, cfg.connections, cfg.messages, progress.size()})));
  const uint32_t threads = run_cfg.threads;
  std::vector<LoadResult> results(threads);
  const int64_t start_ns = mono_ns() + 2'000'000;  // every worker starts at the same time
  std::vector<std::thread> workers;
  for (uint32_t t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      auto w = std::make_unique<Worker>(run_cfg, pool, t, start_ns, progress[t], control);
      w->run(results[t]);
      w.reset();
      tls_thread_exit();  // wolfSSL's per-thread ECC tables
    });
  }
  for (auto& w : workers) w.join();
  LoadResult out;
  out.start_ns = start_ns;
  out.end_ns = mono_ns();
  for (auto& r : results) {
    out.stats.merge(r.stats);
    out.issued += r.issued;
    for (auto& e : r.errors) out.errors.push_back(std::move(e));
  }
  return out;
}

}  // namespace ringmx::bench
