// The [checks] table, the [[dnsbl]] / [[dnswl]] lists and the [[milter]] chain of the config file
// (core/check_config.h). Internal to the config loader.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/check_config.h"
#include "core/config_reader.h"
#include "core/session_config.h"

namespace ringmx {

// The findings of one check's table, each an action key.
template <class T>
struct ActionKey {
  std::string_view name;
  CheckAction T::*field;
};

class ChecksLoader : TomlReader {
 public:
  using TomlReader::TomlReader;
  void load_checks(const toml::node& n, ChecksConfig& out);
  void load_headers(const toml::node& n, HeaderRules& out);
  // `key` is "dnsbl" or "dnswl".
  void load_lists(const toml::node& n, std::string_view key, std::vector<DnsListConfig>& out);
  // [[milter]]
  void load_milters(const toml::node& n, std::vector<MilterConfig>& out);

 private:
  void load_ptr(const toml::table& t, PtrCheckConfig& out);
  void load_helo(const toml::table& t, HeloCheckConfig& out);
  void load_sender(const toml::table& t, SenderCheckConfig& out);
  template <class T, size_t N, class Extra>
  void load_rules(const toml::table& t, std::string_view section, const ActionKey<T> (&actions)[N],
                  T& out, Extra extra);
  void load_rate(const toml::table& t, RateCheckConfig& out);
  void load_karma(const toml::table& t, KarmaConfig& out);
};

// The rules the loader applies, for validate_config: an empty string when
// the value is acceptable, else what is wrong with it.
std::string check_regex(std::string_view pattern);
// A DNS list answer filter: "127.0.0.2" or "127.0.0.2-127.0.0.11", as host
// order IPv4 bounds.
bool parse_dns_list_code(std::string_view code, uint32_t& first, uint32_t& last);
std::string check_dns_list_code(std::string_view code);
std::string check_dns_zone(std::string_view zone);
std::string check_milter_name(std::string_view name);
std::string check_milter_address(std::string_view address);
// Every problem of a finished ChecksConfig, as (key, message).
std::vector<std::pair<std::string, std::string>> check_checks_config(const ChecksConfig& c);

}  // namespace ringmx
