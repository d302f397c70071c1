#include "core/config_reader.h"

namespace ringmx {

std::string range_message(uint64_t min, uint64_t max) {
  // An upper bound no TOML integer can pass is not worth printing.
  if (max >= kTomlIntMax) {
    return min == 0 ? "must not be negative" : "must be at least " + std::to_string(min);
  }
  return "must be between " + std::to_string(min) + " and " + std::to_string(max);
}

std::string_view type_phrase(toml::node_type t) {
  switch (t) {
    case toml::node_type::none: return "nothing";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
  }
  return "an unknown value";
}

}  // namespace ringmx
