// libFuzzer target for core/milter_client: a whole SMTP session's
// conversation (connect, HELO, MAIL, RCPT, DATA, the message, an unknown
// command, QUIT) against a milter that answers with the fuzzer's bytes, fed
// in pieces. Every step ends (at once, on an answer, or by its deadline);
// the output the client holds stays within its bound; the changes it
// collects stay within theirs; once failed it stays failed.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/milter_client.h"

namespace {

using namespace ringmx::milter;  // NOLINT(google-build-using-namespace)

void check(bool cond) {
  if (!cond) std::abort();
}

constexpr int64_t kMs = 1'000'000;
constexpr size_t kModBytes = 4096;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t piece = 1 + (data[0] % 64);
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  MilterClient c(Offer{}, ClientTimeouts{100, 200, 300}, kModBytes);
  int64_t now = 1000 * kMs;
  c.connecting(now);
  c.connected(now);
  const std::string body = "Subject: x\r\nX-A: 1\r\n\tfolded\r\n\r\n" + std::string(70000, 'b');
  int step = 0;
  bool was_failed = false;
  for (int round = 0; round < 64; ++round) {
    if (!c.busy()) {
      (void)c.take_result();
      switch (step++) {
        case 0: c.connect(now, {{"j", "mx"}}, "client", Family::inet4, 25, "192.0.2.1"); break;
        case 1: c.helo(now, {{"{tls_version}", "TLSv1.3"}}, "client.example"); break;
        case 2: c.mail(now, {{"i", "Q"}}, "<a@b.example>", {}); break;
        case 3: c.rcpt(now, {{"{rcpt_addr}", "r@b"}}, "<r@b.example>", {}); break;
        case 4: c.data(now, {}); break;
        case 5: c.message(now, {}, {{"i", "Q"}}, "Received: by mx\r\n", body); break;
        case 6: c.unknown(now, {}, "XYZZY"); break;
        default: c.quit(); break;
      }
    }
    // The stream takes what the client has to say.
    while (c.has_output()) {
      const std::string_view out = c.output();
      check(out.size() <= MilterClient::kOutputHigh + kChunk1M + 64);
      c.consume_output(out.size());
    }
    size_t modification_bytes = 0;
    for (const Response& r : c.modifications()) {
      if (const auto* b = std::get_if<ReplaceBody>(&r)) modification_bytes += b->chunk.size();
    }
    check(modification_bytes <= kModBytes);
    if (in.empty()) {
      now += 400 * kMs;  // every deadline passes
      c.timeout(now);
      if (!c.busy() && step > 7) break;
      continue;
    }
    const size_t n = in.size() < piece ? in.size() : piece;
    c.feed(in.substr(0, n), now);
    in.remove_prefix(n);
    now += kMs;
    if (was_failed) check(c.failed());
    was_failed = c.failed();
  }
  return 0;
}
