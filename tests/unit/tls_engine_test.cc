// The TLS engine without sockets: a client TlsSession and a server TlsSession
// in one process, ciphertext pumped between them through memory. Covers the
// handshakes (TLS 1.3, 1.2, resumption, SNI), data both ways, every way a
// handshake should fail cleanly, and context loading errors. Certificates are
// made at test time with the openssl command in a mkdtemp directory removed
// after the suite (the expired one through `openssl ca`, the only 3.0 command
// that takes explicit validity dates).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "tls/tls_context.h"
#include "tls/tls_session.h"

namespace ringmx {
namespace {

namespace fs = std::filesystem;

// notAfter of the expired certificate: 2020-01-02T00:00:00Z.
constexpr int64_t kExpiredNotAfter = 1577923200;

void run(const std::string& cmd) {
  const std::string full = cmd + " >/dev/null 2>&1";
  if (std::system(full.c_str()) != 0) throw std::runtime_error("command failed: " + cmd);
}

void write_file(const fs::path& path, std::string_view data) {
  std::ofstream(path, std::ios::binary) << data;
}

class TlsEngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string pattern = (fs::temp_directory_path() / "ringmx-tls-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = pattern;
    const std::string d = dir_.string();
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    run("openssl req -x509 " + ec + " -days 1 -subj /CN=mx.test -keyout " + d + "/ec.key -out " +
        d + "/ec.pem");
    run("openssl req -x509 " + ec + " -days 1 -subj /CN=client.test -keyout " + d +
        "/client.key -out " + d + "/client.pem");
    run("openssl req -x509 " + ec + " -days 1 -subj /CN=star.wild.test -keyout " + d +
        "/wild.key -out " + d + "/wild.pem");
    run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " + d +
        "/stranger.key");
    // The expired certificate: self-signed by `openssl ca` with fixed dates.
    write_file(dir_ / "ca.cnf",
               "[ca]\ndefault_ca = d\n[d]\ndatabase = " + d + "/index.txt\nnew_certs_dir = " + d +
                   "\nserial = " + d +
                   "/serial\ndefault_md = sha256\npolicy = p\nunique_subject = no\n"
                   "[p]\ncommonName = supplied\n");
    write_file(dir_ / "index.txt", "");
    write_file(dir_ / "serial", "01\n");
    run("openssl req -new " + ec + " -subj /CN=expired.test -keyout " + d + "/expired.key -out " +
        d + "/expired.csr");
    run("openssl ca -batch -notext -config " + d + "/ca.cnf -selfsign -keyfile " + d +
        "/expired.key -in " + d + "/expired.csr -startdate 20200101000000Z -enddate " +
        "20200102000000Z -out " + d + "/expired.pem");
    const std::string encrypted = d + "/encrypted.key";
    run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -aes256 -pass pass:x "
        "-out " +
        encrypted);
    write_file(dir_ / "garbage.pem", "this is not a PEM file\n");
  }

  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // The RSA files are made on first use: RSA key generation takes most of the
  // set-up time, and ctest runs every test in a process of its own.
  static std::string path(std::string_view name) {
    const std::string d = dir_.string();
    if (name.rfind("rsa.", 0) == 0 && !fs::exists(dir_ / "rsa.pem")) {
      run("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=other.test -keyout " + d +
          "/rsa.key -out " + d + "/rsa.pem");
    }
    if (name == "stranger-rsa.key" && !fs::exists(dir_ / name)) {
      run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " + d +
          "/stranger-rsa.key");
    }
    return (dir_ / name).string();
  }

  // The default certificate plus an RSA one for "other.test" and an EC one
  // for "*.wild.test".
  static TlsServerConfig sni_config() {
    TlsServerConfig config = server_config();
    config.sni.push_back({"Other.Test", path("rsa.pem"), path("rsa.key")});
    config.sni.push_back({"*.wild.test", path("wild.pem"), path("wild.key")});
    return config;
  }

  static TlsServerConfig server_config() {
    TlsServerConfig config;
    config.cert_chain_file = path("ec.pem");
    config.key_file = path("ec.key");
    return config;
  }

  static std::shared_ptr<const TlsServerContext> default_server() {
    return TlsServerContext::create(server_config());
  }

  static std::shared_ptr<const TlsClientContext> client_context(TlsClientConfig config = {}) {
    return TlsClientContext::create(config);
  }

  static inline fs::path dir_;
};

// Moves everything `from` has to send into `to`. True if anything moved.
bool move_bytes(TlsSession& from, TlsSession& to) {
  const std::string_view out = from.pending_ciphertext();
  if (out.empty()) return false;
  to.feed_ciphertext(out);
  from.consume_ciphertext(out.size());
  return true;
}

struct Outcome {
  HandshakeResult client;
  HandshakeResult server;
};

// Runs both handshakes until both are done, or one failed and its last words
// (an alert, say) reached the other, or nothing moves any more.
Outcome handshake(TlsSession& client, TlsSession& server) {
  Outcome o;
  for (int round = 0; round < 32; ++round) {
    o.client = client.handshake();
    bool moved = move_bytes(client, server);
    o.server = server.handshake();
    moved = move_bytes(server, client) || moved;
    if (o.client.done() && o.server.done() && !moved) break;
    if (!moved && (o.client.failed() || o.server.failed())) {
      o.client = client.handshake();
      o.server = server.handshake();
      break;
    }
  }
  return o;
}

