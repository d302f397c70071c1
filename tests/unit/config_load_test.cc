// Contract: tests core/config_load.h: TOML -> ServerConfig over a base, every error kind with its
// line and key, validate_config on a finished config, split_host_port, and that the shipped
// deploy/ringmx.toml loads clean, sets every key and documents each limit's range and reply.
#include "core/config_load.h"

#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/limits.h"

#ifndef RINGMX_SOURCE_DIR
#error "RINGMX_SOURCE_DIR must name the source tree (tests/CMakeLists.txt defines it)"
#endif

namespace ringmx {
namespace {

// Written out field by field rather than looked up by name so that a mix-up in the loader's
// own name table cannot hide behind the same mix-up here.
uint64_t limit_by_name(const Limits& l, std::string_view name) {
  if (name == "max_command_line") return l.max_command_line;
  if (name == "max_message_size") return l.max_message_size;
  if (name == "max_recipients") return l.max_recipients;
  if (name == "max_bad_commands") return l.max_bad_commands;
  if (name == "max_transactions") return l.max_transactions;
  if (name == "max_helo_length") return l.max_helo_length;
  if (name == "max_received_headers") return l.max_received_headers;
  if (name == "max_line_length") return l.max_line_length;
  if (name == "max_auth_line") return l.max_auth_line;
  if (name == "command_timeout_ms") return l.command_timeout_ms;
  if (name == "command_line_timeout_ms") return l.command_line_timeout_ms;
  if (name == "data_timeout_ms") return l.data_timeout_ms;
  if (name == "session_timeout_ms") return l.session_timeout_ms;
  if (name == "max_output_buffer") return l.max_output_buffer;
  if (name == "send_timeout_ms") return l.send_timeout_ms;
  if (name == "body_memory_per_shard") return l.body_memory_per_shard;
  ADD_FAILURE() << "limit_by_name does not know " << name;
  return 0;
}

// One line per field: comparing dumps shows exactly which field differs. A field added to
// ServerConfig must be added here too, or the equality tests below cannot see it.
std::string dump(const ServerConfig& c) {
  std::ostringstream o;
  const SessionConfig& s = c.smtp;
  o << "hostname=" << s.hostname << "\nbanner=" << s.banner << "\nsoftware=" << s.software
    << "\nbare_line=" << static_cast<int>(s.bare_line) << "\nreject_http=" << s.reject_http
    << "\nunoffered_pipelining=" << static_cast<int>(s.unoffered_pipelining) << "\n";
  for (const LimitSpec& spec : kLimitSpecs) {
    o << "limits." << spec.name << "=" << limit_by_name(s.limits, spec.name) << "\n";
  }
  const Extensions& e = s.ext;
  o << "ext=" << e.pipelining << e.size << e.eightbitmime << e.smtputf8 << e.enhanced_status_codes
    << e.chunking << e.dsn << e.vrfy << "\n";
  for (const ListenerConfig& l : c.listeners) {
    o << "listener=" << l.name << "@" << l.address << " tls=" << static_cast<int>(l.tls)
      << " require_tls=" << l.require_tls << " cert=" << l.cert_file << " key=" << l.key_file
      << " proxy=" << static_cast<int>(l.proxy_protocol) << " trusted=";
    for (const std::string& n : l.trusted_proxies) o << n << ",";
    o << " xclient=";
    for (const std::string& n : l.xclient_hosts) o << n << ",";
    o << " auth=" << static_cast<int>(l.auth) << "\n";
  }
  const TlsConfig& t = c.tls;
  o << "tls.cert=" << t.cert_file << "\ntls.key=" << t.key_file
    << "\ntls.min_version=" << static_cast<int>(t.min_version) << "\ntls.ciphers=" << t.ciphers
    << "\ntls.groups=" << t.groups << "\ntls.session_tickets=" << t.session_tickets
    << "\ntls.request_client_cert=" << t.request_client_cert
    << "\ntls.handshake_timeout_ms=" << t.handshake_timeout_ms << "\n";
  for (const TlsSniConfig& sni : t.sni) {
    o << "tls.sni=" << sni.name << " " << sni.cert_file << " " << sni.key_file << "\n";
  }
  for (const RouteConfig& r : c.routes) {
    o << "route=" << r.name << " -> " << r.destination << ":";
    for (const std::string& d : r.domains) o << " " << d;
    o << " tls=" << static_cast<int>(r.tls) << " ca=" << r.tls_ca_file << "\n";
  }
  o << "admin_listen=" << c.admin_listen << "\nadmin_max_connections=" << c.admin_max_connections
    << "\nadmin_request_timeout_ms=" << c.admin_request_timeout_ms << "\nspool.dir=" << c.spool.dir
    << "\nspool.max_bytes=" << c.spool.max_bytes
    << "\nspool.min_free_bytes=" << c.spool.min_free_bytes
    << "\nspool.segment_bytes=" << c.spool.segment_bytes << "\nshards=" << c.shards
    << "\nlog_level=" << static_cast<int>(c.log_level)
    << "\nlog_format=" << static_cast<int>(c.log_format)
    << "\nmax_connections=" << c.max_connections
    << "\nmax_connections_per_ip=" << c.max_connections_per_ip
    << "\ndrain_timeout_ms=" << c.drain_timeout_ms << "\ngreeting_delay_ms=" << c.greeting_delay_ms
    << "\nring_entries=" << c.ring_entries << "\nproxy_timeout_ms=" << c.proxy_timeout_ms << "\n";
  const DeliveryConfig& d = c.delivery;
  o << "delivery=" << d.connect_timeout_ms << " " << d.command_timeout_ms << " "
    << d.data_timeout_ms << " " << d.idle_timeout_ms << " " << d.max_connections_per_destination
    << " " << d.max_messages_per_connection << " " << d.retry_min_ms << " " << d.retry_max_ms << " "
    << d.max_age_s << " " << d.delay_notice_s << " " << d.max_queue_messages << " "
    << d.memory_per_shard << "\n";
  const DnsConfig& n = c.dns;
  o << "dns=";
  for (const std::string& server : n.servers) o << server << ",";
  o << " " << n.timeout_ms << " " << n.tries << " " << n.cache_entries << " " << n.max_ttl_s << " "
    << n.negative_ttl_s << " " << n.max_in_flight << "\n";
  const RecipientsConfig& r = c.recipients;
  o << "recipients=" << r.file << " " << r.case_sensitive << " [" << r.subaddress_separator << "] "
    << r.unknown_limit << "\n";
  o << "pregreet=" << c.greeting_teaser << " " << static_cast<int>(c.pregreet_action) << " "
    << c.pregreet_score << "\n";
  const HeaderRules& h = c.smtp.headers;
  o << "headers=" << h.require_from << " " << h.require_date << " " << h.reject_duplicates << "\n";
  const ChecksConfig& k = c.checks;
  auto act = [](CheckAction a) { return static_cast<int>(a); };
  o << "checks=" << k.reject_score << " " << k.quarantine_score << " " << k.trace_header << " "
    << static_cast<int>(k.dnsbl_failure) << "\n";
  o << "ptr=" << act(k.ptr.missing) << act(k.ptr.unconfirmed) << act(k.ptr.dynamic) << " "
    << k.ptr.score << " " << static_cast<int>(k.ptr.dns_failure);
  for (const std::string& p : k.ptr.dynamic_patterns) o << " /" << p << "/";
  o << "\nhelo=" << act(k.helo.bare_ip) << act(k.helo.not_fqdn) << act(k.helo.ours)
    << act(k.helo.literal_mismatch) << act(k.helo.unresolvable) << " " << k.helo.score << " "
    << static_cast<int>(k.helo.dns_failure) << "\n";
  o << "sender=" << act(k.sender.unresolvable) << act(k.sender.null_mx) << " " << k.sender.score
    << " " << static_cast<int>(k.sender.dns_failure) << "\n";
  for (const auto* lists : {&k.dnsbl, &k.dnswl}) {
    for (const DnsListConfig& l : *lists) {
      o << (lists == &k.dnsbl ? "dnsbl=" : "dnswl=") << l.zone << " " << l.name << " " << l.weight;
      for (const std::string& code : l.codes) o << " " << code;
      o << "\n";
    }
  }
  for (const MilterConfig& m : k.milters) {
    o << "milter=" << m.name << " " << m.address << " " << m.connect_timeout_ms << " "
      << m.command_timeout_ms << " " << m.eom_timeout_ms << " "
      << static_cast<int>(m.default_action) << " " << m.reuse_connections << " "
      << m.max_idle_connections << " " << m.idle_timeout_ms << "\n";
  }
  const RateCheckConfig& rate = c.checks.rate;
  o << "checks.rate=" << rate.connections_per_minute << " " << rate.messages_per_minute << " "
    << rate.recipients_per_minute << " " << rate.max_connections_per_network << " "
    << rate.network_prefix_v4 << " " << rate.network_prefix_v6 << " " << rate.max_clients << " [";
  for (const std::string& net : rate.exempt) o << net << ",";
  const KarmaConfig& karma = c.checks.karma;
  o << "]\nchecks.karma=" << karma.enabled << " " << karma.penalty << " " << karma.reject_penalty
    << " " << karma.half_life_s << " " << karma.bad_score << " " << karma.score_weight << " "
    << karma.max_clients << "\n";
  const AuthConfig& a = c.auth;
  o << "auth=" << static_cast<int>(a.backend) << " " << a.dovecot_socket << " " << a.dovecot_service
    << " " << a.users_file << " " << a.hash_workers << " " << a.timeout_ms << " " << a.max_pending
    << " " << a.sender_logins_file << " " << a.failure_delay_ms << " " << a.max_failure_delay_ms
    << " " << a.max_failures << " " << a.failure_window_s << " " << a.block_s << " "
    << a.max_tracked << " received_user=" << s.received_names_auth_user << "\n";
  return o.str();
}

std::string all_errors(const std::vector<ConfigError>& errors) {
  std::string out;
  for (const ConfigError& e : errors) out += e.to_string() + "\n";
  return out;
}

std::string read_source_file(const std::string& relative) {
  const std::string path = std::string(RINGMX_SOURCE_DIR) + "/" + relative;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A base in which every field differs from the default, to prove a file really set a field.
ServerConfig everything_changed() {
  ServerConfig c;
  c.smtp.hostname = "base.example";
  c.smtp.banner = "base banner";
  c.smtp.bare_line = BareLinePolicy::normalise;
  c.smtp.reject_http = false;
  c.smtp.unoffered_pipelining = UnofferedPipelining::ignore;
  Limits& l = c.smtp.limits;
  l.max_command_line = 1000;
  l.max_message_size = 2048;
  l.max_recipients = 7;
  l.max_bad_commands = 7;
  l.max_transactions = 7;
  l.max_helo_length = 17;
  l.max_received_headers = 7;
  l.max_line_length = 7;
  l.max_auth_line = 777;
  l.command_timeout_ms = 7;
  l.command_line_timeout_ms = 777;
  l.data_timeout_ms = 7;
  l.session_timeout_ms = 7;
  l.max_output_buffer = 4097;
  l.send_timeout_ms = 7;
  l.body_memory_per_shard = 4096;
  c.smtp.ext = Extensions{false, false, false, false, false, false, false, false};
  c.listeners = {{"base", "192.0.2.1:25"}, {"base2", "192.0.2.2:25"}};
  c.admin_listen = "";
  c.admin_max_connections = 7;
  c.routes = {
      {"base", {"base.example"}, "smtp://base.example", RouteTls::required, "/base/ca.pem"}};
  c.admin_request_timeout_ms = 777;
  c.delivery = DeliveryConfig{7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7};
  c.dns = DnsConfig{{"192.0.2.53"}, 7, 7, 7, 7, 7, 7};
  c.checks.rate = RateCheckConfig{7, 7, 7, 7, 17, 77, 7, {"192.0.2.0/24"}};
  c.checks.karma = KarmaConfig{true, 7, 7, 7, 7, 7, 7};
  c.auth = AuthConfig{AuthBackendKind::dovecot,
                      "inet:192.0.2.1:7",
                      "base",
                      "/base/users",
                      7,
                      777,
                      7,
                      "/base/logins",
                      7,
                      77,
                      7,
                      7,
                      7,
                      7};
  c.smtp.received_names_auth_user = true;
  c.recipients = RecipientsConfig{"/base/recipients", true, "-", 7};
  c.spool = SpoolConfig{"/base/spool", 7, 7, 7};
  c.shards = 7;
  c.log_level = LogLevel::error;
  c.log_format = LogFormat::json;
  c.max_connections = 7;
  c.max_connections_per_ip = 7;
  c.drain_timeout_ms = 7;
  c.greeting_delay_ms = 7;
  c.proxy_timeout_ms = 777;
  c.ring_entries = 9;
  c.tls.min_version = TlsMinVersion::tls1_3;
  c.tls.session_tickets = false;
  c.tls.request_client_cert = true;
  c.tls.handshake_timeout_ms = 7;
  c.greeting_teaser = true;
  c.pregreet_action = PregreetAction::score;
  c.pregreet_score = 7;
  c.smtp.headers = HeaderRules{true, true, true};
  ChecksConfig& k = c.checks;
  k.reject_score = 7;
  k.quarantine_score = 7;
  k.trace_header = false;
  k.dnsbl_failure = DnsFailure::tempfail;
  k.ptr = PtrCheckConfig{CheckAction::reject, CheckAction::reject, CheckAction::reject, {"x"}, 7,
                         DnsFailure::tempfail};
  k.helo = HeloCheckConfig{CheckAction::reject, CheckAction::reject, CheckAction::reject,
                           CheckAction::reject, CheckAction::reject, 7,
                           DnsFailure::tempfail};
  k.sender = SenderCheckConfig{CheckAction::score, CheckAction::score, 7, DnsFailure::skip};
  return c;
}

TEST(ConfigLoad, EmptyTextKeepsTheBase) {
  const ConfigLoadResult defaults = load_config("", "empty.toml");
  EXPECT_TRUE(defaults.ok()) << all_errors(defaults.errors);
  EXPECT_EQ(dump(defaults.config), dump(ServerConfig{}));

  const ServerConfig base = everything_changed();
  const ConfigLoadResult over_base = load_config("# only a comment\n\n", "empty.toml", base);
  EXPECT_TRUE(over_base.ok()) << all_errors(over_base.errors);
  EXPECT_EQ(dump(over_base.config), dump(base));
}

TEST(ConfigLoad, DefaultsValidate) {
  EXPECT_EQ(all_errors(validate_config(ServerConfig{})), "");
}

TEST(ConfigLoad, LimitSpecDefaultsMatchLimits) {
  const Limits defaults;
  for (const LimitSpec& spec : kLimitSpecs) {
    EXPECT_EQ(limit_by_name(defaults, spec.name), spec.def) << spec.name;
    EXPECT_LE(spec.min, spec.def) << spec.name;
    EXPECT_LE(spec.def, spec.max) << spec.name;
  }
}

// ---- each key sets its field ----

struct SetCase {
  const char* name;
  const char* toml;
  std::function<void(ServerConfig&)> expect;  // applied to the defaults
};

// Names the case in gtest output instead of dumping its bytes.
std::ostream& operator<<(std::ostream& os, const SetCase& c) {
  return os << c.name;
}

class ConfigSetsField : public ::testing::TestWithParam<SetCase> {};

TEST_P(ConfigSetsField, OnlyThatField) {
  const SetCase& c = GetParam();
  const ConfigLoadResult r = load_config(c.toml, "set.toml");
  EXPECT_TRUE(r.ok()) << all_errors(r.errors);
  ServerConfig expected;
  c.expect(expected);
  EXPECT_EQ(dump(r.config), dump(expected));
}

const SetCase kSetCases[] = {
    {"hostname", "[server]\nhostname = \"mx.example.org\"",
     [](ServerConfig& c) { c.smtp.hostname = "mx.example.org"; }},
    {"hostname_literal", "[server]\nhostname = \"[192.0.2.1]\"",
     [](ServerConfig& c) { c.smtp.hostname = "[192.0.2.1]"; }},
    {"banner", "[server]\nbanner = \"ESMTP ready\"",
     [](ServerConfig& c) { c.smtp.banner = "ESMTP ready"; }},
    {"banner_empty", "[server]\nbanner = \"\"", [](ServerConfig& c) { c.smtp.banner = ""; }},
    {"shards", "[server]\nshards = 256", [](ServerConfig& c) { c.shards = 256; }},
    {"log_level", "[server]\nlog_level = \"debug\"",
     [](ServerConfig& c) { c.log_level = LogLevel::debug; }},
    {"dns",
     "[dns]\nservers = [\"192.0.2.53\", \"192.0.2.54:5353\", \"[2001:db8::53]:53\"]\n"
     "timeout_ms = 500\ntries = 3",
     [](ServerConfig& c) {
       c.dns.servers = {"192.0.2.53", "192.0.2.54:5353", "[2001:db8::53]:53"};
       c.dns.timeout_ms = 500;
       c.dns.tries = 3;
     }},
    {"recipients",
     "[recipients]\nfile = \"/etc/ringmx/recipients\"\ncase_sensitive = true\n"
     "subaddress_separator = \"+-\"\nunknown_limit = 10000",
     [](ServerConfig& c) {
       c.recipients = RecipientsConfig{"/etc/ringmx/recipients", true, "+-", 10'000};
     }},
    {"checks",
     "[checks]\nreject_score = 0\n[checks.ptr]\nmissing = \"reject\"\n"
     "dynamic_patterns = ['^dyn']\nscore = 1000000\n[checks.sender]\nnull_mx = \"score\"\n"
     "[[dnsbl]]\nzone = \"bl.example\"\nweight = 9\ncodes = [\"127.0.0.2-127.0.0.3\"]\n",
     [](ServerConfig& c) {
       c.checks.reject_score = 0;
       c.checks.ptr.missing = CheckAction::reject;
       c.checks.ptr.dynamic_patterns = {"^dyn"};
       c.checks.ptr.score = 1'000'000;
       c.checks.sender.null_mx = CheckAction::score;
       c.checks.dnsbl = {{"bl.example", "bl.example", 9, {"127.0.0.2-127.0.0.3"}}};
     }},
    {"milters",
     "[[milter]]\naddress = \"inet:127.0.0.1:11332\"\n[[milter]]\nname = \"dkim\"\n"
     "address = \"unix:/run/opendkim/opendkim.sock\"\nconnect_timeout_ms = 1\n"
     "command_timeout_ms = 2\neom_timeout_ms = 3600000\ndefault_action = \"accept\"\n"
     "reuse_connections = true\nmax_idle_connections = 10000\nidle_timeout_ms = 1\n",
     [](ServerConfig& c) {
       MilterConfig a;
       a.name = "milter1";
       a.address = "inet:127.0.0.1:11332";
       MilterConfig b;
       b.name = "dkim";
       b.address = "unix:/run/opendkim/opendkim.sock";
       b.connect_timeout_ms = 1;
       b.command_timeout_ms = 2;
       b.eom_timeout_ms = 3'600'000;
       b.default_action = MilterDefault::accept;
       b.reuse_connections = true;
       b.max_idle_connections = 10'000;
       b.idle_timeout_ms = 1;
       c.checks.milters = {a, b};
     }},
    {"auth",
     "[auth]\nbackend = \"dovecot\"\ndovecot_socket = \"inet:127.0.0.1:12345\"\n"
     "dovecot_service = \"submission\"\ntimeout_ms = 100\nmax_pending = 1\n"
     "sender_logins_file = \"/etc/ringmx/logins\"\nfailure_delay_ms = 0\n"
     "max_failure_delay_ms = 300000\nmax_failures = 1\nfailure_window_s = 86400\n"
     "block_s = 0\nmax_tracked = 1\nreceived_header_user = true\n"
     "users_file = \"/etc/ringmx/users\"\nhash_workers = 64\n"
     "[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n"
     "[[listener]]\naddress = \"127.0.0.1:587\"\nauth = \"required\"\n",
     [](ServerConfig& c) {
       c.auth.backend = AuthBackendKind::dovecot;
       c.auth.dovecot_socket = "inet:127.0.0.1:12345";
       c.auth.dovecot_service = "submission";
       c.auth.timeout_ms = 100;
       c.auth.max_pending = 1;
       c.auth.sender_logins_file = "/etc/ringmx/logins";
       c.auth.failure_delay_ms = 0;
       c.auth.max_failure_delay_ms = 300'000;
       c.auth.max_failures = 1;
       c.auth.failure_window_s = 86'400;
       c.auth.block_s = 0;
       c.auth.max_tracked = 1;
       c.auth.users_file = "/etc/ringmx/users";
       c.auth.hash_workers = 64;
       c.smtp.received_names_auth_user = true;
       c.tls.cert_file = "/c.pem";
       c.tls.key_file = "/k.pem";
       ListenerConfig l;
       l.name = l.address = "127.0.0.1:587";
       l.auth = AuthMode::required;
       c.listeners = {l};
     }},
    {"recipients_off", "[recipients]\nfile = \"\"\nsubaddress_separator = \"\"\nunknown_limit = 1",
     [](ServerConfig& c) {
       c.recipients.file = "";
       c.recipients.subaddress_separator = "";
       c.recipients.unknown_limit = 1;
     }},
    {"log_format", "[server]\nlog_format = \"json\"",
     [](ServerConfig& c) { c.log_format = LogFormat::json; }},
    {"max_connections", "[server]\nmax_connections = 1_000_000",
     [](ServerConfig& c) { c.max_connections = 1'000'000; }},
    {"max_connections_per_ip", "[server]\nmax_connections_per_ip = 1",
     [](ServerConfig& c) { c.max_connections_per_ip = 1; }},
    {"drain_timeout_ms", "[server]\ndrain_timeout_ms = 0",
     [](ServerConfig& c) { c.drain_timeout_ms = 0; }},
    {"greeting_delay_ms", "[server]\ngreeting_delay_ms = 60000",
     [](ServerConfig& c) { c.greeting_delay_ms = 60000; }},
    {"ring_entries", "[server]\nring_entries = 8", [](ServerConfig& c) { c.ring_entries = 8; }},
    {"dotted_key_at_root", "server.shards = 3", [](ServerConfig& c) { c.shards = 3; }},
    {"ext_pipelining", "[smtp]\npipelining = false",
     [](ServerConfig& c) { c.smtp.ext.pipelining = false; }},
    {"ext_size", "[smtp]\nsize = false", [](ServerConfig& c) { c.smtp.ext.size = false; }},
    {"ext_eightbitmime", "[smtp]\neightbitmime = false",
     [](ServerConfig& c) { c.smtp.ext.eightbitmime = false; }},
    {"ext_smtputf8", "[smtp]\nsmtputf8 = false",
     [](ServerConfig& c) { c.smtp.ext.smtputf8 = false; }},
    {"ext_enhanced_status_codes", "[smtp]\nenhanced_status_codes = false",
     [](ServerConfig& c) { c.smtp.ext.enhanced_status_codes = false; }},
    {"ext_chunking", "[smtp]\nchunking = false",
     [](ServerConfig& c) { c.smtp.ext.chunking = false; }},
    {"ext_dsn", "[smtp]\ndsn = false", [](ServerConfig& c) { c.smtp.ext.dsn = false; }},
    {"ext_vrfy", "[smtp]\nvrfy = false", [](ServerConfig& c) { c.smtp.ext.vrfy = false; }},
    {"bare_line", "[smtp]\nbare_line = \"normalise\"",
     [](ServerConfig& c) { c.smtp.bare_line = BareLinePolicy::normalise; }},
    {"reject_http", "[smtp]\nreject_http = false",
     [](ServerConfig& c) { c.smtp.reject_http = false; }},
    {"unoffered_pipelining", "[smtp]\nunoffered_pipelining = \"ignore\"",
     [](ServerConfig& c) { c.smtp.unoffered_pipelining = UnofferedPipelining::ignore; }},
    {"command_line_timeout_ms", "[limits]\ncommand_line_timeout_ms = 100",
     [](ServerConfig& c) { c.smtp.limits.command_line_timeout_ms = 100; }},
    {"spool_dir", "[spool]\ndir = \"/var/spool/ringmx\"",
     [](ServerConfig& c) { c.spool.dir = "/var/spool/ringmx"; }},
    {"spool_max_bytes", "[spool]\nmax_bytes = 9223372036854775807",
     [](ServerConfig& c) { c.spool.max_bytes = 9223372036854775807ull; }},
    {"spool_min_free_bytes", "[spool]\nmin_free_bytes = 0",
     [](ServerConfig& c) { c.spool.min_free_bytes = 0; }},
    {"admin_listen", "[admin]\nlisten = \"[::1]:9000\"",
     [](ServerConfig& c) { c.admin_listen = "[::1]:9000"; }},
    {"admin_disabled", "[admin]\nlisten = \"\"", [](ServerConfig& c) { c.admin_listen = ""; }},
    {"routes",
     "[[route]]\nname = \"store\"\ndomains = [\"Example.org\", \"*.example.net\", "
     "\"[192.0.2.1]\"]\ndestination = \"lmtp://127.0.0.1:24\"\n"
     "[[route]]\ndomains = [\"other.test\"]\ndestination = \"lmtp:unix:/run/dovecot/lmtp\"\n",
     [](ServerConfig& c) {
       c.routes = {
           {"store",
            {"Example.org", "*.example.net", "[192.0.2.1]"},
            "lmtp://127.0.0.1:24",
            RouteTls::unset,
            ""},
           {"other.test", {"other.test"}, "lmtp:unix:/run/dovecot/lmtp", RouteTls::unset, ""}};
     }},
    {"no_routes", "route = []", [](ServerConfig& c) { c.routes.clear(); }},
    {"route_tls",
     "[[route]]\ndomains = [\"t.test\"]\ndestination = \"smtp://127.0.0.1:25\"\n"
     "tls = \"required\"\ntls_ca_file = \"/etc/ssl/certs/ca-certificates.crt\"\n",
     [](ServerConfig& c) {
       c.routes = {{"t.test",
                    {"t.test"},
                    "smtp://127.0.0.1:25",
                    RouteTls::required,
                    "/etc/ssl/certs/ca-certificates.crt"}};
     }},
    {"delivery",
     "[delivery]\nconnect_timeout_ms = 100\ncommand_timeout_ms = 200\ndata_timeout_ms = 300\n"
     "idle_timeout_ms = 0\nmax_connections_per_destination = 2\n"
     "max_messages_per_connection = 3\nretry_min_ms = 1000\nretry_max_ms = 2000\n"
     "max_age_s = 60\ndelay_notice_s = 30\nmax_queue_messages = 5\nmemory_per_shard = 0",
     [](ServerConfig& c) {
       c.delivery = DeliveryConfig{100, 200, 300, 0, 2, 3, 1000, 2000, 60, 30, 5, 0};
     }},
    {"admin_limits", "[admin]\nmax_connections = 1\nrequest_timeout_ms = 60000",
     [](ServerConfig& c) {
       c.admin_max_connections = 1;
       c.admin_request_timeout_ms = 60000;
     }},
    {"listener_replaces_base",
     "[[listener]]\nname = \"mx\"\naddress = \"0.0.0.0:25\"\n"
     "[[listener]]\naddress = \"[::]:587\"\n",
     [](ServerConfig& c) {
       c.listeners = {{"mx", "0.0.0.0:25"}, {"[::]:587", "[::]:587"}};
     }},
    {"listener_named_as_its_address", "[[listener]]\nname = \"[::1]:25\"\naddress = \"[::1]:25\"",
     [](ServerConfig& c) {
       c.listeners = {{"[::1]:25", "[::1]:25"}};
     }},
    {"listener_inline_array", "listener = [{ name = \"a-1.b_2\", address = \"127.0.0.1:25\" }]",
     [](ServerConfig& c) {
       c.listeners = {{"a-1.b_2", "127.0.0.1:25"}};
     }},
    {"listener_tls",
     "[[listener]]\naddress = \"0.0.0.0:465\"\ntls = \"implicit\"\nrequire_tls = true\n"
     "cert = \"/c.pem\"\nkey = \"/k.pem\"",
     [](ServerConfig& c) {
       c.listeners = {
           {"0.0.0.0:465", "0.0.0.0:465", ListenerTls::implicit, true, "/c.pem", "/k.pem"}};
     }},
    {"listener_proxy",
     "[[listener]]\naddress = \"0.0.0.0:25\"\nproxy_protocol = \"v2\"\n"
     "trusted_proxies = [\"10.0.0.0/8\", \"2001:db8::5\"]\nxclient_hosts = [\"192.0.2.0/24\"]\n"
     "[server]\nproxy_timeout_ms = 1500",
     [](ServerConfig& c) {
       ListenerConfig l{"0.0.0.0:25", "0.0.0.0:25"};
       l.proxy_protocol = ListenerProxy::v2;
       l.trusted_proxies = {"10.0.0.0/8", "2001:db8::5"};
       l.xclient_hosts = {"192.0.2.0/24"};
       c.listeners = {l};
       c.proxy_timeout_ms = 1500;
     }},
    {"tls_cert_key", "[tls]\ncert = \"/etc/c.pem\"\nkey = \"/etc/k.pem\"",
     [](ServerConfig& c) {
       c.tls.cert_file = "/etc/c.pem";
       c.tls.key_file = "/etc/k.pem";
     }},
    {"tls_min_version", "[tls]\nmin_version = \"TLS1_3\"",
     [](ServerConfig& c) { c.tls.min_version = TlsMinVersion::tls1_3; }},
    {"tls_ciphers", "[tls]\nciphers = \"TLS13-AES128-GCM-SHA256\"",
     [](ServerConfig& c) { c.tls.ciphers = "TLS13-AES128-GCM-SHA256"; }},
    {"tls_groups", "[tls]\ngroups = \"P-256\"", [](ServerConfig& c) { c.tls.groups = "P-256"; }},
    {"tls_session_tickets", "[tls]\nsession_tickets = false",
     [](ServerConfig& c) { c.tls.session_tickets = false; }},
    {"tls_request_client_cert", "[tls]\nrequest_client_cert = true",
     [](ServerConfig& c) { c.tls.request_client_cert = true; }},
    {"tls_handshake_timeout_ms", "[tls]\nhandshake_timeout_ms = 100",
     [](ServerConfig& c) { c.tls.handshake_timeout_ms = 100; }},
    {"tls_sni",
     "[[tls.sni]]\nname = \"*.example.org\"\ncert = \"/w.pem\"\nkey = \"/wk.pem\"\n"
     "[[tls.sni]]\nname = \"mx.example.net\"\ncert = \"/n.pem\"\nkey = \"/nk.pem\"",
     [](ServerConfig& c) {
       c.tls.sni = {{"*.example.org", "/w.pem", "/wk.pem"},
                    {"mx.example.net", "/n.pem", "/nk.pem"}};
     }},
};

INSTANTIATE_TEST_SUITE_P(Keys, ConfigSetsField, ::testing::ValuesIn(kSetCases),
                         [](const ::testing::TestParamInfo<SetCase>& i) { return i.param.name; });

// Both ends of every range from kLimitSpecs are accepted and stored unchanged.
TEST(ConfigLoad, EveryLimitAtBothEndsOfItsRange) {
  for (const LimitSpec& spec : kLimitSpecs) {
    for (const uint64_t v : {spec.min, spec.max}) {
      const std::string text = "[limits]\n" + std::string(spec.name) + " = " + std::to_string(v);
      const ConfigLoadResult r = load_config(text, "l.toml");
      EXPECT_TRUE(r.ok()) << text << "\n" << all_errors(r.errors);
      EXPECT_EQ(limit_by_name(r.config.smtp.limits, spec.name), v) << spec.name;
      ServerConfig expected;
      expected.smtp.limits = r.config.smtp.limits;
      EXPECT_EQ(dump(r.config), dump(expected)) << "only limits may change: " << text;
    }
  }
}

// Just outside both ends: refused with the spec's range in the message, field untouched.
TEST(ConfigLoad, EveryLimitJustOutsideItsRange) {
  for (const LimitSpec& spec : kLimitSpecs) {
    const std::string range =
        "must be between " + std::to_string(spec.min) + " and " + std::to_string(spec.max);
    for (const int64_t v :
         {static_cast<int64_t>(spec.min) - 1, static_cast<int64_t>(spec.max) + 1}) {
      const std::string text = "[limits]\n" + std::string(spec.name) + " = " + std::to_string(v);
      const ConfigLoadResult r = load_config(text, "l.toml");
      ASSERT_EQ(r.errors.size(), 1u) << text;
      EXPECT_EQ(r.errors[0].key, "limits." + std::string(spec.name));
      EXPECT_EQ(r.errors[0].line, 2u);
      EXPECT_EQ(r.errors[0].message, range);
      EXPECT_EQ(limit_by_name(r.config.smtp.limits, spec.name), spec.def);
    }
  }
}

// ---- one error of each kind, with its line and key ----

struct ErrorCase {
  const char* name;
  const char* toml;
  uint32_t line;
  const char* key;
  const char* message;  // a substring of the message
};

// Names the case in gtest output instead of dumping its bytes.
std::ostream& operator<<(std::ostream& os, const ErrorCase& c) {
  return os << c.name;
}

class ConfigLoadError : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ConfigLoadError, ReportedWithLineAndKey) {
  const ErrorCase& c = GetParam();
  const ServerConfig base;
  const ConfigLoadResult r = load_config(c.toml, "bad.toml", base);
  ASSERT_EQ(r.errors.size(), 1u) << all_errors(r.errors);
  const ConfigError& e = r.errors[0];
  EXPECT_EQ(e.file, "bad.toml");
  EXPECT_EQ(e.line, c.line) << e.to_string();
  EXPECT_GT(e.column, 0u) << e.to_string();
  EXPECT_EQ(e.key, c.key) << e.to_string();
  EXPECT_NE(e.message.find(c.message), std::string::npos) << e.to_string();
  // Nothing outside the listener list changes because of a rejected value.
  ServerConfig got = r.config;
  got.listeners = base.listeners;
  EXPECT_EQ(dump(got), dump(base));
}

const ErrorCase kErrorCases[] = {
    {"syntax", "[server]\nshards = 1\n[smtp\n", 3, "", "expected ']'"},
    {"syntax_int64_overflow", "[limits]\n\nmax_recipients = 99999999999999999999", 3, "",
     "64 bits"},
    {"unknown_table", "[server]\n[limit]\nmax_recipients = 5", 2, "limit", "unknown table"},
    {"unknown_root_key", "\n\nverbose = true", 3, "verbose", "unknown key"},
    {"unknown_key", "[server]\nshards = 0\nhostnam = \"x\"", 3, "server.hostnam", "unknown key"},
    {"unknown_subtable", "[server]\n[server.tls]\ncert = \"x\"", 2, "server.tls", "unknown table"},
    {"unknown_limit", "[limits]\nmax_rcpt = 5", 2, "limits.max_rcpt", "unknown key"},
    {"unknown_smtp_key", "[smtp]\nstarttls = true", 2, "smtp.starttls", "unknown key"},
    {"software_not_configurable", "[smtp]\nsoftware = \"x\"", 2, "smtp.software", "unknown key"},
    {"section_not_table", "\nserver = 5", 2, "server", "expected a table, not an integer"},
    {"string_for_integer", "[server]\n\nshards = \"4\"", 3, "server.shards",
     "expected an integer, not a string"},
    {"float_for_integer", "[limits]\nmax_recipients = 100.0", 2, "limits.max_recipients",
     "expected an integer, not a float"},
    {"string_for_bool", "[smtp]\npipelining = \"yes\"", 2, "smtp.pipelining",
     "expected a boolean, not a string"},
    {"integer_for_string", "[server]\nhostname = 5", 2, "server.hostname",
     "expected a string, not an integer"},
    {"limit_too_small", "[limits]\nmax_recipients = 0", 2, "limits.max_recipients",
     "must be between 1 and 100000"},
    {"limit_negative", "[limits]\nmax_message_size = -1", 2, "limits.max_message_size",
     "must be between 1024 and 4294967296"},
    {"limit_int64_max", "[limits]\nmax_message_size = 9223372036854775807", 2,
     "limits.max_message_size", "must be between 1024 and 4294967296"},
    {"uint32_would_wrap", "[server]\nmax_connections = 4294967297", 2, "server.max_connections",
     "must be between 1 and 1000000"},
    {"shards_too_many", "[server]\nshards = 257", 2, "server.shards", "must be between 0 and 256"},
    {"ring_too_small", "[server]\nring_entries = 4", 2, "server.ring_entries",
     "must be between 8 and 32768"},
    {"negative_unsigned", "[server]\nmax_connections_per_ip = -5", 2,
     "server.max_connections_per_ip", "must be between 1 and 1000000"},
    {"greeting_delay_too_long", "[server]\ngreeting_delay_ms = 60001", 2,
     "server.greeting_delay_ms", "must be between 0 and 60000"},
    {"route_bad_destination", "[[route]]\ndomains = [\"a.test\"]\ndestination = \"lmtp://h\"", 3,
     "route[0].destination", "lmtp:// needs a port"},
    {"route_bad_domain", "[[route]]\ndomains = [\"a..test\"]\ndestination = \"smtp://h\"", 2,
     "route[0].domains[0]", "empty label"},
    {"route_star_inside", "[[route]]\ndomains = [\"a.*.test\"]\ndestination = \"smtp://h\"", 2,
     "route[0].domains[0]", "'*' only as its first label"},
    {"route_no_domains", "[[route]]\ndestination = \"smtp://h\"", 1, "route[0].domains",
     "is required"},
    {"route_empty_domains", "[[route]]\ndomains = []\ndestination = \"smtp://h\"", 2,
     "route[0].domains", "non-empty array"},
    {"route_no_destination", "[[route]]\ndomains = [\"a.test\"]", 1, "route[0].destination",
     "is required"},
    {"route_unknown_key", "[[route]]\ndomains = [\"a.test\"]\ndestination = \"smtp://h\"\nx = 1", 4,
     "route[0].x", "unknown"},
    {"admin_no_connections", "[admin]\nmax_connections = 0", 2, "admin.max_connections",
     "must be between 1 and 100000"},
    {"admin_request_timeout_short", "[admin]\nrequest_timeout_ms = 99", 2,
     "admin.request_timeout_ms", "must be between 100 and 60000"},
    {"spool_bytes_negative", "[spool]\nmax_bytes = -1", 2, "spool.max_bytes",
     "must not be negative"},
    {"dns_bad_server", "[dns]\nservers = [\"dns.example\"]", 2, "dns.servers[0]",
     "must be an IP address"},
    {"dns_tries_zero", "[dns]\ntries = 0", 2, "dns.tries", "must be between 1 and 10"},
    {"recipients_limit_zero", "[recipients]\nunknown_limit = 0", 2, "recipients.unknown_limit",
     "must be between 1 and 10000"},
    {"recipients_limit_high", "[recipients]\nunknown_limit = 10001", 2, "recipients.unknown_limit",
     "must be between 1 and 10000"},
    {"recipients_separator_letter", "[recipients]\nsubaddress_separator = \"x\"", 2,
     "recipients.subaddress_separator", "may hold only"},
    {"recipients_file_type", "[recipients]\nfile = 1", 2, "recipients.file", "a string"},
    {"recipients_case_type", "[recipients]\ncase_sensitive = \"no\"", 2,
     "recipients.case_sensitive", "a boolean"},
    {"recipients_unknown", "[recipients]\nfiles = \"x\"", 2, "recipients.files", "unknown"},
    {"bad_log_format", "[server]\nlog_format = \"xml\"", 2, "server.log_format",
     "must be one of: logfmt, json"},
    {"bad_log_level", "[server]\nlog_level = \"verbose\"", 2, "server.log_level",
     "must be one of: debug, info, warn, error"},
    {"bad_bare_line", "[smtp]\nbare_line = \"normalize\"", 2, "smtp.bare_line",
     "must be one of: reject, normalise"},
    {"bad_unoffered_pipelining", "[smtp]\nunoffered_pipelining = \"allow\"", 2,
     "smtp.unoffered_pipelining", "must be one of: reject, ignore"},
    {"reject_http_not_bool", "[smtp]\nreject_http = 1", 2, "smtp.reject_http", "boolean"},
    {"command_line_timeout_short", "[limits]\ncommand_line_timeout_ms = 99", 2,
     "limits.command_line_timeout_ms", "must be between 100 and 300000"},
    {"hostname_empty", "[server]\nhostname = \"\"", 2, "server.hostname", "must not be empty"},
    {"hostname_space", "[server]\nhostname = \"mx example\"", 2, "server.hostname",
     "must be a domain name"},
    {"hostname_underscore", "[server]\nhostname = \"mx_1.example\"", 2, "server.hostname",
     "must be a domain name"},
    {"banner_crlf", "[server]\nbanner = \"ok\\r\\n250 forged\"", 2, "server.banner",
     "printable ASCII"},
    {"spool_dir_empty", "[spool]\ndir = \"\"", 2, "spool.dir", "must not be empty"},
    {"delivery_unknown", "[delivery]\nretries = 3", 2, "delivery.retries", "unknown"},
    {"route_tls_bad",
     "[[route]]\ndomains = [\"t.test\"]\ndestination = \"smtp://127.0.0.1:25\"\ntls = \"yes\"", 4,
     "route[0].tls", "one of"},
    {"route_ca_relative",
     "[[route]]\ndomains = [\"t.test\"]\ndestination = \"smtp://127.0.0.1:25\"\n"
     "tls_ca_file = \"ca.pem\"",
     4, "route[0].tls_ca_file", "absolute path"},
    {"delivery_no_connections", "[delivery]\nmax_connections_per_destination = 0", 2,
     "delivery.max_connections_per_destination", "between 1 and 100000"},
    {"delivery_retry_order", "[delivery]\nretry_min_ms = 5000\nretry_max_ms = 4000", 3,
     "delivery.retry_max_ms", "must not be less than delivery.retry_min_ms"},
    {"admin_host_name", "[admin]\nlisten = \"localhost:9425\"", 2, "admin.listen",
     "numeric address"},
    {"listener_missing_address", "[[listener]]\nname = \"mx\"", 1, "listener[0].address",
     "is required"},
    {"listener_no_port", "[[listener]]\naddress = \"0.0.0.0\"", 2, "listener[0].address",
     "port 1-65535"},
    {"listener_bad_name", "[[listener]]\nname = \"mx one\"\naddress = \"0.0.0.0:25\"", 2,
     "listener[0].name", "A-Z a-z 0-9 _ . -"},
    {"listener_unknown_key", "[[listener]]\naddress = \"0.0.0.0:25\"\nport = 25", 3,
     "listener[0].port", "unknown key"},
    {"listener_duplicate_name",
     "[[listener]]\nname = \"mx\"\naddress = \"0.0.0.0:25\"\n"
     "[[listener]]\nname = \"mx\"\naddress = \"0.0.0.0:587\"",
     5, "listener[1].name", "duplicate listener name \"mx\""},
    {"listener_duplicate_default_name",
     "[[listener]]\naddress = \"[::1]:25\"\n[[listener]]\naddress = \"[::1]:25\"", 3,
     "listener[1].name", "duplicate listener name"},
    {"listener_empty", "\nlistener = []", 2, "listener", "at least one listener"},
    {"listener_not_array", "[listener]\naddress = \"0.0.0.0:25\"", 1, "listener",
     "expected an array of tables"},
    {"listener_bad_tls_mode", "[[listener]]\naddress = \"0.0.0.0:25\"\ntls = \"yes\"", 3,
     "listener[0].tls", "must be one of: none, starttls, implicit"},
    {"listener_bad_proxy_mode", "[[listener]]\naddress = \"0.0.0.0:25\"\nproxy_protocol = \"v3\"",
     3, "listener[0].proxy_protocol", "must be one of: none, v1, v2, any"},
    {"listener_trusted_host_bits",
     "[[listener]]\naddress = \"0.0.0.0:25\"\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.1/8\"]",
     3, "listener[0].trusted_proxies[1]", "host bits"},
    {"listener_trusted_not_array",
     "[[listener]]\naddress = \"0.0.0.0:25\"\ntrusted_proxies = \"10.0.0.0/8\"", 3,
     "listener[0].trusted_proxies", "expected an array of strings"},
    {"listener_xclient_name",
     "[[listener]]\naddress = \"0.0.0.0:25\"\nxclient_hosts = [\"relay.example\"]", 3,
     "listener[0].xclient_hosts[0]", "not an IPv4 or IPv6 address"},
    {"proxy_timeout_too_small", "[server]\nproxy_timeout_ms = 99", 2, "server.proxy_timeout_ms",
     "must be between 100 and 300000"},
    {"tls_bad_min_version", "[tls]\nmin_version = \"TLS1_1\"", 2, "tls.min_version",
     "must be one of: TLS1_2, TLS1_3"},
    {"tls_handshake_timeout_too_small", "[tls]\nhandshake_timeout_ms = 99", 2,
     "tls.handshake_timeout_ms", "must be between 100 and 300000"},
    {"tls_cert_empty", "[tls]\ncert = \"\"", 2, "tls.cert", "must not be empty"},
    {"tls_unknown_key", "[tls]\ncertificate = \"/c.pem\"", 2, "tls.certificate", "unknown key"},
    {"tls_sni_bad_name", "[[tls.sni]]\nname = \"mx one\"\ncert = \"/c\"\nkey = \"/k\"", 2,
     "tls.sni[0].name", "host name"},
    {"tls_sni_incomplete", "[[tls.sni]]\nname = \"mx.example.org\"", 1, "tls.sni[0]",
     "needs name, cert and key"},
    {"checks_bad_action", "[checks.helo]\n\nbare_ip = \"drop\"", 3, "checks.helo.bare_ip",
     "must be one of: off, score, reject"},
    {"checks_score_too_big", "[checks]\nreject_score = 1000001", 2, "checks.reject_score",
     "must be between 0 and 1000000"},
    {"checks_negative_weight", "[[dnswl]]\nzone = \"wl.example\"\nweight = -1", 3,
     "dnswl[0].weight", "must be between 0 and 1000000"},
    {"checks_bad_regex", "[checks.ptr]\ndynamic_patterns = [\"(\"]", 2,
     "checks.ptr.dynamic_patterns[0]", "not a valid regular expression"},
    {"checks_bad_code", "[[dnsbl]]\nzone = \"bl.example\"\ncodes = [\"127.0.0.3-127.0.0.2\"]", 3,
     "dnsbl[0].codes[0]", "range"},
    {"auth_unknown_backend", "[auth]\nbackend = \"ldap\"", 2, "auth.backend",
     "must be one of: none, dovecot, file"},
    {"auth_hash_workers_bound", "[auth]\nhash_workers = 65", 2, "auth.hash_workers",
     "between 1 and 64"},
    {"auth_bad_socket", "[auth]\ndovecot_socket = \"tcp:127.0.0.1:1\"", 2, "auth.dovecot_socket",
     "unknown scheme"},
    {"auth_bad_service", "[auth]\ndovecot_service = \"a b\"", 2, "auth.dovecot_service", "letters"},
    {"auth_timeout_bound", "[auth]\ntimeout_ms = 99", 2, "auth.timeout_ms",
     "between 100 and 300000"},
    {"auth_unknown_key", "[auth]\nmechanisms = []", 2, "auth.mechanisms", "unknown key"},
    {"listener_auth_mode", "[[listener]]\naddress = \"127.0.0.1:1\"\nauth = \"yes\"", 3,
     "listener[0].auth", "must be one of: none, optional, required"},
    {"milter_address_required", "[[milter]]\nname = \"x\"", 1, "milter[0].address", "is required"},
    {"milter_bad_scheme", "[[milter]]\naddress = \"tcp:127.0.0.1:1\"", 2, "milter[0].address",
     "unknown scheme"},
    {"milter_host_not_literal", "[[milter]]\naddress = \"inet:milter.example:1\"", 2,
     "milter[0].address", "address literal"},
    {"milter_bad_port", "[[milter]]\naddress = \"inet:127.0.0.1:70000\"", 2, "milter[0].address",
     "port"},
    {"milter_relative_path", "[[milter]]\naddress = \"unix:run/x.sock\"", 2, "milter[0].address",
     "absolute"},
    {"milter_zero_timeout", "[[milter]]\naddress = \"inet:127.0.0.1:1\"\ncommand_timeout_ms = 0", 3,
     "milter[0].command_timeout_ms", "between 1 and 3600000"},
    {"milter_bad_default", "[[milter]]\naddress = \"/x\"\ndefault_action = \"discard\"", 3,
     "milter[0].default_action", "must be one of: tempfail, accept, reject"},
    {"milter_idle_bound", "[[milter]]\naddress = \"/x\"\nmax_idle_connections = 0", 3,
     "milter[0].max_idle_connections", "between 1 and 10000"},
    {"milter_same_name",
     "[[milter]]\naddress = \"/x\"\n[[milter]]\nname = \"milter1\"\naddress = \"/y\"", 3,
     "milter[1].name", "another milter"},
    {"checks_zone_required", "[[dnsbl]]\nweight = 1", 1, "dnsbl[0].zone", "is required"},
    {"checks_unknown_key", "[checks.sender]\nmx = \"reject\"", 2, "checks.sender.mx",
     "unknown key"},
    {"headers_not_bool", "[headers]\nrequire_from = 1", 2, "headers.require_from",
     "expected a boolean"},
    {"pregreet_bad_action", "[server]\npregreet_action = \"drop\"", 2, "server.pregreet_action",
     "must be one of: reject, score"},
    {"listener_element_not_table", "listener = [{ address = \"0.0.0.0:25\" }, 7]", 1, "listener[1]",
     "expected a table, not an integer"},
};

INSTANTIATE_TEST_SUITE_P(Kinds, ConfigLoadError, ::testing::ValuesIn(kErrorCases),
                         [](const ::testing::TestParamInfo<ErrorCase>& i) { return i.param.name; });

TEST(ConfigLoad, SeventeenListenersAreTooMany) {
  std::string text;
  for (int i = 0; i < 17; ++i) {
    text += "[[listener]]\naddress = \"127.0.0.1:" + std::to_string(2000 + i) + "\"\n";
  }
  const ConfigLoadResult r = load_config(text, "many.toml");
  ASSERT_EQ(r.errors.size(), 1u) << all_errors(r.errors);
  EXPECT_EQ(r.errors[0].key, "listener");
  EXPECT_EQ(r.errors[0].line, 33u);  // the 17th [[listener]] header
  EXPECT_NE(r.errors[0].message.find("at most 16"), std::string::npos);

  text.erase(text.rfind("[[listener]]"));
  const ConfigLoadResult sixteen = load_config(text, "many.toml");
  EXPECT_TRUE(sixteen.ok()) << all_errors(sixteen.errors);
  EXPECT_EQ(sixteen.config.listeners.size(), 16u);
}

TEST(ConfigLoad, AllErrorsCollectedInFileOrder) {
  const char* text =
      "[server]\n"                       // 1
      "shards = 300\n"                   // 2
      "log_level = \"loud\"\n"           // 3
      "[limits]\n"                       // 4
      "max_recipients = 0\n"             // 5
      "max_bad_commands = 10\n"          // 6: fine, and must still be applied
      "[smtp]\n"                         // 7
      "vrfy = 1\n"                       // 8
      "[spoool]\n"                       // 9
      "dir = \"x\"\n"                    // 10
      "[[listener]]\n"                   // 11
      "address = \"example.org:25\"\n";  // 12
  const ConfigLoadResult r = load_config(text, "many.toml");
  ASSERT_EQ(r.errors.size(), 6u) << all_errors(r.errors);
  const std::pair<uint32_t, const char*> expected[] = {
      {2, "server.shards"}, {3, "server.log_level"}, {5, "limits.max_recipients"},
      {8, "smtp.vrfy"},     {9, "spoool"},           {12, "listener[0].address"},
  };
  for (size_t i = 0; i < std::size(expected); ++i) {
    EXPECT_EQ(r.errors[i].line, expected[i].first) << r.errors[i].to_string();
    EXPECT_EQ(r.errors[i].key, expected[i].second) << r.errors[i].to_string();
  }
  EXPECT_EQ(r.config.smtp.limits.max_bad_commands, 10u);
  EXPECT_EQ(r.config.shards, 0u);
}

TEST(ConfigLoad, SyntaxErrorAppliesNothing) {
  const ServerConfig base = everything_changed();
  const ConfigLoadResult r = load_config("[server]\nshards = 4\nhostname = \n", "s.toml", base);
  ASSERT_EQ(r.errors.size(), 1u) << all_errors(r.errors);
  EXPECT_EQ(r.errors[0].line, 3u);
  EXPECT_TRUE(r.errors[0].key.empty());
  EXPECT_EQ(r.errors[0].to_string().rfind("s.toml:3:", 0), 0u) << r.errors[0].to_string();
  EXPECT_EQ(dump(r.config), dump(base));
}

TEST(ConfigLoad, InvalidUtf8IsASyntaxErrorNotAnException) {
  const ConfigLoadResult r = load_config("[server]\nbanner = \"\xff\xfe\"\n", "u.toml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 2u);
}

TEST(ConfigLoad, ListenerFileReplacesBaseNotMerges) {
  ServerConfig base;
  base.listeners = {{"a", "192.0.2.1:25"}, {"b", "192.0.2.2:25"}, {"c", "192.0.2.3:25"}};
  const ConfigLoadResult r =
      load_config("[[listener]]\naddress = \"[2001:db8::1]:25\"\n", "l.toml", base);
  EXPECT_TRUE(r.ok()) << all_errors(r.errors);
  ASSERT_EQ(r.config.listeners.size(), 1u);
  EXPECT_EQ(r.config.listeners[0].name, "[2001:db8::1]:25");
  EXPECT_EQ(r.config.listeners[0].address, "[2001:db8::1]:25");

  const ConfigLoadResult untouched = load_config("[server]\nshards = 2\n", "l.toml", base);
  EXPECT_EQ(untouched.config.listeners.size(), 3u);
}

TEST(ConfigErrorText, ToString) {
  ConfigError e;
  e.message = "must be between 1 and 100000";
  e.key = "limits.max_recipients";
  EXPECT_EQ(e.to_string(), "limits.max_recipients: must be between 1 and 100000");
  e.file = "ringmx.toml";
  EXPECT_EQ(e.to_string(), "ringmx.toml: limits.max_recipients: must be between 1 and 100000");
  e.line = 12;
  EXPECT_EQ(e.to_string(), "ringmx.toml:12: limits.max_recipients: must be between 1 and 100000");
  e.column = 1;
  EXPECT_EQ(e.to_string(), "ringmx.toml:12:1: limits.max_recipients: must be between 1 and 100000");
  e.key.clear();
  EXPECT_EQ(e.to_string(), "ringmx.toml:12:1: must be between 1 and 100000");
  e.file.clear();
  EXPECT_EQ(e.to_string(), "12:1: must be between 1 and 100000");
}

TEST(ConfigLoad, ErrorStringFromTheLoader) {
  const ConfigLoadResult r = load_config("[limits]\nmax_recipients = 0\n", "ringmx.toml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].to_string(),
            "ringmx.toml:2:18: limits.max_recipients: must be between 1 and 100000");
}

// ---- [checks.rate], [checks.karma] ----

TEST(ConfigLoad, RateAndKarma) {
  const ConfigLoadResult r = load_config(
      "[checks.rate]\nconnections_per_minute = 30\nmessages_per_minute = 60\n"
      "recipients_per_minute = 300\nmax_connections_per_network = 40\nnetwork_prefix_v4 = 16\n"
      "network_prefix_v6 = 48\nmax_clients = 5000\nexempt = [\"10.0.0.0/8\", \"2001:db8::1\"]\n"
      "[checks.karma]\nenabled = true\npenalty = 5\nreject_penalty = 12\nhalf_life_s = 60\n"
      "bad_score = 8\nscore_weight = 50\nmax_clients = 7000\n",
      "r.toml");
  ASSERT_TRUE(r.ok()) << all_errors(r.errors);
  const RateCheckConfig& rate = r.config.checks.rate;
  EXPECT_EQ(rate.connections_per_minute, 30u);
  EXPECT_EQ(rate.messages_per_minute, 60u);
  EXPECT_EQ(rate.recipients_per_minute, 300u);
  EXPECT_EQ(rate.max_connections_per_network, 40u);
  EXPECT_EQ(rate.network_prefix_v4, 16u);
  EXPECT_EQ(rate.network_prefix_v6, 48u);
  EXPECT_EQ(rate.max_clients, 5000u);
  EXPECT_EQ(rate.exempt, (std::vector<std::string>{"10.0.0.0/8", "2001:db8::1"}));
  const KarmaConfig& k = r.config.checks.karma;
  EXPECT_TRUE(k.enabled);
  EXPECT_EQ(k.penalty, 5u);
  EXPECT_EQ(k.reject_penalty, 12u);
  EXPECT_EQ(k.half_life_s, 60u);
  EXPECT_EQ(k.bad_score, 8u);
  EXPECT_EQ(k.score_weight, 50u);
  EXPECT_EQ(k.max_clients, 7000u);
  EXPECT_EQ(all_errors(validate_config(r.config)), "");
}

TEST(ConfigLoad, RateAndKarmaBoundsAndBadInput) {
  const struct {
    const char* text;
    const char* error;
  } cases[] = {
      {"[checks.rate]\nconnections_per_minute = -1\n", "checks.rate.connections_per_minute"},
      {"[checks.rate]\nmessages_per_minute = 1000001\n", "checks.rate.messages_per_minute"},
      {"[checks.rate]\nnetwork_prefix_v4 = 7\n", "checks.rate.network_prefix_v4"},
      {"[checks.rate]\nnetwork_prefix_v6 = 129\n", "checks.rate.network_prefix_v6"},
      {"[checks.rate]\nmax_clients = 0\n", "checks.rate.max_clients"},
      {"[checks.rate]\nexempt = [\"10.0.0.1/8\"]\n", "checks.rate.exempt[0]"},
      {"[checks.rate]\nper_hour = 5\n", "checks.rate.per_hour"},
      {"[checks.karma]\nhalf_life_s = 0\n", "checks.karma.half_life_s"},
      {"[checks.karma]\npenalty = 0\n", "checks.karma.penalty"},
      {"[checks.karma]\nmax_clients = 10000001\n", "checks.karma.max_clients"},
      {"[checks.karma]\nenabled = \"yes\"\n", "checks.karma.enabled"},
      {"[checks.karma]\nscore_weight = 1001\n", "checks.karma.score_weight"},
  };
  for (const auto& c : cases) {
    const ConfigLoadResult r = load_config(c.text, "bad.toml");
    ASSERT_EQ(r.errors.size(), 1u) << c.text << all_errors(r.errors);
    EXPECT_EQ(r.errors[0].key, c.error) << r.errors[0].to_string();
  }
  // Set after loading (as a program could), the validation catches it too.
  ServerConfig cfg;
  cfg.checks.rate.network_prefix_v4 = 40;
  cfg.checks.karma.max_clients = 0;
  const std::vector<ConfigError> errors = validate_config(cfg);
  ASSERT_EQ(errors.size(), 2u) << all_errors(errors);
  EXPECT_EQ(errors[0].key, "checks.rate.network_prefix_v4");
  EXPECT_EQ(errors[1].key, "checks.karma.max_clients");
}

// ---- the shipped example ----

TEST(ConfigLoad, DeployExampleLoadsCleanAndEqualsTheDefaults) {
  const std::string text = read_source_file("deploy/ringmx.toml");
  ASSERT_FALSE(text.empty());
  const ConfigLoadResult r = load_config(text, "deploy/ringmx.toml");
  EXPECT_TRUE(r.ok()) << all_errors(r.errors);
  EXPECT_EQ(dump(r.config), dump(ServerConfig{}));
  EXPECT_EQ(all_errors(validate_config(r.config)), "");
}

// The edge node example (behind HAProxy, docs/deploy.md) loads and validates as shipped.
TEST(ConfigLoad, DeployEdgeExampleLoadsClean) {
  const std::string text = read_source_file("deploy/ringmx-edge.toml");
  ASSERT_FALSE(text.empty());
  const ConfigLoadResult r = load_config(text, "deploy/ringmx-edge.toml");
  ASSERT_TRUE(r.ok()) << all_errors(r.errors);
  EXPECT_EQ(all_errors(validate_config(r.config)), "");
  ASSERT_EQ(r.config.listeners.size(), 2u);
  for (const ListenerConfig& l : r.config.listeners) {
    EXPECT_EQ(l.proxy_protocol, ListenerProxy::v2) << l.name;
    EXPECT_FALSE(l.trusted_proxies.empty()) << l.name;
  }
  EXPECT_EQ(r.config.log_format, LogFormat::json);
  ASSERT_EQ(r.config.routes.size(), 1u);
}

// Loaded over a base in which every field differs, the example still yields the defaults: so
// the example spells out every key, not just the ones that happen to be left at the default.
TEST(ConfigLoad, DeployExampleSetsEveryKey) {
  const std::string text = read_source_file("deploy/ringmx.toml");
  const ConfigLoadResult r = load_config(text, "deploy/ringmx.toml", everything_changed());
  EXPECT_TRUE(r.ok()) << all_errors(r.errors);
  EXPECT_EQ(dump(r.config), dump(ServerConfig{}));
}

// Each limit's line in the example states the range and the reply from kLimitSpecs.
TEST(ConfigLoad, DeployExampleDocumentsEveryLimit) {
  const std::string text = read_source_file("deploy/ringmx.toml");
  for (const LimitSpec& spec : kLimitSpecs) {
    const std::string start = "\n" + std::string(spec.name) + " = ";
    const size_t at = text.find(start);
    ASSERT_NE(at, std::string::npos) << spec.name;
    const std::string line = text.substr(at + 1, text.find('\n', at + 1) - at - 1);
    const std::string range = std::to_string(spec.min) + ".." + std::to_string(spec.max);
    EXPECT_NE(line.find(range), std::string::npos) << line;
    EXPECT_NE(line.find(spec.reply), std::string::npos) << line;
  }
}

// ---- validate_config ----

TEST(ValidateConfig, CatchesALimitSetAfterLoading) {
  ConfigLoadResult r = load_config("[limits]\nmax_recipients = 500\n", "v.toml");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(validate_config(r.config).empty());
  r.config.smtp.limits.max_recipients = 0;  // as a bad command-line override would
  const std::vector<ConfigError> errors = validate_config(r.config);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(errors[0].file.empty());
  EXPECT_EQ(errors[0].line, 0u);
  EXPECT_EQ(errors[0].to_string(), "limits.max_recipients: must be between 1 and 100000");
}

struct ValidateCase {
  const char* name;
  std::function<void(ServerConfig&)> change;
  const char* key;
  const char* message;
};

// Names the case in gtest output instead of dumping its bytes.
std::ostream& operator<<(std::ostream& os, const ValidateCase& c) {
  return os << c.name;
}

class ValidateConfigCase : public ::testing::TestWithParam<ValidateCase> {};

TEST_P(ValidateConfigCase, OneError) {
  const ValidateCase& c = GetParam();
  ServerConfig cfg;
  c.change(cfg);
  const std::vector<ConfigError> errors = validate_config(cfg);
  ASSERT_EQ(errors.size(), 1u) << all_errors(errors);
  EXPECT_EQ(errors[0].key, c.key);
  EXPECT_NE(errors[0].message.find(c.message), std::string::npos) << errors[0].to_string();
  EXPECT_EQ(errors[0].line, 0u);
}

const ValidateCase kValidateCases[] = {
    {"auth_without_backend",
     [](ServerConfig& c) {
       c.tls.cert_file = "/c.pem";
       c.tls.key_file = "/k.pem";
       c.listeners[0].auth = AuthMode::optional;
     },
     "listener[0].auth", "needs an [auth] backend"},
    {"auth_without_tls",
     [](ServerConfig& c) {
       c.auth.backend = AuthBackendKind::dovecot;
       c.listeners[0].auth = AuthMode::required;
     },
     "listener[0].auth", "never offered in plaintext"},
    {"auth_file_needs_users", [](ServerConfig& c) { c.auth.backend = AuthBackendKind::file; },
     "auth.users_file", "is required"},
    {"auth_delays_inverted",
     [](ServerConfig& c) {
       c.auth.failure_delay_ms = 2000;
       c.auth.max_failure_delay_ms = 1000;
     },
     "auth.max_failure_delay_ms", "must not be less than"},
    {"recipients_limit_zero", [](ServerConfig& c) { c.recipients.unknown_limit = 0; },
     "recipients.unknown_limit", "between 1 and 10000"},
    {"recipients_separator", [](ServerConfig& c) { c.recipients.subaddress_separator = "a"; },
     "recipients.subaddress_separator", "may hold only"},
    {"hostname_empty", [](ServerConfig& c) { c.smtp.hostname.clear(); }, "server.hostname",
     "must not be empty"},
    {"hostname_too_long", [](ServerConfig& c) { c.smtp.hostname = std::string(256, 'a'); },
     "server.hostname", "at most 255"},
    {"hostname_bad_literal", [](ServerConfig& c) { c.smtp.hostname = "[300.1.1.1]"; },
     "server.hostname", "domain name"},
    {"banner_control", [](ServerConfig& c) { c.smtp.banner = "a\tb"; }, "server.banner",
     "printable ASCII"},
    {"banner_too_long", [](ServerConfig& c) { c.smtp.banner = std::string(201, 'b'); },
     "server.banner", "at most 200"},
    {"message_size_above_max",
     [](ServerConfig& c) { c.smtp.limits.max_message_size = (1ull << 32) + 1; },
     "limits.max_message_size", "must be between 1024 and 4294967296"},
    {"shards", [](ServerConfig& c) { c.shards = 257; }, "server.shards", "between 0 and 256"},
    {"delivery_retry_order",
     [](ServerConfig& c) {
       c.delivery.retry_min_ms = 5000;
       c.delivery.retry_max_ms = 4000;
     },
     "delivery.retry_max_ms", "must not be less than"},
    {"max_connections_zero", [](ServerConfig& c) { c.max_connections = 0; },
     "server.max_connections", "between 1 and 1000000"},
    {"spool_dir_empty", [](ServerConfig& c) { c.spool.dir.clear(); }, "spool.dir",
     "must not be empty"},
    {"spool_dir_nul", [](ServerConfig& c) { c.spool.dir = std::string("/a\0b", 4); }, "spool.dir",
     "NUL"},
    {"admin_listen_bad", [](ServerConfig& c) { c.admin_listen = "127.0.0.1"; }, "admin.listen",
     "port 1-65535"},
    {"admin_max_connections_zero", [](ServerConfig& c) { c.admin_max_connections = 0; },
     "admin.max_connections", "between 1 and 100000"},
    {"route_domain_twice",
     [](ServerConfig& c) {
       c.routes = {{"a", {"x.test"}, "smtp://h", RouteTls::unset, ""},
                   {"b", {"X.test"}, "smtp://h", RouteTls::unset, ""}};
     },
     "route", "is in route \"a\" and route \"b\""},
    {"route_bad_destination_from_flags",
     [](ServerConfig& c) {
       c.routes = {{"relay", {"x.test"}, "ftp://h", RouteTls::unset, ""}};
     },
     "route", "must be lmtp://"},
    {"no_listeners", [](ServerConfig& c) { c.listeners.clear(); }, "listener",
     "at least one listener"},
    {"seventeen_listeners",
     [](ServerConfig& c) {
       c.listeners.clear();
       for (int i = 0; i < 17; ++i) {
         const std::string a = "127.0.0.1:" + std::to_string(3000 + i);
         c.listeners.push_back({a, a});
       }
     },
     "listener", "at most 16"},
    {"listener_address_bad",
     [](ServerConfig& c) {
       c.listeners = {{"mx", "mx.example.org:25"}};
     },
     "listener[0].address", "numeric address"},
    {"listener_names_duplicate",
     [](ServerConfig& c) {
       c.listeners = {{"mx", "0.0.0.0:25"}, {"mx", "0.0.0.0:587"}};
     },
     "listener[1].name", "duplicate"},
    {"listener_name_empty",
     [](ServerConfig& c) {
       c.listeners = {{"", "0.0.0.0:25"}};
     },
     "listener[0].name", "must not be empty"},
    {"tls_cert_without_key", [](ServerConfig& c) { c.tls.cert_file = "/c.pem"; }, "tls.key",
     "go together"},
    {"tls_sni_without_default",
     [](ServerConfig& c) {
       c.tls.sni = {{"mx.example.org", "/c", "/k"}};
     },
     "tls.sni", "default certificate"},
    {"listener_tls_without_cert",
     [](ServerConfig& c) { c.listeners[0].tls = ListenerTls::starttls; }, "listener[0].tls",
     "needs a certificate"},
    {"listener_key_without_cert",
     [](ServerConfig& c) {
       c.tls.cert_file = "/c.pem";
       c.tls.key_file = "/k.pem";
       c.listeners[0].tls = ListenerTls::implicit;
       c.listeners[0].key_file = "/lk.pem";
     },
     "listener[0].cert", "go together"},
    {"require_tls_without_tls", [](ServerConfig& c) { c.listeners[0].require_tls = true; },
     "listener[0].require_tls", "needs tls"},
    {"proxy_without_trusted",
     [](ServerConfig& c) { c.listeners[0].proxy_protocol = ListenerProxy::any; },
     "listener[0].trusted_proxies", "is required with proxy_protocol"},
    {"trusted_without_proxy", [](ServerConfig& c) { c.listeners[0].trusted_proxies = {"::1"}; },
     "listener[0].trusted_proxies", "needs proxy_protocol"},
    {"xclient_not_a_network", [](ServerConfig& c) { c.listeners[0].xclient_hosts = {"10.1/8"}; },
     "listener[0].xclient_hosts", "not an IPv4 or IPv6 address"},
    {"too_many_trusted",
     [](ServerConfig& c) {
       c.listeners[0].proxy_protocol = ListenerProxy::v1;
       c.listeners[0].trusted_proxies.assign(257, "10.0.0.0/8");
     },
     "listener[0].trusted_proxies", "at most 256"},
};

INSTANTIATE_TEST_SUITE_P(Fields, ValidateConfigCase, ::testing::ValuesIn(kValidateCases),
                         [](const ::testing::TestParamInfo<ValidateCase>& i) {
                           return i.param.name;
                         });

TEST(ValidateConfig, ListenerTlsFollowsTheTlsSection) {
  ServerConfig c;
  EXPECT_EQ(effective_tls(c, c.listeners[0]), ListenerTls::none);
  c.tls.cert_file = "/c.pem";
  c.tls.key_file = "/k.pem";
  EXPECT_EQ(effective_tls(c, c.listeners[0]), ListenerTls::starttls);
  c.listeners[0].tls = ListenerTls::none;
  EXPECT_EQ(effective_tls(c, c.listeners[0]), ListenerTls::none);
  c.listeners[0].tls = ListenerTls::implicit;
  c.listeners[0].require_tls = true;
  EXPECT_EQ(effective_tls(c, c.listeners[0]), ListenerTls::implicit);
  EXPECT_EQ(all_errors(validate_config(c)), "");
  // A listener with its own certificate needs no [tls] one.
  ServerConfig own;
  own.listeners[0].cert_file = "/c.pem";
  own.listeners[0].key_file = "/k.pem";
  own.listeners[0].tls = ListenerTls::starttls;
  EXPECT_EQ(all_errors(validate_config(own)), "");
}

// ---- split_host_port ----

struct HostPortCase {
  const char* in;
  bool ok;
  const char* host;
  uint16_t port;
};

TEST(SplitHostPort, Table) {
  const HostPortCase cases[] = {
      {"127.0.0.1:25", true, "127.0.0.1", 25},
      {"0.0.0.0:25", true, "0.0.0.0", 25},
      {"[::1]:2525", true, "::1", 2525},
      {"[2001:db8::1]:25", true, "2001:db8::1", 25},
      {"[::]:65535", true, "::", 65535},
      {"[::ffff:192.0.2.1]:1", true, "::ffff:192.0.2.1", 1},
      {"192.0.2.1:00025", true, "192.0.2.1", 25},
      {"", false, "", 0},
      {"127.0.0.1", false, "", 0},        // no port
      {"127.0.0.1:", false, "", 0},       // empty port
      {"127.0.0.1:0", false, "", 0},      // port 0
      {"127.0.0.1:65536", false, "", 0},  // port too large
      {"127.0.0.1:99999999999", false, "", 0},
      {"127.0.0.1:-1", false, "", 0},
      {"127.0.0.1:+25", false, "", 0},
      {"127.0.0.1:25x", false, "", 0},
      {"127.0.0.1:25 ", false, "", 0},
      {" 127.0.0.1:25", false, "", 0},
      {":25", false, "", 0},  // empty host
      {"[]:25", false, "", 0},
      {"localhost:25", false, "", 0},  // no DNS at start-up
      {"mx.example.org:25", false, "", 0},
      {"256.0.0.1:25", false, "", 0},
      {"127.1:25", false, "", 0},  // inet_aton shorthand is not an address here
      {"::1:25", false, "", 0},    // IPv6 needs brackets
      {"[::1]", false, "", 0},
      {"[::1]25", false, "", 0},
      {"[::1:25", false, "", 0},
      {"[127.0.0.1]:25", false, "", 0},     // brackets are for IPv6
      {"[fe80::1%eth0]:25", false, "", 0},  // no zone ids
      {"[::1]:25:26", false, "", 0},
  };
  for (const HostPortCase& c : cases) {
    std::string host = "unchanged";
    uint16_t port = 7;
    EXPECT_EQ(split_host_port(c.in, host, port), c.ok) << '"' << c.in << '"';
    if (c.ok) {
      EXPECT_EQ(host, c.host) << c.in;
      EXPECT_EQ(port, c.port) << c.in;
    } else {
      EXPECT_EQ(host, "unchanged") << c.in;
      EXPECT_EQ(port, 7) << c.in;
    }
  }
  std::string host;
  uint16_t port = 0;
  EXPECT_FALSE(split_host_port(std::string_view("127.0.0.1\0:25", 13), host, port));
  EXPECT_FALSE(split_host_port(std::string_view("127.0.0.1:2\0", 12), host, port));
}

}  // namespace
}  // namespace ringmx

namespace ringmx {
namespace {

// At most 16 DNS lists of each kind (all asked at every connect) and 64
// dynamic-name patterns: at the bound and one past it.
TEST(ConfigLoad, CheckListsAtTheirBounds) {
  auto lists = [](int n) {
    std::string t;
    for (int i = 0; i < n; ++i) t += "[[dnsbl]]\nzone = \"bl" + std::to_string(i) + ".example\"\n";
    return t;
  };
  EXPECT_TRUE(load_config(lists(16), "t.toml").ok());
  const ConfigLoadResult over = load_config(lists(17), "t.toml");
  ASSERT_EQ(over.errors.size(), 1u);
  EXPECT_EQ(over.errors[0].message, "at most 16 lists are allowed");
  auto patterns = [](int n) {
    std::string t = "[checks.ptr]\ndynamic_patterns = [";
    for (int i = 0; i < n; ++i) t += (i ? ", \"p" : "\"p") + std::to_string(i) + "\"";
    return t + "]\n";
  };
  EXPECT_TRUE(load_config(patterns(64), "t.toml").ok());
  EXPECT_FALSE(load_config(patterns(65), "t.toml").ok());
}

}  // namespace
}  // namespace ringmx
