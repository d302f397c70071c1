// Contract: ringmx-bench, the SMTP/LMTP load generator.
//
//   ringmx-bench --target HOST:PORT --connections N --messages M
//                (--size SIZE | --size SIZE:WEIGHT,... | --eml-dir DIR)
//                [--per-connection K] [--rate MSGS_PER_S [--poisson]] [--duration S]
//                [--recipients R] [--no-pipelining] [--lmtp] [--bdat] [--json]
//                [--expect-success-rate F] [--threads T] [--source A[-B],...]
//                [--seed S] [--timeout S] [--from ADDR] [--to ADDR] [--helo NAME]
//                [--greeting ehlo|helo]
//                [--starttls | --implicit-tls] [--tls-version 1.2|1.3] [--no-resume]
//                [--sni NAME] [--proxy v1|v2 [--proxy-source A[-B],...]] [--auth USER:PASS]
//
// Closed loop by default (N connections, K messages each, M in all); open loop
// with --rate (see bench/load_runner.h). Every run is bounded by --messages and
// --duration (default 60 s) whichever comes first, plus --timeout (default
// 30 s) for what is in flight. The report goes to stdout (human-readable, or
// one JSON object with --json, keys in bench/stats.cc); a progress line is
// written to stderr once a second when stderr is a terminal. SIGINT/SIGTERM
// stop issuing and report (a second one stops at once).
// --per-connection 0 is connection mode: each connection sets up (with TLS if
// asked) and QUITs without mail, and --messages counts connections; the
// figures are then connections/s and handshakes/s.
// Messages: generated (message_gen) of one --size or of sizes drawn per
// message from a weighted list (bench/message_source.h), or the .eml files of
// --eml-dir, cycled in name order (--size is then ignored, with a warning).
// --greeting helo greets with HELO (plain RFC 5321 SMTP: no extensions, so
// lock-step, no MAIL parameters); it excludes --starttls, --bdat and --lmtp.
// --threads defaults to one per CPU, half of them for a loopback target (the
// server under test shares the CPUs).
// Exit status: 0 when the success rate (ok / sent) is at least
// --expect-success-rate (default 1.0); 1 when it is not, or when a message did
// not get exactly one outcome; 2 for usage errors and set-up failures.
#include <arpa/inet.h>
#include <netdb.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench/load_runner.h"
#include "bench/message_source.h"
#include "bench/stats.h"
#include "core/sasl.h"
#include "tls/tls_context.h"

