// Days since 1970-01-01 to a proleptic Gregorian date, for the timestamps
// ringmx writes (Received headers, log lines). Pure arithmetic, no time zone.
#pragma once

#include <cstdint>

namespace ringmx {

struct CivilDate {
  int64_t year;
  unsigned month;  // 1..12
  unsigned day;    // 1..31
};

// Counts in 400-year eras starting on 0000-03-01, so a leap day is the last
// day of its year and every era has the same 146097 days.
constexpr CivilDate civil_from_days(int64_t days) {
  const int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned day = doy - (153 * mp + 2) / 5 + 1;
  const unsigned month = mp < 10 ? mp + 3 : mp - 9;
  return {static_cast<int64_t>(yoe) + era * 400 + (month <= 2 ? 1 : 0), month, day};
}

static_assert(civil_from_days(0).year == 1970 && civil_from_days(0).month == 1);
static_assert(civil_from_days(11016).month == 2 && civil_from_days(11016).day == 29);  // 2000-02-29

}  // namespace ringmx
