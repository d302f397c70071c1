// Contract: see relay.h.
#include "net/relay.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "net/connection.h"
#include "net/queue_request.h"
#include "net/shard.h"
#include "pipeline/dsn.h"

namespace ringmx {

// One recipient set of one message for one route: what a connection carries
// in one transaction. Waits in its pool, or on the wheel for its next attempt.
struct RelayTask {
  Relays* owner = nullptr;
  std::shared_ptr<QueuedMessage> msg;
  int route = -1;
  std::vector<uint32_t> rcpts;  // indices into msg->rcpts, all pending
  std::string stuffed;          // the DATA form, made when a destination lacks CHUNKING
  ClientEnvelope env;           // as this attempt's destination gets it
  int64_t started_ns = 0;
  bool dsn_passed_on = false;  // this attempt's destination took NOTIFY itself (SMTP with DSN)
  std::vector<uint32_t> success_dsn;  // delivered in this attempt, wanting a success DSN
  struct Timer : TimerNode {
    RelayTask* task = nullptr;
  } retry;
};

// An outbound connection: its socket and ring operations are a ClientStream
// (net/client_stream.h); it is deleted when the stream is released.
struct RelayConn final : ClientStream::Owner {
  enum class Stage : uint8_t { connecting, setup, ready, busy, closing };

  RelayConn(Relays& r, RelayPool& p, int64_t now_ns, bool plaintext)
      : relays(r),
        pool(p),
        settings(plain(p.settings, plaintext)),
        link(settings, p.tls, now_ns),
        stream(r.shard().ring(), r.shard().buffers(), link, *this) {
    timer.conn = this;
    timer.fire = [](TimerNode& n) { static_cast<Timer&>(n).conn->on_timer(); };
  }

  Relays& relays;
  RelayPool& pool;
  ClientSettings settings;  // this connection's copy (bdat follows what the server offers)
  ClientConnection link;
  ClientStream stream;
  Stage stage = Stage::connecting;
  struct Timer : TimerNode {
    RelayConn* conn = nullptr;
  } timer;
  bool setting_up = true;     // not ready yet (nor closed)
  bool grace_passed = false;  // setting up for longer than kSetupGraceMs
  // The transactions on this connection, in order: the one whose replies
  // are being read, and (PIPELINING) one more sent right behind its data.
  std::deque<RelayTask*> tasks;
  uint32_t messages = 0;
  int64_t idle_since_ms = 0;
  int64_t opened_ms = 0;
  int64_t waiting_since_ns = 0;  // a command (or the data) left: its reply is awaited from here

  static ClientSettings plain(ClientSettings s, bool plaintext) {
    if (plaintext) s.starttls = false;
    return s;
  }
  Shard& shard() { return relays.shard(); }
  bool gone() const { return stream.closed(); }
  void open();
  void stream_connected() override { stage = Stage::setup; }
  void stream_event() override { pump(); }
  void stream_released() override;
  void on_timer();
  void pump();
  void flush() { stream.flush(); }
  void rearm_timer();
  // When the reply awaited now is overdue: command_timeout_ms, or
  // data_timeout_ms once the end of the data is out, from the later of the
  // last reply and the last command that needs one.
  int64_t reply_deadline_ms() {
    const DeliveryConfig& d = shard().cfg().server.delivery;
    const SmtpClient& smtp = link.smtp();
    const int64_t since = std::max({smtp.last_reply_ns(), smtp.created_ns(), waiting_since_ns});
    return since / 1'000'000 + (smtp.data_queued() ? d.data_timeout_ms : d.command_timeout_ms);
  }
  void lost(ErrorKind kind);
  void close();
};

// A message's bytes read back from the spool (open, read until done, close),
// for the tasks that wait for them.
struct SpoolLoad final : Completion {
  Relays* relays = nullptr;
  std::vector<RelayTask*> tasks;
  int fd = -1;
  uint64_t done = 0;
  bool closing = false;
  void complete(int res, uint32_t /*flags*/) override;
};

namespace {

// Opportunistic TLS that failed its handshake: plaintext to that destination
// for this long (then TLS is tried again).
constexpr int64_t kPlaintextAfterTlsFailureMs = int64_t{10} * 60 * 1000;
// A connection still setting up after this long is not counted on to take
// the tasks that wait (dispatch opens others beside it).
constexpr int64_t kSetupGraceMs = 2000;

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// The message as DATA sends it: dot-stuffed, ending in CRLF "." CRLF.
std::string dot_stuffed(std::string_view m) {
  std::string out;
  out.reserve(m.size() + m.size() / 64 + 5);
  bool line_start = true;
  for (const char c : m) {
    if (line_start && c == '.') out.push_back('.');
    out.push_back(c);
    line_start = c == '\n';
  }
  if (!m.empty() && !m.ends_with("\r\n")) out.append("\r\n");
  out.append(".\r\n");
  return out;
}

}  // namespace

std::vector<ResolvedDestination> resolve_destinations(const std::vector<RouteConfig>& routes) {
  std::vector<ResolvedDestination> out;
  for (const RouteConfig& r : routes) {
    ResolvedDestination d;
    d.name = r.name.empty() && !r.domains.empty() ? r.domains.front() : r.name;
    d.label = r.destination;
    if (std::string e = parse_destination(r.destination, d.dest); !e.empty()) {
      throw std::runtime_error("route " + d.name + ": " + e);
    }
    d.tls = r.tls;
    if (d.tls == RouteTls::unset) {
      d.tls = d.dest.kind == DestinationKind::smtp ? RouteTls::opportunistic : RouteTls::none;
    }
    if (d.tls != RouteTls::none) {
      TlsClientConfig tc;
      tc.ca_file = r.tls_ca_file;  // empty: not verified
      try {
        d.tls_context = TlsClientContext::create(tc);
      } catch (const std::exception& e) {
        throw std::runtime_error("route " + d.name + ": TLS: " + e.what());
      }
    }
    if (d.dest.kind == DestinationKind::lmtp_unix) {
      sockaddr_un un{};
      un.sun_family = AF_UNIX;
      if (d.dest.path.size() >= sizeof un.sun_path) {
        throw std::runtime_error("route " + d.name + ": socket path too long");
      }
      std::memcpy(un.sun_path, d.dest.path.data(), d.dest.path.size());
      std::memcpy(&d.addr, &un, sizeof un);
      d.addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + d.dest.path.size() + 1);
    } else {
      addrinfo hints{};
      hints.ai_socktype = SOCK_STREAM;
      hints.ai_flags = AI_NUMERICSERV;
      addrinfo* res = nullptr;
      const std::string port = std::to_string(d.dest.port);
      const int rc = ::getaddrinfo(d.dest.host.c_str(), port.c_str(), &hints, &res);
      if (rc != 0 || res == nullptr) {
        throw std::runtime_error("route " + d.name + ": cannot resolve " + d.dest.host + ": " +
                                 ::gai_strerror(rc));
      }
      std::memcpy(&d.addr, res->ai_addr, res->ai_addrlen);
      d.addr_len = res->ai_addrlen;
      ::freeaddrinfo(res);
    }
    out.push_back(std::move(d));
  }
  return out;
}

