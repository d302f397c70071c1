#include "net/resolver.h"

#include <arpa/nameser.h>
#include <poll.h>

#include <algorithm>
#include <utility>

namespace ringmx {

// A socket c-ares uses, polled through the ring: one one-shot poll at a time.
struct Resolver::Watch final : Completion {
  Resolver* owner = nullptr;
  int fd = -1;
  bool want_read = false;
  bool want_write = false;
  bool armed = false;        // a poll is in flight
  unsigned armed_mask = 0;   // what it waits for
  bool removing = false;     // a POLL_REMOVE for it is in flight
  bool closed = false;       // c-ares is done with the socket
  bool in_callback = false;  // complete() is on the stack
  void complete(int res, uint32_t /*flags*/) override { owner->poll_done(*this, res); }
};

namespace {

std::string cache_key(uint16_t type, std::string_view name) {
  std::string k = std::to_string(type);
  k.push_back(':');
  for (char c : name) k.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c);
  return k;
}

size_t type_index(uint16_t type) {
  switch (type) {
    case dns_type::kA: return 0;
    case dns_type::kAaaa: return 1;
    case dns_type::kMx: return 2;
    case dns_type::kTxt: return 3;
    case dns_type::kPtr: return 4;
    default: return 5;
  }
}

struct QueryArg {
  Resolver* resolver;
  std::string key;
};

}  // namespace

Resolver::Resolver(Ring& ring, TimerWheel& wheel, const DnsConfig& cfg, DnsMetrics* metrics)
    : ring_(ring), wheel_(wheel), cfg_(cfg), metrics_(metrics) {
  timer_.owner = this;
  timer_.fire = &Resolver::on_timer;
}

Resolver::~Resolver() {
  destroying_ = true;
  wheel_.cancel(timer_);
  // ares_destroy runs every pending callback (ARES_EDESTRUCTION): answered()
  // drops them without calling anyone back while destroying_.
  if (channel_ != nullptr) ares_destroy(channel_);
  // Polls still in flight point at watches: the ring is torn down with the
  // shard after this object, so none of them can complete into freed memory
  // (the shard frees the resolver only once its ring has exited).
}

bool Resolver::init(std::string& error) {
  ares_options opt{};
  opt.sock_state_cb = &Resolver::on_sock_state;
  opt.sock_state_cb_data = this;
  opt.timeout = static_cast<int>(cfg_.timeout_ms);
  opt.tries = static_cast<int>(cfg_.tries);
  // Names are asked as given: no search domains, no ndots games.
  opt.flags = ARES_FLAG_NOSEARCH;
  const int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS;
  int rc = ares_init_options(&channel_, &opt, mask);
  if (rc != ARES_SUCCESS) {
    error = std::string("c-ares: ") + ares_strerror(rc);
    channel_ = nullptr;
    return false;
  }
  if (!cfg_.servers.empty()) {
    std::string csv;
    for (const std::string& s : cfg_.servers) csv += (csv.empty() ? "" : ",") + s;
    rc = ares_set_servers_ports_csv(channel_, csv.c_str());
    if (rc != ARES_SUCCESS) {
      error = "dns.servers: " + std::string(ares_strerror(rc));
      return false;
    }
  }
  return true;
}

uint64_t Resolver::lookup(uint16_t type, std::string_view name, Done done) {
  const uint64_t ticket = next_ticket_++;
  const std::string key = cache_key(type, name);
  auto it = cache_.find(key);
  if (it != cache_.end() && !it->second.pending && it->second.expires_ms > now_ms_) {
    if (metrics_) metrics_->cache_hits.inc();
    touch(it->second);
    // Held: done may change the cache (and evict this entry).
    const std::shared_ptr<const DnsAnswer> answer = it->second.answer;
    done(*answer);
    return ticket;
  }
  if (it != cache_.end() && it->second.pending) {
    if (metrics_) metrics_->cache_hits.inc();  // de-duplicated: no second query
    it->second.waiters.push_back({ticket, std::move(done)});
    tickets_.emplace(ticket, key);
    return ticket;
  }
  if (metrics_) metrics_->cache_misses.inc();
  if (channel_ == nullptr || in_flight_ >= cfg_.max_in_flight) {
    count(type, DnsOutcome::error);
    done(DnsAnswer{});
    return ticket;
  }
  if (it == cache_.end()) {
    evict();
    it = cache_.emplace(key, Entry{}).first;
    lru_.push_front(key);
    it->second.lru = lru_.begin();
  }
  Entry& e = it->second;
  e.type = type;
  e.name.assign(name);
  e.pending = true;
  e.started_ns = now_ns_;
  e.waiters.push_back({ticket, std::move(done)});
  tickets_.emplace(ticket, key);
  ++in_flight_;
  if (metrics_) metrics_->in_flight.add(1);
  // May call on_answer at once (an immediate failure): the entry exists.
  ares_query(channel_, e.name.c_str(), ns_c_in, type, &Resolver::on_answer,
             new QueryArg{this, key});
  reschedule();
  return ticket;
}

