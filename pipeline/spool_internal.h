// What spool_format.cc and spool_recovery.cc share and nothing else sees:
// the file-name suffixes and the error-text builder.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>

namespace ringmx::spool_internal {

inline constexpr std::string_view kFinalSuffix = ".msg";
inline constexpr std::string_view kTempSuffix = ".tmp";

// One allocation for an error text, however many pieces.
inline std::string cat(std::initializer_list<std::string_view> parts) {
  size_t size = 0;
  for (std::string_view p : parts) size += p.size();
  std::string out;
  out.reserve(size);
  for (std::string_view p : parts) out.append(p);
  return out;
}

}  // namespace ringmx::spool_internal