// Lets the client take in what the server sent after its handshake (TLS 1.3
// tickets). Returns whatever plaintext arrived, which should be none.
std::string settle(TlsSession& client, TlsSession& server) {
  std::string plain;
  move_bytes(server, client);
  const ReadResult r = client.read_plaintext(plain);
  EXPECT_NE(r.status, ReadResult::Status::failed) << r.reason;
  return plain;
}

// Sends `data` from `from` to `to` in writes of random size, moving the
// ciphertext in random slices and reading after each one.
std::string send_plain(TlsSession& from, TlsSession& to, std::string_view data, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string received;
  while (!data.empty()) {
    const size_t n = std::min<size_t>(data.size(), rng() % 70000 + 1);
    EXPECT_TRUE(from.write_plaintext(data.substr(0, n)));
    data.remove_prefix(n);
    while (!from.pending_ciphertext().empty()) {
      const std::string_view out = from.pending_ciphertext();
      const size_t slice = std::min<size_t>(out.size(), rng() % 20000 + 1);
      to.feed_ciphertext(out.substr(0, slice));
      from.consume_ciphertext(slice);
      const ReadResult r = to.read_plaintext(received);
      EXPECT_TRUE(r.status == ReadResult::Status::data || r.status == ReadResult::Status::want_more)
          << r.reason;
    }
  }
  return received;
}

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

TEST_F(TlsEngineTest, Tls13HandshakeAndDataBothWays) {
  TlsSession server(default_server());
  TlsSession client(client_context(), "mx.test");
  const Outcome o = handshake(client, server);
  ASSERT_TRUE(o.client.done()) << o.client.reason;
  ASSERT_TRUE(o.server.done()) << o.server.reason;
  EXPECT_TRUE(settle(client, server).empty());

  for (const TlsSession* s : {&client, &server}) {
    EXPECT_EQ(s->version(), "TLS1_3");
    EXPECT_EQ(s->cipher(), "TLS_CHACHA20_POLY1305_SHA256");
    EXPECT_EQ(s->group(), "X25519");
    EXPECT_EQ(s->server_name(), "mx.test");
    EXPECT_FALSE(s->resumed());
  }
  EXPECT_EQ(client.peer_certificate_cn(), "mx.test");
  EXPECT_EQ(server.peer_certificate_cn(), "");

  EXPECT_EQ(send_plain(client, server, "EHLO client.test\r\n", 1), "EHLO client.test\r\n");
  EXPECT_EQ(send_plain(server, client, "250 mx.test\r\n", 2), "250 mx.test\r\n");
  const std::string big = random_bytes(1 << 20, 3);
  EXPECT_TRUE(send_plain(client, server, big, 4) == big);
  EXPECT_TRUE(send_plain(server, client, big, 5) == big);
  EXPECT_EQ(server.buffered_ciphertext(), 0U);
  EXPECT_EQ(client.buffered_ciphertext(), 0U);
}

TEST_F(TlsEngineTest, Tls12ForcedByTheClient) {
  TlsClientConfig cc;
  cc.max_version = TlsVersion::tls1_2;
  TlsSession server(default_server());
  TlsSession client(client_context(cc), "mx.test");
  const Outcome o = handshake(client, server);
  ASSERT_TRUE(o.client.done()) << o.client.reason;
  ASSERT_TRUE(o.server.done()) << o.server.reason;
  for (const TlsSession* s : {&client, &server}) {
    EXPECT_EQ(s->version(), "TLS1_2");
    EXPECT_EQ(s->cipher(), "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256");
  }
  const std::string big = random_bytes(300000, 6);
  EXPECT_TRUE(send_plain(client, server, big, 7) == big);
  EXPECT_TRUE(send_plain(server, client, big, 8) == big);
}

TEST_F(TlsEngineTest, AesGcmForAClientWithoutChaCha) {
  TlsClientConfig cc;
  cc.ciphers = "TLS13-AES256-GCM-SHA384:TLS13-AES128-GCM-SHA256";
  TlsSession server(default_server());
  TlsSession client(client_context(cc), "mx.test");
  const Outcome o = handshake(client, server);
  ASSERT_TRUE(o.server.done()) << o.server.reason;
  EXPECT_EQ(server.cipher(), "TLS_AES_128_GCM_SHA256");
}

// Whose order picks the cipher when both sides offer several: what decides
// whether the server's preference (ChaCha20 first on a build without AES-NI)
// can take effect.
TEST_F(TlsEngineTest, ServerCipherOrderDecides) {
  TlsServerConfig sc = server_config();
  sc.ciphers = "TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES128-GCM-SHA256";
  TlsClientConfig cc;
  cc.ciphers = "TLS13-AES128-GCM-SHA256:TLS13-CHACHA20-POLY1305-SHA256";
  TlsSession server(TlsServerContext::create(sc));
  TlsSession client(client_context(cc), "mx.test");
  const Outcome o = handshake(client, server);
  ASSERT_TRUE(o.server.done()) << o.server.reason;
  EXPECT_EQ(server.cipher(), "TLS_CHACHA20_POLY1305_SHA256");
}

