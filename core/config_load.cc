// Contract: owns TOML text -> ServerConfig (load_config) and the re-check of a finished config
// (validate_config). Pure: reads only its arguments, opens no file, resolves no name. toml++
// throws; every exception is caught here and becomes a ConfigError, none leaves load_config.
// Each field's rule (range, charset, enum names) is written once and serves both entry points,
// so a value the loader accepts is never refused by validate_config and the other way round.
#include "core/config_load.h"
#include "core/config_load_auth.h"
#include "core/config_load_checks.h"
#include "core/config_reader.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <exception>
#include <iterator>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/address.h"
#include "core/ip_network.h"
#include "core/limits.h"
#include "core/recipient_table.h"

namespace ringmx {
namespace {

// Same value as kMaxListeners in core/metrics.h, which sizes the per-listener counters; not
// included from there so the loader does not depend on the metrics types.
constexpr size_t kMaxListenerCount = 16;
constexpr size_t kMaxHostname = 255;  // RFC 1035 domain length
constexpr size_t kMaxBanner = 200;    // keeps the greeting well under the 512-octet reply line
constexpr uint64_t kMinSegmentBytes = 4096;
constexpr uint64_t kMaxSegmentBytes = uint64_t{1} << 30;

// The unsigned [server] keys, with their ranges.
using ServerUint = UintField<ServerConfig>;

constexpr ServerUint kServerUints[] = {
    {"shards", &ServerConfig::shards, 0, kMaxShards},
    {"max_connections", &ServerConfig::max_connections, 1, 1'000'000},
    {"max_connections_per_ip", &ServerConfig::max_connections_per_ip, 1, 1'000'000},
    {"drain_timeout_ms", &ServerConfig::drain_timeout_ms, 0, 3'600'000},
    {"greeting_delay_ms", &ServerConfig::greeting_delay_ms, 0, 60'000},
    {"proxy_timeout_ms", &ServerConfig::proxy_timeout_ms, 100, 300'000},
    {"pregreet_score", &ServerConfig::pregreet_score, 0, 1'000'000},
    {"ring_entries", &ServerConfig::ring_entries, 8, 32'768},
};

constexpr ServerUint kAdminUints[] = {
    {"max_connections", &ServerConfig::admin_max_connections, 1, 100'000},
    {"request_timeout_ms", &ServerConfig::admin_request_timeout_ms, 100, 60'000},
};

constexpr UintField<DnsConfig> kDnsUints[] = {
    {"timeout_ms", &DnsConfig::timeout_ms, 100, 60'000},
    {"tries", &DnsConfig::tries, 1, 10},
    {"cache_entries", &DnsConfig::cache_entries, 1, 10'000'000},
    {"max_ttl_s", &DnsConfig::max_ttl_s, 0, 604'800},
    {"negative_ttl_s", &DnsConfig::negative_ttl_s, 0, 86'400},
    {"max_in_flight", &DnsConfig::max_in_flight, 1, 1'000'000},
};

constexpr UintField<RecipientsConfig> kRecipientsUints[] = {
    {"unknown_limit", &RecipientsConfig::unknown_limit, 1, 10'000},
};

// A recipients file path: empty turns the check off; the file itself is read
// when the config is put to use (start-up, --check-config, reload).
std::string check_recipients_file(std::string_view f) {
  if (f.find('\0') != std::string_view::npos) return "must not contain NUL";
  return {};
}

// A DNS server: "IP", "IP:PORT" or "[IPv6]:PORT" (what c-ares's server list takes).
std::string check_dns_server(std::string_view s) {
  std::string host;
  uint16_t port = 0;
  if (split_host_port(s, host, port)) return {};
  if (parse_ip(s)) return {};
  return "must be an IP address, IP:PORT or [IPv6]:PORT";
}

constexpr UintField<DeliveryConfig> kDeliveryUints[] = {
    {"connect_timeout_ms", &DeliveryConfig::connect_timeout_ms, 100, 3'600'000},
    {"command_timeout_ms", &DeliveryConfig::command_timeout_ms, 100, 3'600'000},
    {"data_timeout_ms", &DeliveryConfig::data_timeout_ms, 100, 3'600'000},
    {"idle_timeout_ms", &DeliveryConfig::idle_timeout_ms, 0, 3'600'000},
    {"max_connections_per_destination", &DeliveryConfig::max_connections_per_destination, 1,
     100'000},
    {"max_messages_per_connection", &DeliveryConfig::max_messages_per_connection, 1, 1'000'000},
    {"retry_min_ms", &DeliveryConfig::retry_min_ms, 100, 86'400'000},
    {"retry_max_ms", &DeliveryConfig::retry_max_ms, 100, 604'800'000},
    {"max_age_s", &DeliveryConfig::max_age_s, 1, uint64_t{100} * 86'400},
    {"delay_notice_s", &DeliveryConfig::delay_notice_s, 0, uint64_t{100} * 86'400},
    {"max_queue_messages", &DeliveryConfig::max_queue_messages, 1, 100'000'000},
};

struct ExtensionFlag {
  std::string_view name;
  bool Extensions::*field;
};

constexpr ExtensionFlag kExtensionFlags[] = {
    {"pipelining", &Extensions::pipelining},
    {"size", &Extensions::size},
    {"eightbitmime", &Extensions::eightbitmime},
    {"smtputf8", &Extensions::smtputf8},
    {"enhanced_status_codes", &Extensions::enhanced_status_codes},
    {"chunking", &Extensions::chunking},
    {"dsn", &Extensions::dsn},
    {"vrfy", &Extensions::vrfy},
};

// Limits mixes uint32 and uint64 fields; exactly one of the two pointers is set.
struct LimitField {
  std::string_view name;
  uint32_t Limits::*narrow = nullptr;
  uint64_t Limits::*wide = nullptr;
};

constexpr LimitField kLimitFields[] = {
    {"max_command_line", &Limits::max_command_line},
    {"max_message_size", nullptr, &Limits::max_message_size},
    {"max_recipients", &Limits::max_recipients},
    {"max_bad_commands", &Limits::max_bad_commands},
    {"max_transactions", &Limits::max_transactions},
    {"max_helo_length", &Limits::max_helo_length},
    {"max_received_headers", &Limits::max_received_headers},
    {"max_line_length", &Limits::max_line_length},
    {"max_auth_line", &Limits::max_auth_line},
    {"command_timeout_ms", &Limits::command_timeout_ms},
    {"command_line_timeout_ms", &Limits::command_line_timeout_ms},
    {"data_timeout_ms", &Limits::data_timeout_ms},
    {"session_timeout_ms", &Limits::session_timeout_ms},
    {"max_output_buffer", &Limits::max_output_buffer},
    {"send_timeout_ms", &Limits::send_timeout_ms},
    {"body_memory_per_shard", nullptr, &Limits::body_memory_per_shard},
};

// kLimitSpecs is the source of truth for names and ranges; this table only adds the storage.
// A spec added, renamed or widened past its field's type must break the build, not wrap.
constexpr bool limit_fields_follow_specs() {
  if (std::size(kLimitFields) != std::size(kLimitSpecs)) return false;
  for (size_t i = 0; i < std::size(kLimitSpecs); ++i) {
    const LimitField& f = kLimitFields[i];
    const LimitSpec& s = kLimitSpecs[i];
    if (f.name != s.name || (f.narrow == nullptr) == (f.wide == nullptr)) return false;
    if (s.min > s.max || s.max > kTomlIntMax) return false;
    if (f.narrow != nullptr && s.max > std::numeric_limits<uint32_t>::max()) return false;
  }
  return true;
}
static_assert(limit_fields_follow_specs(), "kLimitFields must match kLimitSpecs one to one");

uint64_t get_limit(const Limits& l, const LimitField& f) {
  return f.narrow != nullptr ? l.*f.narrow : l.*f.wide;
}

void set_limit(Limits& l, const LimitField& f, uint64_t v) {
  // The range check ran first and the static_assert bounds narrow specs to uint32.
  if (f.narrow != nullptr) {
    l.*f.narrow = static_cast<uint32_t>(v);
  } else {
    l.*f.wide = v;
  }
}

constexpr EnumName<RouteTls> kRouteTls[] = {
    {"none", RouteTls::none},
    {"opportunistic", RouteTls::opportunistic},
    {"required", RouteTls::required},
};

constexpr EnumName<LogLevel> kLogLevels[] = {
    {"debug", LogLevel::debug},
    {"info", LogLevel::info},
    {"warn", LogLevel::warn},
    {"error", LogLevel::error},
};

constexpr EnumName<PregreetAction> kPregreetActions[] = {
    {"reject", PregreetAction::reject},
    {"score", PregreetAction::score},
};

constexpr EnumName<LogFormat> kLogFormats[] = {
    {"logfmt", LogFormat::logfmt},
    {"json", LogFormat::json},
};

constexpr EnumName<BareLinePolicy> kBareLinePolicies[] = {
    {"reject", BareLinePolicy::reject},
    {"normalise", BareLinePolicy::normalise},
};

constexpr EnumName<UnofferedPipelining> kUnofferedPipelining[] = {
    {"reject", UnofferedPipelining::reject},
    {"ignore", UnofferedPipelining::ignore},
};

constexpr EnumName<ListenerTls> kListenerTlsModes[] = {
    {"none", ListenerTls::none},
    {"starttls", ListenerTls::starttls},
    {"implicit", ListenerTls::implicit},
};

constexpr EnumName<AuthMode> kAuthModes[] = {
    {"none", AuthMode::none},
    {"optional", AuthMode::optional},
    {"required", AuthMode::required},
};

constexpr EnumName<ListenerProxy> kListenerProxyModes[] = {
    {"none", ListenerProxy::none},
    {"v1", ListenerProxy::v1},
    {"v2", ListenerProxy::v2},
    {"any", ListenerProxy::any},
};

// Networks a listener trusts: enough for any real set-up, small enough that
// a linear match per connection stays cheap.
constexpr size_t kMaxNetworksPerList = 256;

constexpr EnumName<TlsMinVersion> kTlsMinVersions[] = {
    {"TLS1_2", TlsMinVersion::tls1_2},
    {"TLS1_3", TlsMinVersion::tls1_3},
};

// Handshake deadline: long enough for a slow RSA client on a bad link, short
// enough that a silent socket does not hold a slot for minutes.
constexpr uint64_t kMinHandshakeTimeoutMs = 100;
constexpr uint64_t kMaxHandshakeTimeoutMs = 300000;

// The field rules below return an empty string for an acceptable value, else the message.

std::string check_hostname(std::string_view h) {
  if (h.empty()) return "must not be empty";
  if (h.size() > kMaxHostname) return "must be at most 255 characters";
  // No UTF-8: the name goes into the greeting and EHLO before the client said SMTPUTF8.
  if (!is_valid_domain(h, /*allow_utf8=*/false)) {
    return "must be a domain name (letters, digits, '-' and '.') or an address literal such as "
           "[192.0.2.1]";
  }
  return {};
}

std::string check_banner(std::string_view b) {
  if (b.size() > kMaxBanner) return "must be at most 200 characters";
  for (const char c : b) {
    // A CR or LF would let the banner forge extra reply lines.
    if (c < 0x20 || c > 0x7e) return "must be printable ASCII";
  }
  return {};
}

std::string check_address(std::string_view a) {
  std::string host;
  uint16_t port = 0;
  if (split_host_port(a, host, port)) return {};
  // Echoed because a command-line value has no line to point at; made safe for a terminal.
  std::string shown(a.substr(0, 80));
  for (char& c : shown) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
  return "must be IPv4:port or [IPv6]:port with a numeric address and a port 1-65535 (got \"" +
         shown + "\")";
}

bool is_name_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

// A name spelled like its own address is what the default produces, so it is allowed as is,
// brackets and ':' included; any other name keeps to a charset safe for logs and metrics.
std::string check_listener_name(std::string_view n, std::string_view address) {
  if (n.empty()) return "must not be empty";
  if (n == address) return {};
  for (const char c : n) {
    if (!is_name_char(c)) return "must contain only A-Z a-z 0-9 _ . -";
  }
  return {};
}

// Certificate and key paths: existence is checked when the certificates are
// loaded (start-up, --check-config, reload); here only the shape.
std::string check_file_path(std::string_view f) {
  if (f.empty()) return "must not be empty";
  if (f.find('\0') != std::string_view::npos) return "must not contain NUL";
  return {};
}

// A server name for SNI: a host name, or "*." and one.
std::string check_sni_name(std::string_view n) {
  std::string_view host = n;
  if (host.size() > 2 && host.substr(0, 2) == "*.") host.remove_prefix(2);
  if (host.empty() || !check_hostname(host).empty()) {
    return "must be a host name or *.domain";
  }
  return {};
}

std::string check_spool_dir(std::string_view d) {
  if (d.empty()) return "must not be empty";
  // open() would silently stop at the NUL and use another directory.
  if (d.find('\0') != std::string_view::npos) return "must not contain a NUL character";
  return {};
}

// Route names label logs and metrics: the listener-name alphabet.
std::string check_route_name(std::string_view n) {
  if (n.empty() || n.size() > 64) return "must be 1-64 characters";
  for (char c : n) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    if (!ok) return "may hold only A-Z a-z 0-9 _ . -";
  }
  return {};
}

std::string listener_key(size_t i, std::string_view field) {
  std::string key = "listener[" + std::to_string(i) + "]";
  if (!field.empty()) {
    key += '.';
    key += field;
  }
  return key;
}

// Walks the parsed tree, writes accepted values into the config and records every problem.
// A rejected value leaves the field as it was in `base`.
class Loader : TomlReader {
 public:
  using TomlReader::TomlReader;

  void load_root(const toml::table& root, ServerConfig& cfg) {
    for (const auto& [k, v] : root) {
      const std::string_view name = k.str();
      if (name == "server") {
        if (const toml::table* t = section(v, "server")) load_server(*t, cfg);
      } else if (name == "limits") {
        if (const toml::table* t = section(v, "limits")) load_limits(*t, cfg.smtp.limits);
      } else if (name == "smtp") {
        if (const toml::table* t = section(v, "smtp")) load_smtp(*t, cfg.smtp);
      } else if (name == "spool") {
        if (const toml::table* t = section(v, "spool")) load_spool(*t, cfg.spool);
      } else if (name == "admin") {
        if (const toml::table* t = section(v, "admin")) load_admin(*t, cfg);
      } else if (name == "delivery") {
        if (const toml::table* t = section(v, "delivery")) load_delivery(*t, cfg.delivery);
      } else if (name == "dns") {
        if (const toml::table* t = section(v, "dns")) load_dns(*t, cfg.dns);
      } else if (name == "recipients") {
        if (const toml::table* t = section(v, "recipients")) load_recipients(*t, cfg.recipients);
      } else if (name == "listener") {
        load_listeners(v, cfg);
      } else if (name == "route") {
        load_routes(v, cfg);
      } else if (name == "headers") {
        ChecksLoader(file_, errors_).load_headers(v, cfg.smtp.headers);
      } else if (name == "checks") {
        ChecksLoader(file_, errors_).load_checks(v, cfg.checks);
      } else if (name == "dnsbl" || name == "dnswl") {
        ChecksLoader(file_, errors_)
            .load_lists(v, name, name == "dnsbl" ? cfg.checks.dnsbl : cfg.checks.dnswl);
      } else if (name == "milter") {
        ChecksLoader(file_, errors_).load_milters(v, cfg.checks.milters);
      } else if (name == "tls") {
        if (const toml::table* t = section(v, "tls")) load_tls(*t, cfg.tls);
      } else if (name == "auth") {
        AuthLoader(file_, errors_).load(v, cfg.auth, cfg.smtp.received_names_auth_user);
      } else {
        unknown(k, v, std::string(name));
      }
    }
  }

 private:
  void load_server(const toml::table& t, ServerConfig& cfg) {
    for (const auto& [k, v] : t) {
      const std::string_view name = k.str();
      const std::string key = dotted("server", k);
      if (name == "hostname") {
        read_checked(v, key, check_hostname, cfg.smtp.hostname);
      } else if (name == "banner") {
        read_checked(v, key, check_banner, cfg.smtp.banner);
      } else if (name == "log_level") {
        read_enum(v, key, kLogLevels, cfg.log_level);
      } else if (name == "log_format") {
        read_enum(v, key, kLogFormats, cfg.log_format);
      } else if (name == "greeting_teaser") {
        read_bool(v, key, cfg.greeting_teaser);
      } else if (name == "pregreet_action") {
        read_enum(v, key, kPregreetActions, cfg.pregreet_action);
      } else if (!load_uint_field(kServerUints, name, v, key, cfg)) {
        unknown(k, v, key);
      }
    }
  }

  // Reads `name` if `fields` (kServerUints, kAdminUints, kDeliveryUints) has it; false if not.
  template <class C, size_t N>
  bool load_uint_field(const UintField<C> (&fields)[N], std::string_view name, const toml::node& v,
                       const std::string& key, C& cfg) {
    for (const UintField<C>& f : fields) {
      if (f.name != name) continue;
      uint64_t x = 0;
      if (read_uint(v, key, f.min, f.max, x)) cfg.*f.field = static_cast<uint32_t>(x);
      return true;
    }
    return false;
  }

  void load_limits(const toml::table& t, Limits& limits) {
    for (const auto& [k, v] : t) {
      const std::string key = dotted("limits", k);
      bool known = false;
      for (size_t i = 0; i < std::size(kLimitSpecs); ++i) {
        if (kLimitSpecs[i].name != k.str()) continue;
        known = true;
        uint64_t x = 0;
        if (read_uint(v, key, kLimitSpecs[i].min, kLimitSpecs[i].max, x)) {
          set_limit(limits, kLimitFields[i], x);
        }
        break;
      }
      if (!known) unknown(k, v, key);
    }
  }

  void load_smtp(const toml::table& t, SessionConfig& smtp) {
    for (const auto& [k, v] : t) {
      const std::string key = dotted("smtp", k);
      if (k.str() == "bare_line") {
        read_enum(v, key, kBareLinePolicies, smtp.bare_line);
        continue;
      }
      if (k.str() == "unoffered_pipelining") {
        read_enum(v, key, kUnofferedPipelining, smtp.unoffered_pipelining);
        continue;
      }
      if (k.str() == "reject_http") {
        read_bool(v, key, smtp.reject_http);
        continue;
      }
      bool known = false;
      for (const ExtensionFlag& f : kExtensionFlags) {
        if (f.name != k.str()) continue;
        known = true;
        read_bool(v, key, smtp.ext.*f.field);
        break;
      }
      if (!known) unknown(k, v, key);
    }
  }

  void load_spool(const toml::table& t, SpoolConfig& spool) {
    for (const auto& [k, v] : t) {
      const std::string_view name = k.str();
      const std::string key = dotted("spool", k);
      if (name == "dir") {
        read_checked(v, key, check_spool_dir, spool.dir);
      } else if (name == "max_bytes") {
        read_uint(v, key, 0, kTomlIntMax, spool.max_bytes);
      } else if (name == "min_free_bytes") {
        read_uint(v, key, 0, kTomlIntMax, spool.min_free_bytes);
      } else if (name == "segment_bytes") {
        read_uint(v, key, kMinSegmentBytes, kMaxSegmentBytes, spool.segment_bytes);
      } else {
        unknown(k, v, key);
      }
    }
  }

  void load_delivery(const toml::table& t, DeliveryConfig& d) {
    const DeliveryConfig before = d;
    for (const auto& [k, v] : t) {
      const std::string key = dotted("delivery", k);
      if (k.str() == "memory_per_shard") {
        read_uint(v, key, 0, kTomlIntMax, d.memory_per_shard);
        continue;
      }
      if (!load_uint_field(kDeliveryUints, k.str(), v, key, d)) unknown(k, v, key);
    }
    if (d.retry_max_ms < d.retry_min_ms) {
      const toml::node* at = t.get("retry_max_ms");
      add((at ? *at : static_cast<const toml::node&>(t)).source(), "delivery.retry_max_ms",
          "must not be less than delivery.retry_min_ms");
      d.retry_min_ms = before.retry_min_ms;  // an error changes nothing
      d.retry_max_ms = before.retry_max_ms;
    }
  }

  void load_dns(const toml::table& t, DnsConfig& d) {
    for (const auto& [k, v] : t) {
      const std::string key = dotted("dns", k);
      if (k.str() == "servers") {
        read_checked_list(v, key, check_dns_server, 16, d.servers);
        continue;
      }
      if (!load_uint_field(kDnsUints, k.str(), v, key, d)) unknown(k, v, key);
    }
  }

  void load_recipients(const toml::table& t, RecipientsConfig& r) {
    for (const auto& [k, v] : t) {
      const std::string key = dotted("recipients", k);
      if (k.str() == "file") {
        read_checked(v, key, check_recipients_file, r.file);
      } else if (k.str() == "case_sensitive") {
        read_bool(v, key, r.case_sensitive);
      } else if (k.str() == "subaddress_separator") {
        read_checked(v, key, check_subaddress_separator, r.subaddress_separator);
      } else if (!load_uint_field(kRecipientsUints, k.str(), v, key, r)) {
        unknown(k, v, key);
      }
    }
  }

  void load_admin(const toml::table& t, ServerConfig& cfg) {
    for (const auto& [k, v] : t) {
      const std::string key = dotted("admin", k);
      if (k.str() == "listen") {
        // The empty string is how the endpoint is turned off, so it skips the address check.
        read_checked(
            v, key, [](std::string_view s) { return s.empty() ? std::string() : check_address(s); },
            cfg.admin_listen);
        continue;
      }
      if (!load_uint_field(kAdminUints, k.str(), v, key, cfg)) unknown(k, v, key);
    }
  }

  void load_tls(const toml::table& t, TlsConfig& tls) {
    for (const auto& [k, v] : t) {
      const std::string_view name = k.str();
      const std::string key = dotted("tls", k);
      if (name == "cert") {
        read_checked(v, key, check_file_path, tls.cert_file);
      } else if (name == "key") {
        read_checked(v, key, check_file_path, tls.key_file);
      } else if (name == "min_version") {
        read_enum(v, key, kTlsMinVersions, tls.min_version);
      } else if (name == "ciphers" || name == "groups") {
        read_checked(
            v, key, [](std::string_view s) { return s.empty() ? "must not be empty" : ""; },
            name == "ciphers" ? tls.ciphers : tls.groups);
      } else if (name == "session_tickets") {
        read_bool(v, key, tls.session_tickets);
      } else if (name == "request_client_cert") {
        read_bool(v, key, tls.request_client_cert);
      } else if (name == "handshake_timeout_ms") {
        uint64_t x = 0;
        if (read_uint(v, key, kMinHandshakeTimeoutMs, kMaxHandshakeTimeoutMs, x)) {
          tls.handshake_timeout_ms = static_cast<uint32_t>(x);
        }
      } else if (name == "sni") {
        load_sni(v, tls);
      } else {
        unknown(k, v, key);
      }
    }
  }

  void load_sni(const toml::node& n, TlsConfig& tls) {
    const toml::array* arr = n.as_array();
    if (arr == nullptr) {
      wrong_type(n, "tls.sni", "an array of tables ([[tls.sni]])");
      return;
    }
    tls.sni.clear();
    for (size_t i = 0; i < arr->size(); ++i) {
      const std::string base = "tls.sni[" + std::to_string(i) + "]";
      const toml::table* t = (*arr)[i].as_table();
      if (t == nullptr) {
        wrong_type((*arr)[i], base, "a table");
        continue;
      }
      TlsSniConfig e;
      const size_t errors_before = errors_.size();
      for (const auto& [k, v] : *t) {
        const std::string key = base + "." + std::string(k.str());
        if (k.str() == "name") {
          read_checked(v, key, check_sni_name, e.name);
        } else if (k.str() == "cert") {
          read_checked(v, key, check_file_path, e.cert_file);
        } else if (k.str() == "key") {
          read_checked(v, key, check_file_path, e.key_file);
        } else {
          unknown(k, v, key);
        }
      }
      if (e.name.empty() || e.cert_file.empty() || e.key_file.empty()) {
        // A field already refused says enough.
        if (errors_.size() == errors_before) add(t->source(), base, "needs name, cert and key");
        continue;
      }
      tls.sni.push_back(std::move(e));
    }
  }

  void load_routes(const toml::node& n, ServerConfig& cfg) {
    const toml::array* arr = n.as_array();
    if (arr == nullptr) {
      wrong_type(n, "route", "an array of tables ([[route]])");
      return;
    }
    const size_t errors_before = errors_.size();
    std::vector<RouteConfig> out;
    for (size_t i = 0; i < arr->size(); ++i) {
      const std::string base = "route[" + std::to_string(i) + "]";
      const toml::table* t = (*arr)[i].as_table();
      if (t == nullptr) {
        wrong_type((*arr)[i], base, "a table");
        continue;
      }
      RouteConfig r;
      bool has_domains = false;
      bool has_destination = false;
      for (const auto& [k, v] : *t) {
        const std::string key = base + "." + std::string(k.str());
        if (k.str() == "name") {
          read_checked(v, key, check_route_name, r.name);
        } else if (k.str() == "destination") {
          has_destination = true;
          read_checked(
              v, key,
              [](std::string_view d) {
                Destination parsed;
                return parse_destination(d, parsed);
              },
              r.destination);
        } else if (k.str() == "tls") {
          read_enum(v, key, kRouteTls, r.tls);
        } else if (k.str() == "tls_ca_file") {
          read_checked(
              v, key,
              [](std::string_view f) {
                return f.empty() || f.front() == '/' ? std::string()
                                                     : std::string("must be an absolute path");
              },
              r.tls_ca_file);
        } else if (k.str() == "domains") {
          has_domains = true;
          const toml::array* domains = v.as_array();
          if (domains == nullptr || domains->empty()) {
            add(v.source(), key, "must be a non-empty array of domains");
            continue;
          }
          for (size_t j = 0; j < domains->size(); ++j) {
            std::string d;
            if (read_checked((*domains)[j], key + "[" + std::to_string(j) + "]",
                             check_domain_pattern, d)) {
              r.domains.push_back(std::move(d));
            }
          }
        } else {
          unknown(k, v, key);
        }
      }
      if (!has_domains) add(t->source(), base + ".domains", "is required");
      if (!has_destination) add(t->source(), base + ".destination", "is required");
      if (r.name.empty() && !r.domains.empty()) r.name = r.domains.front();
      out.push_back(std::move(r));
    }
    // A half-read route table would take mail for a different set of domains:
    // on any error the routes stay as they were.
    if (errors_.size() == errors_before) cfg.routes = std::move(out);
  }

  void load_listeners(const toml::node& n, ServerConfig& cfg) {
    const toml::array* arr = n.as_array();
    if (arr == nullptr) {
      wrong_type(n, "listener", "an array of tables ([[listener]])");
      return;
    }
    if (arr->empty()) add(n.source(), "listener", "at least one listener is required");
    // Whatever the file lists replaces the base listeners; merging would leave the defaults
    // listening next to the configured ones.
    std::vector<ListenerConfig> out;
    for (size_t i = 0; i < arr->size(); ++i) {
      const toml::node& el = (*arr)[i];
      if (i == kMaxListenerCount) {
        add(el.source(), "listener", "at most 16 listeners are allowed");
      }
      const toml::table* t = el.as_table();
      if (t == nullptr) {
        wrong_type(el, listener_key(i, {}), "a table");
        continue;
      }
      load_listener(*t, i, out);
    }
    cfg.listeners = std::move(out);
  }

  void load_listener(const toml::table& t, size_t index, std::vector<ListenerConfig>& out) {
    ListenerConfig l;
    const toml::node* name_node = nullptr;
    bool has_address = false;
    bool address_ok = false;
    for (const auto& [k, v] : t) {
      if (k.str() == "name") {
        name_node = &v;  // checked below, once the address is known
      } else if (k.str() == "address") {
        has_address = true;
        address_ok = read_checked(v, listener_key(index, "address"), check_address, l.address);
      } else if (k.str() == "tls") {
        read_enum(v, listener_key(index, "tls"), kListenerTlsModes, l.tls);
      } else if (k.str() == "require_tls") {
        read_bool(v, listener_key(index, "require_tls"), l.require_tls);
      } else if (k.str() == "cert") {
        read_checked(v, listener_key(index, "cert"), check_file_path, l.cert_file);
      } else if (k.str() == "key") {
        read_checked(v, listener_key(index, "key"), check_file_path, l.key_file);
      } else if (k.str() == "proxy_protocol") {
        read_enum(v, listener_key(index, "proxy_protocol"), kListenerProxyModes, l.proxy_protocol);
      } else if (k.str() == "trusted_proxies") {
        read_checked_list(v, listener_key(index, "trusted_proxies"), check_network,
                          kMaxNetworksPerList, l.trusted_proxies);
      } else if (k.str() == "xclient_hosts") {
        read_checked_list(v, listener_key(index, "xclient_hosts"), check_network,
                          kMaxNetworksPerList, l.xclient_hosts);
      } else if (k.str() == "auth") {
        read_enum(v, listener_key(index, "auth"), kAuthModes, l.auth);
      } else {
        unknown(k, v, listener_key(index, k.str()));
      }
    }
    if (!has_address) add(t.source(), listener_key(index, "address"), "is required");
    if (name_node != nullptr) {
      const std::string& addr = l.address;
      read_checked(
          *name_node, listener_key(index, "name"),
          [&addr](std::string_view n) { return check_listener_name(n, addr); }, l.name);
    } else if (address_ok) {
      l.name = l.address;
    }
    if (!l.name.empty()) {
      for (const ListenerConfig& prev : out) {
        if (prev.name != l.name) continue;
        add(name_node != nullptr ? name_node->source() : t.source(), listener_key(index, "name"),
            "duplicate listener name \"" + l.name + "\"");
        break;
      }
    }
    out.push_back(std::move(l));
  }
};

// inet_pton wants a NUL-terminated string; anything but these characters (a NUL, a '%' zone,
// a host name) is refused before it gets there.
bool parse_numeric_host(std::string_view h, int family) {
  constexpr size_t kMaxText = 45;  // longest IPv6 text form, with an embedded IPv4 address
  if (h.empty() || h.size() > kMaxText) return false;
  for (const char c : h) {
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!hex && c != '.' && c != ':') return false;
  }
  std::array<char, kMaxText + 1> text{};
  h.copy(text.data(), h.size());
  in6_addr addr{};  // large enough for either family
  return inet_pton(family, text.data(), &addr) == 1;
}

bool parse_port(std::string_view p, uint16_t& port) {
  if (p.empty() || p.size() > 5) return false;
  uint32_t value = 0;
  for (const char c : p) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value == 0 || value > 65535) return false;
  port = static_cast<uint16_t>(value);
  return true;
}

}  // namespace

std::string ConfigError::to_string() const {
  std::string out = file;
  if (line != 0) {
    if (!out.empty()) out += ':';
    out += std::to_string(line);
    if (column != 0) out += ':' + std::to_string(column);
  }
  if (!out.empty()) out += ": ";
  if (!key.empty()) out += key + ": ";
  out += message;
  return out;
}

ConfigLoadResult load_config(std::string_view toml_text, std::string_view file_name,
                             const ServerConfig& base) {
  ConfigLoadResult result{base, {}};
  ConfigError fatal;
  fatal.file = file_name;
  try {
    const toml::table root = toml::parse(toml_text, file_name);
    Loader(file_name, result.errors).load_root(root, result.config);
    // Tables iterate in key order, not file order; people read errors top to bottom.
    std::stable_sort(result.errors.begin(), result.errors.end(),
                     [](const ConfigError& a, const ConfigError& b) {
                       return a.line != b.line ? a.line < b.line : a.column < b.column;
                     });
    return result;
  } catch (const toml::parse_error& e) {
    fatal.line = e.source().begin.line;
    fatal.column = e.source().begin.column;
    fatal.message = e.description();
  } catch (const std::exception& e) {
    fatal.message = std::string("cannot load: ") + e.what();
  } catch (...) {
    fatal.message = "cannot load: unknown exception";
  }
  // A file that did not load at all must not leave half of it applied.
  result.config = base;
  result.errors.push_back(std::move(fatal));
  return result;
}

namespace {

template <typename Check>
void check_tls(const ServerConfig& cfg, Check& check) {
  const TlsConfig& t = cfg.tls;
  if (t.cert_file.empty() != t.key_file.empty()) {
    check(t.cert_file.empty() ? "tls.cert" : "tls.key", "tls.cert and tls.key go together");
  }
  if (!t.sni.empty() && t.cert_file.empty()) {
    check("tls.sni", "needs a default certificate (tls.cert and tls.key)");
  }
  if (t.handshake_timeout_ms < kMinHandshakeTimeoutMs ||
      t.handshake_timeout_ms > kMaxHandshakeTimeoutMs) {
    check("tls.handshake_timeout_ms",
          range_message(kMinHandshakeTimeoutMs, kMaxHandshakeTimeoutMs));
  }
  for (size_t i = 0; i < cfg.listeners.size(); ++i) {
    const ListenerConfig& l = cfg.listeners[i];
    if (l.cert_file.empty() != l.key_file.empty()) {
      check(listener_key(i, l.cert_file.empty() ? "cert" : "key"), "cert and key go together");
    }
    const ListenerTls mode = effective_tls(cfg, l);
    const bool has_cert = !l.cert_file.empty() || !t.cert_file.empty();
    if (mode != ListenerTls::none && !has_cert) {
      check(listener_key(i, "tls"), "needs a certificate: set tls.cert and tls.key");
    }
    if (l.require_tls && mode == ListenerTls::none) {
      check(listener_key(i, "require_tls"), "needs tls = \"starttls\" or \"implicit\"");
    }
  }
}

}  // namespace

std::vector<ConfigError> validate_config(const ServerConfig& cfg) {
  std::vector<ConfigError> errors;
  auto check = [&errors](std::string key, std::string problem) {
    if (problem.empty()) return;
    ConfigError e;
    e.key = std::move(key);
    e.message = std::move(problem);
    errors.push_back(std::move(e));
  };
  auto in_range = [](uint64_t v, uint64_t min, uint64_t max) {
    return v >= min && v <= max ? std::string() : range_message(min, max);
  };

  check("server.hostname", check_hostname(cfg.smtp.hostname));
  check("server.banner", check_banner(cfg.smtp.banner));
  using Fields = std::span<const ServerUint>;
  for (const auto& [section, fields] :
       {std::pair{"server.", Fields(kServerUints)}, std::pair{"admin.", Fields(kAdminUints)}}) {
    for (const ServerUint& f : fields) {
      check(section + std::string(f.name), in_range(cfg.*f.field, f.min, f.max));
    }
  }
  for (size_t i = 0; i < std::size(kLimitSpecs); ++i) {
    const LimitSpec& s = kLimitSpecs[i];
    check("limits." + std::string(s.name),
          in_range(get_limit(cfg.smtp.limits, kLimitFields[i]), s.min, s.max));
  }
  for (const UintField<DeliveryConfig>& f : kDeliveryUints) {
    check("delivery." + std::string(f.name), in_range(cfg.delivery.*f.field, f.min, f.max));
  }
  check("delivery.memory_per_shard", in_range(cfg.delivery.memory_per_shard, 0, kTomlIntMax));
  for (const UintField<DnsConfig>& f : kDnsUints) {
    check("dns." + std::string(f.name), in_range(cfg.dns.*f.field, f.min, f.max));
  }
  for (const std::string& s : cfg.dns.servers) check("dns.servers", check_dns_server(s));
  for (const UintField<RecipientsConfig>& f : kRecipientsUints) {
    check("recipients." + std::string(f.name), in_range(cfg.recipients.*f.field, f.min, f.max));
  }
  check("recipients.file", check_recipients_file(cfg.recipients.file));
  check("recipients.subaddress_separator",
        check_subaddress_separator(cfg.recipients.subaddress_separator));
  if (cfg.delivery.retry_max_ms < cfg.delivery.retry_min_ms) {
    check("delivery.retry_max_ms", "must not be less than delivery.retry_min_ms");
  }
  check("spool.dir", check_spool_dir(cfg.spool.dir));
  // The loader cannot produce more than int64 max; a command-line override still could.
  check("spool.max_bytes", in_range(cfg.spool.max_bytes, 0, kTomlIntMax));
  check("spool.min_free_bytes", in_range(cfg.spool.min_free_bytes, 0, kTomlIntMax));
  check("spool.segment_bytes",
        in_range(cfg.spool.segment_bytes, kMinSegmentBytes, kMaxSegmentBytes));
  if (!cfg.admin_listen.empty()) check("admin.listen", check_address(cfg.admin_listen));

  for (const std::string& problem : check_routes(cfg.routes)) check("route", problem);
  for (auto& [key, problem] : check_checks_config(cfg.checks)) check(key, problem);
  for (auto& [key, problem] : check_auth_config(cfg)) check(key, problem);
  if (cfg.listeners.empty()) check("listener", "at least one listener is required");
  if (cfg.listeners.size() > kMaxListenerCount)
    check("listener", "at most 16 listeners are allowed");
  for (size_t i = 0; i < cfg.listeners.size(); ++i) {
    const ListenerConfig& l = cfg.listeners[i];
    check(listener_key(i, "address"), check_address(l.address));
    check(listener_key(i, "name"), check_listener_name(l.name, l.address));
    if (l.proxy_protocol != ListenerProxy::none && l.trusted_proxies.empty()) {
      // Every connection would be refused: a header is believed from no one.
      check(listener_key(i, "trusted_proxies"),
            "is required with proxy_protocol: the load balancers' networks");
    }
    if (l.proxy_protocol == ListenerProxy::none && !l.trusted_proxies.empty()) {
      check(listener_key(i, "trusted_proxies"), "needs proxy_protocol = \"v1\", \"v2\" or \"any\"");
    }
    for (const auto& [list, field] : {std::pair{&l.trusted_proxies, "trusted_proxies"},
                                      std::pair{&l.xclient_hosts, "xclient_hosts"}}) {
      if (list->size() > kMaxNetworksPerList) {
        check(listener_key(i, field),
              "at most " + std::to_string(kMaxNetworksPerList) + " entries are allowed");
      }
      for (const std::string& net : *list) check(listener_key(i, field), check_network(net));
    }
    for (size_t j = 0; j < i; ++j) {
      if (cfg.listeners[j].name == l.name && !l.name.empty()) {
        check(listener_key(i, "name"), "duplicate listener name \"" + l.name + "\"");
        break;
      }
    }
  }
  check_tls(cfg, check);
  return errors;
}

ListenerTls effective_tls(const ServerConfig& cfg, const ListenerConfig& l) {
  if (l.tls != ListenerTls::unset) return l.tls;
  return cfg.tls.cert_file.empty() ? ListenerTls::none : ListenerTls::starttls;
}

bool split_host_port(std::string_view s, std::string& host, uint16_t& port) {
  std::string_view h;
  std::string_view p;
  int family = AF_INET;
  if (!s.empty() && s.front() == '[') {
    // Brackets are for IPv6 only; "[192.0.2.1]:25" is refused rather than guessed at.
    const size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      return false;
    }
    h = s.substr(1, close - 1);
    p = s.substr(close + 2);
    family = AF_INET6;
  } else {
    // Unbracketed IPv6 ("::1:25") is ambiguous; the host must then be IPv4, which has no ':'.
    const size_t colon = s.find(':');
    if (colon == std::string_view::npos) return false;
    h = s.substr(0, colon);
    p = s.substr(colon + 1);
  }
  uint16_t port_value = 0;
  if (!parse_port(p, port_value) || !parse_numeric_host(h, family)) return false;
  host.assign(h);
  port = port_value;
  return true;
}

}  // namespace ringmx
