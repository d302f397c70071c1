// One TLS connection as a sans-I/O engine: the owner feeds the ciphertext it
// received, drives the handshake, reads and writes plaintext, and sends
// whatever pending_ciphertext() holds (then consumes it). wolfSSL talks to
// memory buffers through custom I/O callbacks and never blocks: "want more"
// means "feed more ciphertext". No socket, no clock, no thread of its own; one
// session is used by one thread at a time.
//
// After any call, pending_ciphertext() may have grown (handshake messages,
// tickets, key updates, alerts): send it, even after a failure (it may hold
// the alert that tells the peer why).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "tls/tls_context.h"

struct WOLFSSL;
struct WOLFSSL_SESSION;

namespace ringmx {

struct HandshakeResult {
  enum class Status : uint8_t { done, want_more, failed };
  Status status = Status::want_more;
  std::string reason;  // failed only: a short sentence for the log

  bool done() const { return status == Status::done; }
  bool want_more() const { return status == Status::want_more; }
  bool failed() const { return status == Status::failed; }
};

struct ReadResult {
  // data: plaintext was appended; want_more: nothing yet, feed more
  // ciphertext; closed: the peer ended the stream (close_notify, or the
  // transport closed: then `reason` says so); failed: see `reason`. `bytes`
  // counts what this call appended, whatever the status (plaintext decrypted
  // before a close or an error is still handed out).
  enum class Status : uint8_t { data, want_more, closed, failed };
  Status status = Status::want_more;
  size_t bytes = 0;
  std::string reason;
};

// A client's resumption state (session ticket or id), taken from a finished
// connection and handed to the next one to the same server.
class TlsSavedSession {
 public:
  explicit TlsSavedSession(WOLFSSL_SESSION* session) : session_(session) {}
  TlsSavedSession(const TlsSavedSession&) = delete;
  TlsSavedSession& operator=(const TlsSavedSession&) = delete;
  ~TlsSavedSession();
  WOLFSSL_SESSION* native() const { return session_; }

 private:
  WOLFSSL_SESSION* session_;
};

class TlsSession {
 public:
  // Ciphertext fed but not yet taken by wolfSSL, at most. A reader that keeps
  // up never holds more than one record (about 16 KiB); past this the session
  // fails instead of growing.
  static constexpr size_t kMaxBufferedCiphertext = size_t{64} * 1024;

  // Server side: starts on the context's default certificate; SNI may switch it.
  explicit TlsSession(std::shared_ptr<const TlsServerContext> context);
  // Client side. `server_name` goes into SNI unless it is an address literal
  // (RFC 6066), and is checked against the certificate when the context
  // verifies; `resume` offers a saved session.
  TlsSession(std::shared_ptr<const TlsClientContext> context, std::string_view server_name,
             const std::shared_ptr<const TlsSavedSession>& resume = nullptr);
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;
  TlsSession(TlsSession&&) noexcept;
  TlsSession& operator=(TlsSession&&) noexcept;
  ~TlsSession();

  // Ciphertext in from the network. Past kMaxBufferedCiphertext the bytes are
  // dropped and the session fails (the next call reports it).
  void feed_ciphertext(std::string_view bytes);
  // The transport reached end of stream: nothing more will be fed.
  void feed_eof();
  // Ciphertext fed and not yet consumed by wolfSSL.
  size_t buffered_ciphertext() const;

  // Drives the handshake as far as the fed ciphertext allows.
  HandshakeResult handshake();
  bool handshake_done() const { return done_; }

  // Decrypts every complete record and appends the plaintext to `out`.
  ReadResult read_plaintext(std::string& out);
  // Encrypts `data` into records (after the handshake). False on failure.
  bool write_plaintext(std::string_view data);
  // Queues a close_notify alert; nothing may be written afterwards.
  void close();

  std::string_view pending_ciphertext() const;
  void consume_ciphertext(size_t n);

  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }
  bool is_server() const { return server_ != nullptr; }

  // After the handshake.
  std::string_view version() const { return version_; }  // "TLS1_3", "TLS1_2"
  std::string_view cipher() const { return cipher_; }    // IANA, "TLS_AES_128_GCM_SHA256"
  std::string_view group() const { return group_; }      // key exchange, "X25519"
  // The SNI name: what the client asked for (server side) or sent (client side).
  std::string_view server_name() const { return server_name_; }
  bool resumed() const { return resumed_; }
  // Subject CN of the peer's leaf certificate, "" without one.
  std::string peer_certificate_cn() const;
  // Client side: the state to resume this session later, or nullptr. With
  // TLS 1.3 the ticket arrives after the handshake: call this after a
  // read_plaintext() has processed the server's first flight of tickets.
  std::shared_ptr<const TlsSavedSession> saved_session() const;

 private:
  struct Io;
  struct SslFree {
    void operator()(WOLFSSL* ssl) const noexcept;
  };

  // wolfSSL's I/O callbacks; `ctx` is the session's Io.
  static int on_recv(WOLFSSL* ssl, char* buf, int size, void* ctx);
  static int on_send(WOLFSSL* ssl, char* buf, int size, void* ctx);
  void attach_io();
  HandshakeResult fail_handshake(int ret);
  void set_error(std::string reason);
  void finish_handshake();
  std::string describe_error(int err) const;

  // Order matters: the WOLFSSL must go before the contexts it points into.
  std::shared_ptr<const TlsServerContext> server_;
  std::shared_ptr<const TlsClientContext> client_;
  std::unique_ptr<Io> io_;
  std::unique_ptr<WOLFSSL, SslFree> ssl_;
  bool done_ = false;
  bool resumed_ = false;
  bool closed_ = false;
  std::string error_;
  std::string version_;
  std::string cipher_;
  std::string group_;
  std::string server_name_;
};

}  // namespace ringmx