namespace {

using namespace ringmx::bench;
using namespace ringmx;

constexpr int kExitFailedRate = 1;
constexpr int kExitUsage = 2;

std::atomic<int>* g_stop = nullptr;

extern "C" void on_signal(int /*sig*/) {
  if (g_stop) g_stop->fetch_add(1, std::memory_order_relaxed);
}

bool parse_target(const std::string& text, LoadConfig& cfg, std::string& host, std::string& err) {
  std::string port;
  if (!text.empty() && text[0] == '[') {
    const size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      err = "--target: expected [IPv6]:PORT";
      return false;
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      err = "--target: expected HOST:PORT";
      return false;
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || !res) {
    err = "--target " + text + ": " + gai_strerror(rc);
    return false;
  }
  std::memcpy(&cfg.target, res->ai_addr, res->ai_addrlen);
  cfg.target_len = res->ai_addrlen;
  freeaddrinfo(res);
  return true;
}

// "127.0.0.2-127.0.0.9,127.0.1.1": IPv4 addresses and inclusive ranges, for
// `option` (--source, --proxy-source).
bool parse_sources(const std::vector<std::string>& values, const char* option,
                   std::vector<sockaddr_in>& out, std::string& err) {
  for (const std::string& value : values) {
    size_t pos = 0;
    while (pos <= value.size()) {
      const size_t comma = std::min(value.find(',', pos), value.size());
      const std::string item = value.substr(pos, comma - pos);
      pos = comma + 1;
      if (item.empty()) continue;
      const size_t dash = item.find('-');
      const std::string a = item.substr(0, dash);
      const std::string b = dash == std::string::npos ? a : item.substr(dash + 1);
      in_addr lo{};
      in_addr hi{};
      if (inet_pton(AF_INET, a.c_str(), &lo) != 1 || inet_pton(AF_INET, b.c_str(), &hi) != 1) {
        err = std::string(option) + ": not an IPv4 address or range: " + item;
        return false;
      }
      const uint32_t from = ntohl(lo.s_addr);
      const uint32_t to = ntohl(hi.s_addr);
      if (to < from || to - from >= 65536) {
        err =
            std::string(option) + ": empty or too large a range (at most 65536 addresses): " + item;
        return false;
      }
      for (uint64_t x = from; x <= to; ++x) {
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(static_cast<uint32_t>(x));
        out.push_back(sa);
      }
    }
  }
  return true;
}

void raise_nofile() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

double seconds(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

int run(int argc, char** argv) {
  CLI::App app{"ringmx-bench: SMTP/LMTP load generator (closed loop, or open loop with --rate)"};
  std::string target;
  uint64_t connections = 0;
  uint64_t messages = 0;
  std::string size_text;
  std::string eml_dir;
  uint64_t per_connection = 1;
  double rate = 0;
  bool poisson = false;
  double duration = 60;
  uint32_t recipients = 1;
  bool no_pipelining = false;
  bool lmtp = false;
  bool bdat = false;
  bool json = false;
  double expect = 1.0;
  uint32_t threads = 0;
  std::vector<std::string> sources;
  uint64_t seed = 1;
  double timeout = 30;
  std::string from = "bench@example.net";
  std::string to = "rcpt@example.org";
  std::string helo = "bench.example.net";
  std::string greeting = "ehlo";
  bool starttls = false;
  std::string auth;
  bool implicit_tls = false;
  bool tls_alias = false;
  bool no_resume = false;
  std::string tls_version = "1.3";
  std::string sni;
  std::string proxy;
  std::vector<std::string> proxy_sources;

  app.add_option("--target", target, "server to load, HOST:PORT or [IPv6]:PORT")->required();
  app.add_option("--connections", connections, "concurrent connections (at most)")
      ->required()
      ->check(CLI::Range(uint64_t{1}, uint64_t{1'000'000}));
  app.add_option("--messages", messages, "messages to send in all (the run stops there)")
      ->required()
      ->check(CLI::Range(uint64_t{1}, uint64_t{1'000'000'000'000}));
  CLI::Option* size_option =
      app.add_option("--size", size_text,
                     "message size in octets, exact, from 512 (k/m suffixes: 4k, 1m), or sizes "
                     "drawn per message from a weighted list SIZE:WEIGHT,... (1k:70,10k:25,1m:5)");
  app.add_option("--eml-dir", eml_dir,
                 "send the .eml files of DIR (name order, cycled; LF or CRLF, sent as CRLF) "
                 "instead of generated messages; --size is then ignored");
  app.add_option("--per-connection", per_connection,
                 "messages per connection before QUIT; 0: connection mode, no mail, "
                 "--messages counts connections")
      ->check(CLI::Range(uint64_t{0}, uint64_t{1'000'000'000}));
  app.add_option("--rate", rate, "open loop: messages per second over all threads (0: closed)")
      ->check(CLI::Range(0.0, 10'000'000.0));
  app.add_flag("--poisson", poisson, "open loop: Poisson arrivals instead of uniform spacing");
  app.add_option("--duration", duration, "stop issuing messages after this many seconds")
      ->check(CLI::Range(0.001, 86400.0));
  app.add_option("--recipients", recipients, "recipients per message")
      ->check(CLI::Range(1U, 10000U));
  app.add_flag("--no-pipelining", no_pipelining, "lock-step even if the server offers PIPELINING");
  app.add_flag("--lmtp", lmtp, "speak LMTP (LHLO, one reply per recipient)");
  app.add_flag("--bdat", bdat, "send with BDAT <n> LAST (CHUNKING) instead of DATA");
  app.add_flag("--json", json, "report as one JSON object");
  app.add_option("--expect-success-rate", expect, "exit 1 when ok/sent is below this")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--threads", threads,
                 "worker threads, one io_uring each (default: one per CPU; half the CPUs, at "
                 "least 1, for a loopback target, whose server shares the CPUs)")
      ->check(CLI::Range(0U, 1024U));
  app.add_option("--source", sources, "source addresses, A or A-B (IPv4), comma separated");
  app.add_option("--seed", seed, "message generator seed (same seed, same messages)");
  app.add_option("--timeout", timeout, "seconds to wait for any reply or connect")
      ->check(CLI::Range(0.001, 3600.0));
  app.add_option("--from", from, "envelope sender");
  app.add_option("--to", to, "recipient; with --recipients R > 1: local1@domain .. localR@domain");
  app.add_option("--helo", helo, "EHLO/HELO/LHLO name");
  app.add_option("--greeting", greeting,
                 "ehlo (default; HELO if EHLO is refused) or helo: plain SMTP, no extensions "
                 "(lock-step, no STARTTLS, BDAT or LMTP)")
      ->check(CLI::IsMember({"ehlo", "helo"}));
  app.add_flag("--starttls", starttls,
               "STARTTLS after EHLO (a server that does not offer it fails as unsupported)");
  app.add_flag("--implicit-tls", implicit_tls, "TLS from the first byte (port 465 style)");
  app.add_option("--auth", auth,
                 "USER:PASSWORD: AUTH PLAIN once per connection, after STARTTLS when asked for "
                 "(a refusal fails the connection's messages with its code)");
  app.add_flag("--tls", tls_alias, "same as --implicit-tls")->group("");
  app.add_option("--tls-version", tls_version, "highest TLS version offered")
      ->check(CLI::IsMember({"1.2", "1.3"}));
  app.add_flag("--no-resume", no_resume,
               "full handshakes only (default: each thread resumes the last session)");
  app.add_option("--sni", sni, "TLS server name (default: the --target host, unless an address)");
  app.add_option("--proxy", proxy, "send a PROXY protocol header first: v1 (text) or v2 (binary)")
      ->check(CLI::IsMember({"v1", "v2"}));
  app.add_option("--proxy-source", proxy_sources,
                 "PROXY header source addresses, A or A-B (IPv4), cycled per connection "
                 "(default: the real local address)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitUsage;
  }
  implicit_tls = implicit_tls || tls_alias;
  if (starttls && implicit_tls) {
    std::cerr << "ringmx-bench: --starttls and --implicit-tls exclude each other\n";
    return kExitUsage;
  }
  if (!proxy_sources.empty() && proxy.empty()) {
    std::cerr << "ringmx-bench: --proxy-source needs --proxy\n";
    return kExitUsage;
  }
  const bool helo_only = greeting == "helo";
  if (helo_only && (starttls || bdat || lmtp)) {
    std::cerr << "ringmx-bench: --greeting helo excludes "
              << (lmtp       ? "--lmtp: LMTP greets with LHLO"
                  : starttls ? "--starttls: STARTTLS is an extension, known only after EHLO"
                             : "--bdat: BDAT needs CHUNKING, an extension known only after EHLO")
              << "\n";
    return kExitUsage;
  }
  if (poisson && rate <= 0) {
    std::cerr << "ringmx-bench: --poisson needs --rate\n";
    return kExitUsage;
  }
  SizeMix mix;
  std::vector<EmlFile> eml_files;
  std::string err;
  if (!eml_dir.empty()) {
    if (size_option->count() > 0) std::cerr << "ringmx-bench: --size is ignored with --eml-dir\n";
    if (!load_eml_dir(eml_dir, eml_files, err)) {
      std::cerr << "ringmx-bench: " << err << "\n";
      return kExitUsage;
    }
  } else if (size_option->count() == 0) {
    std::cerr << "ringmx-bench: --size or --eml-dir is required\n";
    return kExitUsage;
  } else if (!parse_size_mix(size_text, mix, err)) {
    std::cerr << "ringmx-bench: --size: " << err << "\n";
    return kExitUsage;
  }

  LoadConfig cfg;
  std::string host;
  if (!parse_target(target, cfg, host, err) ||
      !parse_sources(sources, "--source", cfg.sources, err) ||
      !parse_sources(proxy_sources, "--proxy-source", cfg.proxy_sources, err)) {
    std::cerr << "ringmx-bench: " << err << "\n";
    return kExitUsage;
  }
  if ((!cfg.sources.empty() || !cfg.proxy_sources.empty()) && cfg.target.ss_family != AF_INET) {
    std::cerr << "ringmx-bench: --source and --proxy-source addresses are IPv4, the target is "
                 "not\n";
    return kExitUsage;
  }
  if (!proxy.empty()) parse_proxy_version(proxy, cfg.proxy);
  if (starttls || implicit_tls) {
    ringmx::TlsClientConfig tls_config;  // no verification: a load generator measures
    tls_config.max_version =
        tls_version == "1.2" ? ringmx::TlsVersion::tls1_2 : ringmx::TlsVersion::tls1_3;
    cfg.tls.context = ringmx::TlsClientContext::create(tls_config);
    cfg.tls.mode = starttls ? TlsMode::starttls : TlsMode::implicit;
    cfg.tls.server_name = sni.empty() ? host : sni;
    cfg.tls_resume = !no_resume;
  }
  const size_t at = to.rfind('@');
  if (at == std::string::npos || at == 0 || from.find('>') != std::string::npos ||
      to.find('>') != std::string::npos) {
    std::cerr << "ringmx-bench: --to must be local@domain, --from and --to without '>'\n";
    return kExitUsage;
  }
  cfg.client.recipients.clear();
  for (uint32_t i = 1; i <= recipients; ++i) {
    cfg.client.recipients.push_back(
        recipients == 1 ? to : to.substr(0, at) + std::to_string(i) + to.substr(at));
  }
  cfg.client.mail_from = from;
  cfg.client.helo_name = helo;
  cfg.client.lmtp = lmtp;
  cfg.client.bdat = bdat;
  cfg.client.use_pipelining = !no_pipelining;
  cfg.client.starttls = starttls;
  if (!auth.empty()) {
    const size_t colon = auth.find(':');
    if (colon == std::string::npos || colon == 0) {
      std::cerr << "ringmx-bench: --auth wants USER:PASSWORD\n";
      return kExitUsage;
    }
    const std::string plain =
        std::string(1, '\0') + auth.substr(0, colon) + '\0' + auth.substr(colon + 1);
    sasl::base64_encode(plain, cfg.client.auth_plain);
  }
  cfg.client.helo_only = helo_only;
  if (threads == 0) threads = default_threads(cfg.target, std::thread::hardware_concurrency());
  threads = static_cast<uint32_t>(
      std::max<uint64_t>(1, std::min<uint64_t>({threads, connections, messages})));
  cfg.threads = threads;
  cfg.connections = connections;
  cfg.messages = messages;
  cfg.per_connection = per_connection;
  cfg.rate = rate;
  cfg.arrival = poisson ? ArrivalKind::poisson : ArrivalKind::uniform;
  cfg.duration_ns = static_cast<int64_t>(std::llround(duration * 1e9));
  cfg.timeout_ns = static_cast<int64_t>(std::llround(timeout * 1e9));
  cfg.seed = seed;

  raise_nofile();
  signal(SIGPIPE, SIG_IGN);
  LoadControl control;
  g_stop = &control.stop;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  std::vector<std::string> eml_messages;
  double eml_mean = 0;
  for (EmlFile& f : eml_files) {
    eml_mean += static_cast<double>(f.message.size());
    eml_messages.push_back(std::move(f.message));
  }
  if (!eml_messages.empty()) eml_mean /= static_cast<double>(eml_messages.size());
  const MessagePool pool = eml_messages.empty() ? MessagePool(seed, mix, messages, bdat)
                                                : MessagePool(eml_messages, bdat);
  eml_messages.clear();
  eml_messages.shrink_to_fit();
  std::vector<Progress> progress(threads);

  // Progress line, once a second, only on a terminal.
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::thread progress_thread;
  if (isatty(STDERR_FILENO)) {
    progress_thread = std::thread([&] {
      const auto t0 = std::chrono::steady_clock::now();
      uint64_t last_ok = 0;
      std::unique_lock<std::mutex> lock(mu);
      while (!cv.wait_for(lock, std::chrono::seconds(1), [&] { return done; })) {
        uint64_t sent = 0;
        uint64_t ok = 0;
        uint64_t failed = 0;
        uint64_t open = 0;
        for (const Progress& p : progress) {
          sent += p.sent.load(std::memory_order_relaxed);
          ok += p.ok.load(std::memory_order_relaxed);
          failed += p.failed.load(std::memory_order_relaxed);
          open += p.open.load(std::memory_order_relaxed);
        }
        const double t =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::fprintf(stderr, "\r[%6.1fs] sent %llu  ok %llu  failed %llu  %llu msg/s  open %llu   ",
                     t, static_cast<unsigned long long>(sent), static_cast<unsigned long long>(ok),
                     static_cast<unsigned long long>(failed),
                     static_cast<unsigned long long>(ok - last_ok),
                     static_cast<unsigned long long>(open));
        std::fflush(stderr);
        last_ok = ok;
      }
      std::fprintf(stderr, "\n");
    });
  }

  rusage before{};
  getrusage(RUSAGE_SELF, &before);
  LoadResult result = run_load(cfg, pool, progress, control);
  rusage after{};
  getrusage(RUSAGE_SELF, &after);
  {
    std::lock_guard<std::mutex> lock(mu);
    done = true;
  }
  cv.notify_all();
  if (progress_thread.joinable()) progress_thread.join();

  if (!result.errors.empty()) {
    for (const auto& e : result.errors) std::cerr << "ringmx-bench: " << e << "\n";
    return kExitUsage;
  }

  RunInfo info;
  info.target = target;
  info.open_loop = rate > 0;
  info.poisson = poisson;
  info.rate = rate;
  info.threads = threads;
  info.connections = connections;
  info.per_connection = per_connection;
  info.messages_limit = messages;
  info.duration_limit_s = duration;
  if (eml_dir.empty()) {
    info.size = mix.classes.size() == 1 ? mix.classes[0].size : 0;
    for (const SizeClass& c : mix.classes) info.size_distribution.emplace_back(c.size, c.weight);
    info.mean_size = mix.mean_size();
  } else {
    info.eml_dir = eml_dir;
    info.eml_files = eml_files.size();
    info.mean_size = eml_mean;
  }
  info.recipients = recipients;
  info.lmtp = lmtp;
  info.bdat = bdat;
  info.pipelining = !no_pipelining && !helo_only;  // HELO: no PIPELINING known
  info.greeting = greeting;
  info.tls = starttls ? "starttls" : implicit_tls ? "implicit" : "none";
  info.tls_max_version = tls_version;
  info.tls_resume = !no_resume;
  info.proxy = proxy.empty() ? "none" : proxy;
  info.issued = result.issued;
  info.elapsed_s = static_cast<double>(result.end_ns - result.start_ns) / 1e9;
  info.cpu_user_s = seconds(after.ru_utime) - seconds(before.ru_utime);
  info.cpu_sys_s = seconds(after.ru_stime) - seconds(before.ru_stime);
  info.interrupted = control.stop.load() > 0;
  const std::string report =
      json ? format_json(info, result.stats) : format_human(info, result.stats);
  std::fwrite(report.data(), 1, report.size(), stdout);
  std::fflush(stdout);

  if (!outcomes_consistent(info, result.stats)) {
    std::cerr << "ringmx-bench: internal error: " << result.issued << " messages issued, "
              << result.stats.sent << " outcomes\n";
    return kExitFailedRate;
  }
  return result.stats.success_rate() >= expect ? 0 : kExitFailedRate;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "ringmx-bench: " << e.what() << "\n";
    return kExitUsage;
  }
}