// Two connections from one client context; the second offers what the first
// saved. `max` picks the protocol; `tls12_tickets` TLS 1.2 tickets rather than
// session ids.
void expect_resumption(const std::shared_ptr<const TlsServerContext>& server_ctx, TlsVersion max,
                       std::string_view name, bool tls12_tickets = false) {
  SCOPED_TRACE(std::string(tls_version_name(max)) + " " + std::string(name) +
               (tls12_tickets ? " tls12_tickets" : ""));
  TlsClientConfig cc;
  cc.max_version = max;
  cc.tls12_tickets = tls12_tickets;
  auto client_ctx = TlsClientContext::create(cc);
  std::shared_ptr<const TlsSavedSession> saved;
  {
    TlsSession server(server_ctx);
    TlsSession client(client_ctx, name);
    const Outcome o = handshake(client, server);
    ASSERT_TRUE(o.client.done()) << o.client.reason;
    ASSERT_TRUE(o.server.done()) << o.server.reason;
    settle(client, server);
    EXPECT_FALSE(client.resumed());
    saved = client.saved_session();
    ASSERT_NE(saved, nullptr);
  }
  TlsSession server(server_ctx);
  TlsSession client(client_ctx, name, saved);
  const Outcome o = handshake(client, server);
  ASSERT_TRUE(o.client.done()) << o.client.reason;
  ASSERT_TRUE(o.server.done()) << o.server.reason;
  settle(client, server);
  EXPECT_TRUE(client.resumed());
  EXPECT_TRUE(server.resumed());
  EXPECT_EQ(client.version(), tls_version_name(max));
  EXPECT_EQ(server.server_name(), name);
  EXPECT_EQ(send_plain(client, server, "QUIT\r\n", 9), "QUIT\r\n");
  EXPECT_EQ(send_plain(server, client, "221 bye\r\n", 10), "221 bye\r\n");
}

TEST_F(TlsEngineTest, TicketResumptionTls13) {
  expect_resumption(default_server(), TlsVersion::tls1_3, "mx.test");
}

TEST_F(TlsEngineTest, ResumptionTls12TicketsAndSessionIds) {
  auto ctx = default_server();
  expect_resumption(ctx, TlsVersion::tls1_2, "mx.test", true);
  expect_resumption(ctx, TlsVersion::tls1_2, "mx.test", false);
}

TEST_F(TlsEngineTest, NoResumptionWithTicketsOff) {
  TlsServerConfig config = server_config();
  config.session_tickets = false;
  auto server_ctx = TlsServerContext::create(config);
  auto client_ctx = client_context();
  std::shared_ptr<const TlsSavedSession> saved;
  {
    TlsSession server(server_ctx);
    TlsSession client(client_ctx, "mx.test");
    ASSERT_TRUE(handshake(client, server).server.done());
    settle(client, server);
    saved = client.saved_session();
  }
  TlsSession server(server_ctx);
  TlsSession client(client_ctx, "mx.test", saved);
  ASSERT_TRUE(handshake(client, server).server.done());
  EXPECT_FALSE(server.resumed());
}

// One full handshake from `client_ctx` to `server_ctx`, offering `saved`;
// returns the client's saved session afterwards and whether it resumed.
std::shared_ptr<const TlsSavedSession> connect_once(
    const std::shared_ptr<const TlsServerContext>& server_ctx,
    const std::shared_ptr<const TlsClientContext>& client_ctx,
    const std::shared_ptr<const TlsSavedSession>& saved, bool* resumed) {
  TlsSession server(server_ctx);
  TlsSession client(client_ctx, "mx.test", saved);
  const Outcome o = handshake(client, server);
  EXPECT_TRUE(o.client.done()) << o.client.reason;
  EXPECT_TRUE(o.server.done()) << o.server.reason;
  settle(client, server);
  *resumed = server.resumed();
  EXPECT_EQ(client.resumed(), server.resumed());
  return client.saved_session();
}

TEST_F(TlsEngineTest, TicketKeyRotationAndReload) {
  {
    SCOPED_TRACE("TLS1_3");
    auto server_ctx = default_server();
    auto client_ctx = client_context();
    bool resumed = true;
    auto saved = connect_once(server_ctx, client_ctx, nullptr, &resumed);
    EXPECT_FALSE(resumed);
    // One rotation: the ticket is under the previous key, still good.
    server_ctx->rotate_ticket_keys();
    connect_once(server_ctx, client_ctx, saved, &resumed);
    EXPECT_TRUE(resumed);
    // Two rotations: too old, a full handshake (not a failure).
    server_ctx->rotate_ticket_keys();
    server_ctx->rotate_ticket_keys();
    connect_once(server_ctx, client_ctx, saved, &resumed);
    EXPECT_FALSE(resumed);
    // A reloaded context has keys of its own.
    saved = connect_once(server_ctx, client_ctx, nullptr, &resumed);
    connect_once(default_server(), client_ctx, saved, &resumed);
    EXPECT_FALSE(resumed);
  }
  SCOPED_TRACE("TLS1_2 tickets");
  auto server_ctx = default_server();
  TlsClientConfig cc;
  cc.max_version = TlsVersion::tls1_2;
  cc.tls12_tickets = true;
  auto client_ctx = client_context(cc);
  bool resumed = true;
  auto saved = connect_once(server_ctx, client_ctx, nullptr, &resumed);
  server_ctx->rotate_ticket_keys();
  connect_once(server_ctx, client_ctx, saved, &resumed);
  EXPECT_TRUE(resumed);
  // A ticket under a retired key is refused by the server, which starts a
  // full handshake (OpenSSL's s_client then completes it; checked by hand).
  // The wolfSSL 5.5.4 client takes the reply for a resumption and fails: the
  // reason TlsClientConfig::tls12_tickets is off by default.
  server_ctx->rotate_ticket_keys();
  server_ctx->rotate_ticket_keys();
  TlsSession server(server_ctx);
  TlsSession client(client_ctx, "mx.test", saved);
  const Outcome o = handshake(client, server);
  EXPECT_FALSE(server.resumed());
  EXPECT_EQ(o.client.reason, "Out of order message, fatal (-373)");
}

