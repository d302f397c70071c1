#include "core/config_load_checks.h"

#include <arpa/inet.h>

#include <regex>

#include "core/address.h"
#include "core/ip_network.h"
#include "core/socket_address.h"

namespace ringmx {
namespace {

constexpr EnumName<CheckAction> kCheckActions[] = {
    {"off", CheckAction::off},
    {"score", CheckAction::score},
    {"reject", CheckAction::reject},
};

constexpr EnumName<DnsFailure> kDnsFailures[] = {
    {"tempfail", DnsFailure::tempfail},
    {"skip", DnsFailure::skip},
};

constexpr EnumName<MilterDefault> kMilterDefaults[] = {
    {"tempfail", MilterDefault::tempfail},
    {"accept", MilterDefault::accept},
    {"reject", MilterDefault::reject},
};
// Milters in the chain (each a socket per SMTP connection).
constexpr size_t kMaxMilters = 16;
// A milter's timeouts: up to an hour.
constexpr uint64_t kMaxMilterTimeoutMs = 3'600'000;
// Idle connections one shard keeps to one milter (each an open socket).
constexpr uint64_t kMaxIdleMilterConnections = 10'000;

// Scores stay far from int32 overflow however many checks add up.
constexpr int64_t kMaxScore = 1'000'000;
constexpr size_t kMaxPatterns = 64;
constexpr size_t kMaxPatternLength = 512;
constexpr size_t kMaxCodes = 64;
// DNS lists consulted at each connect, all at once.
constexpr size_t kMaxLists = 16;
constexpr size_t kMaxExempt = 256;
// Clients a shard remembers per table (rate, karma): about 100 bytes each.
constexpr int64_t kMaxRemembered = 10'000'000;
constexpr int64_t kMaxPerMinute = 1'000'000;

constexpr ActionKey<PtrCheckConfig> kPtrActions[] = {
    {"missing", &PtrCheckConfig::missing},
    {"unconfirmed", &PtrCheckConfig::unconfirmed},
    {"dynamic", &PtrCheckConfig::dynamic},
};
constexpr ActionKey<HeloCheckConfig> kHeloActions[] = {
    {"bare_ip", &HeloCheckConfig::bare_ip},
    {"not_fqdn", &HeloCheckConfig::not_fqdn},
    {"ours", &HeloCheckConfig::ours},
    {"literal_mismatch", &HeloCheckConfig::literal_mismatch},
    {"unresolvable", &HeloCheckConfig::unresolvable},
};
constexpr ActionKey<SenderCheckConfig> kSenderActions[] = {
    {"unresolvable", &SenderCheckConfig::unresolvable},
    {"null_mx", &SenderCheckConfig::null_mx},
};

bool parse_v4(std::string_view s, uint32_t& out) {
  if (s.empty() || s.size() > 15) return false;
  char buf[16] = {};
  s.copy(buf, s.size());
  in_addr a{};
  if (inet_pton(AF_INET, buf, &a) != 1) return false;
  out = ntohl(a.s_addr);
  return true;
}

}  // namespace

bool parse_dns_list_code(std::string_view code, uint32_t& first, uint32_t& last) {
  const size_t dash = code.find('-');
  if (dash == std::string_view::npos) {
    if (!parse_v4(code, first)) return false;
    last = first;
    return true;
  }
  return parse_v4(code.substr(0, dash), first) && parse_v4(code.substr(dash + 1), last) &&
         first <= last;
}

std::string check_dns_list_code(std::string_view code) {
  uint32_t a = 0;
  uint32_t b = 0;
  if (parse_dns_list_code(code, a, b)) return {};
  return "must be an IPv4 address or a range first-last (127.0.0.2-127.0.0.11)";
}

std::string check_regex(std::string_view pattern) {
  if (pattern.empty()) return "must not be empty";
  if (pattern.size() > kMaxPatternLength) return "must be at most 512 characters";
  try {
    std::regex re(pattern.begin(), pattern.end(), std::regex::ECMAScript | std::regex::icase);
  } catch (const std::regex_error& e) {
    return std::string("is not a valid regular expression: ") + e.what();
  }
  return {};
}

std::string check_dns_zone(std::string_view zone) {
  if (zone.empty() || zone.size() > 200 || !is_valid_domain(zone, false) || zone.front() == '[') {
    return "must be a domain name (at most 200 characters: the reversed address goes in front)";
  }
  return {};
}

void ChecksLoader::load_checks(const toml::node& n, ChecksConfig& out) {
  const toml::table* t = section(n, "checks");
  if (t == nullptr) return;
  for (const auto& [k, v] : *t) {
    const std::string key = dotted("checks", k);
    const std::string_view name = k.str();
    if (name == "reject_score") {
      int64_t x = 0;
      if (read_int(v, key, 0, kMaxScore, x)) out.reject_score = static_cast<int32_t>(x);
    } else if (name == "quarantine_score") {
      int64_t x = 0;
      if (read_int(v, key, 0, kMaxScore, x)) out.quarantine_score = static_cast<int32_t>(x);
    } else if (name == "trace_header") {
      read_bool(v, key, out.trace_header);
    } else if (name == "dnsbl_failure") {
      read_enum(v, key, kDnsFailures, out.dnsbl_failure);
    } else if (name == "ptr") {
      if (const toml::table* s = section(v, key)) load_ptr(*s, out.ptr);
    } else if (name == "helo") {
      if (const toml::table* s = section(v, key)) load_helo(*s, out.helo);
    } else if (name == "sender") {
      if (const toml::table* s = section(v, key)) load_sender(*s, out.sender);
    } else if (name == "rate") {
      if (const toml::table* s = section(v, key)) load_rate(*s, out.rate);
    } else if (name == "karma") {
      if (const toml::table* s = section(v, key)) load_karma(*s, out.karma);
    } else {
      unknown(k, v, key);
    }
  }
}

void ChecksLoader::load_headers(const toml::node& n, HeaderRules& out) {
  const toml::table* t = section(n, "headers");
  if (t == nullptr) return;
  for (const auto& [k, v] : *t) {
    const std::string key = dotted("headers", k);
    if (k.str() == "require_from") {
      read_bool(v, key, out.require_from);
    } else if (k.str() == "require_date") {
      read_bool(v, key, out.require_date);
    } else if (k.str() == "reject_duplicates") {
      read_bool(v, key, out.reject_duplicates);
    } else {
      unknown(k, v, key);
    }
  }
}

// A check's table: its action keys, then score and dns_failure, which every
// check has; `extra` takes the keys only one check has (false: unknown).
template <class T, size_t N, class Extra>
void ChecksLoader::load_rules(const toml::table& t, std::string_view section,
                              const ActionKey<T> (&actions)[N], T& out, Extra extra) {
  for (const auto& [k, v] : t) {
    const std::string key = dotted(section, k);
    const std::string_view name = k.str();
    bool known = true;
    if (name == "score") {
      int64_t x = 0;
      if (read_int(v, key, 0, kMaxScore, x)) out.score = static_cast<int32_t>(x);
    } else if (name == "dns_failure") {
      read_enum(v, key, kDnsFailures, out.dns_failure);
    } else {
      known = false;
      for (const ActionKey<T>& a : actions) {
        if (a.name != name) continue;
        read_enum(v, key, kCheckActions, out.*a.field);
        known = true;
      }
      if (!known) known = extra(name, v, key);
    }
    if (!known) unknown(k, v, key);
  }
}

void ChecksLoader::load_ptr(const toml::table& t, PtrCheckConfig& out) {
  load_rules(t, "checks.ptr", kPtrActions, out,
             [&](std::string_view name, const toml::node& v, const std::string& key) {
               if (name != "dynamic_patterns") return false;
               read_checked_list(v, key, check_regex, kMaxPatterns, out.dynamic_patterns);
               return true;
             });
}

void ChecksLoader::load_helo(const toml::table& t, HeloCheckConfig& out) {
  load_rules(t, "checks.helo", kHeloActions, out,
             [](std::string_view, const toml::node&, const std::string&) { return false; });
}

void ChecksLoader::load_sender(const toml::table& t, SenderCheckConfig& out) {
  load_rules(t, "checks.sender", kSenderActions, out,
             [](std::string_view, const toml::node&, const std::string&) { return false; });
}

void ChecksLoader::load_rate(const toml::table& t, RateCheckConfig& out) {
  for (const auto& [k, v] : t) {
    const std::string key = dotted("checks.rate", k);
    const std::string_view name = k.str();
    int64_t x = 0;
    if (name == "connections_per_minute") {
      if (read_int(v, key, 0, kMaxPerMinute, x))
        out.connections_per_minute = static_cast<uint32_t>(x);
    } else if (name == "messages_per_minute") {
      if (read_int(v, key, 0, kMaxPerMinute, x)) out.messages_per_minute = static_cast<uint32_t>(x);
    } else if (name == "recipients_per_minute") {
      if (read_int(v, key, 0, kMaxPerMinute, x))
        out.recipients_per_minute = static_cast<uint32_t>(x);
    } else if (name == "max_connections_per_network") {
      if (read_int(v, key, 0, kMaxPerMinute, x)) {
        out.max_connections_per_network = static_cast<uint32_t>(x);
      }
    } else if (name == "network_prefix_v4") {
      if (read_int(v, key, 8, 32, x)) out.network_prefix_v4 = static_cast<uint32_t>(x);
    } else if (name == "network_prefix_v6") {
      if (read_int(v, key, 16, 128, x)) out.network_prefix_v6 = static_cast<uint32_t>(x);
    } else if (name == "max_clients") {
      if (read_int(v, key, 1, kMaxRemembered, x)) out.max_clients = static_cast<uint32_t>(x);
    } else if (name == "exempt") {
      read_checked_list(v, key, check_network, kMaxExempt, out.exempt);
    } else {
      unknown(k, v, key);
    }
  }
}

void ChecksLoader::load_karma(const toml::table& t, KarmaConfig& out) {
  for (const auto& [k, v] : t) {
    const std::string key = dotted("checks.karma", k);
    const std::string_view name = k.str();
    int64_t x = 0;
    if (name == "enabled") {
      read_bool(v, key, out.enabled);
    } else if (name == "penalty") {
      if (read_int(v, key, 1, kMaxScore, x)) out.penalty = static_cast<uint32_t>(x);
    } else if (name == "reject_penalty") {
      if (read_int(v, key, 1, kMaxScore, x)) out.reject_penalty = static_cast<uint32_t>(x);
    } else if (name == "half_life_s") {
      if (read_int(v, key, 1, int64_t{30} * 86'400, x)) out.half_life_s = static_cast<uint32_t>(x);
    } else if (name == "bad_score") {
      if (read_int(v, key, 0, kMaxScore, x)) out.bad_score = static_cast<uint32_t>(x);
    } else if (name == "score_weight") {
      if (read_int(v, key, 0, 1000, x)) out.score_weight = static_cast<uint32_t>(x);
    } else if (name == "max_clients") {
      if (read_int(v, key, 1, kMaxRemembered, x)) out.max_clients = static_cast<uint32_t>(x);
    } else {
      unknown(k, v, key);
    }
  }
}

void ChecksLoader::load_lists(const toml::node& n, std::string_view list_key,
                              std::vector<DnsListConfig>& out) {
  const toml::array* arr = n.as_array();
  if (arr == nullptr) {
    wrong_type(n, std::string(list_key), "an array of tables ([[" + std::string(list_key) + "]])");
    return;
  }
  if (arr->size() > kMaxLists) {
    add(n.source(), std::string(list_key), "at most 16 lists are allowed");
    return;
  }
  const size_t errors_before = errors_.size();
  std::vector<DnsListConfig> got;
  for (size_t i = 0; i < arr->size(); ++i) {
    const std::string base = std::string(list_key) + "[" + std::to_string(i) + "]";
    const toml::table* t = (*arr)[i].as_table();
    if (t == nullptr) {
      wrong_type((*arr)[i], base, "a table");
      continue;
    }
    DnsListConfig l;
    for (const auto& [k, v] : *t) {
      const std::string key = base + "." + std::string(k.str());
      if (k.str() == "zone") {
        read_checked(v, key, check_dns_zone, l.zone);
      } else if (k.str() == "name") {
        read_checked(
            v, key,
            [](std::string_view s) {
              if (s.empty() || s.size() > 64) return std::string("must be 1-64 characters");
              for (char c : s) {
                const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
                if (!ok) return std::string("may hold only A-Z a-z 0-9 _ . -");
              }
              return std::string();
            },
            l.name);
      } else if (k.str() == "weight") {
        int64_t x = 0;
        if (read_int(v, key, 0, kMaxScore, x)) l.weight = static_cast<int32_t>(x);
      } else if (k.str() == "codes") {
        read_checked_list(v, key, check_dns_list_code, kMaxCodes, l.codes);
      } else {
        unknown(k, v, key);
      }
    }
    if (l.zone.empty()) add(t->source(), base + ".zone", "is required");
    if (l.name.empty()) l.name = l.zone;
    got.push_back(std::move(l));
  }
  if (errors_.size() == errors_before) out = std::move(got);
}

std::string check_milter_name(std::string_view s) {
  if (s.empty() || s.size() > 32) return "must be 1-32 characters";
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return "may hold only a-z 0-9 _";
  }
  return {};
}

std::string check_milter_address(std::string_view s) {
  SocketAddress a;
  std::string error;
  if (!parse_socket_address(s, a, error)) return error;
  return {};
}

void ChecksLoader::load_milters(const toml::node& n, std::vector<MilterConfig>& out) {
  const toml::array* arr = n.as_array();
  if (arr == nullptr) {
    wrong_type(n, "milter", "an array of tables ([[milter]])");
    return;
  }
  if (arr->size() > kMaxMilters) {
    add(n.source(), "milter", "at most 16 milters are allowed");
    return;
  }
  const size_t errors_before = errors_.size();
  std::vector<MilterConfig> got;
  for (size_t i = 0; i < arr->size(); ++i) {
    const std::string base = "milter[" + std::to_string(i) + "]";
    const toml::table* t = (*arr)[i].as_table();
    if (t == nullptr) {
      wrong_type((*arr)[i], base, "a table");
      continue;
    }
    MilterConfig m;
    bool has_address = false;
    for (const auto& [k, v] : *t) {
      const std::string key = base + "." + std::string(k.str());
      const std::string_view name = k.str();
      uint64_t x = 0;
      if (name == "name") {
        read_checked(v, key, check_milter_name, m.name);
      } else if (name == "address") {
        has_address = true;
        read_checked(v, key, check_milter_address, m.address);
      } else if (name == "connect_timeout_ms") {
        if (read_uint(v, key, 1, kMaxMilterTimeoutMs, x))
          m.connect_timeout_ms = static_cast<uint32_t>(x);
      } else if (name == "command_timeout_ms") {
        if (read_uint(v, key, 1, kMaxMilterTimeoutMs, x))
          m.command_timeout_ms = static_cast<uint32_t>(x);
      } else if (name == "eom_timeout_ms") {
        if (read_uint(v, key, 1, kMaxMilterTimeoutMs, x))
          m.eom_timeout_ms = static_cast<uint32_t>(x);
      } else if (name == "default_action") {
        read_enum(v, key, kMilterDefaults, m.default_action);
      } else if (name == "reuse_connections") {
        read_bool(v, key, m.reuse_connections);
      } else if (name == "max_idle_connections") {
        if (read_uint(v, key, 1, kMaxIdleMilterConnections, x)) {
          m.max_idle_connections = static_cast<uint32_t>(x);
        }
      } else if (name == "idle_timeout_ms") {
        if (read_uint(v, key, 1, kMaxMilterTimeoutMs, x))
          m.idle_timeout_ms = static_cast<uint32_t>(x);
      } else {
        unknown(k, v, key);
      }
    }
    if (!has_address) add(t->source(), base + ".address", "is required");
    if (m.name.empty()) m.name = "milter" + std::to_string(i + 1);
    for (const MilterConfig& other : got) {
      if (other.name == m.name) add(t->source(), base + ".name", "is the name of another milter");
    }
    got.push_back(std::move(m));
  }
  if (errors_.size() == errors_before) out = std::move(got);
}

std::vector<std::pair<std::string, std::string>> check_checks_config(const ChecksConfig& c) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const std::string& p : c.ptr.dynamic_patterns) {
    std::string why = check_regex(p);
    if (!why.empty()) out.emplace_back("checks.ptr.dynamic_patterns", std::move(why));
  }
  for (const std::string& n : c.rate.exempt) {
    std::string why = check_network(n);
    if (!why.empty()) out.emplace_back("checks.rate.exempt", std::move(why));
  }
  if (c.rate.exempt.size() > kMaxExempt) {
    out.emplace_back("checks.rate.exempt", "at most 256 networks are allowed");
  }
  if (c.rate.network_prefix_v4 < 8 || c.rate.network_prefix_v4 > 32) {
    out.emplace_back("checks.rate.network_prefix_v4", "must be between 8 and 32");
  }
  if (c.rate.network_prefix_v6 < 16 || c.rate.network_prefix_v6 > 128) {
    out.emplace_back("checks.rate.network_prefix_v6", "must be between 16 and 128");
  }
  if (c.rate.max_clients == 0) out.emplace_back("checks.rate.max_clients", "must be at least 1");
  if (c.karma.max_clients == 0) out.emplace_back("checks.karma.max_clients", "must be at least 1");
  if (c.karma.half_life_s == 0) out.emplace_back("checks.karma.half_life_s", "must be at least 1");
  for (const auto* lists : {&c.dnsbl, &c.dnswl}) {
    const char* key = lists == &c.dnsbl ? "dnsbl" : "dnswl";
    if (lists->size() > kMaxLists) out.emplace_back(key, "at most 16 lists are allowed");
    for (const DnsListConfig& l : *lists) {
      std::string why = check_dns_zone(l.zone);
      if (!why.empty()) out.emplace_back(std::string(key) + ".zone", std::move(why));
      for (const std::string& code : l.codes) {
        why = check_dns_list_code(code);
        if (!why.empty()) out.emplace_back(std::string(key) + ".codes", std::move(why));
      }
    }
  }
  if (c.milters.size() > kMaxMilters) out.emplace_back("milter", "at most 16 milters are allowed");
  for (const MilterConfig& m : c.milters) {
    std::string why = check_milter_address(m.address);
    if (!why.empty()) out.emplace_back("milter.address", std::move(why));
    why = check_milter_name(m.name);
    if (!why.empty()) out.emplace_back("milter.name", std::move(why));
    if (m.connect_timeout_ms == 0 || m.command_timeout_ms == 0 || m.eom_timeout_ms == 0 ||
        m.idle_timeout_ms == 0) {
      out.emplace_back("milter", "timeouts must be at least 1 ms");
    }
    if (m.max_idle_connections == 0 || m.max_idle_connections > kMaxIdleMilterConnections) {
      out.emplace_back("milter.max_idle_connections", "must be between 1 and 10000");
    }
  }
  return out;
}

}  // namespace ringmx