// ---- a connection ---------------------------------------------------------------

void RelayConn::open() {
  const int fd = ::socket(pool.dest.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  opened_ms = shard().now().mono_ms;
  if (fd < 0) {
    lost(ErrorKind::connect);
    return;
  }
  stream.connect(fd, reinterpret_cast<const sockaddr*>(&pool.dest.addr), pool.dest.addr_len);
  rearm_timer();
}

// After any input or output: results to the relays, the next message, output.
void RelayConn::pump() {
  SmtpClient& smtp = link.smtp();
  while (auto r = smtp.take_result()) {
    if (tasks.empty()) continue;
    RelayTask* t = tasks.front();
    tasks.pop_front();
    relays.task_finished(*t, *r);
  }
  if (link.handshake_state() == ClientConnection::Handshake::failed || smtp.closed()) {
    const bool never_ready = !smtp.ready_seen();
    ReplyText why = smtp.last_reply();
    if (never_ready && why.code < 400) why = {};
    if (never_ready && why.code == 0) {
      MessageResult none;
      none.error = smtp.setup_error() == ErrorKind::none ? ErrorKind::closed : smtp.setup_error();
      why = decisive_reply(none, 0);
    }
    stream.hold();           // conn_closed must not see this connection freed,
    stage = Stage::closing;  // nor start a waiting task on it (dispatch)
    relays.conn_closed(*this, never_ready, why);
    close();
    stream.release();
    return;
  }
  if (smtp.idle() && tasks.empty() && (stage == Stage::setup || stage == Stage::busy)) {
    // Ready for the first time, or done with a message: the next one, if any.
    stage = Stage::ready;
    relays.conn_ready(*this);  // may start a task (and flush)
    if (gone()) return;
  } else if (stage == Stage::busy && tasks.size() == 1) {
    relays.queue_next(*this);  // one more behind the data in flight, if one waits
    if (gone()) return;
  }
  flush();
  rearm_timer();
}

void RelayConn::rearm_timer() {
  if (gone()) return;
  const DeliveryConfig& d = shard().cfg().server.delivery;
  int64_t deadline = 0;
  switch (stage) {
    case Stage::connecting: deadline = opened_ms + d.connect_timeout_ms; break;
    case Stage::ready: deadline = idle_since_ms + d.idle_timeout_ms; break;
    case Stage::setup:
    case Stage::busy:
    case Stage::closing: deadline = reply_deadline_ms(); break;
  }
  // Still setting up at the grace mark: the pool looks again (Relays::dispatch).
  if (setting_up && !grace_passed) deadline = std::min(deadline, opened_ms + kSetupGraceMs);
  shard().wheel().schedule(timer, deadline);
}

void RelayConn::on_timer() {
  if (gone()) return;
  const int64_t now = shard().now().mono_ms;
  stream.hold();
  if (setting_up && !grace_passed && now >= opened_ms + kSetupGraceMs) {
    grace_passed = true;
    relays.dispatch(pool);  // tasks waiting on this one may take another connection
    rearm_timer();
  } else if (stage == Stage::ready) {
    // Idle long enough: say goodbye (the reply is awaited like any other).
    stage = Stage::closing;
    waiting_since_ns = now_ns();
    link.smtp().quit(waiting_since_ns);
    flush();
    rearm_timer();
  } else if (now < (stage == Stage::connecting
                        ? opened_ms + shard().cfg().server.delivery.connect_timeout_ms
                        : reply_deadline_ms())) {
    rearm_timer();  // not due yet (the deadline moved since it was filed: a reply came)
  } else {
    lost(ErrorKind::timeout);
  }
  stream.release();
}

void RelayConn::lost(ErrorKind kind) {
  if (gone()) return;
  stream.hold();
  link.connection_lost(kind, now_ns());
  pump();  // the results, then conn_closed and close
  close();
  stream.release();
}

void RelayConn::close() {
  if (gone()) return;
  stage = Stage::closing;  // dispatch passes it by from here
  shard().wheel().cancel(timer);
  stream.hold();
  while (!tasks.empty()) {  // no result came for them (cannot happen after connection_lost)
    RelayTask* t = tasks.front();
    tasks.pop_front();
    MessageResult r;
    r.error = ErrorKind::closed;
    relays.task_finished(*t, r);
  }
  stream.close();
  stream.release();  // frees this connection when nothing is in flight
}

void RelayConn::stream_released() {
  auto& conns = pool.conns;
  conns.erase(std::remove(conns.begin(), conns.end(), this), conns.end());
  Relays& r = relays;
  RelayPool& p = pool;
  delete this;
  r.pool_emptied(p);
}

void Relays::pool_emptied(RelayPool& p) {
  // A pool a reload replaced goes with its last connection (not while
  // stop() walks the pools: the destructor frees them then).
  if (!p.conns.empty() || stopping_) return;
  std::erase_if(retired_, [&p](const std::unique_ptr<RelayPool>& q) { return q.get() == &p; });
}

// ---- the relays -----------------------------------------------------------------

Relays::Relays(Shard& shard) : shard_(shard), rng_(std::random_device{}()) {}

// The shard has stopped and its ring is gone: free what is left.
Relays::~Relays() {
  for (auto* list : {&pools_, &retired_}) {
    for (auto& p : *list) {
      for (RelayConn* c : p->conns) {
        for (RelayTask* t : c->tasks) delete t;
        delete c;
      }
      for (RelayTask* t : p->waiting) delete t;
    }
  }
  for (RelayTask* t : retrying_) delete t;
  for (RelayTask* t : parked_) delete t;
  for (SpoolLoad* l : loading_) {
    for (RelayTask* t : l->tasks) delete t;
    if (l->fd >= 0) ::close(l->fd);
    delete l;
  }
}

void Relays::configure(const RuntimeConfig& cfg) {
  routes_ = cfg.routes;
  std::vector<std::unique_ptr<RelayPool>> next;
  const uint32_t shards = std::max<uint32_t>(1, shard_.shard_count());
  for (const ResolvedDestination& d : cfg.destinations) {
    auto p = std::make_unique<RelayPool>();
    p->dest = d;
    p->settings.helo_name = cfg.server.smtp.hostname;
    p->settings.lmtp = d.dest.kind != DestinationKind::smtp;
    p->settings.keep_replies = true;
    p->settings.use_pipelining = true;
    p->settings.starttls = d.tls != RouteTls::none;
    p->settings.starttls_optional = d.tls == RouteTls::opportunistic;
    if (d.tls != RouteTls::none) {
      p->tls.mode = TlsMode::starttls;
      p->tls.context = d.tls_context;
      p->tls.server_name = d.dest.host;
    }
    p->max_conns = std::max<uint32_t>(
        1, (cfg.server.delivery.max_connections_per_destination + shards - 1) / shards);
    next.push_back(std::move(p));
  }
  // Tasks waiting in the old pools go to the new ones, routed anew.
  std::vector<RelayTask*> moved;
  for (auto& p : pools_) {
    moved.insert(moved.end(), p->waiting.begin(), p->waiting.end());
    p->waiting.clear();
    if (!p->conns.empty()) retired_.push_back(std::move(p));
  }
  pools_ = std::move(next);
  for (RelayTask* t : moved) {
    std::shared_ptr<QueuedMessage> m = std::move(t->msg);
    std::vector<uint32_t> which = std::move(t->rcpts);
    delete t;
    enqueue(m, which);
  }
}

void Relays::submit(const std::shared_ptr<QueuedMessage>& m) {
  by_id_[m->queue_id] = m;
  by_age_.emplace(m->received_at_unix, m.get());
  shard_.metrics().queue_oldest_unix.set(by_age_.begin()->first);
  held_bytes_ += m->data.size();
  shard_.metrics().queue_messages.add(1);
  shard_.metrics().queue_bytes.add(static_cast<int64_t>(m->size));
  shard_.shared().queued_messages.fetch_add(1, std::memory_order_relaxed);
  std::vector<uint32_t> all(m->rcpts.size());
  for (uint32_t i = 0; i < all.size(); ++i) all[i] = i;
  enqueue(m, all);
}

void Relays::enqueue(const std::shared_ptr<QueuedMessage>& m, const std::vector<uint32_t>& which) {
  std::vector<RelayTask*> by_route(pools_.size() + 1, nullptr);  // last: no route
  for (const uint32_t i : which) {
    QueuedRecipient& r = m->rcpts[i];
    const int route = routes_ ? routes_->find(mailbox_domain(r.address)) : -1;
    r.route = route < 0 || static_cast<size_t>(route) >= pools_.size() ? -1 : route;
    const size_t slot = r.route < 0 ? pools_.size() : static_cast<size_t>(r.route);
    if (!by_route[slot]) {
      by_route[slot] = new RelayTask;
      by_route[slot]->owner = this;
      by_route[slot]->msg = m;
      by_route[slot]->route = r.route;
    }
    by_route[slot]->rcpts.push_back(i);
  }
  std::vector<RelayTask*> tasks;
  const int64_t wait_ms = m->next_attempt_unix_ms - shard_.unix_ms();
  for (RelayTask* t : by_route) {
    if (!t) continue;
    if (t->route < 0) {
      // No route takes it (a reload removed its domain): wait for one.
      task_failed_all(*t, ReplyText{0, "4.4.0 no route for the recipient's domain"}, false);
      continue;
    }
    if (wait_ms > 0) {
      // Its next attempt is later (the schedule a restart kept).
      t->retry.task = t;
      t->retry.fire = [](TimerNode& n) {
        RelayTask& task = *static_cast<RelayTask::Timer&>(n).task;
        task.owner->retry_due(task);
      };
      retrying_.insert(t);
      shard_.wheel().schedule(t->retry, shard_.now().mono_ms + wait_ms);
      continue;
    }
    tasks.push_back(t);
  }
  if (tasks.empty()) return;
  if (m->data.empty() && m->size > 0) return load(std::move(tasks));
  // (A read in flight for another task of m is filling m->data: wait for it.)
  for (SpoolLoad* l : loading_) {
    if (l->tasks.front()->msg == m) return load(std::move(tasks));
  }
  queue_tasks(tasks);
}

void Relays::queue_tasks(std::vector<RelayTask*>& tasks) {
  for (RelayTask* t : tasks) {
    if (t->msg->held) {
      parked_.push_back(t);  // until released
      continue;
    }
    RelayPool& p = *pools_[static_cast<size_t>(t->route)];
    p.waiting.push_back(t);
    dispatch(p);
  }
}

void Relays::load(std::vector<RelayTask*> tasks) {
  // One read per message: tasks of a message already being read wait for it.
  for (SpoolLoad* l : loading_) {
    if (l->tasks.front()->msg == tasks.front()->msg) {
      l->tasks.insert(l->tasks.end(), tasks.begin(), tasks.end());
      return;
    }
  }
  auto* l = new SpoolLoad;
  l->relays = this;
  l->tasks = std::move(tasks);
  loading_.insert(l);
  QueuedMessage& m = *l->tasks.front()->msg;
  shard_.ring().prep(1, [this, l, &m](io_uring_sqe** s) {
    io_uring_prep_openat(s[0], shard_.spool_dir_fd(), m.segment.c_str(), O_RDONLY | O_CLOEXEC, 0);
    io_uring_sqe_set_data64(s[0], completion_tag(l));
  });
}

void SpoolLoad::complete(int res, uint32_t /*flags*/) {
  QueuedMessage& m = *tasks.front()->msg;
  if (closing) return relays->loaded(*this, done == m.size, 0);
  if (fd < 0) {  // the open
    if (res < 0) return relays->loaded(*this, false, -res);
    fd = res;
    m.data.resize(m.size);
  } else if (res <= 0) {  // a read failed, or the file ends early
    done = 0;
    closing = true;
    relays->shard().ring().prep(1, [this](io_uring_sqe** s) {
      io_uring_prep_close(s[0], fd);
      io_uring_sqe_set_data64(s[0], completion_tag(this));
    });
    return;
  } else {
    done += static_cast<uint64_t>(res);
  }
  if (done < m.size) {
    relays->shard().ring().prep(1, [this, &m](io_uring_sqe** s) {
      io_uring_prep_read(s[0], fd, m.data.data() + done,
                         static_cast<unsigned>(std::min<uint64_t>(m.size - done, 1U << 30)),
                         m.offset + done);
      io_uring_sqe_set_data64(s[0], completion_tag(this));
    });
    return;
  }
  closing = true;
  relays->shard().ring().prep(1, [this](io_uring_sqe** s) {
    io_uring_prep_close(s[0], fd);
    io_uring_sqe_set_data64(s[0], completion_tag(this));
  });
}

void Relays::loaded(SpoolLoad& l, bool ok, int err) {
  loading_.erase(&l);
  std::vector<RelayTask*> tasks = std::move(l.tasks);
  delete &l;
  QueuedMessage& m = *tasks.front()->msg;
  if (!ok || stopping_) {
    m.data.clear();
    m.data.shrink_to_fit();
    if (!ok) {
      LogLine line(LogLevel::error, "spool_read_failed", shard_.unix_ms());
      line.kv("qid", m.queue_id)
          .kv("file", m.segment)
          .kv("error", err ? std::strerror(err) : "short read");
      shard_.log(line);
    }
    for (RelayTask* t : tasks)
      task_failed_all(*t, ReplyText{0, "4.3.0 cannot read the message from the spool"}, false);
    return;
  }
  m.data_loaded = true;
  held_bytes_ += m.data.size();
  queue_tasks(tasks);
}

void Relays::dispatch(RelayPool& p) {
  if (stopping_) return;
  for (RelayConn* c : p.conns) {
    if (p.waiting.empty()) return;
    if (c->stage == RelayConn::Stage::ready && c->tasks.empty()) {
      conn_ready(*c);
    } else if (c->stage == RelayConn::Stage::busy && c->tasks.size() == 1) {
      queue_next(*c);
    }
  }
  // More connections while tasks wait and the limit allows. Those setting up
  // will take the first ones — unless they have been at it for a while (a
  // destination that accepted the connection but does not greet): then they
  // are not counted on, and new ones are tried beside them.
  const int64_t now = shard_.now().mono_ms;
  size_t coming = 0;
  for (const RelayConn* c : p.conns) {
    if (c->setting_up && now - c->opened_ms < kSetupGraceMs) ++coming;
  }
  while (p.waiting.size() > coming && p.conns.size() < p.max_conns) {
    open_conn(p);
    ++coming;
  }
}

void Relays::open_conn(RelayPool& p) {
  const bool plaintext =
      p.dest.tls == RouteTls::opportunistic && shard_.now().mono_ms < p.plaintext_until_ms;
  auto* c = new RelayConn(*this, p, now_ns(), plaintext);
  p.conns.push_back(c);
  shard_.metrics().relay_connections_open.add(1);
  shard_.metrics().relay_connections.inc();
  c->open();
}

void Relays::conn_ready(RelayConn& c) {
  RelayPool& p = c.pool;
  c.setting_up = false;
  c.idle_since_ms = shard_.now().mono_ms;
  const DeliveryConfig& d = shard_.cfg().server.delivery;
  const bool retired =
      std::none_of(pools_.begin(), pools_.end(), [&p](const auto& q) { return q.get() == &p; });
  if (stopping_ || retired || c.messages >= d.max_messages_per_connection) {
    c.stage = RelayConn::Stage::closing;
    c.waiting_since_ns = now_ns();
    c.link.smtp().quit(c.waiting_since_ns);
    return;
  }
  while (!p.waiting.empty()) {
    RelayTask* t = p.waiting.front();
    p.waiting.pop_front();
    if (t->msg->held) {  // held while it waited
      parked_.push_back(t);
      continue;
    }
    if (c.messages > 0) shard_.metrics().relay_connections_reused.inc();
    return start_task(c, *t);
  }
}

// PIPELINING: a connection whose transaction's data is on its way takes the
// next waiting task right behind it (RFC 2920: one round trip per message).
void Relays::queue_next(RelayConn& c) {
  RelayPool& p = c.pool;
  const DeliveryConfig& d = shard_.cfg().server.delivery;
  if (stopping_ || c.tasks.size() != 1 || !c.link.smtp().can_queue_next() ||
      c.messages >= d.max_messages_per_connection) {
    return;
  }
  while (!p.waiting.empty()) {
    RelayTask* t = p.waiting.front();
    p.waiting.pop_front();
    if (t->msg->held) {
      parked_.push_back(t);
      continue;
    }
    shard_.metrics().relay_connections_reused.inc();
    return start_task(c, *t);
  }
}

// After a task that did not start: the connection takes the next one.
void Relays::next_for(RelayConn& c) {
  if (c.tasks.empty()) return conn_ready(c);
  queue_next(c);
}

void Relays::start_task(RelayConn& c, RelayTask& t) {
  // Recipients an operator removed while the task waited are not sent.
  std::erase_if(t.rcpts, [&t](uint32_t i) { return t.msg->rcpts[i].state != RcptState::pending; });
  if (t.rcpts.empty()) {
    after_attempt(t);
    return next_for(c);
  }
  if (t.msg->data.empty() && t.msg->size > 0) {
    // Its bytes were let go while it waited (read back for an attempt on
    // another route that has ended): read them again first.
    load({&t});
    return next_for(c);
  }
  SmtpClient& smtp = c.link.smtp();
  std::string problem = render_envelope(*t.msg, t.rcpts, server_offer(smtp), t.env);
  if (!problem.empty()) {
    task_failed_all(t, ReplyText{554, std::move(problem)}, true);
    return next_for(c);  // the next one, if any
  }
  QueuedMessage& m = *t.msg;
  c.settings.bdat = smtp.server_chunking();
  MessageBody body;
  body.envelope = &t.env;
  if (c.settings.bdat) {
    body.raw = m.data;
  } else {
    if (t.stuffed.empty()) t.stuffed = dot_stuffed(m.data);
    body.stuffed = t.stuffed;
  }
  t.dsn_passed_on = !c.settings.lmtp && smtp.server_dsn();
  const bool first = c.tasks.empty();
  c.tasks.push_back(&t);
  c.stage = RelayConn::Stage::busy;
  ++m.in_flight;
  ++c.messages;
  t.started_ns = now_ns();
  if (first) c.waiting_since_ns = t.started_ns;
  smtp.start_message(c.messages, body, SmtpClient::kIntendedAtStart, t.started_ns);
  c.flush();
}

void Relays::record(RelayTask& t, size_t k, const ReplyText& reply, DeliveryResult result) {
  QueuedMessage& m = *t.msg;
  QueuedRecipient& r = m.rcpts[t.rcpts[k]];
  if (r.state != RcptState::pending) return;  // removed by an operator meanwhile
  r.last = reply;
  ++r.attempts;
  const bool expired =
      result == DeliveryResult::deferred &&
      too_old(m.received_at_unix, shard_.unix_ms() / 1000, shard_.cfg().server.delivery);
  if (expired) {
    result = DeliveryResult::failed;
    r.last.text = "4.4.7 delivery time expired; last: " + reply.text;
  }
  if (result == DeliveryResult::delivered) {
    r.state = RcptState::delivered;
    if (m.accepted_mono_ns != 0) {
      shard_.metrics().delivery_latency_seconds.observe_ns(
          static_cast<uint64_t>(std::max<int64_t>(0, now_ns() - m.accepted_mono_ns)));
    }
    if (!t.dsn_passed_on && wants_success_dsn(m.sender, r.params) && !m.origin) {
      t.success_dsn.push_back(t.rcpts[k]);
    }
  }
  if (result == DeliveryResult::failed) {
    // The sender hears of it (a DSN), unless the recipient said NOTIFY
    // otherwise or the message is a bounce itself.
    r.state = wants_failure_dsn(m.sender, r.params) && !m.origin ? RcptState::bouncing
                                                                 : RcptState::failed;
  }
  // Done for good, and the message not yet: journaled alone (the message's
  // last recipient is journaled with the message).
  // (A bouncing one is done only once its DSN is: until then a restart tries
  // it again, and a failure again brings a DSN again.)
  if ((r.state == RcptState::delivered || r.state == RcptState::failed) && !m.done()) {
    shard_.journal_rcpt_done(m, t.rcpts[k]);
  }
  const size_t route = t.route < 0 ? kMaxRoutes : static_cast<size_t>(t.route);
  if (route < kMaxRoutes) shard_.metrics().deliveries[route][static_cast<size_t>(result)].inc();
  if (shard_.log_enabled(result == DeliveryResult::delivered ? LogLevel::info : LogLevel::warn)) {
    LogLine l(result == DeliveryResult::delivered ? LogLevel::info : LogLevel::warn, "delivery",
              shard_.unix_ms());
    l.kv("qid", m.queue_id).kv("rcpt", r.address);
    if (t.route >= 0) {
      const ResolvedDestination& d = pools_[static_cast<size_t>(t.route)]->dest;
      l.kv("route", d.name).kv("relay", d.label);
    }
    l.kv("result", delivery_result_name(result))
        .kv("code", uint32_t{reply.code})
        .kv("reply", reply.text)
        .kv("attempt", r.attempts);
    if (expired) l.kv("expired", "true");
    shard_.log(l);
  }
}

void Relays::task_finished(RelayTask& t, const MessageResult& r) {
  --t.msg->in_flight;
  const int64_t took = now_ns() - t.started_ns;
  shard_.metrics().delivery_seconds.observe_ns(static_cast<uint64_t>(std::max<int64_t>(0, took)));
  for (size_t k = 0; k < t.rcpts.size(); ++k) {
    const ReplyText reply = decisive_reply(r, k);
    record(t, k, reply, classify(reply));
  }
  after_attempt(t);
}

void Relays::task_failed_all(RelayTask& t, const ReplyText& why, bool permanent) {
  for (size_t k = 0; k < t.rcpts.size(); ++k) {
    record(t, k, why, permanent ? DeliveryResult::failed : DeliveryResult::deferred);
  }
  after_attempt(t);
}

// The task's recipients that are still pending wait for their next attempt.
void Relays::after_attempt(RelayTask& t) {
  QueuedMessage& m = *t.msg;
  std::vector<uint32_t> bouncing;
  for (const uint32_t i : t.rcpts) {
    if (m.rcpts[i].state == RcptState::bouncing) bouncing.push_back(i);
  }
  // NOTIFY=DELAY: once, when a recipient has waited delivery.delay_notice_s.
  std::vector<uint32_t> delayed;
  const uint32_t notice = shard_.cfg().server.delivery.delay_notice_s;
  if (notice != 0 && !m.origin && shard_.unix_ms() / 1000 - m.received_at_unix >= int64_t{notice}) {
    for (const uint32_t i : t.rcpts) {
      QueuedRecipient& r = m.rcpts[i];
      if (r.state == RcptState::pending && !r.delay_notified && !m.sender.empty() &&
          (r.params.notify & notify_delay) != 0 && (r.params.notify & notify_never) == 0) {
        r.delay_notified = true;
        delayed.push_back(i);
      }
    }
  }
  if (!bouncing.empty() || !t.success_dsn.empty() || !delayed.empty()) {
    make_dsns(t, bouncing, t.success_dsn, delayed);
    t.success_dsn.clear();
  }
  if (m.data_loaded && m.in_flight == 0) {
    // Read back for these attempts: let it go until the next ones.
    held_bytes_ -= m.data.size();
    m.data.clear();
    m.data.shrink_to_fit();
    m.data_loaded = false;
  }
  std::erase_if(t.rcpts, [&m](uint32_t i) { return m.rcpts[i].state != RcptState::pending; });
  if (t.rcpts.empty()) {
    std::shared_ptr<QueuedMessage> keep = std::move(t.msg);
    delete &t;
    if (keep->done()) message_done(*keep);
    return;
  }
  uint32_t attempts = 0;
  for (const uint32_t i : t.rcpts) attempts = std::max(attempts, m.rcpts[i].attempts);
  const int64_t delay = retry_delay_ms(attempts, shard_.cfg().server.delivery, random());
  t.retry.task = &t;
  t.retry.fire = [](TimerNode& n) {
    RelayTask& task = *static_cast<RelayTask::Timer&>(n).task;
    task.owner->retry_due(task);
  };
  retrying_.insert(&t);
  shard_.wheel().schedule(t.retry, shard_.now().mono_ms + delay);
  m.next_attempt_unix_ms = shard_.unix_ms() + delay;
  shard_.journal_retry(m, attempts, m.next_attempt_unix_ms);
}

void Relays::retry_due(RelayTask& t) {
  retrying_.erase(&t);
  std::shared_ptr<QueuedMessage> m = std::move(t.msg);
  std::vector<uint32_t> which = std::move(t.rcpts);
  delete &t;
  if (stopping_) return;
  enqueue(m, which);
}

void Relays::message_done(QueuedMessage& m) {
  if (m.finished) return;
  m.finished = true;
  by_id_.erase(m.queue_id);
  by_age_.erase({m.received_at_unix, &m});
  shard_.metrics().queue_oldest_unix.set(by_age_.empty() ? 0 : by_age_.begin()->first);
  shard_.journal_message_done(m);
  held_bytes_ -= m.data.size();
  shard_.metrics().queue_messages.add(-1);
  shard_.metrics().queue_bytes.add(-static_cast<int64_t>(m.size));
  shard_.shared().queued_messages.fetch_sub(1, std::memory_order_relaxed);
  if (m.origin) {
    // A DSN is done (delivered, or failed: a bounce is never bounced): the
    // recipients it reported on are done with it.
    std::shared_ptr<QueuedMessage> origin = std::move(m.origin);
    for (const uint32_t i : m.origin_rcpts) {
      if (origin->rcpts[i].state != RcptState::bouncing) continue;
      origin->rcpts[i].state = RcptState::failed;
      if (!origin->done()) shard_.journal_rcpt_done(*origin, i);
    }
    if (origin->done()) message_done(*origin);
  }
}

void Relays::make_dsns(RelayTask& t, const std::vector<uint32_t>& failed,
                       const std::vector<uint32_t>& succeeded,
                       const std::vector<uint32_t>& delayed) {
  const std::shared_ptr<QueuedMessage>& m = t.msg;
  const std::string_view remote =
      t.route >= 0 ? std::string_view(pools_[static_cast<size_t>(t.route)]->dest.dest.host)
                   : std::string_view();
  for (const int kind : {0, 1, 2}) {  // failure, success, delay
    const bool failure = kind == 0;
    const std::vector<uint32_t>& which = kind == 0 ? failed : kind == 1 ? succeeded : delayed;
    if (which.empty()) continue;
    DsnReport rep;
    rep.reporting_mta = shard_.cfg().server.smtp.hostname;
    rep.queue_id = m->queue_id;
    rep.remote_mta = std::string(remote);
    rep.arrival_unix = m->received_at_unix;
    rep.now_unix = shard_.unix_ms() / 1000;
    rep.sender = m->sender;
    rep.mail = m->mail;
    rep.original = m->data;
    for (const uint32_t i : which) {
      const QueuedRecipient& r = m->rcpts[i];
      const bool lmtp = t.route >= 0 && pools_[static_cast<size_t>(t.route)]->settings.lmtp;
      const char* action = kind == 0   ? "failed"
                           : kind == 2 ? "delayed"
                           : lmtp      ? "delivered"
                                       : "relayed";
      rep.rcpts.push_back({r.address, r.params, action, r.last});
    }
    auto dsn = std::make_shared<QueuedMessage>();
    dsn->queue_id = m->queue_id + (kind == 0 ? ".dsn" : kind == 1 ? ".dsn-ok" : ".dsn-delay");
    dsn->received_at_unix = rep.now_unix;
    dsn->rcpts.push_back(QueuedRecipient{});
    dsn->rcpts[0].address = m->sender;
    dsn->mail.smtputf8 = m->mail.smtputf8;
    dsn->data = make_dsn(rep, random());
    dsn->size = dsn->data.size();
    if (failure) {
      dsn->origin = m;
      dsn->origin_rcpts = which;
    }
    const bool routed = routes_ && routes_->find(mailbox_domain(m->sender)) >= 0;
    LogLine l(routed ? LogLevel::info : LogLevel::warn, "dsn", shard_.unix_ms());
    l.kv("qid", m->queue_id)
        .kv("type", kind == 0   ? "failure"
                    : kind == 1 ? "success"
                                : "delay")
        .kv("to", m->sender)
        .kv("rcpts", uint64_t{which.size()})
        .kv("result", routed ? "queued" : "no_route");
    shard_.log(l);
    if (!routed) {
      // No route reaches the sender: the report cannot go anywhere (an edge
      // MX delivers inward only). Its recipients are done all the same.
      shard_.metrics().dsn_no_route.inc();
      dsn->origin.reset();
      if (failure) {
        for (const uint32_t i : which) {
          m->rcpts[i].state = RcptState::failed;
          if (!m->done()) shard_.journal_rcpt_done(*m, i);
        }
      }
      continue;
    }
    shard_.metrics().dsn_queued.inc();
    submit(dsn);
  }
}

void Relays::conn_closed(RelayConn& c, bool set_up_failed, const ReplyText& why) {
  RelayPool& p = c.pool;
  c.setting_up = false;
  shard_.metrics().relay_connections_open.add(-1);
  if (set_up_failed && c.link.handshake_state() == ClientConnection::Handshake::failed) {
    LogLine l(LogLevel::warn, "relay_tls_failed", shard_.unix_ms());
    l.kv("relay", p.dest.label).kv("error", c.link.tls_error());
    if (p.dest.tls == RouteTls::opportunistic) {
      // Opportunistic: the next attempts go in plaintext for a while.
      p.plaintext_until_ms = shard_.now().mono_ms + kPlaintextAfterTlsFailureMs;
      l.kv("plaintext_for_ms", kPlaintextAfterTlsFailureMs);
    }
    shard_.log(l);
  }
  if (set_up_failed) {
    // The destination cannot be reached now: everything waiting for it is
    // deferred (each on its own back-off), not tried connection after connection.
    shard_.metrics().relay_connect_failures.inc();
    std::deque<RelayTask*> waiting;
    waiting.swap(p.waiting);
    for (RelayTask* t : waiting) task_failed_all(*t, why, false);
    return;
  }
  dispatch(p);
}

void Relays::stop() {
  stopping_ = true;
  for (auto* list : {&pools_, &retired_}) {
    for (auto& p : *list) {
      std::vector<RelayConn*> conns = p->conns;
      for (RelayConn* c : conns) {
        if (c->stage == RelayConn::Stage::ready) {
          c->stage = RelayConn::Stage::closing;
          c->waiting_since_ns = now_ns();
          c->link.smtp().quit(c->waiting_since_ns);
          c->flush();
        } else if (c->stage == RelayConn::Stage::connecting) {
          c->lost(ErrorKind::not_started);
        }
      }
    }
  }
}

}  // namespace ringmx

