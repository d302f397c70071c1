// A milter's socket address as Postfix and Sendmail write it:
//   unix:/run/milter.sock  (or local:/path, or a bare /path)
//   inet:127.0.0.1:11332   inet:[::1]:11332   inet6:[::1]:11332
//   inet:11332@127.0.0.1   (Sendmail's order)   inet:localhost:11332
// Hosts are address literals or "localhost" (no DNS at start-up or later).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ringmx {

struct MilterAddress {
  enum class Kind : uint8_t { unix_path, inet };
  Kind kind = Kind::inet;
  std::string path;  // unix_path
  std::string ip;    // inet: "127.0.0.1", "::1"
  uint16_t port = 0;
};

// Parses `text`; on failure returns false and says why in `error`.
bool parse_milter_address(std::string_view text, MilterAddress& out, std::string& error);

}  // namespace ringmx