void Resolver::cancel(uint64_t ticket) {
  auto t = tickets_.find(ticket);
  if (t == tickets_.end()) return;
  auto it = cache_.find(t->second);
  tickets_.erase(t);
  if (it == cache_.end()) return;
  auto& w = it->second.waiters;
  w.erase(
      std::remove_if(w.begin(), w.end(), [ticket](const Waiter& x) { return x.ticket == ticket; }),
      w.end());
}

void Resolver::on_answer(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
  std::unique_ptr<QueryArg> q(static_cast<QueryArg*>(arg));
  q->resolver->answered(q->key, status, abuf, alen);
}

void Resolver::answered(const std::string& key, int status, const unsigned char* abuf, int alen) {
  --in_flight_;
  if (metrics_) metrics_->in_flight.add(-1);
  auto it = cache_.find(key);
  if (destroying_ || it == cache_.end()) return;
  Entry& e = it->second;
  DnsAnswer answer;
  uint32_t ttl = 0;
  DnsResponse resp;
  const bool parsed = abuf != nullptr && alen > 0 &&
                      parse_dns_response(abuf, static_cast<size_t>(alen), e.type, resp);
  if (status == ARES_SUCCESS && parsed && resp.rcode == 0 && !resp.records.empty()) {
    answer.result = DnsResult::found;
    ttl = cfg_.max_ttl_s;
    for (const DnsRecord& r : resp.records) ttl = std::min(ttl, r.ttl);
    answer.records = std::move(resp.records);
  } else if ((status == ARES_SUCCESS || status == ARES_ENODATA || status == ARES_ENOTFOUND) &&
             parsed && (resp.rcode == 0 || resp.rcode == 3)) {
    // NXDOMAIN, or the name has no data of this type (RFC 2308).
    answer.result = DnsResult::not_found;
    ttl = resp.negative_ttl != 0 ? std::min(resp.negative_ttl, cfg_.negative_ttl_s)
                                 : cfg_.negative_ttl_s;
  } else {
    answer.result = DnsResult::temp_fail;  // timeout, SERVFAIL, refused, malformed
  }
  count(e.type, answer.result == DnsResult::found       ? DnsOutcome::found
                : answer.result == DnsResult::not_found ? DnsOutcome::not_found
                : status == ARES_ETIMEOUT               ? DnsOutcome::timeout
                                                        : DnsOutcome::error);
  if (metrics_ && e.started_ns != 0 && now_ns_ >= e.started_ns) {
    metrics_->seconds.observe_ns(static_cast<uint64_t>(now_ns_ - e.started_ns));
  }
  std::vector<Waiter> waiters = std::move(e.waiters);
  e.waiters.clear();
  if (answer.result == DnsResult::temp_fail || ttl == 0) {
    lru_.erase(e.lru);
    cache_.erase(it);
  } else {
    e.pending = false;
    e.answer = std::make_shared<const DnsAnswer>(answer);
    e.expires_ms = now_ms_ + int64_t{ttl} * 1000;
  }
  for (Waiter& w : waiters) {
    // One waiter's done may cancel another's (its caller went away): that
    // one's ticket is gone by the time its turn comes.
    if (tickets_.erase(w.ticket) == 0) continue;
    w.done(answer);
  }
}

void Resolver::touch(Entry& e) {
  lru_.splice(lru_.begin(), lru_, e.lru);  // to the front, no allocation
}

// Room for one more entry: the least recently used answers go first; a
// query still in flight is never dropped (its waiters need it).
void Resolver::evict() {
  auto it = lru_.end();
  while (cache_.size() >= cfg_.cache_entries && it != lru_.begin()) {
    --it;
    auto e = cache_.find(*it);
    if (e != cache_.end() && e->second.pending) continue;
    if (e != cache_.end()) cache_.erase(e);
    it = lru_.erase(it);
  }
}

