// Contract: see milter_link.h.
#include "net/milter_link.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>
#include <utility>

#include "core/socket_address.h"
#include "net/client_stream.h"
#include "net/connection.h"
#include "net/shard.h"

namespace ringmx {

namespace {

// After QUIT, a link waits at most this long for the QUIT to leave.
constexpr int64_t kQuitGraceMs = 1000;

milter::ClientTimeouts timeouts_of(const MilterConfig& cfg) {
  return {cfg.connect_timeout_ms, cfg.command_timeout_ms, cfg.eom_timeout_ms};
}

// What ringmx offers each milter: every action, every step flag but
// RCPT_REJ (a refused recipient is not sent), and body chunks up to 1 MiB.
milter::Offer offer() {
  milter::Offer o;
  o.protocol = milter::proto::kAll & ~milter::proto::kRcptRej;
  return o;
}

// The changes to one message may hold as much as the largest message, plus
// 1 MiB for header fields and addresses.
size_t max_mod_bytes(Shard& shard) {
  return static_cast<size_t>(shard.cfg().server.smtp.limits.max_message_size) + (size_t{1} << 20);
}

}  // namespace

struct MilterLink final : ClientStream::Owner {
  MilterLink(MilterLinks& o, const MilterConfig& cfg, size_t i)
      : owner(o),
        index(i),
        name(cfg.name),
        settings(cfg),
        client(offer(), timeouts_of(cfg), max_mod_bytes(o.shard())),
        stream(o.shard().ring(), o.shard().buffers(), client, *this) {
    timer.link = this;
    timer.fire = [](TimerNode& n) { static_cast<Timer&>(n).link->on_timer(); };
  }

  void open();
  void run(std::function<void(milter::StepResult)> d) {
    done = std::move(d);
    pump();
  }
  void detach();
  void attach();
  // Opened with the same settings as `c` (so it may serve a check made from it).
  bool matches(const MilterConfig& c) const {
    return c.address == settings.address && c.connect_timeout_ms == settings.connect_timeout_ms &&
           c.command_timeout_ms == settings.command_timeout_ms &&
           c.eom_timeout_ms == settings.eom_timeout_ms;
  }
  void pump();
  void on_timer();
  void close();
  void retire();
  void free();
  MilterMetrics* metrics() {
    return index < kMaxMilters ? &owner.shard().metrics().milters[index] : nullptr;
  }

  void stream_event() override { pump(); }
  void stream_released() override;
  int64_t stream_now() override { return mono_ns(); }

  MilterLinks& owner;
  size_t index;
  std::string name;
  MilterConfig settings;  // what it was opened with (a reused link must match)
  milter::MilterClient client;
  ClientStream stream;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  struct Timer : TimerNode {
    MilterLink* link = nullptr;
  } timer;
  std::function<void(milter::StepResult)> done;
  bool attached = true;  // a handle points here
  bool idle = false;     // kept for a later SMTP session (reuse_connections)
  int64_t idle_until_ms = 0;
  bool released = false;  // the stream is done: no operation points at it
  uint32_t depth = 0;     // pump() calls under way (the link must outlive them)
  bool counted_open = false;
  bool failure_counted = false;
  int64_t quit_deadline_ms = 0;
  MilterLink* prev = nullptr;
  MilterLink* next = nullptr;
};

namespace {

class Handle final : public MilterChannel {
 public:
  explicit Handle(MilterLink* l) : link_(l) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() override { link_->detach(); }
  milter::MilterClient& client() override { return link_->client; }
  void run(std::function<void(milter::StepResult)> done) override { link_->run(std::move(done)); }

