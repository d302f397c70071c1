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

struct ChecksConfig {
  // A connection whose score reaches this is refused; 0: scores never refuse.
  int32_t reject_score = 10;
  // An Authentication-Results header (iprev, DNS lists) on accepted mail.
  bool trace_header = true;
  PtrCheckConfig ptr;
  HeloCheckConfig helo;
  SenderCheckConfig sender;
  std::vector<DnsListConfig> dnsbl;
  std::vector<DnsListConfig> dnswl;
  // A DNS list lookup that fails for a while: skip (the default: a list's
  // outage must not stop mail) or tempfail.
  DnsFailure dnsbl_failure = DnsFailure::skip;
};

}  // namespace ringmx