// ---- the operator's view (ringmxctl queue ...) ----------------------------------

namespace ringmx {

namespace {

void json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(ch);
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\u00";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    } else {
      out.push_back(ch);  // UTF-8 passes as it is
    }
  }
  out.push_back('"');
}

std::string_view state_name(RcptState s) {
  switch (s) {
    case RcptState::pending: return "pending";
    case RcptState::delivered: return "delivered";
    case RcptState::bouncing: return "bouncing";
    case RcptState::failed: return "failed";
  }
  return "unknown";
}

// One message as a JSON object on one line (in the spirit of postqueue -j).
void message_json(std::string& out, const QueuedMessage& m) {
  out += "{\"queue_id\":";
  json_string(out, m.queue_id);
  out += ",\"arrival_time\":" + std::to_string(m.received_at_unix);
  out += ",\"message_size\":" + std::to_string(m.size);
  out += ",\"sender\":";
  json_string(out, m.sender);
  out += ",\"held\":";
  out += m.held ? "true" : "false";
  out += ",\"next_attempt_ms\":" + std::to_string(m.next_attempt_unix_ms);
  out += ",\"recipients\":[";
  for (size_t i = 0; i < m.rcpts.size(); ++i) {
    const QueuedRecipient& r = m.rcpts[i];
    if (i) out.push_back(',');
    out += "{\"address\":";
    json_string(out, r.address);
    out += ",\"state\":\"";
    out += state_name(r.state);
    out += "\",\"attempts\":" + std::to_string(r.attempts);
    out += ",\"code\":" + std::to_string(r.last.code);
    out += ",\"reply\":";
    json_string(out, r.last.text);
    out.push_back('}');
  }
  out += "]}\n";
}

}  // namespace

