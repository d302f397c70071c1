// libFuzzer target for the SMTP session: random bytes, random split points,
// random verdicts, the discipline checks on or off. Checks that the session
// never crashes, never reads past its input, always answers with well-formed
// reply lines, never runs a command that arrived behind STARTTLS, and always
// closes when its deadline has passed.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "core/session.h"

namespace {

using namespace ringmx;

void check(bool ok) {
  if (!ok) std::abort();
}

// Every line must be "ddd" then ' ' or '-' then text without CR/LF, ending CRLF.
void check_replies(std::string_view out) {
  size_t pos = 0;
  while (pos < out.size()) {
    size_t e = out.find("\r\n", pos);
    check(e != std::string_view::npos);
    std::string_view line = out.substr(pos, e - pos);
    check(line.size() >= 4);
    for (int i = 0; i < 3; ++i) check(line[i] >= '0' && line[i] <= '9');
    check(line[3] == ' ' || line[3] == '-');
    check(line.find('\r') == std::string_view::npos && line.find('\n') == std::string_view::npos);
    pos = e + 2;
  }
}

struct FuzzHandler : SessionHandler {
  const uint8_t* knobs = nullptr;
  size_t nknobs = 0;
  size_t k = 0;
  uint8_t next() { return nknobs ? knobs[k++ % nknobs] : 0; }
  Verdict pick() {
    switch (next() % 8) {
      case 0: return Verdict::pending();
      case 1: return Verdict::reject(550, "5.7.1", "no");
      case 2: return Verdict::reject(421, "4.7.0", "bye");
      case 3: return Verdict::reject(250, "9.9", "bogus");
      default: return Verdict::accept();
    }
  }
  Verdict on_connect(Session&) override { return next() % 16 ? Verdict::accept() : pick(); }
  Verdict on_helo(Session&, std::string_view) override { return pick(); }
  Verdict on_mail(Session&, const Envelope&) override { return pick(); }
  Verdict on_rcpt(Session&, const Envelope&, const Recipient&) override { return pick(); }
  Verdict on_data(Session&, const Envelope&) override { return pick(); }
  Verdict on_message(Session&, Message& m) override {
    check(m.body.size() <= 4096);
    check(!m.envelope.recipients.empty());
    return pick();
  }
  void on_starttls(Session&) override { starttls = true; }
  bool starttls = false;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  SessionConfig cfg;
  cfg.limits.max_message_size = 4096;
  cfg.limits.max_recipients = 5;
  cfg.limits.max_bad_commands = 1 + data[0] % 30;
  // Both ways of each discipline check; the line deadline short enough that
  // the clock below (10 ms a piece) crosses it.
  cfg.reject_http = data[0] & 0x40;
  cfg.unoffered_pipelining =
      data[0] & 0x80 ? UnofferedPipelining::reject : UnofferedPipelining::ignore;
  cfg.limits.command_line_timeout_ms = 100 + data[2] % 8 * 100;
  cfg.limits.max_transactions = 3;
  cfg.bare_line = data[1] & 1 ? BareLinePolicy::normalise : BareLinePolicy::reject;
  cfg.ext.chunking = !(data[1] & 2);
  cfg.ext.smtputf8 = !(data[1] & 4);
  cfg.ext.dsn = !(data[1] & 8);
  cfg.ext.enhanced_status_codes = !(data[1] & 16);
  ConnInfo info;
  info.client_ip = "192.0.2.9";
  info.tls_available = data[1] & 32;
  info.xclient_allowed = data[1] & 64;  // XCLIENT may rewrite the identity mid-session
  FuzzHandler h;
  h.knobs = data + 2;
  h.nknobs = 2;
  const size_t chunk = 1 + data[3] % 64;
  data += 4;
  size -= 4;

  auto settings = std::make_shared<SessionSettings>(cfg);
  Session s(settings, h, info, Now{0, 0});
  s.start(Now{0, 0});
  std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t pos = 0;
  int64_t t = 0;
  int stalls = 0;
  while (pos < in.size() && !s.closed() && stalls < 4) {
    if (s.deadline_ms() <= t) {
      check(s.on_timer(Now{t, t / 1000}));  // a deadline that passed always fires
      check_replies(s.output());
      break;
    }
    std::string_view piece = in.substr(pos, chunk);
    size_t used = s.feed(piece, Now{t, t / 1000});
    check(used <= piece.size());
    check_replies(s.output());
    if (h.starttls) {
      // The plaintext behind STARTTLS was swallowed: the 220 is the last reply.
      std::string_view out = s.output();
      size_t last = out.rfind("\r\n", out.size() - 3);
      last = last == std::string_view::npos ? 0 : last + 2;
      check(out.substr(last, 4) == "220 ");
      s.tls_started("TLS1_3", "TLS_AES_128_GCM_SHA256", Now{t, 0});
      h.starttls = false;
    }
    s.consume_output(s.output().size());
    pos += used;
    if (s.waiting()) {
      s.resume(h.pick(), Now{t, 0});
      check_replies(s.output());
      s.consume_output(s.output().size());
    }
    stalls = used == 0 ? stalls + 1 : 0;
    t += 10;
  }
  s.on_timer(Now{t + 10'000'000, 0});
  s.drain(Now{t, 0});
  check_replies(s.output());
  return 0;
}
