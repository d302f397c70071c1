// [checks], [[dnsbl]] and [[dnswl]]: what the built-in policy checks
// (pipeline/checks/) look at and what they do about it.
//
// Each finding has an action: off (not looked at), score (adds the check's
// `score` to the connection's score), reject (refused at once, with the
// check's own reply). A connection whose score reaches checks.reject_score
// is refused at the stage where it got there. A DNS-based check whose
// lookup fails for a while (timeout, SERVFAIL) either answers 4xx
// (tempfail) or looks away (skip): never a permanent refusal.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ringmx {

enum class CheckAction : uint8_t { off, score, reject };
enum class DnsFailure : uint8_t { tempfail, skip };

// [checks.ptr]: the client's reverse DNS (RFC 8601's iprev).
struct PtrCheckConfig {
  CheckAction missing = CheckAction::off;      // no PTR record at all
  CheckAction unconfirmed = CheckAction::off;  // no PTR name resolves back to the client
  CheckAction dynamic = CheckAction::off;      // the name matches a dynamic_patterns entry
  // ECMAScript regular expressions, matched case-insensitively anywhere in
  // the verified name (or the unverified one, when there is no verified one).
  std::vector<std::string> dynamic_patterns;
  int32_t score = 3;
  DnsFailure dns_failure = DnsFailure::skip;
};

// [checks.helo]: the name the client gave in HELO/EHLO.
struct HeloCheckConfig {
  CheckAction bare_ip = CheckAction::off;           // an address without its brackets
  CheckAction not_fqdn = CheckAction::off;          // a name without a dot
  CheckAction ours = CheckAction::off;              // our host name, or one of our addresses
  CheckAction literal_mismatch = CheckAction::off;  // [a.b.c.d] that is not the client's address
  CheckAction unresolvable = CheckAction::off;      // a name with no A or AAAA record (DNS)
  int32_t score = 2;
  DnsFailure dns_failure = DnsFailure::skip;
};

// [checks.sender]: the MAIL FROM domain (the null sender is never checked).
struct SenderCheckConfig {
  // No MX, A or AAAA (RFC 5321 5.1): nothing could ever take a bounce.
  CheckAction unresolvable = CheckAction::off;
  CheckAction null_mx = CheckAction::off;  // RFC 7505: the domain takes no mail
  int32_t score = 5;
  DnsFailure dns_failure = DnsFailure::tempfail;
};

// One DNS block list ([[dnsbl]]) or allow list ([[dnswl]]), looked up at
// connect with the client's reversed address under `zone`.
struct DnsListConfig {
  std::string zone;  // "zen.example.net"
  std::string name;  // label in logs, metrics and the trace header; default: the zone
  // Added to the score when listed (a DNSWL's is taken off). A block list
  // whose weight reaches checks.reject_score refuses on its own.
  int32_t weight = 0;
  // The answers that count, as addresses or "first-last" ranges; empty: any
  // answer in 127.0.0.0/8 (a list answers outside it to say it refused the
  // query, never to list a client).
  std::vector<std::string> codes;
};

// [checks.rate]: how much one client may do, per minute and at once. Each
// shard counts what it sees on its own (no lock): a per-minute limit is
// enforced by every shard as its share, ceil(limit / shards), at least 1
// (docs/rate-limits.md says what that makes exact and what approximate).
// 0 turns a limit off; the embedded defaults turn them all off.
struct RateCheckConfig {
  uint32_t connections_per_minute = 0;  // per client address: 421 4.7.0 at connect
  uint32_t messages_per_minute = 0;     // MAIL commands: 452 4.7.0
  uint32_t recipients_per_minute = 0;   // RCPT commands: 452 4.7.0
  // Connections at once from one network (all shards together, exact up to
  // hash collisions), besides max_connections_per_ip: 421 4.7.0 at connect.
  uint32_t max_connections_per_network = 0;
  uint32_t network_prefix_v4 = 24;  // the network of an IPv4 client: its /24
  uint32_t network_prefix_v6 = 64;  // ... of an IPv6 client: its /64
  uint32_t max_clients = 100'000;   // clients each shard remembers; the least recently seen go
  // Never limited, nor remembered by karma (CIDR networks or addresses).
  std::vector<std::string> exempt;
};

// [checks.karma]: a per-shard memory of the clients that were refused
// recently. A connection that ends having been refused (by a check, the
// recipient table, the protocol discipline, a pre-greeting talker), or with
// a score of at least `bad_score`, leaves its client `penalty` points; the
// points halve every `half_life_s`. A client with at least `reject_penalty`
// points is refused at connect (421 4.7.0) before any DNS lookup; below
// that, score_weight percent of its points are added to its score. Points
// decay continuously: three refusals of 10 in quick succession make just
// under 30, so the default threshold (25) refuses at the third.
struct KarmaConfig {
  bool enabled = false;
  uint32_t penalty = 10;
  uint32_t reject_penalty = 25;
  uint32_t half_life_s = 600;
  uint32_t bad_score = 0;     // 0: a score alone is never held against a client
  uint32_t score_weight = 0;  // percent; 0: the points only ever refuse
  uint32_t max_clients = 100'000;
};

// One milter of the chain ([[milter]], in the order they run): a filter
// speaking the milter protocol (version 6) on a socket, asked at every stage
// after the built-in checks (pipeline/checks/milter.cc).
enum class MilterDefault : uint8_t {
  tempfail,  // 451 4.7.1 at each stage while the milter is unusable
  accept,    // go on without it
  reject,    // 550 5.7.1
};
struct MilterConfig {
  std::string name;     // metrics and logs; default "milter1", "milter2", ... by position
  std::string address;  // "unix:/run/x.sock", "inet:127.0.0.1:11332", "inet:11332@host",
                        // "inet6:[::1]:11332"
  uint32_t connect_timeout_ms = 5000;   // connect and option negotiation
  uint32_t command_timeout_ms = 30000;  // the answer to each command
  uint32_t eom_timeout_ms = 300000;     // the answer at the end of the message
  // The milter is unreachable, breaks the protocol or times out (Postfix's
  // milter_default_action).
  MilterDefault default_action = MilterDefault::tempfail;
  // Keep the connection for the next SMTP session (SMFIC_QUIT_NC) instead
  // of a new one each time: libmilter filters and rspamd take it.
  bool reuse_connections = false;
  uint32_t max_idle_connections = 16;  // per shard, waiting for a session
  uint32_t idle_timeout_ms = 10000;    // an idle connection is closed after this
};

struct ChecksConfig {
  // A connection whose score reaches this is refused; 0: scores never refuse.
  int32_t reject_score = 10;
  // Mail from a connection whose score reaches this (below reject_score) is
  // taken but held in the queue until an operator releases it; 0: never.
  int32_t quarantine_score = 0;
  // An Authentication-Results header (iprev, DNS lists) on accepted mail.
  bool trace_header = true;
  PtrCheckConfig ptr;
  HeloCheckConfig helo;
  SenderCheckConfig sender;
  RateCheckConfig rate;
  KarmaConfig karma;
  std::vector<DnsListConfig> dnsbl;
  std::vector<DnsListConfig> dnswl;
  // A DNS list lookup that fails for a while: skip (the default: a list's
  // outage must not stop mail) or tempfail.
  DnsFailure dnsbl_failure = DnsFailure::skip;
  std::vector<MilterConfig> milters;  // [[milter]], at most 16
};

}  // namespace ringmx
