// Contract: text of a recipients file -> an immutable RecipientTable (or the
// first bad line), and lookups on it. Pure: no file is opened here (net/
// reads the file); nothing on the lookup path allocates.
#include "core/recipient_table.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <functional>

#include "core/address.h"

namespace ringmx {

namespace {

// Keys in the one table, told apart by where their '@' is:
//   "local@domain"  an address   (an '@' inside)
//   "@domain"       a catch-all  (an '@' first)
//   "domain"        a domain the file names, for postmaster@domain (no '@')
// A key is at most a line long, so its length fits the arena's 16-bit prefix.
constexpr size_t kMaxKey = kMaxRecipientLine;
static_assert(kMaxKey <= 0xffff);

constexpr std::string_view kWhitespace = " \t";

char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// Eight octets at once: each of A-Z gets its 0x20 bit; every other octet
// (UTF-8 ones included) is left as it is.
uint64_t lower_word(uint64_t w) {
  constexpr uint64_t kOnes = 0x0101010101010101ull;
  constexpr uint64_t kHigh = 0x8080808080808080ull;
  const uint64_t low7 = w & ~kHigh;
  const uint64_t ge_a = low7 + kOnes * (0x80 - 'A');      // high bit: octet >= 'A'
  const uint64_t gt_z = low7 + kOnes * (0x80 - 'Z' - 1);  // high bit: octet > 'Z'
  const uint64_t upper = (ge_a ^ gt_z) & ~w & kHigh;      // and the octet is ASCII
  return w | (upper >> 2);
}

void copy_lower(std::string_view in, char* out) {
  size_t i = 0;
  for (; i + 8 <= in.size(); i += 8) {
    uint64_t w = 0;
    std::memcpy(&w, in.data() + i, sizeof w);
    w = lower_word(w);
    std::memcpy(out + i, &w, sizeof w);
  }
  for (; i < in.size(); ++i) out[i] = ascii_lower(in[i]);
}

bool equals_nocase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

// Writes the normalised key of (local, domain) into `out` (kMaxKey octets at
// least); returns its length, or 0 when it does not fit (then no entry has it).
size_t make_key(std::string_view local, std::string_view domain, bool fold_local, char* out) {
  const size_t n = local.size() + 1 + domain.size();
  if (n > kMaxKey) return 0;
  if (fold_local) {
    copy_lower(local, out);
  } else if (!local.empty()) {  // a catch-all's local part is empty (and may be null)
    std::memcpy(out, local.data(), local.size());
  }
  out[local.size()] = '@';
  copy_lower(domain, out + local.size() + 1);
  return n;
}

}  // namespace

std::string RecipientFileError::to_string() const {
  std::string out = file;
  if (line != 0) out += ":" + std::to_string(line);
  if (!out.empty()) out += ": ";
  return out + message;
}

std::string check_subaddress_separator(std::string_view separators) {
  constexpr std::string_view kAllowed = "!#$%&'*+-/=?^_`{|}~";
  if (separators.size() > kMaxSubaddressSeparators) {
    return "must be at most " + std::to_string(kMaxSubaddressSeparators) + " characters";
  }
  for (size_t i = 0; i < separators.size(); ++i) {
    if (kAllowed.find(separators[i]) == std::string_view::npos) {
      return "may hold only these characters: " + std::string(kAllowed);
    }
    if (separators.find(separators[i], i + 1) != std::string_view::npos) {
      return "names a character twice";
    }
  }
  return {};
}

// The standard library's string hash (MurmurHash2-64 in libstdc++): fast on
// short keys, and its low bits (the slot) and high bits (the tag) both mix
// every octet.
uint64_t RecipientTable::hash(std::string_view key) {
  static_assert(sizeof(size_t) == sizeof(uint64_t));
  return std::hash<std::string_view>{}(key);
}

std::string_view RecipientTable::key_at(uint32_t offset) const {
  const auto* p = reinterpret_cast<const unsigned char*>(arena_.data() + offset);
  const size_t len = size_t{p[0]} | (size_t{p[1]} << 8);
  return {arena_.data() + offset + 2, len};
}

bool RecipientTable::contains(std::string_view key) const {
  if (slots_.empty()) return false;
  const uint64_t h = hash(key);
  const auto tag = static_cast<uint32_t>(h >> 32);
  const size_t mask = slots_.size() - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.offset == kEmpty) return false;
    if (s.tag == tag && key_at(s.offset) == key) return true;
  }
}

void RecipientTable::place(uint64_t h, uint32_t offset) {
  const size_t mask = slots_.size() - 1;
  size_t i = h & mask;
  while (slots_[i].offset != kEmpty) i = (i + 1) & mask;
  slots_[i] = Slot{static_cast<uint32_t>(h >> 32), offset};
}

void RecipientTable::grow() {
  std::vector<Slot> bigger(std::max<size_t>(slots_.size() * 2, 1024));
  slots_.swap(bigger);
  // Every key in the arena is in the table exactly once: walking the arena
  // in order re-files them with sequential reads.
  for (size_t off = 0; off < arena_.size();) {
    const std::string_view k = key_at(static_cast<uint32_t>(off));
    place(hash(k), static_cast<uint32_t>(off));
    off += 2 + k.size();
  }
}

bool RecipientTable::insert(std::string_view key, bool& added) {
  added = false;
  if (contains(key)) return true;
  if (arena_.size() + 2 + key.size() >= kEmpty) return false;
  if ((used_ + 1) * 2 > slots_.size()) grow();
  const auto offset = static_cast<uint32_t>(arena_.size());
  arena_.push_back(static_cast<char>(key.size() & 0xff));
  arena_.push_back(static_cast<char>(key.size() >> 8));
  arena_.insert(arena_.end(), key.begin(), key.end());
  place(hash(key), offset);
  ++used_;
  added = true;
  return true;
}