TEST_F(TlsEngineTest, GroupsFollowTheConfig) {
  TlsServerConfig config = server_config();
  config.groups = "P-256";
  TlsSession server(TlsServerContext::create(config));
  TlsSession client(client_context(), "mx.test");  // offers an X25519 key share first
  const Outcome o = handshake(client, server);
  ASSERT_TRUE(o.server.done()) << o.server.reason;
  EXPECT_EQ(server.group(), "SECP256R1");
  EXPECT_EQ(client.group(), "SECP256R1");

  TlsClientConfig cc;
  cc.groups = "secp256r1";
  TlsSession server2(default_server());
  TlsSession client2(client_context(cc), "mx.test");
  ASSERT_TRUE(handshake(client2, server2).server.done());
  EXPECT_EQ(server2.group(), "SECP256R1");
}

// The certificate CN a client sees when it asks for `name` (max version `max`).
std::string served_cn(const std::shared_ptr<const TlsServerContext>& ctx, std::string_view name,
                      TlsVersion max, std::string* server_saw = nullptr) {
  TlsClientConfig cc;
  cc.max_version = max;
  TlsSession server(ctx);
  TlsSession client(TlsClientContext::create(cc), name);
  const Outcome o = handshake(client, server);
  if (!o.client.done() || !o.server.done()) {
    return "failed: " + o.client.reason + " / " + o.server.reason;
  }
  if (server_saw != nullptr) *server_saw = std::string(server.server_name());
  EXPECT_EQ(send_plain(client, server, "NOOP\r\n", 10), "NOOP\r\n");
  EXPECT_EQ(send_plain(server, client, "250 ok\r\n", 11), "250 ok\r\n");
  return client.peer_certificate_cn();
}

TEST_F(TlsEngineTest, SniPicksTheSecondCertificate) {
  auto ctx = TlsServerContext::create(sni_config());
  for (TlsVersion v : {TlsVersion::tls1_3, TlsVersion::tls1_2}) {
    SCOPED_TRACE(std::string(tls_version_name(v)));
    std::string saw;
    EXPECT_EQ(served_cn(ctx, "other.test", v, &saw), "other.test");  // an RSA certificate
    EXPECT_EQ(saw, "other.test");
    EXPECT_EQ(served_cn(ctx, "OTHER.test.", v), "other.test");
    EXPECT_EQ(served_cn(ctx, "a.wild.test", v), "star.wild.test");
    EXPECT_EQ(served_cn(ctx, "a.b.wild.test", v), "mx.test");
    EXPECT_EQ(served_cn(ctx, "wild.test", v), "mx.test");
    EXPECT_EQ(served_cn(ctx, "mx.test", v), "mx.test");
    EXPECT_EQ(served_cn(ctx, "unknown.test", v), "mx.test");
    EXPECT_EQ(served_cn(ctx, "", v), "mx.test");
  }
  ASSERT_EQ(ctx->certificates().size(), 3U);
  EXPECT_EQ(ctx->certificates()[1].name, "Other.Test");
  EXPECT_EQ(ctx->certificates()[1].subject_cn, "other.test");
}

// The SNI switch and resumption: TLS 1.2 tickets used to fail here because
// each wolfSSL context had its own ticket key (see TlsTicketKeys).
TEST_F(TlsEngineTest, SniAndResumptionTogether) {
  auto ctx = TlsServerContext::create(sni_config());
  expect_resumption(ctx, TlsVersion::tls1_3, "other.test");
  expect_resumption(ctx, TlsVersion::tls1_2, "other.test", true);
  expect_resumption(ctx, TlsVersion::tls1_2, "other.test", false);
  expect_resumption(ctx, TlsVersion::tls1_3, "a.wild.test");
}

TEST_F(TlsEngineTest, RsaDefaultCertificate) {
  TlsServerConfig config;
  config.cert_chain_file = path("rsa.pem");
  config.key_file = path("rsa.key");
  auto ctx = TlsServerContext::create(config);
  EXPECT_EQ(served_cn(ctx, "", TlsVersion::tls1_3), "other.test");
  EXPECT_EQ(served_cn(ctx, "", TlsVersion::tls1_2), "other.test");
}

TEST_F(TlsEngineTest, Tls11ClientFailsWithAProtocolVersionReason) {
  TlsClientConfig cc;
  cc.min_version = TlsVersion::tls1_1;
  cc.max_version = TlsVersion::tls1_1;
  cc.ciphers = "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:AES128-SHA";
  TlsSession server(default_server());
  TlsSession client(client_context(cc), "mx.test");
  const Outcome o = handshake(client, server);
  ASSERT_TRUE(o.server.failed());
  EXPECT_EQ(o.server.reason, "unsupported protocol version");
  ASSERT_TRUE(o.client.failed());
  EXPECT_NE(o.client.reason.find("protocol_version"), std::string::npos) << o.client.reason;
  EXPECT_FALSE(server.write_plaintext("x"));
}

