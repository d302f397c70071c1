// The valid-recipient table: which mailboxes exist behind this MX, so that
// mail for any other is refused at RCPT (550 5.1.1) instead of being taken
// and bounced later (backscatter). Built once per config load from the text
// of a recipients file; immutable afterwards, shared read-only by every shard.
//
// The file: one entry per line; blank lines and lines starting with '#' are
// ignored, and so is a '#' comment after an entry and whitespace. An entry is
//   user@example.org   that mailbox
//   @example.org       any local part at example.org (catch-all)
// A line (its terminator not counted) may be at most kMaxRecipientLine octets.
//
// Matching a recipient, in this order:
//   1. the address itself;
//   2. with subaddressing on, the address without its tag: "user+tag@d" as
//      "user@d" (cut at the first separator that is not the first octet);
//   3. the catch-all of its domain;
//   4. postmaster: a bare "postmaster", or "postmaster@d" for any domain d
//      the file names (RFC 5321 4.5.1), whatever the case of "postmaster".
// Domains always compare case-insensitively. Local parts do too unless
// case_sensitive is set: RFC 5321 2.4 leaves their case to the receiving
// host, but every mainstream mail store treats "John" and "john" as one
// mailbox, and operators expect the MX to agree with it. Only ASCII letters
// fold; UTF-8 octets compare as they are. Addresses compare in the form
// written (a quoted local part keeps its quotes), as the session hands them.
//
// Layout (for millions of entries): every normalised key is stored once, as
// a 16-bit length and its octets, in one contiguous arena; an open-addressing
// table of 8-octet slots (32 bits of the key's 64-bit hash as a tag, 32 bits
// of arena offset) with linear probing indexes it, at most half full. A miss
// usually costs one hash and one or two slot reads without touching the
// arena; a hit one arena compare. A million addresses of 35 octets take
// 52 MiB (arena 36, slots 16), against 120 MiB in a node-based set; see
// bench/micro/recipient_bench.cc for load and lookup times. The key set comes from the
// operator, not from clients: a client chooses only what is looked up, and
// every lookup is bounded by the longest probe run the file produced.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ringmx {

// Longest line of a recipients file, its line ending not counted: an address
// is at most 254 octets (RFC 5321 4.5.3.1.3, path 256 less the brackets);
// the rest leaves room for a comment.
inline constexpr size_t kMaxRecipientLine = 320;
// Subaddress separators: at most this many characters, each one separates.
inline constexpr size_t kMaxSubaddressSeparators = 8;

struct RecipientOptions {
  bool case_sensitive = false;  // local parts; domains never are
  // Each character separates a tag ("+": user+tag@d is user@d); empty: off.
  std::string subaddress_separator = "+";
};

// "" when `separators` may be used as RecipientOptions::subaddress_separator,
// else what is wrong: punctuation allowed in an unquoted local part only
// (RFC 5322 atext, no letter or digit), each at most once.
std::string check_subaddress_separator(std::string_view separators);

// Why a recipient was found, or not.
enum class RecipientMatch : uint8_t { unknown, address, subaddress, catch_all, postmaster };

// One problem of a recipients file, where it is.
struct RecipientFileError {
  std::string file;
  size_t line = 0;  // 1-based; 0 when it concerns the whole file
  std::string message;
  std::string to_string() const;  // "file:line: message"
};

class RecipientTable {
 public:
  // Parses the text of a recipients file (named `file` in errors). On the
  // first bad line returns null and sets `error`; the table is all or nothing.
  static std::shared_ptr<const RecipientTable> parse(std::string_view text, std::string_view file,
                                                     const RecipientOptions& options,
                                                     RecipientFileError& error);

  // `mailbox`: the recipient as the session parsed it, without brackets
  // ("user@example.org", or a bare "postmaster").
  RecipientMatch find(std::string_view mailbox) const;
  bool accepts(std::string_view mailbox) const { return find(mailbox) != RecipientMatch::unknown; }

  size_t addresses() const { return addresses_; }  // distinct user@domain entries
  size_t catch_alls() const { return catch_alls_; }
  size_t domains() const { return domains_; }  // distinct domains named
  size_t memory_bytes() const;                 // arena + slots
  const RecipientOptions& options() const { return options_; }

 private:
  RecipientTable() = default;
  // The 64-bit hash every key is filed under.
  static uint64_t hash(std::string_view key);
  bool contains(std::string_view key) const;
  // False when the arena would pass what a 32-bit offset reaches.
  bool insert(std::string_view key, bool& added);
  void grow();
  void place(uint64_t h, uint32_t offset);
  std::string_view key_at(uint32_t offset) const;

  struct Slot {
    uint32_t tag = 0;
    uint32_t offset = kEmpty;
  };
  static constexpr uint32_t kEmpty = 0xffffffffu;

  RecipientOptions options_;
  std::vector<char> arena_;  // [uint16 length][octets] per key, in insertion order
  std::vector<Slot> slots_;  // a power of two, at most half used
  size_t used_ = 0;
  size_t addresses_ = 0;
  size_t catch_alls_ = 0;
  size_t domains_ = 0;
};

}  // namespace ringmx