 private:
  MilterLink* link_;
};

}  // namespace

void MilterLink::open() {
  const int64_t now = mono_ns();
  client.connecting(now);
  SocketAddress a;
  std::string error;
  int family = AF_INET;
  if (!parse_socket_address(settings.address, a, error) ||
      !to_sockaddr(a, addr, addr_len, family)) {
    client.connection_lost(ErrorKind::connect, now);
    return;
  }
  const int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    client.connection_lost(ErrorKind::connect, now);
    return;
  }
  if (family != AF_UNIX) {
    // Commands the milter does not answer (SMFIP_NR_*) go out back to back:
    // Nagle would hold each behind the last one's ACK (a delayed ACK: 40 ms).
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  if (MilterMetrics* m = metrics()) m->connections.add(1);
  counted_open = true;
  stream.connect(fd, reinterpret_cast<const sockaddr*>(&addr), addr_len);
  pump();
}

// After anything happened: the step's result to its caller (also when the
// stream is already gone: a failed client answers every step at once), then
// output, the deadline, or the end of the link.
void MilterLink::pump() {
  ++depth;
  if (!released) stream.hold();
  if (client.failed() && !failure_counted) {
    failure_counted = true;
    if (MilterMetrics* m = metrics()) m->failures.inc();
    if (owner.shard().log_enabled(LogLevel::info)) {
      LogLine l(LogLevel::info, "milter_failed", owner.shard().unix_ms());
      l.kv("milter", name).kv("error", client.error());
      owner.shard().log(l);
    }
  }
  if (std::optional<milter::StepResult> r = client.take_result()) {
    if (r->timed_out) {
      if (MilterMetrics* m = metrics()) m->timeouts.inc();
    }
    if (attached && done) {
      std::function<void(milter::StepResult)> d = std::move(done);
      done = nullptr;
      d(std::move(*r));  // may start the next step, or drop the handle (detach)
    }
  }
  if (!released && !stream.closed()) {
    if (client.failed() || client.out_of_step() ||
        (!attached && !idle && (!client.has_output() || stream.connecting()))) {
      close();
    } else {
      stream.flush();
      int64_t deadline_ms = 0;
      if (client.deadline_ns() != 0) deadline_ms = client.deadline_ns() / 1'000'000 + 1;
      if (!attached) deadline_ms = idle ? idle_until_ms : quit_deadline_ms;
      if (deadline_ms == 0) {
        owner.shard().wheel().cancel(timer);
      } else if (!timer.linked() || timer.deadline_ms != deadline_ms) {
        owner.shard().wheel().schedule(timer, deadline_ms);
      }
    }
  }
  --depth;
  if (!released) {
    stream.release();  // may free this (stream_released)
  } else if (depth == 0 && !attached) {
    free();
  }
}

void MilterLink::on_timer() {
  if (released || stream.closed()) return;
  if (!attached) {
    stream.hold();
    close();
    stream.release();  // may free this
    return;
  }
  client.timeout(mono_ns());
  pump();
}

void MilterLink::detach() {
  attached = false;
  done = nullptr;
  if (released) {
    if (depth == 0) free();
    return;
  }
  if (stream.closed()) return;  // stream_released() frees it
  stream.hold();
  if (settings.reuse_connections && client.reusable() && !stream.connecting() && owner.park(this)) {
    // Kept for a later session: SMFIC_QUIT_NC, then idle until taken.
    client.end_session();
    idle = true;
    idle_until_ms = owner.shard().now().mono_ms + settings.idle_timeout_ms;
    pump();
  } else if (client.negotiated() && !client.failed()) {
    client.quit();
    quit_deadline_ms = owner.shard().now().mono_ms + kQuitGraceMs;
    pump();
  } else {
    close();
  }
  stream.release();  // may free this
}

void MilterLink::attach() {
  attached = true;
  idle = false;
  owner.shard().wheel().cancel(timer);
  if (MilterMetrics* m = metrics()) m->reused.inc();
}

// Out of the idle pool, off the wheel, out of the open-connections gauge.
void MilterLink::retire() {
  if (idle) {
    owner.unpark(this);
    idle = false;
  }
  owner.shard().wheel().cancel(timer);
  if (counted_open) {
    counted_open = false;
    if (MilterMetrics* m = metrics()) m->connections.add(-1);
  }
}

void MilterLink::close() {
  retire();
  stream.close();
}

// No ring operation points at the stream any more: the link goes with it,
// unless a handle still holds it (a failed link answers its steps at once
// until the SMTP connection ends).
void MilterLink::stream_released() {
  released = true;
  retire();
  if (!attached && depth == 0) free();
}

void MilterLink::free() {
  owner.remove(this);
  delete this;
}

MilterLinks::~MilterLinks() {
  while (head_ != nullptr) {
    MilterLink* l = head_;
    head_ = l->next;
    shard_.wheel().cancel(l->timer);
    delete l;
  }
}

std::unique_ptr<MilterChannel> MilterLinks::open(const MilterConfig& cfg, size_t index) {
  if (cfg.reuse_connections && index < idle_.size()) {
    std::vector<MilterLink*>& pool = idle_[index];
    while (!pool.empty()) {
      MilterLink* l = pool.back();  // the most recently used: the warmest
      if (l->matches(cfg) && l->client.reusable()) {
        pool.pop_back();
        l->idle = false;
        l->attach();
        return std::make_unique<Handle>(l);
      }
      l->stream.hold();
      l->close();  // opened under other settings (a reload): not for this check
      l->stream.release();
    }
  }
  auto* l = new MilterLink(*this, cfg, index);
  add(l);
  auto h = std::make_unique<Handle>(l);
  l->open();
  return h;
}

void MilterLinks::count(size_t index, CheckStage stage, const milter::StepResult& r,
                        int64_t latency_ns) {
  if (index >= kMaxMilters) return;
  const auto st = static_cast<size_t>(stage);
  const auto k = static_cast<size_t>(r.kind);
  MilterMetrics& m = shard_.metrics().milters[index];
  if (st < kMilterStages && k < kMilterResults) m.calls[st][k].inc();
  m.seconds.observe_ns(latency_ns > 0 ? static_cast<uint64_t>(latency_ns) : 0);
}

int64_t MilterLinks::now_ns() {
  return mono_ns();
}

bool MilterLinks::park(MilterLink* l) {
  if (l->index >= idle_.size()) return false;
  std::vector<MilterLink*>& pool = idle_[l->index];
  if (pool.size() >= l->settings.max_idle_connections) return false;
  pool.push_back(l);
  return true;
}

void MilterLinks::unpark(MilterLink* l) {
  if (l->index >= idle_.size()) return;
  std::vector<MilterLink*>& pool = idle_[l->index];
  pool.erase(std::remove(pool.begin(), pool.end(), l), pool.end());
}

size_t MilterLinks::idle_links() const {
  size_t n = 0;
  for (const auto& pool : idle_) n += pool.size();
  return n;
}

void MilterLinks::add(MilterLink* l) {
  l->next = head_;
  if (head_ != nullptr) head_->prev = l;
  head_ = l;
  ++live_;
}

void MilterLinks::remove(MilterLink* l) {
  if (l->prev != nullptr) l->prev->next = l->next;
  if (l->next != nullptr) l->next->prev = l->prev;
  if (head_ == l) head_ = l->next;
  l->prev = l->next = nullptr;
  --live_;
}

}  // namespace ringmx