uint64_t Relays::queue_request(const QueueRequest& r, std::string& out, std::string& stopped_at) {
  // Tasks waiting for their next attempt (all, or one message's), sent now.
  const auto retry_now = [this](const QueuedMessage* only) {
    std::vector<RelayTask*> due;
    for (RelayTask* t : retrying_) {
      if (!only || t->msg.get() == only) due.push_back(t);
    }
    for (RelayTask* t : due) {
      t->msg->next_attempt_unix_ms = 0;
      shard_.wheel().cancel(t->retry);
      retry_due(*t);
    }
    return due.size();
  };
  if (r.op == QueueOp::list) {
    // The first `limit` queue ids after `after`, in order (a partial sort:
    // the whole queue is never sorted for one page).
    std::vector<const QueuedMessage*> page;
    for (const auto& [id, m] : by_id_) {
      if (id > r.after) page.push_back(m.get());
    }
    const auto by_id = [](const QueuedMessage* a, const QueuedMessage* b) {
      return a->queue_id < b->queue_id;
    };
    const size_t n = std::min<size_t>(page.size(), r.limit);
    std::partial_sort(page.begin(), page.begin() + static_cast<std::ptrdiff_t>(n), page.end(),
                      by_id);
    size_t listed = 0;
    while (listed < n && out.size() < QueueRequest::kMaxShardBytes) {
      message_json(out, *page[listed++]);
    }
    if (listed < page.size()) stopped_at = page[listed - 1]->queue_id;
    return listed;
  }
  if (r.op == QueueOp::flush) return retry_now(nullptr);
  const auto it = by_id_.find(r.id);
  if (it == by_id_.end()) return 0;
  const std::shared_ptr<QueuedMessage> m = it->second;
  LogLine l(LogLevel::info, "queue_request", shard_.unix_ms());
  l.kv("qid", m->queue_id);
  switch (r.op) {
    case QueueOp::show: message_json(out, *m); return 1;
    case QueueOp::retry:
      l.kv("op", "retry");
      retry_now(m.get());
      break;
    case QueueOp::hold:
      l.kv("op", "hold");
      m->held = true;
      shard_.journal_hold(*m, true);
      break;
    case QueueOp::release: {
      l.kv("op", "release");
      m->held = false;
      shard_.journal_hold(*m, false);
      std::vector<RelayTask*> mine;
      std::erase_if(parked_, [&](RelayTask* t) {
        if (t->msg != m) return false;
        mine.push_back(t);
        return true;
      });
      queue_tasks(mine);
      retry_now(m.get());
      break;
    }
    case QueueOp::remove: {
      l.kv("op", "delete");
      // Dropped without a report: every recipient not done counts as done.
      for (QueuedRecipient& q : m->rcpts) {
        if (q.state == RcptState::pending || q.state == RcptState::bouncing) {
          q.state = RcptState::failed;
        }
      }
      std::erase_if(parked_, [&](RelayTask* t) {
        if (t->msg != m) return false;
        delete t;
        return true;
      });
      message_done(*m);
      break;
    }
    case QueueOp::list:
    case QueueOp::flush: break;
  }
  shard_.log(l);
  return 1;
}

}  // namespace ringmx
