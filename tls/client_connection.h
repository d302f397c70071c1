// Contract: one outbound SMTP/LMTP connection (the load generator's and the relays') as a sans-I/O
// object: an SmtpClient plus what goes around it on the wire, in order: an optional preamble (the
// PROXY protocol header: the very first bytes, before TLS too), then either
// plaintext, or TLS (a ringmx::TlsSession on memory buffers) from the start
// (implicit TLS) or from the 220 to STARTTLS. The owner moves the bytes: it
// feeds what the socket received, sends what output() holds (then
// consume_output()), and calls connected() once the transport is up. The SMTP
// client is reached through smtp() (messages, QUIT, results); whatever it
// queues is encrypted when output() is next asked for.
//
// output() views: the preamble, the SMTP client's own output, or the TLS
// session's pending ciphertext. Only a referenced body (plaintext) stays put
// across calls; everything else may grow or move at the next call into this
// object: output_stable() says whether the view may be sent without copying.
//
// TLS: the handshake starts at connected() (implicit) or when the client
// wants_tls() (STARTTLS). A failed handshake ends the session with
// ErrorKind::tls. handshake_state() and the times tell the owner what to count.
// With TLS 1.3 the server's session tickets arrive after the handshake:
// saved_session() is taken once the SMTP client is ready (after the banner or
// EHLO reply that followed them) and offered by the owner to the next
// connection to the same server.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/smtp_client.h"
#include "core/stream_link.h"
#include "tls/tls_context.h"
#include "tls/tls_session.h"

namespace ringmx {

enum class TlsMode : uint8_t { none, starttls, implicit };

struct TlsClientOptions {
  TlsMode mode = TlsMode::none;
  std::shared_ptr<const TlsClientContext> context;  // required unless mode is none
  std::string server_name;                          // SNI (address literals are not sent)
};

class ClientConnection final : public StreamLink {
 public:
  enum class Handshake : uint8_t { none, running, done, failed };

  // `smtp` and `tls` must outlive the connection; `resume` may be null.
  ClientConnection(const ClientSettings& smtp, const TlsClientOptions& tls, int64_t now_ns,
                   std::shared_ptr<const TlsSavedSession> resume = nullptr);

  SmtpClient& smtp() { return client_; }
  const SmtpClient& smtp() const { return client_; }

  // Bytes to send before anything else (before connected() is called).
  void set_preamble(std::string bytes) { preamble_ = std::move(bytes); }
  // The transport is up: implicit TLS starts its handshake.
  void connected(int64_t now_ns) override;
  // Bytes received from the server.
  void feed(std::string_view bytes, int64_t now_ns) override;
  // The transport failed or the owner gave up (SmtpClient::connection_lost);
  // a handshake in progress counts as failed.
  void connection_lost(ErrorKind kind, int64_t now_ns) override;

  std::string_view output() override;
  void consume_output(size_t n) override;
  bool has_output() override;
  bool output_stable() const override {
    return preamble_off_ >= preamble_.size() && !tls_ && client_.output_is_reference();
  }

  Handshake handshake_state() const { return handshake_; }
  int64_t handshake_started_ns() const { return hs_started_ns_; }
  int64_t handshake_done_ns() const { return hs_done_ns_; }
  bool resumed() const { return tls_ && tls_->resumed(); }
  // What TLS said when it failed ("" otherwise).
  const std::string& tls_error() const { return tls_error_; }
  const TlsSession* tls() const { return tls_ ? &*tls_ : nullptr; }
  // After the handshake: "TLS1_3", "TLS_AES_128_GCM_SHA256"; "" without TLS.
  std::string_view tls_version() const;
  std::string_view tls_cipher() const;
  // The resumption state for the next connection, once the SMTP client is
  // ready after the handshake; null before, without TLS, or when the server
  // gave none.
  std::shared_ptr<const TlsSavedSession> saved_session() const;
  // The session this connection offered to resume (null: none).
  const std::shared_ptr<const TlsSavedSession>& offered_session() const { return resume_; }

 private:
  void start_tls(int64_t now_ns);
  void drive_tls(int64_t now_ns);
  void encrypt_client_output();
  void tls_failed(std::string reason, int64_t now_ns);

  SmtpClient client_;
  const TlsClientOptions& options_;
  std::shared_ptr<const TlsSavedSession> resume_;
  std::string preamble_;
  size_t preamble_off_ = 0;
  std::optional<TlsSession> tls_;
  std::string plain_;  // decrypted, for the SMTP client
  Handshake handshake_ = Handshake::none;
  int64_t hs_started_ns_ = 0;
  int64_t hs_done_ns_ = 0;
  std::string tls_error_;
};

}  // namespace ringmx
