// What a policy check may ask of DNS, without knowing who answers: the
// shard's resolver (net/resolver.h) in the daemon, a table in the tests.
// Every answer is one of found, not found (NXDOMAIN, or no data of that
// type) or a temporary failure (timeout, SERVFAIL, a malformed reply, too
// many queries in flight): a check never turns the last into a permanent
// refusal.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "core/dns_message.h"

namespace ringmx {

enum class DnsResult : uint8_t { found, not_found, temp_fail };
std::string_view dns_result_name(DnsResult r);

struct DnsAnswer {
  DnsResult result = DnsResult::temp_fail;
  std::vector<DnsRecord> records;  // found: the records of the type asked for
};

class DnsLookup {
 public:
  using Done = std::function<void(const DnsAnswer&)>;
  virtual ~DnsLookup() = default;
  // Looks up `name` (no trailing dot) for records of `type` (dns_type::*).
  // `done` runs once: now (a cached answer, or a refusal) or later; it may
  // call lookup() again. Returns a ticket for cancel().
  virtual uint64_t lookup(uint16_t type, std::string_view name, Done done) = 0;
  // The caller went away: its `done` will not run.
  virtual void cancel(uint64_t ticket) = 0;

 protected:
  DnsLookup() = default;
  DnsLookup(const DnsLookup&) = default;
  DnsLookup& operator=(const DnsLookup&) = default;
};

}  // namespace ringmx
