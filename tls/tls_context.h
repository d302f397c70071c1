// TLS contexts: the shareable, immutable half of the TLS engine. A
// TlsServerContext holds the wolfSSL contexts for the default certificate and
// for each SNI name, built once from a TlsServerConfig; loading errors throw
// std::runtime_error naming the file and wolfSSL's reason. Sessions hold a
// shared_ptr to their context, so reloading is building a new context:
// sessions in flight keep the old one. A TlsClientContext is the same for the
// client side (the load generator and the tests). No wolfSSL header leaks out
// of this file (its options.h must come before anything else of wolfSSL, and
// only tls/*.cc include it). Contexts are safe to share between threads once
// built.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct WOLFSSL_CTX;

namespace ringmx {

// Protocol versions by the names the Received header and the logs use.
enum class TlsVersion : uint8_t { tls1_1, tls1_2, tls1_3 };

// "TLS1_1", "TLS1_2", "TLS1_3".
std::string_view tls_version_name(TlsVersion version);

// AEAD only: the TLS 1.3 suites, then ECDHE with ChaCha20-Poly1305 or AES-GCM
// for TLS 1.2 (wolfSSL spells the suites this way). wolfSSL's own default
// would also offer RC4, 3DES, CBC and NULL suites. The server's order decides
// (ServerCipherOrderDecides), and ChaCha20-Poly1305 comes first: Debian's
// wolfSSL has no AES-NI code, and there it moves records 2.7x faster than
// AES-128-GCM (bm_tls_record: 267 against 100 MB/s encrypt + decrypt).
inline constexpr std::string_view kTlsDefaultCiphers =
    "TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";

// Key exchange groups in order of preference: X25519 is the fastest on this
// build (no SP-asm P-256).
inline constexpr std::string_view kTlsDefaultGroups = "X25519:P-256";

// One extra certificate chosen by the server name the client asks for.
// `server_name` is exact (case-insensitive) or a "*.example.org" wildcard that
// stands for one label.
struct TlsSniEntry {
  std::string server_name;
  std::string cert_chain_file;  // PEM: leaf first, then intermediates
  std::string key_file;         // PEM, unencrypted
};

struct TlsServerConfig {
  std::string cert_chain_file;  // the default certificate (no or unknown SNI)
  std::string key_file;
  std::vector<TlsSniEntry> sni;
  TlsVersion min_version = TlsVersion::tls1_2;  // tls1_1 is refused
  std::string ciphers{kTlsDefaultCiphers};
  std::string groups{kTlsDefaultGroups};
  bool session_tickets = true;
  // Ask for a client certificate without requiring or verifying it (what MX
  // servers do: it is only logged).
  bool request_client_cert = false;
};

// What was loaded, so the caller can warn about and export expiry.
struct TlsCertificateInfo {
  std::string name;  // "" for the default certificate, else the SNI server name
  std::string file;
  std::string subject_cn;  // "" when the subject has no CN
  int64_t not_after = 0;   // unix time
  bool expired = false;    // not_after was in the past when the context was built
};

// Frees a wolfSSL context; defined where wolfSSL is visible.
struct WolfCtxFree {
  void operator()(WOLFSSL_CTX* ctx) const noexcept;
};
using WolfCtxPtr = std::unique_ptr<WOLFSSL_CTX, WolfCtxFree>;

// Session-ticket keys of one server context (tls_context.cc).
struct TlsTicketKeys;

class TlsServerContext {
 public:
  // Throws std::runtime_error on any loading or configuration error.
  explicit TlsServerContext(const TlsServerConfig& config);
  static std::shared_ptr<const TlsServerContext> create(const TlsServerConfig& config) {
    return std::make_shared<const TlsServerContext>(config);
  }
  // The SNI callback keeps a pointer to this object: it never moves.
  TlsServerContext(const TlsServerContext&) = delete;
  TlsServerContext& operator=(const TlsServerContext&) = delete;
  ~TlsServerContext();

  // The default certificate first, then each SNI entry in config order.
  const std::vector<TlsCertificateInfo>& certificates() const { return certificates_; }

  // Starts a new session-ticket key now; tickets under the previous key are
  // still accepted (and replaced), older ones are not. Happens by itself
  // every hour.
  void rotate_ticket_keys() const;

  // For TlsSession: new connections start on the default context.
  WOLFSSL_CTX* native() const { return default_.get(); }
  // The context for a requested server name: an SNI entry or nullptr.
  WOLFSSL_CTX* context_for(std::string_view server_name) const;

 private:
  struct SniContext {
    std::string name;  // lower case, without a trailing dot
    bool wildcard = false;
    WolfCtxPtr ctx;
  };

  // Declared first so it outlives the contexts that point to it.
  std::unique_ptr<TlsTicketKeys> tickets_;
  WolfCtxPtr default_;
  std::vector<SniContext> sni_;
  std::vector<TlsCertificateInfo> certificates_;
};

struct TlsClientConfig {
  // Empty: the server certificate is not verified (the MX-to-MX norm and what
  // the load generator wants). Otherwise a PEM bundle of trusted CAs; the
  // server name given to the session is then checked against the certificate.
  std::string ca_file;
  // An optional client certificate.
  std::string cert_chain_file;
  std::string key_file;
  TlsVersion min_version = TlsVersion::tls1_2;
  TlsVersion max_version = TlsVersion::tls1_3;
  std::string ciphers{kTlsDefaultCiphers};
  std::string groups{kTlsDefaultGroups};
  // TLS 1.3 tickets are always taken. TLS 1.2 resumption uses session ids
  // unless this asks for tickets: the wolfSSL 5.5.4 client, having offered a
  // TLS 1.2 ticket, treats the server's reply as a resumption whatever it is,
  // so a ticket the server no longer accepts (key rotated, server reloaded)
  // kills the handshake with "out of order message". Servers are fine.
  bool tls12_tickets = false;
};

class TlsClientContext {
 public:
  explicit TlsClientContext(const TlsClientConfig& config);
  static std::shared_ptr<const TlsClientContext> create(const TlsClientConfig& config) {
    return std::make_shared<const TlsClientContext>(config);
  }
  TlsClientContext(const TlsClientContext&) = delete;
  TlsClientContext& operator=(const TlsClientContext&) = delete;
  ~TlsClientContext();

  WOLFSSL_CTX* native() const { return ctx_.get(); }
  bool verify_peer() const { return verify_peer_; }
  bool tls12_tickets() const { return tls12_tickets_; }

 private:
  WolfCtxPtr ctx_;
  bool verify_peer_ = false;
  bool tls12_tickets_ = false;
};

// wolfSSL_Init exactly once per process, from any thread; never cleaned up
// (contexts may live until exit). Throws if wolfSSL cannot start.
void ensure_wolfssl_initialised();

// Frees this thread's wolfSSL caches (the ECC fixed-point tables): call it
// last in every thread that did TLS handshakes, or they leak at thread exit.
void tls_thread_exit() noexcept;

}  // namespace ringmx
