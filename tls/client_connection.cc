// Contract: see client_connection.h. The TLS session is created when TLS
// starts (not at connect), so a plaintext connection never allocates one.
#include "tls/client_connection.h"

#include <utility>

namespace ringmx {

ClientConnection::ClientConnection(const ClientSettings& smtp, const TlsClientOptions& tls,
                                   int64_t now_ns, std::shared_ptr<const TlsSavedSession> resume)
    : client_(smtp, now_ns), options_(tls), resume_(std::move(resume)) {}

void ClientConnection::connected(int64_t now_ns) {
  if (options_.mode == TlsMode::implicit && !tls_) start_tls(now_ns);
}

void ClientConnection::start_tls(int64_t now_ns) {
  hs_started_ns_ = now_ns;
  handshake_ = Handshake::running;
  if (!options_.context) return tls_failed("no TLS client context", now_ns);
  tls_.emplace(options_.context, options_.server_name, resume_);
  drive_tls(now_ns);  // the ClientHello
}

void ClientConnection::tls_failed(std::string reason, int64_t now_ns) {
  if (handshake_ == Handshake::running) handshake_ = Handshake::failed;
  if (tls_error_.empty()) tls_error_ = std::move(reason);
  client_.connection_lost(ErrorKind::tls, now_ns);
}

// Runs the handshake as far as it goes, then hands any plaintext to the
// client. Called after every feed while TLS is on.
void ClientConnection::drive_tls(int64_t now_ns) {
  TlsSession& tls = *tls_;
  if (!tls.handshake_done()) {
    const HandshakeResult hs = tls.handshake();
    if (hs.failed()) return tls_failed(hs.reason, now_ns);
    if (hs.want_more()) return;
    handshake_ = Handshake::done;
    hs_done_ns_ = now_ns;
    if (client_.wants_tls()) client_.tls_started(now_ns);  // STARTTLS: EHLO again
  }
  plain_.clear();
  const ReadResult r = tls.read_plaintext(plain_);
  if (!plain_.empty()) client_.feed(plain_, now_ns);
  switch (r.status) {
    case ReadResult::Status::data:
    case ReadResult::Status::want_more: return;
    case ReadResult::Status::closed:
      // close_notify: what the client still waits for will not come (after
      // 221 the client is closed already and this changes nothing).
      return client_.connection_lost(ErrorKind::closed, now_ns);
    case ReadResult::Status::failed: return tls_failed(r.reason, now_ns);
  }
}

void ClientConnection::feed(std::string_view bytes, int64_t now_ns) {
  if (!tls_) {
    client_.feed(bytes, now_ns);
    if (client_.wants_tls()) start_tls(now_ns);
    return;
  }
  if (client_.closed()) return;
  tls_->feed_ciphertext(bytes);
  drive_tls(now_ns);
}

void ClientConnection::connection_lost(ErrorKind kind, int64_t now_ns) {
  if (handshake_ == Handshake::running) {
    handshake_ = Handshake::failed;
    if (tls_error_.empty()) tls_error_ = std::string("handshake ended: ") + error_kind_name(kind);
  }
  client_.connection_lost(kind, now_ns);
}

// Moves what the SMTP client queued into TLS records.
void ClientConnection::encrypt_client_output() {
  if (!tls_ || !tls_->handshake_done() || tls_->failed()) return;
  while (client_.has_output()) {
    const std::string_view v = client_.output();
    if (!tls_->write_plaintext(v)) {
      tls_error_ = tls_->error();
      client_.connection_lost(ErrorKind::tls, client_.last_progress_ns());
      return;
    }
    client_.consume_output(v.size());
  }
}

std::string_view ClientConnection::output() {
  if (preamble_off_ < preamble_.size()) return std::string_view(preamble_).substr(preamble_off_);
  if (!tls_) return client_.output();
  encrypt_client_output();
  return tls_->pending_ciphertext();
}

void ClientConnection::consume_output(size_t n) {
  if (preamble_off_ < preamble_.size()) {
    const size_t take = std::min(n, preamble_.size() - preamble_off_);
    preamble_off_ += take;
    n -= take;
    if (preamble_off_ >= preamble_.size()) {
      preamble_.clear();
      preamble_off_ = 0;
    }
    if (n == 0) return;
  }
  if (tls_) {
    tls_->consume_ciphertext(n);
  } else {
    client_.consume_output(n);
  }
}

bool ClientConnection::has_output() {
  return !output().empty();
}

std::string_view ClientConnection::tls_version() const {
  return tls_ ? tls_->version() : std::string_view();
}

std::string_view ClientConnection::tls_cipher() const {
  return tls_ ? tls_->cipher() : std::string_view();
}

std::shared_ptr<const TlsSavedSession> ClientConnection::saved_session() const {
  if (!tls_ || handshake_ != Handshake::done || !client_.ready_seen()) return nullptr;
  return tls_->saved_session();
}

}  // namespace ringmx
