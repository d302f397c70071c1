// The on-disk spool format (docs/spool.md): a short text envelope, an empty
// line, then the message exactly as stored (our Received header + the body as
// received, dot-unstuffed). Readable with ordinary tools:
//   sed '1,/^$/d' FILE   prints the message.
// Pure formatting and parsing here; the ring writes the bytes (net/).
#pragma once

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

// Appends the envelope block including the empty line that ends it.
// `message_size` is received.size() + body.size(). Every value written comes
// from validated input, but any CR/LF would still be escaped.
void append_spool_envelope(std::string& out, const Message& msg, const SpoolClient& client,
                           uint64_t message_size);

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

// Returns false and sets `error` when the data is not a complete spool file
// (bad header, or fewer message octets than declared: a torn write).
bool parse_spool_file(std::string_view data, SpoolEntry& out, std::string& error);

// A spool file written by the runtime holds one or more records back to back
// (every message of one group commit). All must be complete.
bool parse_spool_records(std::string_view data, std::vector<SpoolEntry>& out, std::string& error);

// Spool file names: "<queue-id>.msg" when complete; "<queue-id>.tmp" while
// being written (removed at start-up if a crash left it).
std::string spool_final_name(std::string_view queue_id);
std::string spool_temp_name(std::string_view queue_id);

struct RecoveryReport {
  uint64_t kept = 0;          // complete messages (records, not files)
  uint64_t removed_temp = 0;  // *.tmp left by a crash
  uint64_t truncated = 0;     // files whose unfinished last append was cut off
  uint64_t bad = 0;           // unreadable files moved to DIR/corrupt/, or tails saved there
  uint64_t bytes = 0;         // bytes of kept records
  std::vector<std::string> problems;  // one line per file that needed attention
};

// Start-up only (blocking file I/O is fine before the shards run): creates
// `dir` if needed, removes temp files, checks every record of every file, and
// cuts off the unfinished last record a crash can leave at the end of a
// segment (it was never acknowledged).
RecoveryReport recover_spool_dir(const std::string& dir);

}  // namespace ringmx
