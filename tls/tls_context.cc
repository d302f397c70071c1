// Building wolfSSL contexts from configs. Files are read here (so a missing or
// unreadable file is reported with errno's words) and handed to wolfSSL's
// buffer loaders (so its reason comes back as a return code, not through a
// per-thread error queue). Every context gets the same hardening: a minimum
// version, an explicit AEAD-only cipher list, explicit groups; wolfSSL's own
// defaults on this build negotiate TLS 1.1, RC4, 3DES and NULL suites.
#include <wolfssl/options.h>

#include <wolfssl/error-ssl.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include "tls/tls_context.h"

#include <sys/random.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iterator>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace ringmx {
namespace {

struct X509Free {
  void operator()(WOLFSSL_X509* x509) const noexcept { wolfSSL_X509_free(x509); }
};
using X509Ptr = std::unique_ptr<WOLFSSL_X509, X509Free>;

std::string wolf_reason(int code) {
  char buf[WOLFSSL_MAX_ERROR_SZ] = {};
  // wolfSSL takes the (negative) code through an unsigned long and casts it
  // back to int.
  wolfSSL_ERR_error_string_n(static_cast<unsigned long>(static_cast<long>(code)), buf, sizeof(buf));
  return std::string(buf) + " (" + std::to_string(code) + ")";
}

// wolfSSL's reason for a PEM it could not load, with the usual causes said
// in words first.
std::string pem_reason(int code, std::string_view block) {
  std::string hint;
  if (code == ASN_NO_PEM_HEADER) {
    hint = "no '-----BEGIN " + std::string(block) + "-----' block; ";
  } else if (code == NO_PASSWORD) {
    hint = "encrypted keys are not supported, store it unencrypted (mode 0600); ";
  } else if (code == WOLFSSL_BAD_FILE || code == ASN_PARSE_E) {
    hint = "malformed PEM or DER; ";
  }
  return hint + "wolfSSL: " + wolf_reason(code);
}

[[noreturn]] void fail(std::string_view what, std::string_view file, std::string_view reason) {
  std::string msg(what);
  if (!file.empty()) {
    msg.append(" '").append(file).append("'");
  }
  msg.append(": ").append(reason);
  throw std::runtime_error(msg);
}

// PEM files are a few KiB; the cap keeps a wrong path (a log, a disk image)
// from being read whole.
constexpr size_t kMaxPemFile = 1 << 20;

struct FileClose {
  void operator()(std::FILE* f) const noexcept { std::fclose(f); }
};

std::string read_file(std::string_view what, const std::string& path) {
  if (path.empty()) fail(what, path, "no file configured");
  std::unique_ptr<std::FILE, FileClose> f(std::fopen(path.c_str(), "rbe"));
  if (!f) fail(what, path, std::strerror(errno));
  std::string data;
  char buf[8192];
  for (;;) {
    const size_t n = std::fread(buf, 1, sizeof(buf), f.get());
    data.append(buf, n);
    if (data.size() > kMaxPemFile) fail(what, path, "larger than 1 MiB: not a PEM file");
    if (n < sizeof(buf)) break;
  }
  if (std::ferror(f.get()) != 0) fail(what, path, std::strerror(errno));
  if (data.empty()) fail(what, path, "file is empty");
  return data;
}

int version_code(TlsVersion v) {
  switch (v) {
    case TlsVersion::tls1_1: return WOLFSSL_TLSV1_1;
    case TlsVersion::tls1_2: return WOLFSSL_TLSV1_2;
    case TlsVersion::tls1_3: return WOLFSSL_TLSV1_3;
  }
  return WOLFSSL_TLSV1_3;
}

int proto_version(TlsVersion v) {
  switch (v) {
    case TlsVersion::tls1_1: return TLS1_1_VERSION;
    case TlsVersion::tls1_2: return TLS1_2_VERSION;
    case TlsVersion::tls1_3: return TLS1_3_VERSION;
  }
  return TLS1_3_VERSION;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  });
  return out;
}

std::string_view strip_dot(std::string_view s) {
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  return s;
}

