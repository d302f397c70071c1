// Contract: see auth_backend.h.
#include "net/auth_backend.h"

#include <unistd.h>

#include <algorithm>
#include <unordered_map>
#include <utility>

#include "core/socket_address.h"
#include "net/client_stream.h"
#include "net/connection.h"
#include "net/shard.h"

namespace ringmx {

namespace {

// After a link failed, new verifications are refused at once for this long.
constexpr int64_t kRetryAfterMs = 1000;

}  // namespace

struct AuthWait::Timer : TimerNode {
  AuthWait* wait = nullptr;
};

struct AuthLink final : ClientStream::Owner {
  AuthLink(AuthBackend& o, const AuthConfig& cfg)
      : owner(o),
        socket(cfg.dovecot_socket),
        client(cfg.dovecot_service, static_cast<uint32_t>(::getpid()), cfg.max_pending),
        stream(o.shard().ring(), o.shard().buffers(), client, *this) {}

  void stream_event() override { owner.link_event(this); }
  void stream_released() override { owner.link_released(this); }
  int64_t stream_now() override { return mono_ns(); }

  AuthBackend& owner;
  std::string socket;  // what it was opened to (a reload may name another)
  dovecot::AuthClient client;
  ClientStream stream;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::unordered_map<uint32_t, AuthWait*> waits;  // by request id
  int64_t last_input_ms = 0;                      // when the server last said something
  uint64_t seen_in = 0;
  bool dropped = false;  // no longer current: closing
};

AuthWait::~AuthWait() {
  if (backend_ != nullptr) backend_->forget(this);
}

AuthBackend::AuthBackend(Shard& shard) : shard_(shard) {}

AuthBackend::~AuthBackend() {
  for (auto& [token, w] : file_waits_) {
    shard_.wheel().cancel(*w->timer_);
    w->backend_ = nullptr;
    w->file_ = false;
  }
  for (AuthLink* l : all_) {
    for (auto& [id, w] : l->waits) {
      shard_.wheel().cancel(*w->timer_);
      w->backend_ = nullptr;
      w->link_ = nullptr;
    }
    delete l;
  }
}

AuthLink* AuthBackend::open_link() {
  const AuthConfig& cfg = shard_.cfg().server.auth;
  auto* l = new AuthLink(*this, cfg);
  all_.push_back(l);
  l->last_input_ms = shard_.now().mono_ms;
  SocketAddress a;
  std::string error;
  int family = AF_UNIX;
  int fd = -1;
  if (parse_socket_address(cfg.dovecot_socket, a, error) &&
      to_sockaddr(a, l->addr, l->addr_len, family)) {
    fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  }
  if (fd < 0) {
    l->client.connection_lost(ErrorKind::connect, mono_ns());
    return l;
  }
  l->stream.connect(fd, reinterpret_cast<const sockaddr*>(&l->addr), l->addr_len);
  return l;
}

std::unique_ptr<AuthWait> AuthBackend::make_wait(std::function<void(AuthAnswer)> done) {
  std::unique_ptr<AuthWait> w(new AuthWait());
  w->backend_ = this;
  w->started_ns_ = mono_ns();
  w->done_ = std::move(done);
  w->timer_ = std::make_unique<AuthWait::Timer>();
  w->timer_->wait = w.get();
  w->timer_->fire = [](TimerNode& n) {
    AuthWait* aw = static_cast<AuthWait::Timer&>(n).wait;
    aw->backend_->expired(aw);
  };
  shard_.wheel().schedule(*w->timer_, shard_.now().mono_ms + shard_.cfg().server.auth.timeout_ms);
  ++waiting_;
  return w;
}

std::unique_ptr<AuthWait> AuthBackend::verify_file(dovecot::Request& req,
                                                   std::function<void(AuthAnswer)>& done) {
  const UsersFile* users = shard_.cfg().users.get();
  PasswordWorkers* workers = shard_.shared().passwords;
  if (users == nullptr || workers == nullptr || file_waits_.size() >= kMaxFileVerifications) {
    req.credentials.wipe();
    return nullptr;
  }
  const sasl::Credentials& cr = req.credentials;
  // No acting as another user here: only the login itself.
  const std::string* hash =
      cr.authzid.empty() || cr.authzid == cr.user ? users->find(cr.user) : nullptr;
  PasswordJob job;
  job.shard = &shard_;
  job.token = next_token_++;
  job.hash = hash != nullptr ? *hash : users->decoy();
  job.password.swap(req.credentials.password);
  req.credentials.wipe();
  const uint64_t token = job.token;
  if (!workers->submit(std::move(job))) return nullptr;
  std::unique_ptr<AuthWait> w = make_wait(std::move(done));
  w->file_ = true;
  w->known_ = hash != nullptr;
  w->id_ = token;
  file_waits_.emplace(token, w.get());
  return w;
}

void AuthBackend::password_answered(uint64_t token, bool match) {
  const auto it = file_waits_.find(token);
  if (it == file_waits_.end()) return;  // forgotten or timed out meanwhile
  AuthWait* w = it->second;
  AuthAnswer a;
  a.outcome = match && w->known_ ? dovecot::Outcome::ok : dovecot::Outcome::fail;
  deliver(w, std::move(a));
}

std::unique_ptr<AuthWait> AuthBackend::verify(dovecot::Request req,
                                              std::function<void(AuthAnswer)> done) {
  const AuthConfig& cfg = shard_.cfg().server.auth;
  if (cfg.backend == AuthBackendKind::none || waiting_ >= cfg.max_pending) {
    req.credentials.wipe();
    return nullptr;
  }
  if (cfg.backend == AuthBackendKind::file) return verify_file(req, done);
  if (current_ != nullptr && current_->socket != cfg.dovecot_socket) {
    // A reload named another socket: what the old link carries gets 454.
    drop_link(current_);
  }
  if (current_ == nullptr || current_->client.failed()) {
    if (current_ != nullptr) drop_link(current_);
    if (failed_at_ms_ >= 0 && shard_.now().mono_ms < failed_at_ms_ + kRetryAfterMs) {
      req.credentials.wipe();
      return nullptr;
    }
    current_ = open_link();
    if (current_->client.failed()) {
      failed_at_ms_ = shard_.now().mono_ms;
      drop_link(current_);
      req.credentials.wipe();
      return nullptr;
    }
  }
  const uint32_t id = current_->client.begin(std::move(req));
  if (id == 0) return nullptr;
  std::unique_ptr<AuthWait> w = make_wait(std::move(done));
  w->link_ = current_;
  w->id_ = id;
  current_->waits.emplace(id, w.get());
  current_->stream.flush();
  return w;
}

// The wait's owner let it go: its answer, if one comes, is dropped.
void AuthBackend::forget(AuthWait* w) {
  if (w->file_) {
    shard_.wheel().cancel(*w->timer_);
    if (file_waits_.erase(w->id_) != 0) --waiting_;
    w->file_ = false;
    return;
  }
  if (w->link_ == nullptr) return;
  shard_.wheel().cancel(*w->timer_);
  AuthLink* l = w->link_;
  w->link_ = nullptr;
  if (l->waits.erase(static_cast<uint32_t>(w->id_)) != 0) --waiting_;
  l->client.cancel(static_cast<uint32_t>(w->id_));
}

// The answer goes to the owner; the wait is spent (its destruction later is a no-op).
void AuthBackend::deliver(AuthWait* w, AuthAnswer a) {
  shard_.wheel().cancel(*w->timer_);
  if (w->link_ != nullptr && w->link_->waits.erase(static_cast<uint32_t>(w->id_)) != 0) {
    --waiting_;
  }
  if (w->file_ && file_waits_.erase(w->id_) != 0) --waiting_;
  w->link_ = nullptr;
  w->file_ = false;
  a.latency_ns = mono_ns() - w->started_ns_;
  std::function<void(AuthAnswer)> d = std::move(w->done_);
  w->done_ = nullptr;
  if (d) d(std::move(a));  // may destroy the wait
}

void AuthBackend::expired(AuthWait* w) {
  if (w->file_) {  // the workers are behind: their answer will be dropped
    AuthAnswer a;
    a.timed_out = true;
    a.reason = "password workers busy";
    return deliver(w, std::move(a));
  }
  AuthLink* l = w->link_;
  if (l == nullptr) return;
  l->client.cancel(static_cast<uint32_t>(w->id_));
  const int64_t timeout_ms = shard_.cfg().server.auth.timeout_ms;
  const bool hung = shard_.now().mono_ms - l->last_input_ms >= timeout_ms;
  AuthAnswer a;
  a.timed_out = true;
  a.reason = "backend timeout";
  deliver(w, std::move(a));
  // Nothing from the server for a whole timeout: a hung backend. The
  // others it carries fail now rather than each waiting out its deadline.
  // The next verification opens a new link at once.
  if (hung && !l->dropped) drop_link(l);
}

void AuthBackend::link_event(AuthLink* l) {
  l->stream.hold();
  if (l->stream.bytes_in() != l->seen_in) {
    l->seen_in = l->stream.bytes_in();
    l->last_input_ms = shard_.now().mono_ms;
  }
  std::vector<dovecot::Result> results;
  results.swap(l->client.results());
  for (dovecot::Result& r : results) {
    auto it = l->waits.find(r.id);
    if (it == l->waits.end()) continue;  // forgotten meanwhile
    AuthAnswer a;
    a.outcome = r.outcome;
    a.user = std::move(r.user);
    a.reason = std::move(r.reason);
    deliver(it->second, std::move(a));
  }
  if (l->client.failed()) {
    if (l == current_) failed_at_ms_ = shard_.now().mono_ms;
    if (shard_.log_enabled(LogLevel::warn)) {
      LogLine line(LogLevel::warn, "auth_backend_failed", shard_.unix_ms());
      line.kv("socket", shard_.cfg().server.auth.dovecot_socket).kv("error", l->client.error());
      shard_.log(line);
    }
    drop_link(l);
  } else if (!l->stream.closed()) {
    l->stream.flush();
  }
  l->stream.release();  // may free the link (link_released)
}

// The link takes no more verifications and closes; what it still carried
// is answered as a temporary failure.
void AuthBackend::drop_link(AuthLink* l) {
  if (l == current_) current_ = nullptr;
  if (l->dropped) return;
  l->dropped = true;
  l->stream.hold();
  while (!l->waits.empty()) {
    AuthWait* w = l->waits.begin()->second;
    l->client.cancel(static_cast<uint32_t>(w->id_));
    AuthAnswer a;
    a.reason = l->client.failed() ? l->client.error() : "backend not answering";
    deliver(w, std::move(a));
  }
  l->stream.close();
  l->stream.release();  // may free it
}

void AuthBackend::link_released(AuthLink* l) {
  if (!l->dropped) {
    // Released without being dropped: its stream ended on its own.
    l->dropped = true;
    if (l == current_) current_ = nullptr;
  }
  all_.erase(std::remove(all_.begin(), all_.end(), l), all_.end());
  delete l;
}

}  // namespace ringmx