TEST_F(TlsEngineTest, PlaintextInsteadOfClientHelloFailsCleanly) {
  TlsSession server(default_server());
  server.feed_ciphertext("EHLO client.test\r\n");
  const HandshakeResult r = server.handshake();
  ASSERT_TRUE(r.failed());
  EXPECT_EQ(r.reason, "not TLS: the peer sent \"EHLO client.test\"");
  EXPECT_TRUE(server.pending_ciphertext().empty());
  std::string plain;
  EXPECT_EQ(server.read_plaintext(plain).status, ReadResult::Status::failed);
  EXPECT_TRUE(server.handshake().failed());
}

TEST_F(TlsEngineTest, SslV2HelloIsRefusedByName) {
  TlsSession server(default_server());
  server.feed_ciphertext(std::string_view("\x80\x2e\x01\x03\x01\x00\x15", 7));
  const HandshakeResult r = server.handshake();
  ASSERT_TRUE(r.failed());
  EXPECT_EQ(r.reason, "unsupported SSLv2-format ClientHello");
}

TEST_F(TlsEngineTest, NoSniForAddressLiterals) {
  for (const char* name : {"192.0.2.1", "2001:db8::1"}) {
    TlsSession server(default_server());
    TlsSession client(client_context(), name);
    ASSERT_TRUE(handshake(client, server).server.done());
    EXPECT_EQ(server.server_name(), "");
    EXPECT_EQ(client.server_name(), name);
  }
}

TEST_F(TlsEngineTest, GarbageRecordsFailCleanly) {
  // Record headers that look like TLS, then noise; and pure noise.
  for (uint32_t seed = 0; seed < 64; ++seed) {
    std::string bytes = random_bytes(1 + seed * 37, seed);
    if (seed % 2 == 0) bytes.replace(0, std::min<size_t>(bytes.size(), 3), "\x16\x03\x01", 3);
    TlsSession server(default_server());
    server.feed_ciphertext(bytes);
    HandshakeResult r = server.handshake();
    if (r.want_more()) {
      server.feed_eof();
      r = server.handshake();
    }
    ASSERT_TRUE(r.failed()) << seed;
    EXPECT_FALSE(r.reason.empty());
  }
}

TEST_F(TlsEngineTest, TruncatedClientHelloThenPeerClose) {
  TlsSession server(default_server());
  TlsSession client(client_context(), "mx.test");
  ASSERT_TRUE(client.handshake().want_more());
  const std::string_view hello = client.pending_ciphertext();
  ASSERT_GT(hello.size(), 100U);
  server.feed_ciphertext(hello.substr(0, hello.size() / 2));
  EXPECT_TRUE(server.handshake().want_more());
  server.feed_eof();
  const HandshakeResult r = server.handshake();
  ASSERT_TRUE(r.failed());
  EXPECT_EQ(r.reason, "peer closed the connection during the handshake");
}

TEST_F(TlsEngineTest, PeerCloseBeforeAnything) {
  TlsSession server(default_server());
  server.feed_eof();
  const HandshakeResult r = server.handshake();
  ASSERT_TRUE(r.failed());
  EXPECT_EQ(r.reason, "peer closed the connection during the handshake");
}

TEST_F(TlsEngineTest, NoSharedCipher) {
  struct Case {
    const char* ciphers;
    TlsVersion max;
  };
  // CCM is AEAD but not on the server's list; the TLS 1.2 one is CBC.
  for (const Case& c : {Case{"TLS13-AES128-CCM-SHA256", TlsVersion::tls1_3},
                        Case{"ECDHE-ECDSA-AES128-SHA256", TlsVersion::tls1_2}}) {
    SCOPED_TRACE(c.ciphers);
    TlsClientConfig cc;
    cc.ciphers = c.ciphers;
    cc.max_version = c.max;
    TlsSession server(default_server());
    TlsSession client(client_context(cc), "mx.test");
    const Outcome o = handshake(client, server);
    ASSERT_TRUE(o.server.failed());
    EXPECT_EQ(o.server.reason, "no shared cipher");
    ASSERT_TRUE(o.client.failed());
    EXPECT_NE(o.client.reason.find("handshake_failure"), std::string::npos) << o.client.reason;
  }
}

