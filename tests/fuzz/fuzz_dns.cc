// libFuzzer target for core/dns_message: any octets as a DNS response to a
// query of each type the resolver asks. Never a crash or an over-read (ASan);
// what is accepted keeps the promised shapes: A 4 octets, AAAA 16, names of
// at most 253 characters in lower case, at most 256 records.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "core/dns_message.h"

namespace {

void check(bool cond) {
  if (!cond) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ringmx;
  for (const uint16_t type :
       {dns_type::kA, dns_type::kAaaa, dns_type::kMx, dns_type::kTxt, dns_type::kPtr}) {
    DnsResponse r;
    if (!parse_dns_response(data, size, type, r)) continue;
    check(r.records.size() <= 256);
    for (const DnsRecord& rec : r.records) {
      if (type == dns_type::kA) check(rec.data.size() == 4);
      if (type == dns_type::kAaaa) check(rec.data.size() == 16);
      if (type == dns_type::kMx || type == dns_type::kPtr) {
        check(rec.data.size() <= 253);
        for (const char c : rec.data) check(!(c >= 'A' && c <= 'Z'));
      }
      check(rec.ttl <= 0x7fffffffu);
    }
    check(r.negative_ttl <= 0x7fffffffu);
  }
  return 0;
}
