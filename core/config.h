// The daemon's whole configuration as one typed value. Loaded from TOML
// (config_load.h), overridden by command-line flags, validated, then handed
// read-only to every shard; a reload builds a new one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/auth_config.h"
#include "core/check_config.h"
#include "core/routes.h"
#include "core/session_config.h"

namespace ringmx {

enum class LogLevel : uint8_t { debug, info, warn, error };
// How log lines are written: logfmt (key=value) or one JSON object per line.
enum class LogFormat : uint8_t { logfmt, json };

// How a listener uses TLS. `unset` follows the [tls] section: STARTTLS when
// it names a certificate, plain SMTP otherwise.
enum class PregreetAction : uint8_t { reject, score };

enum class ListenerTls : uint8_t { unset, none, starttls, implicit };

// Whether a listener expects a PROXY protocol header (HAProxy's v1 text or
// v2 binary form, or either) before anything else on each connection.
enum class ListenerProxy : uint8_t { none, v1, v2, any };

struct ListenerConfig {
  std::string name;     // label in logs and metrics; defaults to the address
  std::string address;  // "127.0.0.1:2525", "[::1]:2525", "0.0.0.0:25"
  ListenerTls tls = ListenerTls::unset;
  // MAIL before STARTTLS gets 530 5.7.0 (RFC 3207). Never on a public port 25.
  bool require_tls = false;
  // This listener's own certificate; empty: the [tls] one.
  std::string cert_file{};
  std::string key_file{};
  // PROXY protocol: every connection must start with a header, and must come
  // from one of `trusted_proxies` (CIDR networks or addresses); the client it
  // names is the one every limit, log line, metric and Received header uses.
  ListenerProxy proxy_protocol = ListenerProxy::none;
  std::vector<std::string> trusted_proxies{};
  // XCLIENT (Postfix's extension) is offered to and honoured from clients in
  // these networks only; empty: never.
  std::vector<std::string> xclient_hosts{};
  // SMTP AUTH (with the [auth] backend): offered only under TLS; "required"
  // refuses MAIL before it (530 5.7.0). For submission listeners (587, 465).
  AuthMode auth = AuthMode::none;
};

// An extra certificate served when the client asks for `name` (SNI): exact,
// or "*.example.org" for one label.
struct TlsSniConfig {
  std::string name;
  std::string cert_file{};
  std::string key_file{};
};

enum class TlsMinVersion : uint8_t { tls1_2, tls1_3 };

struct TlsConfig {
  std::string cert_file;  // PEM chain, leaf first
  std::string key_file;   // PEM, unencrypted
  std::vector<TlsSniConfig> sni;
  TlsMinVersion min_version = TlsMinVersion::tls1_2;
  std::string ciphers;  // empty: the built-in AEAD-only list (tls/tls_context.h)
  std::string groups;   // empty: X25519, then P-256
  bool session_tickets = true;
  bool request_client_cert = false;  // asked for, never required, only logged
  uint32_t handshake_timeout_ms = 10000;
};

struct SpoolConfig {
  std::string dir = "./ringmx-spool";
  // Refuse new messages (452 4.3.1 before DATA) when the spool holds more
  // than this many bytes; 0 = no limit.
  uint64_t max_bytes = 0;
  // ... or when the file system has less free space than this.
  uint64_t min_free_bytes = 64ull << 20;
  // A segment file takes appends until it is this large. With routes, a
  // segment is removed once it is closed and every message in it is done.
  uint64_t segment_bytes = 64ull << 20;
};

// [delivery]: how accepted mail is handed to the routes' destinations.
// Every shard delivers what it accepted, on its own ring (docs/architecture.md).
struct DeliveryConfig {
  uint32_t connect_timeout_ms = 30'000;
  // Each reply before the end of the data (banner, EHLO/LHLO, MAIL, RCPT, DATA).
  uint32_t command_timeout_ms = 300'000;
  // The reply (LMTP: every reply) after the end of the data (RFC 5321 4.5.3.2.6: 10 min).
  uint32_t data_timeout_ms = 600'000;
  // A connection with nothing to send is kept this long for the next message, then QUIT.
  uint32_t idle_timeout_ms = 10'000;
  // Connections to one destination over all shards (each shard gets its share, at least one).
  uint32_t max_connections_per_destination = 32;
  uint32_t max_messages_per_connection = 1000;
  // Back-off after a temporary failure: retry_min_ms, doubling per attempt up
  // to retry_max_ms, each drawn from [1/2, 1] of that (jitter).
  uint32_t retry_min_ms = 60'000;
  uint32_t retry_max_ms = 3'600'000;
  // A recipient still undelivered this long after its message was accepted
  // is bounced (DSN) rather than tried again.
  uint32_t max_age_s = 5 * 86'400;
  // NOTIFY=DELAY (RFC 3461): a recipient that asked for it and is still not
  // delivered this long after acceptance gets its sender one delay DSN.
  // 0: never.
  uint32_t delay_notice_s = 4 * 3600;
  // Back-pressure: with more messages than this waiting for delivery (over
  // all shards), MAIL gets 452 4.3.1; with twice as many, new connections
  // get 421 4.3.2. Acceptance resumes by itself as the queue drains.
  uint32_t max_queue_messages = 100'000;
  // Bodies each shard keeps in memory for delivery; beyond, a message is read
  // back from the spool when its turn comes.
  uint64_t memory_per_shard = uint64_t{256} << 20;
};

// Most shards (event-loop threads) a server runs: every shard id fits in
// the 8 bits session and queue ids give it (core/session.h).
inline constexpr uint32_t kMaxShards = 256;

// [dns]: the resolver each shard runs on its ring (net/resolver.h).
struct DnsConfig {
  // "IP" or "IP:PORT" ("[IPv6]:PORT"); empty: the nameservers of /etc/resolv.conf.
  std::vector<std::string> servers;
  uint32_t timeout_ms = 2000;  // per try
  uint32_t tries = 2;
  uint32_t cache_entries = 100'000;  // per shard; the least recently used go first
  uint32_t max_ttl_s = 3600;         // an answer is kept at most this long
  uint32_t negative_ttl_s = 300;     // NXDOMAIN / no data: at most this long (RFC 2308)
  uint32_t max_in_flight = 2000;     // per shard; beyond, a lookup is a temporary failure
};

// [recipients]: the valid-recipient table (core/recipient_table.h). With a
// file, a recipient it does not list gets 550 5.1.1 at RCPT; a connection
// that names more than `unknown_limit` unknown ones gets 421 4.7.0 and is
// closed (a directory-harvest probe).
struct RecipientsConfig {
  std::string file;  // empty: no recipient check
  bool case_sensitive = false;
  std::string subaddress_separator = "+";  // each character separates; empty: off
  uint32_t unknown_limit = 20;
};

struct ServerConfig {
  SessionConfig smtp;  // hostname, banner, limits, extensions, bare_line
  std::vector<ListenerConfig> listeners{{"default", "127.0.0.1:2525"}};
  std::string admin_listen = "127.0.0.1:9425";  // empty disables the admin endpoint
  // Admin clients served at once (a new one takes the slot of the one that
  // has been reading its request longest), and how long a request head may take.
  uint32_t admin_max_connections = 64;
  uint32_t admin_request_timeout_ms = 2000;
  SpoolConfig spool;
  TlsConfig tls;
  // [[route]]: the recipient domains mail is taken for, and where it goes.
  // None: any domain, kept in the local spool (the embedded default).
  std::vector<RouteConfig> routes;
  DeliveryConfig delivery;
  DnsConfig dns;
  ChecksConfig checks;  // the built-in policy checks (pipeline/checks/)
  RecipientsConfig recipients;
  AuthConfig auth;      // [auth]: the backend that verifies AUTH credentials
  uint32_t shards = 0;  // 0: one per online CPU
  LogLevel log_level = LogLevel::info;
  LogFormat log_format = LogFormat::logfmt;
  // Connections over all shards, and from one client address.
  uint32_t max_connections = 20000;
  uint32_t max_connections_per_ip = 50;
  // SIGTERM: how long transactions in flight may take to finish.
  uint32_t drain_timeout_ms = 30000;
  // Wait this long before the greeting; a client that talks first is refused
  // (554 5.5.1). 0 greets at once.
  uint32_t greeting_delay_ms = 0;
  // With a greeting delay: send a "220-" line at once and the rest of the
  // greeting after the delay (postscreen's teaser): a robot that answers the
  // first line without waiting for the last is caught too.
  bool greeting_teaser = false;
  // A client that talks before the greeting: refused (554 5.5.1, the
  // default), or only scored (`pregreet_score` added to its connection's
  // score, its input kept for after the greeting).
  PregreetAction pregreet_action = PregreetAction::reject;
  uint32_t pregreet_score = 5;
  // A PROXY listener's header must be complete this long after the connect.
  uint32_t proxy_timeout_ms = 5000;
  // Submission queue entries of each shard's io_uring. A burst that needs
  // more waits (in order) for the next submit; nothing fails.
  uint32_t ring_entries = 4096;
};

// The TLS mode a listener ends up with (resolves `unset`).
ListenerTls effective_tls(const ServerConfig& cfg, const ListenerConfig& l);

}  // namespace ringmx
