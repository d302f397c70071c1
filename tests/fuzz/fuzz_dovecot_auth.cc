// libFuzzer target for core/dovecot_auth: the server's half of the
// protocol is the fuzzer's bytes, fed in pieces, while verifications are
// started and cancelled between them. Every request is answered at most
// once and only with an id it was given; nothing waits past the bound;
// the output stays bounded (one AUTH and at most two CONT lines each);
// once failed the client stays failed and has answered everything.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "core/dovecot_auth.h"

namespace {

using namespace ringmx::dovecot;  // NOLINT(google-build-using-namespace)

void check(bool cond) {
  if (!cond) std::abort();
}

constexpr size_t kMaxPending = 8;

Request request(uint8_t seed) {
  Request r;
  r.mechanism = (seed & 1) != 0 ? ringmx::sasl::Mechanism::login : ringmx::sasl::Mechanism::plain;
  r.credentials.user = "user" + std::to_string(seed);
  r.credentials.password = std::string(1 + seed % 40, 'p');
  r.remote_ip = "192.0.2.1";
  r.local_ip = "127.0.0.1";
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t piece = 1 + (data[0] % 64);
  const uint8_t ops = data[1];
  std::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);
  AuthClient c("smtp", 1, kMaxPending);
  c.connected(0);
  std::set<uint32_t> issued;
  std::set<uint32_t> answered;
  size_t round = 0;
  while (!in.empty()) {
    const uint8_t op = static_cast<uint8_t>(ops >> (round % 8));
    if ((op & 1) != 0) {
      const uint32_t id = c.begin(request(static_cast<uint8_t>(round)));
      if (id != 0) issued.insert(id);
      check(id == 0 || !c.failed());
    }
    if ((op & 2) != 0 && !issued.empty()) c.cancel(*issued.begin());
    const std::string_view p = in.substr(0, piece);
    in.remove_prefix(p.size());
    const bool was_failed = c.failed();
    c.feed(p, 0);
    check(!was_failed || c.failed());
    check(c.pending() <= kMaxPending);
    for (const Result& r : c.results()) {
      check(issued.count(r.id) == 1);
      check(answered.insert(r.id).second);
    }
    c.results().clear();
    check(c.output().size() <= (kMaxPending * 3 + issued.size() * 3) * 4096 + 64);
    c.consume_output(c.output().size() / 2);
    if (c.failed()) check(c.pending() == 0);
    ++round;
  }
  c.connection_lost(ringmx::ErrorKind::closed, 0);
  check(c.pending() == 0);
  for (const Result& r : c.results()) check(answered.insert(r.id).second);
  return 0;
}
