// DNS responses (RFC 1035 4.1) as the resolver's cache needs them: the
// records of the type asked for, each with its TTL, and the negative-caching
// TTL of an answer that has none (RFC 2308 5: the SOA in the authority
// section, the lesser of its TTL and its MINIMUM). Pure and bounded: names are
// decompressed with a hop limit, every length is checked against the buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/ip_network.h"

namespace ringmx {

namespace dns_type {
inline constexpr uint16_t kA = 1;
inline constexpr uint16_t kNs = 2;
inline constexpr uint16_t kCname = 5;
inline constexpr uint16_t kSoa = 6;
inline constexpr uint16_t kPtr = 12;
inline constexpr uint16_t kMx = 15;
inline constexpr uint16_t kTxt = 16;
inline constexpr uint16_t kAaaa = 28;
}  // namespace dns_type

struct DnsRecord {
  uint32_t ttl = 0;
  // A: 4 octets; AAAA: 16 octets; PTR: the name ("mail.example.org", no
  // trailing dot, lower case); MX: the exchange name, with `preference`;
  // TXT: the character-strings of one record, concatenated.
  std::string data;
  uint16_t preference = 0;
};

struct DnsResponse {
  uint16_t rcode = 0;              // 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, ...
  bool truncated = false;          // TC: the answer did not fit
  std::vector<DnsRecord> records;  // of the asked type, in the order they came
  // RFC 2308: how long "no such name / no such data" may be cached; 0 when
  // the response carries no SOA (then the caller's own minimum applies).
  uint32_t negative_ttl = 0;
};

// Parses `len` octets of a response to a query of type `qtype`. False when
// the message is malformed (it is then a temporary failure, never cached).
bool parse_dns_response(const uint8_t* msg, size_t len, uint16_t qtype, DnsResponse& out);

// The name queried for the PTR of an address (parse_ip's 16 octets):
// "4.3.2.1.in-addr.arpa" or the 32 nibbles under ip6.arpa. With `zone`
// (a DNSBL such as "zen.example.net"), the reversed address under that zone.
std::string reverse_name(const IpBytes& ip, std::string_view zone = {});

}  // namespace ringmx
