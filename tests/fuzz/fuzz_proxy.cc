// libFuzzer target for net/proxy_protocol: any input, any split. The first
// octet picks the versions accepted and the piece size; the rest is the
// stream. Whole and in pieces must agree on the outcome, the header's size,
// the addresses and where the session's octets start; a header is never
// longer than its limit; used() never exceeds what was fed.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "net/proxy_protocol.h"

namespace {

using ringmx::ProxyAccept;
using ringmx::ProxyParser;

void check(bool cond) {
  if (!cond) std::abort();
}

struct Result {
  ProxyParser::Status status;
  size_t consumed;  // octets of the input the parser took
  size_t header;
  bool proxied;
  sockaddr_storage src;
  uint8_t version;
};

Result run(ProxyAccept accept, std::string_view in, size_t piece) {
  ProxyParser p(accept);
  size_t at = 0;
  while (at < in.size() && p.status() == ProxyParser::Status::need_more) {
    const std::string_view chunk = in.substr(at, piece);
    p.feed(chunk);
    check(p.used() <= chunk.size());
    at += p.used();
    if (p.status() == ProxyParser::Status::need_more) check(p.used() == chunk.size());
  }
  Result r{p.status(), at, p.header_size(), p.info().proxied, p.info().src, p.info().version};
  if (r.status == ProxyParser::Status::done) {
    check(r.header == r.consumed);
    check(r.header <= ProxyParser::kDefaultMaxV2 || r.version == 1);
    check(r.version != 1 || r.header <= ProxyParser::kMaxV1);
    check(!r.proxied || r.src.ss_family == AF_INET || r.src.ss_family == AF_INET6);
  }
  if (r.status == ProxyParser::Status::error) check(!p.error().empty());
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const auto accept = static_cast<ProxyAccept>(1 + data[0] % 3);
  const size_t piece = 1 + (data[0] >> 2) % 17;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  const Result whole = run(accept, in, in.size() + 1);
  const Result split = run(accept, in, piece);
  check(whole.status == split.status);
  check(whole.consumed == split.consumed);
  if (whole.status == ProxyParser::Status::done) {
    check(whole.header == split.header && whole.proxied == split.proxied);
    check(std::memcmp(&whole.src, &split.src, sizeof whole.src) == 0);
  }
  return 0;
}