TEST_F(TlsEngineTest, DefaultServerRefusesTls11AndWeakSuites) {
  // Every suite here is compiled into this wolfSSL and was negotiated by a
  // server context left on wolfSSL's defaults.
  struct Weak {
    const char* suite;
    TlsVersion max;
  };
  const Weak weak[] = {
      {"ECDHE-ECDSA-NULL-SHA", TlsVersion::tls1_2},
      {"ECDHE-ECDSA-RC4-SHA", TlsVersion::tls1_2},
      {"ECDHE-ECDSA-DES-CBC3-SHA", TlsVersion::tls1_2},
      {"ECDHE-ECDSA-AES128-SHA", TlsVersion::tls1_2},     // CBC
      {"ECDHE-ECDSA-AES128-SHA256", TlsVersion::tls1_2},  // CBC
      {"ECDHE-RSA-RC4-SHA", TlsVersion::tls1_2},
      {"ECDHE-RSA-DES-CBC3-SHA", TlsVersion::tls1_2},
      {"ECDHE-RSA-AES128-SHA", TlsVersion::tls1_2},
      {"ECDHE-ECDSA-AES128-CCM-8", TlsVersion::tls1_2},   // short tag
      {"ADH-AES128-SHA", TlsVersion::tls1_2},             // anonymous
      {"ADH-AES256-GCM-SHA384", TlsVersion::tls1_2},      // anonymous
      {"DHE-RSA-AES128-GCM-SHA256", TlsVersion::tls1_2},  // not on the list
      {"TLS13-SHA256-SHA256", TlsVersion::tls1_3},        // integrity only
      {"TLS13-SHA384-SHA384", TlsVersion::tls1_3},
      {"TLS13-AES128-CCM-8-SHA256", TlsVersion::tls1_3},
  };
  // With SNI entries too: the second certificate is RSA, and switching to it
  // must not bring wolfSSL's default suites back.
  auto sni_ctx = TlsServerContext::create(sni_config());
  int tried = 0;
  for (const Weak& w : weak) {
    SCOPED_TRACE(w.suite);
    TlsClientConfig cc;
    cc.ciphers = w.suite;
    cc.max_version = w.max;
    std::shared_ptr<const TlsClientContext> ctx;
    try {
      ctx = client_context(cc);
    } catch (const std::runtime_error&) {
      continue;  // not in this build at all
    }
    ++tried;
    for (const char* name : {"mx.test", "other.test", "a.wild.test"}) {
      SCOPED_TRACE(name);
      TlsSession server(sni_ctx);
      TlsSession client(ctx, name);
      const Outcome o = handshake(client, server);
      EXPECT_TRUE(o.server.failed());
      EXPECT_EQ(o.server.reason, "no shared cipher");
      EXPECT_FALSE(o.client.done());
    }
  }
  // All of them are in Debian's wolfSSL 5.5.4; a build without some would
  // need a look at this test.
  EXPECT_EQ(tried, 15);

  TlsClientConfig cc;
  cc.min_version = TlsVersion::tls1_1;
  cc.max_version = TlsVersion::tls1_1;
  cc.ciphers = "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-RSA-DES-CBC3-SHA";
  for (const char* name : {"mx.test", "other.test"}) {
    TlsSession server(sni_ctx);
    TlsSession client(client_context(cc), name);
    EXPECT_EQ(handshake(client, server).server.reason, "unsupported protocol version");
  }
}

TEST_F(TlsEngineTest, ServerWithTls13OnlyRefusesTls12) {
  TlsServerConfig config = server_config();
  config.min_version = TlsVersion::tls1_3;
  TlsClientConfig cc;
  cc.max_version = TlsVersion::tls1_2;
  TlsSession server(TlsServerContext::create(config));
  TlsSession client(client_context(cc), "mx.test");
  const Outcome o = handshake(client, server);
  ASSERT_TRUE(o.server.failed());
  EXPECT_EQ(o.server.reason, "unsupported protocol version");
}

TEST_F(TlsEngineTest, TooMuchBufferedCiphertextFails) {
  TlsSession server(default_server());
  TlsSession client(client_context(), "mx.test");
  ASSERT_TRUE(handshake(client, server).server.done());
  settle(client, server);
  // The client keeps sending; the server never reads.
  ASSERT_TRUE(client.write_plaintext(std::string(TlsSession::kMaxBufferedCiphertext, 'x')));
  const std::string_view out = client.pending_ciphertext();
  server.feed_ciphertext(out.substr(0, TlsSession::kMaxBufferedCiphertext));
  EXPECT_FALSE(server.failed());
  server.feed_ciphertext(out.substr(TlsSession::kMaxBufferedCiphertext));
  EXPECT_TRUE(server.failed());
  std::string plain;
  const ReadResult r = server.read_plaintext(plain);
  EXPECT_EQ(r.status, ReadResult::Status::failed);
  EXPECT_NE(r.reason.find("too much ciphertext"), std::string::npos) << r.reason;
}

TEST_F(TlsEngineTest, TamperedRecordFailsTheSession) {
  TlsSession server(default_server());
  TlsSession client(client_context(), "mx.test");
  ASSERT_TRUE(handshake(client, server).server.done());
  settle(client, server);
  ASSERT_TRUE(client.write_plaintext("MAIL FROM:<a@example.org>\r\n"));
  std::string record(client.pending_ciphertext());
  client.consume_ciphertext(record.size());
  record[record.size() - 3] ^= 0x01;  // inside the AEAD tag
  server.feed_ciphertext(record);
  std::string plain;
  const ReadResult r = server.read_plaintext(plain);
  EXPECT_EQ(r.status, ReadResult::Status::failed);
  EXPECT_EQ(r.bytes, 0U);
  EXPECT_TRUE(plain.empty());
  EXPECT_EQ(r.reason, "record authentication failed (data altered in transit)");
  EXPECT_FALSE(server.pending_ciphertext().empty());  // the bad_record_mac alert
  EXPECT_FALSE(server.write_plaintext("250 ok\r\n"));
  // The client learns why.
  move_bytes(server, client);
  const ReadResult c = client.read_plaintext(plain);
  EXPECT_EQ(c.status, ReadResult::Status::failed);
  EXPECT_EQ(c.reason, "peer sent fatal alert bad_record_mac");
}

