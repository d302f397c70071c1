// PROXY protocol listeners: a connection's first bytes are the header a
// trusted load balancer puts in front of it (HAProxy send-proxy /
// send-proxy-v2). Nothing is served until it is read: no banner, no TLS
// handshake, no limit decided. The header is parsed from the bytes the ring
// received (no MSG_PEEK); what follows it in the same read goes on to the
// TLS engine or the session. A peer outside trusted_proxies, a malformed
// header, or one that does not arrive within server.proxy_timeout_ms closes
// the connection unserved — counted, and logged with the reason.
#include <string>
#include <string_view>

#include "net/connection.h"
#include "net/listener.h"
#include "net/shard.h"

namespace ringmx {

namespace {

ProxyAccept accept_mode(ListenerProxy p) {
  switch (p) {
    case ListenerProxy::v1: return ProxyAccept::v1;
    case ListenerProxy::v2: return ProxyAccept::v2;
    default: return ProxyAccept::any;
  }
}

}  // namespace

void Shard::start_proxy(Connection& c, const ListenerRuntime& lr) {
  if (!lr.trusted_proxies.contains(c.session.conn().client_ip)) {
    proxy_refused(c, ConnResult::proxy_untrusted, "not in trusted_proxies");
    return;
  }
  c.stage = Connection::Stage::proxy_header;
  c.proxy = std::make_unique<ProxyParser>(accept_mode(lr.proxy));
  arm_recv(c);
  wheel_.schedule(c.timer, now_.mono_ms + cfg_->server.proxy_timeout_ms);
}

void Shard::on_proxy_input(Connection& c, std::string_view data) {
  ProxyParser& p = *c.proxy;
  const ProxyParser::Status st = p.feed(data);
  if (st == ProxyParser::Status::need_more) return;
  if (st == ProxyParser::Status::error) {
    const std::string why = "bad PROXY header: " + p.error();
    proxy_refused(c, ConnResult::proxy_error, why);
    return;
  }
  wheel_.cancel(c.timer);
  const ProxyInfo& info = p.info();
  if (info.proxied) {
    uint16_t port = 0;
    std::string client = ip_text(info.src, port);
    c.proxy_peer = c.session.conn().client_ip;
    c.session.set_client(std::move(client), port);
  }
  if (info.ssl && log_enabled(LogLevel::debug)) {
    LogLine l(LogLevel::debug, "proxy_tls", unix_ms_);
    l.kv("sid", format_session_id(c.session.conn().session_id))
        .kv("version", info.ssl_version)
        .kv("cn", info.ssl_cn);
    log(l);
  }
  const std::string_view rest = data.substr(p.used());
  c.proxy.reset();
  c.stage = Connection::Stage::open;
  admit(c, shared_.connections.load(std::memory_order_relaxed));
  // Whatever came with the header is the client's: a ClientHello, or SMTP
  // (before the greeting, that is talking first, and is treated as such).
  if (rest.empty() || c.stage == Connection::Stage::closing) return;
  if (c.tls) {
    on_tls_input(c, rest);
  } else {
    feed(c, rest);
  }
}

void Shard::proxy_refused(Connection& c, ConnResult why, std::string_view reason) {
  metrics_.connections[c.listener][static_cast<size_t>(why)].inc();
  if (log_enabled(LogLevel::info)) {
    LogLine l(LogLevel::info, "proxy_refused", unix_ms_);
    l.kv("sid", format_session_id(c.session.conn().session_id))
        .kv("peer", c.session.conn().client_ip)
        .kv("listener", cfg_->server.listeners[c.listener].name)
        .kv("result", conn_result_name(why))
        .kv("reason", reason);
    log(l);
  }
  c.proxy.reset();
  // Nothing was said and nothing is owed: close without lingering.
  c.input_done = true;
  begin_close(c);
}

}  // namespace ringmx