void Resolver::count(uint16_t type, DnsOutcome o) {
  if (metrics_) metrics_->queries[type_index(type)][static_cast<size_t>(o)].inc();
}

// ---- the sockets, on the ring -------------------------------------------------

void Resolver::on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
  static_cast<Resolver*>(data)->sock_state(fd, readable != 0, writable != 0);
}

void Resolver::sock_state(int fd, bool readable, bool writable) {
  auto it = watches_.find(fd);
  if (!readable && !writable) {  // c-ares closes (or closed) the socket
    if (it == watches_.end()) return;
    Watch& w = *it->second;
    w.closed = true;
    w.want_read = w.want_write = false;
    if (w.armed && !w.removing) {
      w.removing = true;
      ring_.prep(1, [&w](io_uring_sqe** s) {
        io_uring_prep_poll_remove(s[0], completion_tag(&w));
        io_uring_sqe_set_data64(s[0], 0);  // its own completion is ignored
      });
    }
    if (w.armed || w.in_callback) dying_.push_back(std::move(it->second));
    watches_.erase(it);
    return;
  }
  if (it == watches_.end()) {
    auto w = std::make_unique<Watch>();
    w->owner = this;
    w->fd = fd;
    it = watches_.emplace(fd, std::move(w)).first;
  }
  Watch& w = *it->second;
  w.want_read = readable;
  w.want_write = writable;
  if (!w.armed) {
    arm(w);
  } else if (!w.removing &&
             w.armed_mask != ((readable ? POLLIN : 0u) | (writable ? POLLOUT : 0u))) {
    // Waiting for the wrong events: take that poll back, arm again when it ends.
    w.removing = true;
    ring_.prep(1, [&w](io_uring_sqe** s) {
      io_uring_prep_poll_remove(s[0], completion_tag(&w));
      io_uring_sqe_set_data64(s[0], 0);
    });
  }
}

void Resolver::arm(Watch& w) {
  if (w.armed || w.closed || (!w.want_read && !w.want_write) || w.in_callback) return;
  w.armed = true;
  w.armed_mask = (w.want_read ? POLLIN : 0u) | (w.want_write ? POLLOUT : 0u);
  const unsigned mask = w.armed_mask;
  ring_.prep(1, [&w, mask](io_uring_sqe** s) {
    io_uring_prep_poll_add(s[0], w.fd, mask);
    io_uring_sqe_set_data64(s[0], completion_tag(&w));
  });
}

void Resolver::poll_done(Watch& w, int res) {
  w.armed = false;
  w.removing = false;
  if (!w.closed && res > 0) {
    const auto ev = static_cast<unsigned>(res);
    const bool readable = (ev & (POLLIN | POLLERR | POLLHUP)) != 0;
    const bool writable = (ev & (POLLOUT | POLLERR | POLLHUP)) != 0;
    w.in_callback = true;
    process(readable ? w.fd : ARES_SOCKET_BAD, writable ? w.fd : ARES_SOCKET_BAD);
    w.in_callback = false;
  }
  if (w.closed) {  // c-ares let the socket go: nothing points at the watch any more
    auto it = std::find_if(dying_.begin(), dying_.end(),
                           [&w](const std::unique_ptr<Watch>& p) { return p.get() == &w; });
    if (it != dying_.end()) dying_.erase(it);
    return;
  }
  arm(w);  // one-shot: again, for whatever c-ares wants now
}

void Resolver::process(int read_fd, int write_fd) {
  ares_process_fd(channel_, read_fd, write_fd);
  reschedule();
}

void Resolver::on_timer(TimerNode& n) {
  Resolver* r = static_cast<Timer&>(n).owner;
  r->process(ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // retransmits and timeouts
}

void Resolver::reschedule() {
  if (channel_ == nullptr || destroying_) return;
  timeval tv{};
  if (ares_timeout(channel_, nullptr, &tv) == nullptr) {
    wheel_.cancel(timer_);
    return;
  }
  // ares_timeout rounds down to whole milliseconds: at least 1 ms, or the loop spins.
  const int64_t ms = std::max<int64_t>(1, int64_t{tv.tv_sec} * 1000 + tv.tv_usec / 1000);
  wheel_.schedule(timer_, now_ms_ + ms);
}

}  // namespace ringmx
