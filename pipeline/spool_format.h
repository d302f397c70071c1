// The on-disk spool format (docs/spool.md): a short text envelope, an empty
// line, the message exactly as stored (our Received header + the body as
// received, dot-unstuffed), then (version 2) a 16-octet checksum trailer.
// Readable with ordinary tools. Pure formatting and parsing here; the ring
// writes the bytes (net/), start-up recovery is pipeline/spool_recovery.cc.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/envelope.h"

namespace ringmx {

// Facts about the client that go into the envelope block.
struct SpoolClient {
  std::string_view ip;
  uint16_t port = 0;
  std::string_view helo;
  std::string_view ptr;          // verified reverse name, may be empty
  std::string_view protocol;     // "ESMTP", "ESMTPS", ...
  std::string_view tls_version;  // empty without TLS
  std::string_view tls_cipher;
};

// The version this code writes; it reads 1 and 2.
inline constexpr uint32_t kSpoolVersion = 2;

// Appends the envelope block including the empty line that ends it.
// `message_size` is received.size() + body.size(). Every value written comes
// from validated input, but any CR/LF would still be escaped.
void append_spool_envelope(std::string& out, const Message& msg, const SpoolClient& client,
                           uint64_t message_size);

// The trailer that ends a version-2 record, "crc32c XXXXXXXX\n" (8 lowercase
// hex digits): `crc` is the CRC32C of every octet of the record before it,
// envelope block and message (pipeline/crc32c.h sums them piece by piece).
inline constexpr size_t kSpoolTrailerSize = 16;
using SpoolTrailer = std::array<char, kSpoolTrailerSize>;
SpoolTrailer spool_trailer(uint32_t crc);

// A record streamed to disk before its size is known (a body spilled as it
// arrives) is written with message-size as this many zero digits, which are
// overwritten in place once the size is known: the reader takes the leading
// zeros as any number.
inline constexpr size_t kSpoolSizeDigits = 20;
// As append_spool_envelope, with message-size written as kSpoolSizeDigits
// zeros. Returns the offset in `out` of those digits.
size_t append_spool_envelope_unsized(std::string& out, const Message& msg,
                                     const SpoolClient& client);
// `size` as kSpoolSizeDigits decimal digits, zero-padded.
std::string spool_size_digits(uint64_t size);

// A parsed spool file: views into the file's bytes.
struct SpoolEntry {
  uint32_t version = 0;
  std::string queue_id;
  int64_t received_at = 0;
  std::string client_ip;
  uint16_t client_port = 0;
  std::string helo;
  std::string ptr;
  std::string protocol;
  std::string tls_version;
  std::string tls_cipher;
  std::string sender;  // without brackets, "" for <>
  MailParams mail;
  std::vector<Recipient> recipients;
  uint64_t message_size = 0;
  std::string_view message;  // exactly message_size octets
};

// What is wrong with a record, for recovery to decide what to do with it.
enum class SpoolDefect : uint8_t {
  none,
  truncated,  // the data ends inside the record: a torn append, or nothing at all
  checksum,   // version 2: the trailer is malformed or its CRC32C does not match
  malformed,  // not a record: bad or unsupported header line, bad or missing key
};

// The record at the start of `data` (a file holds several back to back). On
// success returns SpoolDefect::none and sets `consumed` to the record's
// length, trailer included; a version-2 record's checksum has been verified.
// Otherwise sets `error` to why ("truncated: ...", "checksum mismatch: ...").
SpoolDefect parse_spool_record(std::string_view data, SpoolEntry& out, std::string& error,
                               size_t& consumed);

// Returns false and sets `error` when the data is not exactly one complete
// record (bad header, a torn write, a checksum that does not match).
bool parse_spool_file(std::string_view data, SpoolEntry& out, std::string& error);

// A spool file written by the runtime holds one or more records back to back
// (every message of one group commit), of either version. All must be
// complete and, for version 2, match their checksum.
bool parse_spool_records(std::string_view data, std::vector<SpoolEntry>& out, std::string& error);

// Spool file names: "<queue-id>.msg" for a segment (named after its first
// message) or a streamed body once sealed; "<queue-id>.tmp" for a streamed
// body still being written (removed at start-up if a crash left it).
std::string spool_final_name(std::string_view queue_id);
std::string spool_temp_name(std::string_view queue_id);

struct RecoveryReport {
  uint64_t kept = 0;               // complete messages (records, not files)
  uint64_t removed_temp = 0;       // *.tmp left by a crash
  uint64_t truncated = 0;          // files cut back to their last good record
  uint64_t checksum_failures = 0;  // files whose first bad record failed its checksum/trailer
  uint64_t bad = 0;                // unreadable files moved to DIR/corrupt/, or tails saved there
  uint64_t bytes = 0;              // bytes of kept records
  std::vector<std::string> problems;  // one line per file that needed attention
};

// Start-up only (blocking file I/O is fine before the shards run): makes
// `dir` and its parents durable (make_durable_dirs), removes temp files,
// checks every record of every file, and cuts a segment back at its first bad
// record: the unfinished last append a crash leaves, or a record whose
// checksum shows its data never reached the disk (neither was acknowledged).
// Contract and details: pipeline/spool_recovery.cc.
RecoveryReport recover_spool_dir(const std::string& dir);

}  // namespace ringmx