TEST_F(TlsEngineTest, CloseNotifyAndBareEof) {
  TlsSession server(default_server());
  TlsSession client(client_context(), "mx.test");
  ASSERT_TRUE(handshake(client, server).server.done());
  settle(client, server);
  ASSERT_TRUE(server.write_plaintext("221 bye\r\n"));
  server.close();
  EXPECT_FALSE(server.write_plaintext("more"));
  move_bytes(server, client);
  std::string plain;
  ReadResult r = client.read_plaintext(plain);
  EXPECT_EQ(r.status, ReadResult::Status::closed);
  EXPECT_EQ(r.bytes, 9U);
  EXPECT_EQ(plain, "221 bye\r\n");
  EXPECT_TRUE(r.reason.empty());

  // The client's transport ends with no close_notify.
  server.feed_eof();
  plain.clear();
  r = server.read_plaintext(plain);
  EXPECT_EQ(r.status, ReadResult::Status::closed);
  EXPECT_EQ(r.reason, "connection closed without close_notify");
}

TEST_F(TlsEngineTest, ClientCertificateRequestedNotRequired) {
  TlsServerConfig config = server_config();
  config.request_client_cert = true;
  auto ctx = TlsServerContext::create(config);
  {
    TlsSession server(ctx);
    TlsSession client(client_context(), "mx.test");
    const Outcome o = handshake(client, server);
    ASSERT_TRUE(o.server.done()) << o.server.reason;
    EXPECT_EQ(server.peer_certificate_cn(), "");
  }
  TlsClientConfig cc;
  cc.cert_chain_file = path("client.pem");
  cc.key_file = path("client.key");
  TlsSession server(ctx);
  TlsSession client(client_context(cc), "mx.test");
  const Outcome o = handshake(client, server);
  ASSERT_TRUE(o.server.done()) << o.server.reason;
  EXPECT_EQ(server.peer_certificate_cn(), "client.test");
}

TEST_F(TlsEngineTest, ClientVerification) {
  TlsClientConfig cc;
  cc.ca_file = path("ec.pem");  // self-signed: its own anchor
  auto verifying = client_context(cc);
  {
    TlsSession server(default_server());
    TlsSession client(verifying, "mx.test");
    const Outcome o = handshake(client, server);
    EXPECT_TRUE(o.client.done()) << o.client.reason;
  }
  {
    TlsSession server(default_server());
    TlsSession client(verifying, "wrong.test");
    const Outcome o = handshake(client, server);
    ASSERT_TRUE(o.client.failed());
    EXPECT_EQ(o.client.reason, "certificate name mismatch");
    EXPECT_TRUE(o.server.failed());
  }
  cc.ca_file = path("rsa.pem");
  TlsSession server(default_server());
  TlsSession client(client_context(cc), "mx.test");
  const Outcome o = handshake(client, server);
  ASSERT_TRUE(o.client.failed());
  EXPECT_EQ(o.client.reason, "self-signed certificate not trusted");
}

TEST_F(TlsEngineTest, SessionsKeepTheirContextAcrossAReload) {
  auto ctx = default_server();
  TlsSession server(ctx);
  ctx = TlsServerContext::create(sni_config());  // the "reload"
  TlsSession client(client_context(), "other.test");
  ASSERT_TRUE(handshake(client, server).server.done());
  EXPECT_EQ(client.peer_certificate_cn(), "mx.test");  // the old context had no SNI entry
  TlsSession moved = std::move(server);
  EXPECT_EQ(send_plain(client, moved, "RSET\r\n", 12), "RSET\r\n");
}

TEST_F(TlsEngineTest, NothingBeforeTheHandshake) {
  TlsSession server(default_server());
  EXPECT_FALSE(server.write_plaintext("220 early\r\n"));
  std::string plain;
  EXPECT_EQ(server.read_plaintext(plain).status, ReadResult::Status::want_more);
  EXPECT_TRUE(server.version().empty());
  EXPECT_EQ(server.peer_certificate_cn(), "");
}

// Context loading.

