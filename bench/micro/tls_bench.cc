// Micro-benchmarks of the TLS engine on memory buffers (tls/): TLS 1.3
// handshakes with ECDSA P-256 and RSA-2048 certificates, full and resumed,
// timing the server's calls only (the client runs in the same thread, untimed),
// and the record path: one side encrypts a write, the other decrypts it.
// Certificates are made with openssl in a temporary directory at start-up.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

#include "tls/tls_context.h"
#include "tls/tls_session.h"

namespace {

using namespace ringmx;
namespace fs = std::filesystem;

// ECDSA P-256 and RSA-2048 certificates, made once per process.
const std::string& cert_dir() {
  static const std::string kDir = [] {
    std::string pattern = (fs::temp_directory_path() / "ringmx-tlsbench-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    const std::string make =
        "openssl req -x509 -nodes -days 1 -subj /CN=mx.bench -keyout " + pattern + "/ec.key -out " +
        pattern +
        "/ec.pem -newkey ec -pkeyopt ec_paramgen_curve:P-256 >/dev/null 2>&1 && "
        "openssl req -x509 -nodes -days 1 -subj /CN=mx.bench -keyout " +
        pattern + "/rsa.key -out " + pattern + "/rsa.pem -newkey rsa:2048 >/dev/null 2>&1";
    if (std::system(make.c_str()) != 0) throw std::runtime_error("openssl req failed");
    return pattern;
  }();
  return kDir;
}

std::shared_ptr<const TlsServerContext> server_context(bool rsa, bool chacha = false) {
  TlsServerConfig c;
  const std::string base = cert_dir() + (rsa ? "/rsa" : "/ec");
  c.cert_chain_file = base + ".pem";
  c.key_file = base + ".key";
  if (chacha) c.ciphers = "TLS13-CHACHA20-POLY1305-SHA256";
  return TlsServerContext::create(c);
}

// Moves what `from` wants to send into `to`.
void pump(TlsSession& from, TlsSession& to) {
  const std::string_view ct = from.pending_ciphertext();
  if (ct.empty()) return;
  to.feed_ciphertext(ct);
  from.consume_ciphertext(ct.size());
}

// Runs a handshake to the end; returns the seconds spent in the server's calls.
double handshake(TlsSession& client, TlsSession& server) {
  double server_s = 0;
  for (int round = 0; round < 16; ++round) {
    if (client.handshake().failed()) throw std::runtime_error("client: " + client.error());
    pump(client, server);
    const auto t0 = std::chrono::steady_clock::now();
    const HandshakeResult r = server.handshake();
    server_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r.failed()) throw std::runtime_error("server: " + r.reason);
    pump(server, client);
    if (client.handshake_done() && server.handshake_done()) return server_s;
  }
  throw std::runtime_error("handshake did not finish");
}

// A session ticket from one full handshake, for the resumed runs.
std::shared_ptr<const TlsSavedSession> ticket(const std::shared_ptr<const TlsServerContext>& sctx,
                                              const std::shared_ptr<const TlsClientContext>& cctx) {
  TlsSession server(sctx);
  TlsSession client(cctx, "mx.bench");
  handshake(client, server);
  std::string plain;
  client.read_plaintext(plain);  // takes the NewSessionTicket
  auto saved = client.saved_session();
  if (!saved) throw std::runtime_error("no session ticket");
  return saved;
}

// Arg 0: 0 = ECDSA P-256, 1 = RSA-2048; arg 1: 1 = resume a ticket.
void bm_tls_handshake(benchmark::State& state) {
  const bool rsa = state.range(0) == 1;
  const bool resume = state.range(1) == 1;
  const auto sctx = server_context(rsa);
  const auto cctx = TlsClientContext::create({});
  std::shared_ptr<const TlsSavedSession> saved;
  if (resume) saved = ticket(sctx, cctx);
  for (auto _ : state) {
    TlsSession server(sctx);
    TlsSession client(cctx, "mx.bench", saved);
    state.SetIterationTime(handshake(client, server));
    if (resume && !server.resumed()) {
      state.SkipWithError("the ticket was not accepted");
      break;
    }
  }
  state.SetLabel(std::string(rsa ? "RSA-2048" : "ECDSA P-256") + (resume ? ", resumed" : ", full") +
                 ", server calls only");
}
BENCHMARK(bm_tls_handshake)
    ->Args({0, 0})
    ->Args({0, 1})
    ->Args({1, 0})
    ->Args({1, 1})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

// Arg 0: bytes per write; arg 1: 1 = ChaCha20-Poly1305, else AES-128-GCM.
void bm_tls_record(benchmark::State& state) {
  const auto size = static_cast<size_t>(state.range(0));
  const bool chacha = state.range(1) == 1;
  TlsSession server(server_context(false, chacha));
  TlsSession client(TlsClientContext::create({}), "mx.bench");
  handshake(client, server);
  std::string plain;
  client.read_plaintext(plain);  // session tickets
  const std::string data(size, 'x');
  for (auto _ : state) {
    plain.clear();
    if (!server.write_plaintext(data)) throw std::runtime_error("write: " + server.error());
    pump(server, client);
    client.read_plaintext(plain);
    if (plain.size() != size) throw std::runtime_error("short read");
    benchmark::DoNotOptimize(plain.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
  state.SetLabel(std::string(server.cipher()) + ", encrypt + decrypt");
}
BENCHMARK(bm_tls_record)->Args({1 << 10, 0})->Args({16 << 10, 0})->Args({16 << 10, 1});

}  // namespace