// "X25519:P-256" to wolfSSL's group numbers; OpenSSL's spellings too.
std::vector<int> group_ids(std::string_view list) {
  struct Name {
    std::string_view name;
    int id;
  };
  static constexpr Name kGroups[] = {
      {"x25519", WOLFSSL_ECC_X25519},       {"x448", WOLFSSL_ECC_X448},
      {"p-256", WOLFSSL_ECC_SECP256R1},     {"prime256v1", WOLFSSL_ECC_SECP256R1},
      {"secp256r1", WOLFSSL_ECC_SECP256R1}, {"p-384", WOLFSSL_ECC_SECP384R1},
      {"secp384r1", WOLFSSL_ECC_SECP384R1}, {"p-521", WOLFSSL_ECC_SECP521R1},
      {"secp521r1", WOLFSSL_ECC_SECP521R1}, {"ffdhe2048", WOLFSSL_FFDHE_2048},
      {"ffdhe3072", WOLFSSL_FFDHE_3072},
  };
  std::vector<int> ids;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(':', start);
    if (end == std::string_view::npos) end = list.size();
    const std::string name = lower(list.substr(start, end - start));
    const auto* it = std::find_if(std::begin(kGroups), std::end(kGroups),
                                  [&](const Name& g) { return g.name == name; });
    if (it == std::end(kGroups)) {
      fail("TLS groups", list, "unknown group '" + name + "'");
    }
    if (std::find(ids.begin(), ids.end(), it->id) == ids.end()) ids.push_back(it->id);
    start = end + 1;
  }
  if (ids.size() > WOLFSSL_MAX_GROUP_COUNT) fail("TLS groups", list, "too many groups");
  return ids;
}

// The settings every context of ours shares; `min`/`max` bound the versions.
WolfCtxPtr new_context(bool server, TlsVersion min, TlsVersion max, const std::string& ciphers,
                       const std::string& groups) {
  ensure_wolfssl_initialised();
  // The v23 methods speak every version this build has; the bounds below
  // narrow them.
  WolfCtxPtr ctx(wolfSSL_CTX_new(server ? wolfSSLv23_server_method() : wolfSSLv23_client_method()));
  if (!ctx) throw std::runtime_error("TLS: wolfSSL_CTX_new failed (out of memory?)");
  if (int rc = wolfSSL_CTX_SetMinVersion(ctx.get(), version_code(min)); rc != WOLFSSL_SUCCESS) {
    fail("TLS minimum version", "", wolf_reason(rc));
  }
  if (wolfSSL_CTX_set_max_proto_version(ctx.get(), proto_version(max)) != WOLFSSL_SUCCESS) {
    fail("TLS maximum version", "", "rejected by wolfSSL");
  }
  if (wolfSSL_CTX_set_cipher_list(ctx.get(), ciphers.c_str()) != WOLFSSL_SUCCESS) {
    fail("TLS cipher list", ciphers, "no usable cipher suite in it");
  }
  // wolfSSL_CTX_set1_groups_list on this build knows "P-256" but not
  // "X25519", so the names are mapped here and set by number.
  std::vector<int> ids = group_ids(groups);
  if (wolfSSL_CTX_set_groups(ctx.get(), ids.data(), static_cast<int>(ids.size())) !=
      WOLFSSL_SUCCESS) {
    fail("TLS groups", groups, "rejected by wolfSSL");
  }
  return ctx;
}

struct EccKey {
  EccKey() { ready = wc_ecc_init(&key) == 0; }
  EccKey(const EccKey&) = delete;
  EccKey& operator=(const EccKey&) = delete;
  ~EccKey() { wc_ecc_free(&key); }
  ecc_key key{};
  bool ready = false;
};