std::string load_error(const TlsServerConfig& config) {
  try {
    TlsServerContext ctx(config);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "no error";
}

TEST_F(TlsEngineTest, MissingFilesNameTheFile) {
  TlsServerConfig config = server_config();
  config.cert_chain_file = path("nope.pem");
  EXPECT_EQ(load_error(config),
            "TLS certificate '" + path("nope.pem") + "': No such file or directory");
  config = server_config();
  config.key_file = path("nope.key");
  EXPECT_EQ(load_error(config),
            "TLS private key '" + path("nope.key") + "': No such file or directory");
  config = server_config();
  config.sni.push_back({"x.test", path("rsa.pem"), path("missing.key")});
  EXPECT_NE(load_error(config).find(path("missing.key")), std::string::npos);
  EXPECT_EQ(load_error(TlsServerConfig{}), "TLS certificate: no file configured");
}

TEST_F(TlsEngineTest, UnreadablePemNamesFileAndReason) {
  TlsServerConfig config = server_config();
  config.cert_chain_file = path("garbage.pem");
  const std::string err = load_error(config);
  EXPECT_EQ(err.rfind("TLS certificate '" + path("garbage.pem") + "': ", 0), 0U) << err;
  EXPECT_NE(err.find("PEM"), std::string::npos) << err;

  EXPECT_EQ(err, "TLS certificate '" + path("garbage.pem") +
                     "': no '-----BEGIN CERTIFICATE-----' block; wolfSSL: ASN no PEM Header "
                     "Error (-162)");

  config = server_config();
  config.key_file = path("ec.pem");  // a certificate where the key should be
  const std::string key_err = load_error(config);
  EXPECT_EQ(key_err.rfind("TLS private key '" + path("ec.pem") + "': ", 0), 0U) << key_err;
  EXPECT_NE(key_err.find("PRIVATE KEY"), std::string::npos) << key_err;

  config.key_file = path("encrypted.key");
  EXPECT_NE(load_error(config).find("encrypted keys are not supported"), std::string::npos);
  config.key_file = dir_.string();
  EXPECT_EQ(load_error(config), "TLS private key '" + dir_.string() + "': Is a directory");
}

TEST_F(TlsEngineTest, MismatchedKeyIsAClearError) {
  // Same type and curve, another key: wolfSSL's own check passes this one.
  TlsServerConfig config = server_config();
  config.key_file = path("stranger.key");
  EXPECT_EQ(load_error(config), "TLS private key '" + path("stranger.key") +
                                    "': does not match the certificate in '" + path("ec.pem") +
                                    "' (different EC public key)");
  config.key_file = path("rsa.key");  // another key type altogether
  EXPECT_EQ(load_error(config), "TLS private key '" + path("rsa.key") +
                                    "': does not match the certificate in '" + path("ec.pem") +
                                    "' (different public key)");
  config.cert_chain_file = path("rsa.pem");  // RSA with another RSA key: wolfSSL's own check
  config.key_file = path("stranger-rsa.key");
  EXPECT_EQ(load_error(config), "TLS private key '" + path("stranger-rsa.key") +
                                    "': does not match the certificate in '" + path("rsa.pem") +
                                    "' (different public key)");
  config.key_file = path("rsa.key");
  EXPECT_EQ(load_error(config), "no error");
  config.sni.push_back({"x.test", path("rsa.pem"), path("ec.key")});
  EXPECT_NE(load_error(config).find("does not match the certificate in '" + path("rsa.pem")),
            std::string::npos);
}

TEST_F(TlsEngineTest, BadSettingsAreClearErrors) {
  TlsServerConfig config = server_config();
  config.min_version = TlsVersion::tls1_1;
  EXPECT_NE(load_error(config).find("below TLS1_2"), std::string::npos);
  config = server_config();
  config.ciphers = "NO-SUCH-CIPHER";
  EXPECT_NE(load_error(config).find("cipher list"), std::string::npos);
  config = server_config();
  config.groups = "P-1024";
  EXPECT_NE(load_error(config).find("groups"), std::string::npos);
  config = server_config();
  config.sni.push_back({"a.*.test", path("rsa.pem"), path("rsa.key")});
  EXPECT_NE(load_error(config).find("wildcard"), std::string::npos);
}

TEST_F(TlsEngineTest, ClientContextErrors) {
  TlsClientConfig cc;
  cc.ca_file = path("nope.pem");
  try {
    TlsClientContext ctx(cc);
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()),
              "TLS CA file '" + path("nope.pem") + "': No such file or directory");
  }
  cc = {};
  cc.min_version = TlsVersion::tls1_3;
  cc.max_version = TlsVersion::tls1_2;
  EXPECT_THROW(TlsClientContext{cc}, std::runtime_error);
}

TEST_F(TlsEngineTest, ExpiredCertificateIsReportedNotRefused) {
  TlsServerConfig config = server_config();
  config.sni.push_back({"old.test", path("expired.pem"), path("expired.key")});
  auto ctx = TlsServerContext::create(config);
  const auto& certs = ctx->certificates();
  ASSERT_EQ(certs.size(), 2U);
  EXPECT_EQ(certs[0].name, "");
  EXPECT_EQ(certs[0].file, path("ec.pem"));
  EXPECT_EQ(certs[0].subject_cn, "mx.test");
  EXPECT_FALSE(certs[0].expired);
  EXPECT_GT(certs[0].not_after, static_cast<int64_t>(std::time(nullptr)));
  EXPECT_LE(certs[0].not_after, static_cast<int64_t>(std::time(nullptr)) + 2 * 86400);
  EXPECT_EQ(certs[1].name, "old.test");
  EXPECT_EQ(certs[1].subject_cn, "expired.test");
  EXPECT_EQ(certs[1].not_after, kExpiredNotAfter);
  EXPECT_TRUE(certs[1].expired);
  // And it is still served: expiry is the operator's call, not a refusal.
  EXPECT_EQ(served_cn(ctx, "old.test", TlsVersion::tls1_3), "expired.test");
}

TEST(TlsVersionName, Names) {
  EXPECT_EQ(tls_version_name(TlsVersion::tls1_1), "TLS1_1");
  EXPECT_EQ(tls_version_name(TlsVersion::tls1_2), "TLS1_2");
  EXPECT_EQ(tls_version_name(TlsVersion::tls1_3), "TLS1_3");
}

}  // namespace
}  // namespace ringmx
