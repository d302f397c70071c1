// Deterministic RFC 5322 test messages: headers, body lines of realistic
// lengths, occasional lines that start with a dot. Used by the micro-benchmarks
// and (later) the load generator; the same seed gives the same bytes.
#pragma once

#include <cstdint>
#include <string>

namespace ringmx::bench {

// A message of about `size` octets (exactly `size` when size >= 512), lines
// ending in CRLF, not dot-stuffed.
std::string make_message(uint64_t seed, size_t size);

// SMTP DATA transparency (RFC 5321 4.5.2): a dot is doubled at each line start.
std::string dot_stuff(const std::string& message);

}  // namespace ringmx::bench