std::shared_ptr<const RecipientTable> RecipientTable::parse(std::string_view text,
                                                            std::string_view file,
                                                            const RecipientOptions& options,
                                                            RecipientFileError& error) {
  std::shared_ptr<RecipientTable> t(new RecipientTable());
  t->options_ = options;
  const bool fold = !options.case_sensitive;
  const auto fail = [&](size_t line, std::string message) {
    error.file = std::string(file);
    error.line = line;
    error.message = std::move(message);
    return nullptr;
  };
  if (const std::string bad = check_subaddress_separator(options.subaddress_separator);
      !bad.empty()) {
    return fail(0, "subaddress separator " + bad);
  }
  // Sized once for the lines there are: the table then grows only when the
  // file names many domains. Keys are never longer than their lines.
  const size_t lines = static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) + 1;
  t->slots_.resize(std::bit_ceil(std::max<size_t>(lines * 2, 1024)));
  t->arena_.reserve(text.size() + text.size() / 8);

  std::array<char, kMaxKey + 2> buf{};
  size_t line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    ++line_no;
    const size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? text.npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > kMaxRecipientLine) {
      return fail(line_no, "line is longer than " + std::to_string(kMaxRecipientLine) + " octets");
    }
    const size_t start = line.find_first_not_of(kWhitespace);
    if (start == std::string_view::npos || line[start] == '#') continue;
    line.remove_prefix(start);
    const size_t end = line.find_first_of(kWhitespace);
    const std::string_view entry = line.substr(0, end);
    if (end != std::string_view::npos) {
      const std::string_view rest = line.substr(end);
      const size_t more = rest.find_first_not_of(kWhitespace);
      if (more != std::string_view::npos && rest[more] != '#') {
        return fail(line_no, "unexpected text after the entry (a comment starts with '#')");
      }
    }
    const size_t at = entry.rfind('@');
    if (at == std::string_view::npos) {
      return fail(line_no, "not an address: expected user@domain or @domain");
    }
    const std::string_view local = entry.substr(0, at);
    const std::string_view domain = entry.substr(at + 1);
    if (local.empty()) {
      if (domain.empty() || !is_valid_domain(domain, /*allow_utf8=*/true)) {
        return fail(line_no, "not a domain after '@' (a catch-all is @domain)");
      }
    } else {
      // The session's own parser decides what an address is, so the file
      // accepts exactly the mailboxes a client can name.
      buf[0] = '<';
      entry.copy(buf.data() + 1, entry.size());
      buf[entry.size() + 1] = '>';
      const std::string_view path(buf.data(), entry.size() + 2);
      const PathResult r = parse_path(path, PathKind::forward, /*allow_utf8=*/true);
      if (!r.ok()) return fail(line_no, "not an address: " + std::string(describe(r.error)));
      if (r.consumed != path.size()) return fail(line_no, "not an address");
    }
    const size_t key_len = make_key(local, domain, fold, buf.data());
    bool added = false;
    if (!t->insert(std::string_view(buf.data(), key_len), added)) {
      return fail(line_no, "too many entries: the table is limited to 4 GiB");
    }
    if (added) ++(local.empty() ? t->catch_alls_ : t->addresses_);
    // The domain alone, for postmaster@domain.
    std::string_view lowered(buf.data() + local.size() + 1, domain.size());
    if (!t->insert(lowered, added)) {
      return fail(line_no, "too many entries: the table is limited to 4 GiB");
    }
    if (added) ++t->domains_;
  }
  if (t->addresses_ + t->catch_alls_ == 0) {
    // Most likely a file emptied by accident: it would refuse every recipient.
    return fail(0,
                "has no entries: it would refuse every recipient (to turn the check off, set "
                "recipients.file = \"\")");
  }
  t->arena_.shrink_to_fit();  // the reserve was an estimate: give back what it over-shot
  return t;
}

RecipientMatch RecipientTable::find(std::string_view mailbox) const {
  const size_t at = mailbox.rfind('@');
  if (at == std::string_view::npos) {
    return equals_nocase(mailbox, "postmaster") ? RecipientMatch::postmaster
                                                : RecipientMatch::unknown;
  }
  std::string_view local = mailbox.substr(0, at);
  const std::string_view domain = mailbox.substr(at + 1);
  if (local.empty() || domain.empty()) return RecipientMatch::unknown;
  const bool fold = !options_.case_sensitive;
  std::array<char, kMaxKey> buf;  // NOLINT: written before it is read, not worth zeroing
  size_t n = make_key(local, domain, fold, buf.data());
  if (n == 0) return RecipientMatch::unknown;  // longer than any entry
  if (contains(std::string_view(buf.data(), n))) return RecipientMatch::address;
  const std::string_view seps = options_.subaddress_separator;
  if (!seps.empty()) {
    const size_t cut = local.find_first_of(seps);
    if (cut != std::string_view::npos && cut > 0) {
      n = make_key(local.substr(0, cut), domain, fold, buf.data());
      if (contains(std::string_view(buf.data(), n))) return RecipientMatch::subaddress;
    }
  }
  // The domain, lower-cased, after an '@': the catch-all key.
  n = make_key({}, domain, fold, buf.data());
  const std::string_view catch_all(buf.data(), n);
  if (contains(catch_all)) return RecipientMatch::catch_all;
  if (equals_nocase(local, "postmaster") && contains(catch_all.substr(1))) {
    return RecipientMatch::postmaster;
  }
  return RecipientMatch::unknown;
}

size_t RecipientTable::memory_bytes() const {
  return arena_.capacity() + slots_.capacity() * sizeof(Slot);
}

}  // namespace ringmx
