#include "core/protocol_discipline.h"

#include "core/command.h"

namespace ringmx {

bool is_http_line(std::string_view line) {
  // Methods with their space: "POSTMASTER" or "GETX" are just unknown verbs.
  static constexpr std::string_view kMethods[] = {"GET ", "POST ",    "HEAD ",
                                                  "PUT ", "OPTIONS ", "CONNECT "};
  static constexpr std::string_view kHeaders[] = {"Host:", "User-Agent:"};
  for (std::string_view m : kMethods) {
    if (starts_with_nocase(line, m)) return true;
  }
  for (std::string_view h : kHeaders) {
    if (starts_with_nocase(line, h)) return true;
  }
  return false;
}

}  // namespace ringmx
