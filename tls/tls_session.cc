// TlsSession: one WOLFSSL over two memory buffers. The receive callback hands
// wolfSSL what was fed (WANT_READ when empty, CONN_CLOSE after feed_eof), the
// send callback appends to the outgoing buffer, which never refuses, so a
// write is always complete. Errors are turned into short reasons here because
// wolfSSL's own strings ("can't match cipher suite", "record layer version
// error") do not tell an operator what the peer did.
#include <wolfssl/options.h>

#include <wolfssl/error-ssl.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn.h>

#include "tls/tls_session.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

namespace ringmx {

struct TlsSession::Io {
  std::string in;  // fed ciphertext; in[in_pos..] not yet read by wolfSSL
  size_t in_pos = 0;
  bool eof = false;
  std::string head;  // the first bytes ever fed, to recognise non-TLS peers
  std::string out;   // ciphertext to send; out[out_pos..] not yet consumed
  size_t out_pos = 0;
};

namespace {

constexpr size_t kHeadBytes = 16;
constexpr size_t kMaxHostName = 255;
constexpr size_t kPlaintextChunk = size_t{16} * 1024;  // one TLS record at most
constexpr size_t kWriteChunk = 1 << 20;                // bounded so the int cast is safe

}  // namespace

int TlsSession::on_recv(WOLFSSL* /*ssl*/, char* buf, int size, void* ctx) {
  auto* io = static_cast<Io*>(ctx);
  if (size <= 0) return WOLFSSL_CBIO_ERR_GENERAL;
  const size_t avail = io->in.size() - io->in_pos;
  if (avail == 0) {
    return io->eof ? WOLFSSL_CBIO_ERR_CONN_CLOSE : WOLFSSL_CBIO_ERR_WANT_READ;
  }
  const size_t n = std::min(avail, static_cast<size_t>(size));
  std::memcpy(buf, io->in.data() + io->in_pos, n);
  io->in_pos += n;
  if (io->in_pos == io->in.size()) {
    io->in.clear();
    io->in_pos = 0;
  }
  return static_cast<int>(n);
}

int TlsSession::on_send(WOLFSSL* /*ssl*/, char* buf, int size, void* ctx) {
  auto* io = static_cast<Io*>(ctx);
  if (size < 0) return WOLFSSL_CBIO_ERR_GENERAL;
  io->out.append(buf, static_cast<size_t>(size));
  return size;
}

namespace {

std::string_view alert_name(int code) {
  switch (code) {
    case 0: return "close_notify";
    case 10: return "unexpected_message";
    case 20: return "bad_record_mac";
    case 22: return "record_overflow";
    case 40: return "handshake_failure";
    case 42: return "bad_certificate";
    case 43: return "unsupported_certificate";
    case 44: return "certificate_revoked";
    case 45: return "certificate_expired";
    case 46: return "certificate_unknown";
    case 47: return "illegal_parameter";
    case 48: return "unknown_ca";
    case 49: return "access_denied";
    case 50: return "decode_error";
    case 51: return "decrypt_error";
    case 70: return "protocol_version";
    case 71: return "insufficient_security";
    case 80: return "internal_error";
    case 86: return "inappropriate_fallback";
    case 90: return "user_canceled";
    case 109: return "missing_extension";
    case 110: return "unsupported_extension";
    case 112: return "unrecognized_name";
    case 115: return "unknown_psk_identity";
    case 116: return "certificate_required";
    case 120: return "no_application_protocol";
    default: return "";
  }
}

std::string wolf_string(int err) {
  char buf[WOLFSSL_MAX_ERROR_SZ] = {};
  wolfSSL_ERR_error_string_n(static_cast<unsigned long>(static_cast<long>(err)), buf, sizeof(buf));
  return std::string(buf) + " (" + std::to_string(err) + ")";
}

// A printable excerpt of what a non-TLS peer sent, for the log.
std::string excerpt(std::string_view bytes) {
  std::string out;
  for (char c : bytes.substr(0, kHeadBytes)) {
    if (c == '\r' || c == '\n') break;
    out.push_back(c >= 0x20 && c < 0x7f ? c : '.');
  }
  return out;
}

// An IPv6 literal has a colon; an IPv4 one is digits and dots only.
bool is_ip_literal(std::string_view name) {
  return name.find(':') != std::string_view::npos ||
         name.find_first_not_of("0123456789.") == std::string_view::npos;
}

std::string version_name(int v) {
  switch (v) {
    case TLS1_3_VERSION: return "TLS1_3";
    case TLS1_2_VERSION: return "TLS1_2";
    case TLS1_1_VERSION: return "TLS1_1";
    case TLS1_VERSION: return "TLS1_0";
    default: return "TLS";
  }
}

}  // namespace

void TlsSession::SslFree::operator()(WOLFSSL* ssl) const noexcept {
  wolfSSL_free(ssl);
}

TlsSavedSession::~TlsSavedSession() {
  wolfSSL_SESSION_free(session_);
}

TlsSession::TlsSession(std::shared_ptr<const TlsServerContext> context)
    : server_(std::move(context)), io_(std::make_unique<Io>()) {
  ssl_.reset(wolfSSL_new(server_->native()));
  if (!ssl_) {
    set_error("out of memory (wolfSSL_new)");
    return;
  }
  attach_io();
}

TlsSession::TlsSession(std::shared_ptr<const TlsClientContext> context,
                       std::string_view server_name,
                       const std::shared_ptr<const TlsSavedSession>& resume)
    : client_(std::move(context)), io_(std::make_unique<Io>()), server_name_(server_name) {
  ssl_.reset(wolfSSL_new(client_->native()));
  if (!ssl_) {
    set_error("out of memory (wolfSSL_new)");
    return;
  }
  attach_io();
  if (server_name_.size() > kMaxHostName) {
    set_error("server name longer than 255 bytes");
    return;
  }
  // RFC 6066 3: no IP address literals in SNI (they are still verified).
  if (!server_name_.empty() && !is_ip_literal(server_name_)) {
    if (wolfSSL_UseSNI(ssl_.get(), WOLFSSL_SNI_HOST_NAME, server_name_.data(),
                       static_cast<unsigned short>(server_name_.size())) != WOLFSSL_SUCCESS) {
      set_error("cannot set the SNI server name");
      return;
    }
  }
  if (!server_name_.empty() && client_->verify_peer() &&
      wolfSSL_check_domain_name(ssl_.get(), server_name_.c_str()) != WOLFSSL_SUCCESS) {
    set_error("cannot set the name to verify");
    return;
  }
  // TLS 1.3 tickets need nothing; TLS 1.2 tickets are an extension to ask
  // for (see TlsClientConfig::tls12_tickets for why it is off by default).
  if (client_->tls12_tickets()) wolfSSL_UseSessionTicket(ssl_.get());
  // A stale or foreign saved session is no error: the handshake is then full.
  if (resume) wolfSSL_set_session(ssl_.get(), resume->native());
}

TlsSession::TlsSession(TlsSession&&) noexcept = default;
TlsSession& TlsSession::operator=(TlsSession&&) noexcept = default;
TlsSession::~TlsSession() = default;

void TlsSession::attach_io() {
  wolfSSL_SSLSetIORecv(ssl_.get(), on_recv);
  wolfSSL_SSLSetIOSend(ssl_.get(), on_send);
  wolfSSL_SetIOReadCtx(ssl_.get(), io_.get());
  wolfSSL_SetIOWriteCtx(ssl_.get(), io_.get());
}

void TlsSession::set_error(std::string reason) {
  if (error_.empty()) error_ = std::move(reason);
}

void TlsSession::feed_ciphertext(std::string_view bytes) {
  if (failed() || bytes.empty()) return;
  Io& io = *io_;
  if (io.head.size() < kHeadBytes) {
    io.head.append(bytes.substr(0, kHeadBytes - io.head.size()));
  }
  if (io.in.size() - io.in_pos + bytes.size() > kMaxBufferedCiphertext) {
    set_error("too much ciphertext buffered (over " + std::to_string(kMaxBufferedCiphertext) +
              " bytes not yet read)");
    return;
  }
  // Drop what wolfSSL has read before the buffer grows.
  if (io.in_pos > 0 && io.in_pos >= io.in.size() / 2) {
    io.in.erase(0, io.in_pos);
    io.in_pos = 0;
  }
  io.in.append(bytes);
}

void TlsSession::feed_eof() {
  io_->eof = true;
}

size_t TlsSession::buffered_ciphertext() const {
  return io_->in.size() - io_->in_pos;
}

std::string_view TlsSession::pending_ciphertext() const {
  return std::string_view(io_->out).substr(io_->out_pos);
}

void TlsSession::consume_ciphertext(size_t n) {
  Io& io = *io_;
  io.out_pos += std::min(n, io.out.size() - io.out_pos);
  if (io.out_pos == io.out.size()) {
    io.out.clear();
    io.out_pos = 0;
  }
}

HandshakeResult TlsSession::handshake() {
  if (failed()) return {HandshakeResult::Status::failed, error_};
  if (done_) return {HandshakeResult::Status::done, {}};
  // Every TLS peer opens with a handshake record (22), or at worst an alert
  // (21), of major version 3. Anything else is someone speaking plaintext.
  const std::string_view head = io_->head;
  if (!head.empty() && (static_cast<unsigned char>(head[0]) & 0x80) != 0 && is_server()) {
    // The SSLv2 record format: only very old clients still send it.
    set_error("unsupported SSLv2-format ClientHello");
    return {HandshakeResult::Status::failed, error_};
  }
  if ((!head.empty() && head[0] != 0x16 && head[0] != 0x15) ||
      (head.size() >= 2 && head[1] != 0x03)) {
    set_error("not TLS: the peer sent \"" + excerpt(head) + "\"");
    return {HandshakeResult::Status::failed, error_};
  }
  const int ret = wolfSSL_negotiate(ssl_.get());
  if (ret == WOLFSSL_SUCCESS) {
    finish_handshake();
    return {HandshakeResult::Status::done, {}};
  }
  return fail_handshake(ret);
}

HandshakeResult TlsSession::fail_handshake(int ret) {
  const int err = wolfSSL_get_error(ssl_.get(), ret);
  if (err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE) {
    return {HandshakeResult::Status::want_more, {}};
  }
  set_error(describe_error(err));
  return {HandshakeResult::Status::failed, error_};
}

std::string TlsSession::describe_error(int err) const {
  if (err == WOLFSSL_ERROR_ZERO_RETURN || err == WOLFSSL_ERROR_SYSCALL ||
      err == SOCKET_PEER_CLOSED_E || err == SOCKET_ERROR_E) {
    if (!done_) return "peer closed the connection during the handshake";
    return "peer closed the connection";
  }
  switch (err) {
    case MATCH_SUITE_ERROR:
    case UNSUPPORTED_SUITE: return "no shared cipher";
    case VERSION_ERROR: return "unsupported protocol version";
    case AES_GCM_AUTH_E:
    case AES_CCM_AUTH_E:
    case MAC_CMP_FAILED_E:
    case VERIFY_MAC_ERROR:
    case DECRYPT_ERROR: return "record authentication failed (data altered in transit)";
    case DOMAIN_NAME_MISMATCH: return "certificate name mismatch";
    case ASN_AFTER_DATE_E: return "certificate expired";
    case ASN_NO_SIGNER_E: return "certificate not signed by a trusted CA";
    case ASN_SELF_SIGNED_E: return "self-signed certificate not trusted";
    case FATAL_ERROR: {
      WOLFSSL_ALERT_HISTORY history{};
      wolfSSL_get_alert_history(ssl_.get(), &history);
      const int code = history.last_rx.code;
      std::string_view name = alert_name(code);
      if (code == 70) return "protocol version rejected by the peer (alert protocol_version)";
      if (code == 40 || code == 71) {
        return "peer found no common cipher or parameters (alert " + std::string(name) + ")";
      }
      if (!name.empty()) return "peer sent fatal alert " + std::string(name);
      return "peer sent fatal alert " + std::to_string(code);
    }
    default: break;
  }
  return wolf_string(err);
}

void TlsSession::finish_handshake() {
  done_ = true;
  WOLFSSL* ssl = ssl_.get();
  version_ = version_name(wolfSSL_version(ssl));
  const int suite = wolfSSL_get_current_cipher_suite(ssl);
  const char* iana = wolfSSL_get_cipher_name_iana_from_suite(
      static_cast<unsigned char>((suite >> 8) & 0xff), static_cast<unsigned char>(suite & 0xff));
  cipher_ = iana != nullptr ? iana : "";
  const char* group = wolfSSL_get_curve_name(ssl);
  group_ = group != nullptr ? group : "";
  resumed_ = wolfSSL_session_reused(ssl) != 0;
  if (is_server()) {
    const char* name = wolfSSL_get_servername(ssl, WOLFSSL_SNI_HOST_NAME);
    server_name_ = name != nullptr ? name : "";
  }
}

ReadResult TlsSession::read_plaintext(std::string& out) {
  ReadResult result;
  if (failed()) {
    result.status = ReadResult::Status::failed;
    result.reason = error_;
    return result;
  }
  if (!done_) {
    // Reading drives the handshake too; report it the same way.
    HandshakeResult hs = handshake();
    if (hs.failed()) {
      result.status = ReadResult::Status::failed;
      result.reason = std::move(hs.reason);
      return result;
    }
    if (hs.want_more()) return result;
  }
  for (;;) {
    const size_t old = out.size();
    out.resize(old + kPlaintextChunk);
    const int ret = wolfSSL_read(ssl_.get(), out.data() + old, static_cast<int>(kPlaintextChunk));
    out.resize(old + (ret > 0 ? static_cast<size_t>(ret) : 0));
    if (ret > 0) {
      result.bytes += static_cast<size_t>(ret);
      continue;
    }
    const int err = wolfSSL_get_error(ssl_.get(), ret);
    if (err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE) break;
    if (err == WOLFSSL_ERROR_ZERO_RETURN) {
      result.status = ReadResult::Status::closed;
    } else if (io_->eof && buffered_ciphertext() == 0 &&
               (err == WOLFSSL_ERROR_SYSCALL || err == SOCKET_PEER_CLOSED_E ||
                err == SOCKET_ERROR_E)) {
      // Not an error for SMTP (the protocol knows where a message ends) but
      // worth a log line: a truncation attack looks the same.
      result.status = ReadResult::Status::closed;
      result.reason = "connection closed without close_notify";
    } else {
      set_error(describe_error(err));
      result.status = ReadResult::Status::failed;
      result.reason = error_;
    }
    // Plaintext decrypted before the end is in `out`; `bytes` counts it.
    return result;
  }
  result.status = result.bytes > 0 ? ReadResult::Status::data : ReadResult::Status::want_more;
  return result;
}

bool TlsSession::write_plaintext(std::string_view data) {
  if (failed() || !done_ || closed_) return false;
  while (!data.empty()) {
    const size_t n = std::min(data.size(), kWriteChunk);
    const int ret = wolfSSL_write(ssl_.get(), data.data(), static_cast<int>(n));
    if (ret <= 0) {
      set_error(describe_error(wolfSSL_get_error(ssl_.get(), ret)));
      return false;
    }
    data.remove_prefix(static_cast<size_t>(ret));
  }
  return true;
}

void TlsSession::close() {
  if (closed_ || failed() || !ssl_) return;
  closed_ = true;
  // Mid-handshake there is nothing to protect: the owner just drops the
  // transport.
  if (!done_) return;
  // Our half only: the peer's close_notify is not awaited (SMTP closes the
  // transport right after).
  wolfSSL_shutdown(ssl_.get());
}

std::string TlsSession::peer_certificate_cn() const {
  if (!done_) return {};
  WOLFSSL_X509* cert = wolfSSL_get_peer_certificate(ssl_.get());
  if (cert == nullptr) return {};
  std::string cn;
  if (WOLFSSL_X509_NAME* subject = wolfSSL_X509_get_subject_name(cert)) {
    char buf[256] = {};
    if (wolfSSL_X509_NAME_get_text_by_NID(subject, NID_commonName, buf, sizeof(buf)) > 0) cn = buf;
  }
  // With the OpenSSL compatibility layer built in, the caller owns a reference.
  wolfSSL_X509_free(cert);
  return cn;
}

std::shared_ptr<const TlsSavedSession> TlsSession::saved_session() const {
  if (is_server() || !done_ || failed()) return nullptr;
  WOLFSSL_SESSION* session = wolfSSL_get1_session(ssl_.get());
  if (session == nullptr) return nullptr;
  return std::make_shared<const TlsSavedSession>(session);
}

}  // namespace ringmx
