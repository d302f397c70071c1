// Micro-benchmarks of core/: command parsing, DATA body decoding and one whole
// small transaction through the session. Run: tools/dev.sh bench
#include <benchmark/benchmark.h>

#include <memory>
#include <string>
#include <vector>

#include "bench/message_gen.h"
#include "core/address.h"
#include "core/command.h"
#include "core/data_decoder.h"
#include "core/esmtp_params.h"
#include "core/session.h"

namespace {

using namespace ringmx;

void bm_parse_command(benchmark::State& state) {
  const std::vector<std::string> lines = {"EHLO client.example.net",
                                          "MAIL FROM:<sender@example.net> SIZE=1024 BODY=8BITMIME",
                                          "RCPT TO:<rcpt@example.org>",
                                          "DATA",
                                          "RSET",
                                          "NOOP",
                                          "QUIT"};
  size_t i = 0;
  for (auto _ : state) {
    Command c = parse_command(lines[i]);
    benchmark::DoNotOptimize(c);
    if (++i == lines.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(bm_parse_command);

void bm_parse_mail_from(benchmark::State& state) {
  const std::string arg = "<sender.name@mail.example.net> SIZE=10240 BODY=8BITMIME";
  Extensions ext;
  MailParams mp;
  for (auto _ : state) {
    PathResult r = parse_path(arg, PathKind::reverse, true);
    ParamError e = parse_mail_params(std::string_view(arg).substr(r.consumed), ext, 1 << 30, mp);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(e);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(bm_parse_mail_from);

void bm_decode_body(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  const std::string wire = bench::dot_stuff(bench::make_message(7, size)) + ".\r\n";
  DataDecoder dec;
  ByteBuffer out;
  out.reserve(wire.size());
  for (auto _ : state) {
    dec.reset(BareLinePolicy::reject, 1ull << 32);
    out.clear();
    auto r = dec.decode(wire, out);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * wire.size()));
}
BENCHMARK(bm_decode_body)->Arg(1 << 10)->Arg(100 << 10)->Arg(10 << 20);

// One whole 1 KiB transaction on a kept connection: MAIL, RCPT, DATA, body,
// end of data with the Received header, 250, as a pipelining client sends it.
void bm_transaction_1k(benchmark::State& state) {
  struct Sink : SessionHandler {
    Verdict on_message(Session&, Message& m) override {
      benchmark::DoNotOptimize(m.body.data());
      return Verdict::accept();
    }
  } sink;
  SessionConfig cfg;
  cfg.limits.max_transactions = 1u << 30;
  auto settings = std::make_shared<SessionSettings>(cfg);
  ConnInfo info;
  info.client_ip = "192.0.2.1";
  Session s(settings, sink, info, Now{});
  s.start(Now{});
  s.feed("EHLO client.example.net\r\n", Now{});
  s.consume_output(s.output().size());
  const std::string txn =
      "MAIL FROM:<sender@example.net>\r\nRCPT TO:<rcpt@example.org>\r\nDATA\r\n" +
      bench::dot_stuff(bench::make_message(3, 1024)) + ".\r\n";
  for (auto _ : state) {
    s.feed(txn, Now{1, 1795241997});
    benchmark::DoNotOptimize(s.output().data());
    s.consume_output(s.output().size());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * txn.size()));
}
BENCHMARK(bm_transaction_1k);

}  // namespace

BENCHMARK_MAIN();