// wolfSSL_CTX_check_private_key on this build catches a key of the wrong type
// and a wrong RSA key, but passes any P-256 key with any P-256 certificate.
// So for EC certificates the public point is derived from the private key and
// compared with the certificate's. Returns "" when they match or the
// certificate is not EC, else the reason.
std::string ec_key_mismatch(const std::string& cert_pem, const std::string& key_pem) {
  X509Ptr x509(wolfSSL_X509_load_certificate_buffer(
      reinterpret_cast<const unsigned char*>(cert_pem.data()), static_cast<int>(cert_pem.size()),
      WOLFSSL_FILETYPE_PEM));
  if (!x509) return "cannot parse the certificate";
  int spki_len = 0;
  if (wolfSSL_X509_get_pubkey_buffer(x509.get(), nullptr, &spki_len) != WOLFSSL_SUCCESS ||
      spki_len <= 0) {
    return "cannot read the certificate's public key";
  }
  std::vector<unsigned char> spki(static_cast<size_t>(spki_len));
  if (wolfSSL_X509_get_pubkey_buffer(x509.get(), spki.data(), &spki_len) != WOLFSSL_SUCCESS) {
    return "cannot read the certificate's public key";
  }
  auto cert_key = std::make_unique<EccKey>();
  word32 idx = 0;
  if (!cert_key->ready || wc_EccPublicKeyDecode(spki.data(), &idx, &cert_key->key,
                                                static_cast<word32>(spki_len)) != 0) {
    return "";  // not EC: wolfSSL's own check stands
  }
  std::vector<unsigned char> der(key_pem.size());
  const int der_len = wc_KeyPemToDer(reinterpret_cast<const unsigned char*>(key_pem.data()),
                                     static_cast<int>(key_pem.size()), der.data(),
                                     static_cast<int>(der.size()), nullptr);
  auto priv = std::make_unique<EccKey>();
  idx = 0;
  const bool decoded =
      der_len > 0 && priv->ready &&
      wc_EccPrivateKeyDecode(der.data(), &idx, &priv->key, static_cast<word32>(der_len)) == 0;
  explicit_bzero(der.data(), der.size());
  if (!decoded) return "not an EC private key";
  if (wc_ecc_make_pub(&priv->key, nullptr) != 0) return "cannot derive the public key";
  unsigned char a[256];
  unsigned char b[256];
  word32 a_len = sizeof(a);
  word32 b_len = sizeof(b);
  if (wc_ecc_export_x963(&priv->key, a, &a_len) != 0 ||
      wc_ecc_export_x963(&cert_key->key, b, &b_len) != 0) {
    return "cannot export the public keys";
  }
  if (a_len != b_len || std::memcmp(a, b, a_len) != 0) return "different EC public key";
  return "";
}

// Loads the pair into `ctx`; returns the certificate PEM.
std::string load_key_pair(WOLFSSL_CTX* ctx, const std::string& cert_file,
                          const std::string& key_file) {
  std::string cert = read_file("TLS certificate", cert_file);
  int rc = wolfSSL_CTX_use_certificate_chain_buffer_format(
      ctx, reinterpret_cast<const unsigned char*>(cert.data()), static_cast<long>(cert.size()),
      WOLFSSL_FILETYPE_PEM);
  if (rc != WOLFSSL_SUCCESS) fail("TLS certificate", cert_file, pem_reason(rc, "CERTIFICATE"));
  const std::string key = read_file("TLS private key", key_file);
  rc = wolfSSL_CTX_use_PrivateKey_buffer(ctx, reinterpret_cast<const unsigned char*>(key.data()),
                                         static_cast<long>(key.size()), WOLFSSL_FILETYPE_PEM);
  if (rc != WOLFSSL_SUCCESS) fail("TLS private key", key_file, pem_reason(rc, "PRIVATE KEY"));
  rc = wolfSSL_CTX_check_private_key(ctx);
  // WOLFSSL_FAILURE is the plain "no" of this check, not an error code.
  std::string why = rc == WOLFSSL_SUCCESS   ? ec_key_mismatch(cert, key)
                    : rc == WOLFSSL_FAILURE ? "different public key"
                                            : wolf_reason(rc);
  if (!why.empty()) {
    fail("TLS private key", key_file,
         "does not match the certificate in '" + cert_file + "' (" + why + ")");
  }
  return cert;
}

// The leaf (first) certificate of a chain, for certificates().
TlsCertificateInfo describe_certificate(std::string name, const std::string& cert_file,
                                        const std::string& pem, std::time_t now) {
  X509Ptr x509(
      wolfSSL_X509_load_certificate_buffer(reinterpret_cast<const unsigned char*>(pem.data()),
                                           static_cast<int>(pem.size()), WOLFSSL_FILETYPE_PEM));
  if (!x509) fail("TLS certificate", cert_file, "cannot parse the first certificate");
  TlsCertificateInfo info;
  info.name = std::move(name);
  info.file = cert_file;
  if (WOLFSSL_X509_NAME* subject = wolfSSL_X509_get_subject_name(x509.get())) {
    char cn[256] = {};
    if (wolfSSL_X509_NAME_get_text_by_NID(subject, NID_commonName, cn, sizeof(cn)) > 0) {
      info.subject_cn = cn;
    }
  }
  const WOLFSSL_ASN1_TIME* not_after = wolfSSL_X509_get_notAfter(x509.get());
  std::tm tm{};
  if (not_after == nullptr || wolfSSL_ASN1_TIME_to_tm(not_after, &tm) != WOLFSSL_SUCCESS) {
    fail("TLS certificate", cert_file, "cannot read its notAfter date");
  }
  info.not_after = static_cast<int64_t>(timegm(&tm));
  info.expired = info.not_after < static_cast<int64_t>(now);
  return info;
}

