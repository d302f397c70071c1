// TLS on the shard: the ring reads and writes every byte; the connection's
// TlsSession only turns ciphertext into plaintext and back on memory buffers.
// A connection is plaintext until STARTTLS's 220 has been queued (or, on an
// implicit-TLS listener, from the first byte); from then on everything it
// receives goes through on_tls_input() and everything it sends through
// queue_output().
#include <string>
#include <string_view>

#include "net/connection.h"
#include "net/shard.h"

namespace ringmx {

namespace {

TlsVersionLabel version_label(std::string_view v) {
  if (v == "TLS1_3") return TlsVersionLabel::tls1_3;
  if (v == "TLS1_2") return TlsVersionLabel::tls1_2;
  return TlsVersionLabel::none;
}

}  // namespace

void Shard::start_tls(Connection& c) {
  if (!c.tls_context) {  // cannot happen: STARTTLS is offered only with a context
    begin_close(c);
    return;
  }
  c.tls = std::make_unique<TlsSession>(c.tls_context);
  c.stage = Connection::Stage::handshake;
  c.tls_started_ns = 0;
  // Plaintext the client pipelined behind STARTTLS is dropped by the session;
  // from here on only the handshake deadline applies.
  wheel_.schedule(c.timer, now_.mono_ms + cfg_->server.tls.handshake_timeout_ms);
}

void Shard::queue_output(Connection& c, std::string_view plaintext) {
  if (!c.tls || !c.tls->handshake_done()) {
    c.send_queued.append(plaintext);
    return;
  }
  if (!c.tls->write_plaintext(plaintext)) {
    // Only after a TLS failure or close: nothing more can be said.
    c.stage = Connection::Stage::closing;
  }
  queue_ciphertext(c);
}

void Shard::queue_ciphertext(Connection& c) {
  const std::string_view ct = c.tls->pending_ciphertext();
  if (ct.empty()) return;
  c.send_queued.append(ct);
  c.tls->consume_ciphertext(ct.size());
}

void Shard::on_tls_input(Connection& c, std::string_view data) {
  TlsSession& t = *c.tls;
  t.feed_ciphertext(data);
  if (c.stage == Connection::Stage::handshake) {
    if (c.tls_started_ns == 0) c.tls_started_ns = mono_ns();
    const HandshakeResult r = t.handshake();
    queue_ciphertext(c);
    if (r.failed()) return tls_failed(c, TlsResult::failed, r.reason);
    if (r.want_more()) {
      start_send(c);
      return;
    }
    tls_handshake_done(c);
    if (c.stage == Connection::Stage::closing) return;
    // Application data may have come with the client's Finished: read on.
  }
  tls_plain_.clear();
  const ReadResult r = t.read_plaintext(tls_plain_);
  queue_ciphertext(c);  // post-handshake messages (key update replies)
  if (!tls_plain_.empty()) {
    feed(c, tls_plain_);
  } else {
    start_send(c);
  }
  if (r.status == ReadResult::Status::closed || r.status == ReadResult::Status::failed) {
    if (r.status == ReadResult::Status::failed && log_enabled(LogLevel::info)) {
      LogLine l(LogLevel::info, "tls_error", unix_ms_);
      l.kv("sid", format_session_id(c.session.conn().session_id))
          .kv("client", c.session.conn().client_ip)
          .kv("reason", r.reason);
      log(l);
    }
    if (c.shut) return;
    if (r.status == ReadResult::Status::closed) {
      // The client's close_notify (or its FIN): it still gets every reply
      // it is owed, then our close_notify (flush()) and FIN.
      input_ended(c);
    } else {
      client_gone(c, true);
    }
  }
}

void Shard::tls_handshake_done(Connection& c) {
  TlsSession& t = *c.tls;
  const TlsVersionLabel v = version_label(t.version());
  metrics_.tls_handshakes[c.listener][static_cast<size_t>(v)][static_cast<size_t>(TlsResult::ok)]
      .inc();
  metrics_.tls_handshake_seconds.observe_ns(static_cast<uint64_t>(mono_ns() - c.tls_started_ns));
  if (t.resumed()) metrics_.tls_resumed.inc();
  c.tls_version = v;
  metrics_.tls_sessions_active[static_cast<size_t>(v)].add(1);
  if (log_enabled(LogLevel::info)) {
    LogLine l(LogLevel::info, "tls", unix_ms_);
    l.kv("sid", format_session_id(c.session.conn().session_id))
        .kv("client", c.session.conn().client_ip)
        .kv("version", t.version())
        .kv("cipher", t.cipher());
    if (!t.server_name().empty()) l.kv("sni", t.server_name());
    l.kv("resumed", t.resumed() ? "yes" : "no");
    const std::string peer = t.peer_certificate_cn();
    if (!peer.empty()) l.kv("client_cert_cn", peer);
    log(l);
  }
  wheel_.cancel(c.timer);
  if (c.implicit_tls) {
    c.session.set_tls(std::string(t.version()), std::string(t.cipher()));
    start_session(c);
    return;
  }
  c.stage = Connection::Stage::open;
  c.session.tls_started(std::string(t.version()), std::string(t.cipher()), now_);
  flush(c);
}

void Shard::tls_failed(Connection& c, TlsResult result, std::string_view reason) {
  metrics_
      .tls_handshakes[c.listener][static_cast<size_t>(TlsVersionLabel::none)]
                     [static_cast<size_t>(result)]
      .inc();
  if (log_enabled(LogLevel::info)) {
    LogLine l(LogLevel::info, "tls_failed", unix_ms_);
    l.kv("sid", format_session_id(c.session.conn().session_id))
        .kv("client", c.session.conn().client_ip)
        .kv("result", tls_result_name(result))
        .kv("reason", reason);
    log(l);
  }
  // The alert that says why (if wolfSSL made one) is already queued.
  c.stage = Connection::Stage::closing;
  wheel_.cancel(c.timer);
  start_send(c);
  if (!c.send_busy) begin_close(c);
}

void Shard::tls_end(Connection& c) {
  if (c.tls_version == TlsVersionLabel::none) return;
  metrics_.tls_sessions_active[static_cast<size_t>(c.tls_version)].add(-1);
  c.tls_version = TlsVersionLabel::none;
}

}  // namespace ringmx