// Fills `out` from the kernel's CSPRNG; no lock, no state, fine from any
// thread.
bool random_fill(unsigned char* out, size_t n) {
  while (n > 0) {
    const ssize_t got = getrandom(out, n, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    out += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}

}  // namespace

// Session-ticket keys shared by every wolfSSL context of one
// TlsServerContext. wolfSSL's built-in ticket keys are per WOLFSSL_CTX, and
// with them a TLS 1.2 ticket issued after an SNI switch was never accepted:
// the ClientHello's ticket is opened before the SNI callback runs, so with the
// default context's key. Every returning TLS 1.2 SNI client did a full
// handshake (and a wolfSSL client failed it, see TlsClientConfig). One key set
// for all contexts makes the order irrelevant. ChaCha20-Poly1305 (the fastest
// AEAD here without AES-NI), key name and IV as associated data; a new key
// every hour, the previous one still accepted.
struct TlsTicketKeys {
  static constexpr auto kLifetime = std::chrono::hours(1);

  struct Key {
    unsigned char name[WOLFSSL_TICKET_NAME_SZ] = {};
    unsigned char secret[CHACHA20_POLY1305_AEAD_KEYSIZE] = {};
  };

  TlsTicketKeys() {
    if (!make(current)) throw std::runtime_error("TLS: no random bytes for session tickets");
    created = std::chrono::steady_clock::now();
  }
  TlsTicketKeys(const TlsTicketKeys&) = delete;
  TlsTicketKeys& operator=(const TlsTicketKeys&) = delete;
  ~TlsTicketKeys() {
    explicit_bzero(&current, sizeof(current));
    explicit_bzero(&previous, sizeof(previous));
  }

  static bool make(Key& k) {
    return random_fill(k.name, sizeof(k.name)) && random_fill(k.secret, sizeof(k.secret));
  }

  // Callers hold `mu`.
  bool rotate_locked() {
    Key next;
    if (!make(next)) return false;
    previous = current;
    has_previous = true;
    current = next;
    explicit_bzero(&next, sizeof(next));
    created = std::chrono::steady_clock::now();
    return true;
  }

  // The key to encrypt a new ticket with.
  bool encrypting(Key& out) {
    const std::lock_guard<std::mutex> lock(mu);
    if (std::chrono::steady_clock::now() - created >= kLifetime && !rotate_locked()) return false;
    out = current;
    return true;
  }

  // The key a ticket names; `old` when it is the previous one.
  bool decrypting(const unsigned char* name, Key& out, bool& old) {
    const std::lock_guard<std::mutex> lock(mu);
    if (std::memcmp(name, current.name, sizeof(current.name)) == 0) {
      out = current;
      old = false;
      return true;
    }
    if (has_previous && std::memcmp(name, previous.name, sizeof(previous.name)) == 0) {
      out = previous;
      old = true;
      return true;
    }
    return false;
  }

  std::mutex mu;
  Key current;
  Key previous;
  bool has_previous = false;
  std::chrono::steady_clock::time_point created;
};

namespace {

// wolfSSL's ticket callback: seals or opens `ticket` in place.
int on_ticket(WOLFSSL* /*ssl*/, unsigned char key_name[WOLFSSL_TICKET_NAME_SZ],
              unsigned char iv[WOLFSSL_TICKET_IV_SZ], unsigned char mac[WOLFSSL_TICKET_MAC_SZ],
              int enc, unsigned char* ticket, int in_len, int* out_len, void* arg) {
  using Keys = TlsTicketKeys;
  auto* keys = static_cast<Keys*>(arg);
  if (keys == nullptr || in_len < 0) return WOLFSSL_TICKET_RET_FATAL;
  Keys::Key key;
  bool old = false;
  unsigned char aad[WOLFSSL_TICKET_NAME_SZ + WOLFSSL_TICKET_IV_SZ];
  int rc = 0;
  if (enc != 0) {
    if (!keys->encrypting(key) || !random_fill(iv, WOLFSSL_TICKET_IV_SZ)) {
      return WOLFSSL_TICKET_RET_FATAL;
    }
    std::memcpy(key_name, key.name, WOLFSSL_TICKET_NAME_SZ);
    std::memcpy(aad, key_name, WOLFSSL_TICKET_NAME_SZ);
    std::memcpy(aad + WOLFSSL_TICKET_NAME_SZ, iv, WOLFSSL_TICKET_IV_SZ);
    // The tag takes the first 16 of wolfSSL's 32 MAC bytes; the rest are zero.
    std::memset(mac, 0, WOLFSSL_TICKET_MAC_SZ);
    rc = wc_ChaCha20Poly1305_Encrypt(key.secret, iv, aad, sizeof(aad), ticket,
                                     static_cast<word32>(in_len), ticket, mac);
  } else {
    if (!keys->decrypting(key_name, key, old)) return WOLFSSL_TICKET_RET_REJECT;
    std::memcpy(aad, key_name, WOLFSSL_TICKET_NAME_SZ);
    std::memcpy(aad + WOLFSSL_TICKET_NAME_SZ, iv, WOLFSSL_TICKET_IV_SZ);
    rc = wc_ChaCha20Poly1305_Decrypt(key.secret, iv, aad, sizeof(aad), ticket,
                                     static_cast<word32>(in_len), mac, ticket);
  }
  explicit_bzero(&key, sizeof(key));
  if (rc != 0) return enc != 0 ? WOLFSSL_TICKET_RET_FATAL : WOLFSSL_TICKET_RET_REJECT;
  *out_len = in_len;
  // A ticket under the previous key is good once more, and replaced.
  return old ? WOLFSSL_TICKET_RET_CREATE : WOLFSSL_TICKET_RET_OK;
}

// Accepts any client certificate: requested for the logs, never required.
int accept_any_client_cert(int /*preverify*/, WOLFSSL_X509_STORE_CTX* /*store*/) {
  return 1;
}

// wolfSSL calls this with the ClientHello's server name parsed; switching the
// context swaps certificate and key for the rest of the handshake. An unknown
// name keeps the default certificate (SMTP clients send all sorts of names).
int on_server_name(WOLFSSL* ssl, int* /*alert*/, void* arg) {
  const auto* self = static_cast<const TlsServerContext*>(arg);
  const char* name = wolfSSL_get_servername(ssl, WOLFSSL_SNI_HOST_NAME);
  if (name == nullptr || self == nullptr) return 0;
  // Should the switch fail (out of memory), the default certificate serves.
  if (WOLFSSL_CTX* ctx = self->context_for(name)) wolfSSL_set_SSL_CTX(ssl, ctx);
  return 0;
}

}  // namespace

void WolfCtxFree::operator()(WOLFSSL_CTX* ctx) const noexcept {
  wolfSSL_CTX_free(ctx);
}

void ensure_wolfssl_initialised() {
  // A function-local static: C++ guarantees one initialisation across threads.
  static const int kInitResult = wolfSSL_Init();
  if (kInitResult != WOLFSSL_SUCCESS) {
    throw std::runtime_error("TLS: wolfSSL_Init failed: " + wolf_reason(kInitResult));
  }
}

void tls_thread_exit() noexcept {
#ifdef FP_ECC
  // The fixed-point ECC cache is thread-local and is not freed with the
  // thread (about 800 KiB per thread that did a P-256 operation).
  wc_ecc_fp_free();
#endif
}

std::string_view tls_version_name(TlsVersion version) {
  switch (version) {
    case TlsVersion::tls1_1: return "TLS1_1";
    case TlsVersion::tls1_2: return "TLS1_2";
    case TlsVersion::tls1_3: return "TLS1_3";
  }
  return "TLS";
}

TlsServerContext::TlsServerContext(const TlsServerConfig& config) {
  if (config.min_version < TlsVersion::tls1_2) {
    throw std::runtime_error("TLS: min_version below TLS1_2 is not allowed for the server");
  }
  const std::time_t now = std::time(nullptr);
  if (config.session_tickets) tickets_ = std::make_unique<TlsTicketKeys>();
  auto make = [&](std::string name, const std::string& cert_file, const std::string& key_file) {
    WolfCtxPtr ctx =
        new_context(true, config.min_version, TlsVersion::tls1_3, config.ciphers, config.groups);
    const std::string pem = load_key_pair(ctx.get(), cert_file, key_file);
    certificates_.push_back(describe_certificate(std::move(name), cert_file, pem, now));
    if (config.request_client_cert) {
      wolfSSL_CTX_set_verify(ctx.get(), WOLFSSL_VERIFY_PEER, accept_any_client_cert);
    } else {
      wolfSSL_CTX_set_verify(ctx.get(), WOLFSSL_VERIFY_NONE, nullptr);
    }
    if (config.session_tickets) {
      wolfSSL_CTX_set_TicketEncCb(ctx.get(), on_ticket);
      wolfSSL_CTX_set_TicketEncCtx(ctx.get(), tickets_.get());
    } else {
      wolfSSL_CTX_NoTicketTLSv12(ctx.get());
      wolfSSL_CTX_no_ticket_TLSv13(ctx.get());
    }
    return ctx;
  };

  default_ = make("", config.cert_chain_file, config.key_file);
  for (const TlsSniEntry& e : config.sni) {
    std::string name = lower(strip_dot(e.server_name));
    const bool wildcard = name.size() > 2 && name.compare(0, 2, "*.") == 0;
    if (name.empty() || (!wildcard && name.find('*') != std::string::npos) ||
        (wildcard && name.find('*', 1) != std::string::npos)) {
      fail("TLS SNI entry", e.server_name, "not a host name or a '*.domain' wildcard");
    }
    if (wildcard) name.erase(0, 1);  // keep ".example.org" for suffix matching
    sni_.push_back(SniContext{name, wildcard, make(e.server_name, e.cert_chain_file, e.key_file)});
  }
  if (!sni_.empty()) {
    wolfSSL_CTX_set_servername_callback(default_.get(), on_server_name);
    wolfSSL_CTX_set_servername_arg(default_.get(), this);
  }
}

TlsServerContext::~TlsServerContext() = default;

void TlsServerContext::rotate_ticket_keys() const {
  if (!tickets_) return;
  const std::lock_guard<std::mutex> lock(tickets_->mu);
  // On failure (no randomness) the current key simply stays.
  tickets_->rotate_locked();
}

WOLFSSL_CTX* TlsServerContext::context_for(std::string_view server_name) const {
  const std::string name = lower(strip_dot(server_name));
  // Exact names win over wildcards, whatever the order in the config.
  for (const SniContext& s : sni_) {
    if (!s.wildcard && s.name == name) return s.ctx.get();
  }
  for (const SniContext& s : sni_) {
    // ".example.org" matches "a.example.org" but neither "example.org" nor
    // "a.b.example.org".
    if (s.wildcard && name.size() > s.name.size() &&
        name.compare(name.size() - s.name.size(), s.name.size(), s.name) == 0 &&
        name.find('.') == name.size() - s.name.size()) {
      return s.ctx.get();
    }
  }
  return nullptr;
}

TlsClientContext::TlsClientContext(const TlsClientConfig& config)
    : verify_peer_(!config.ca_file.empty()), tls12_tickets_(config.tls12_tickets) {
  if (config.max_version < config.min_version) {
    throw std::runtime_error("TLS: client max_version is below min_version");
  }
  ctx_ = new_context(false, config.min_version, config.max_version, config.ciphers, config.groups);
  if (verify_peer_) {
    const std::string ca = read_file("TLS CA file", config.ca_file);
    const int rc = wolfSSL_CTX_load_verify_buffer(
        ctx_.get(), reinterpret_cast<const unsigned char*>(ca.data()), static_cast<long>(ca.size()),
        WOLFSSL_FILETYPE_PEM);
    if (rc != WOLFSSL_SUCCESS) fail("TLS CA file", config.ca_file, wolf_reason(rc));
    wolfSSL_CTX_set_verify(ctx_.get(), WOLFSSL_VERIFY_PEER, nullptr);
  } else {
    wolfSSL_CTX_set_verify(ctx_.get(), WOLFSSL_VERIFY_NONE, nullptr);
  }
  if (!config.cert_chain_file.empty() || !config.key_file.empty()) {
    load_key_pair(ctx_.get(), config.cert_chain_file, config.key_file);
  }
}

TlsClientContext::~TlsClientContext() = default;

}  // namespace ringmx
