// The spool file format, version 1 (docs/spool.md), and start-up recovery.
//
// Contract: append_spool_envelope and parse_spool_file are pure (no I/O; no
// exception but std::bad_alloc). Whatever the writer emits for a non-empty
// queue id parses back to the same values, except octets that would break the
// format, which become '?': CR, LF and NUL anywhere; also control octets and
// spaces inside space-separated tokens (queue id, TLS names, parameter
// values); also '"', '\\' and '>' of an address whose quoting is unbalanced.
// The parser is strict otherwise: an unknown or repeated key, a missing
// required key, or a message that is not exactly message-size octets is an
// error, so a format change or a torn write is noticed instead of guessed at.
//
// recover_spool_dir runs before the shards start: blocking POSIX calls, one
// directory, no recursion. It throws std::runtime_error only when the
// directory itself cannot be created, opened or listed; trouble with single
// files goes into the report.
#include "pipeline/spool_format.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace ringmx {

namespace {

constexpr std::string_view kHeaderLine = "ringmx-spool 1";
constexpr uint32_t kVersion = 1;
constexpr std::string_view kFinalSuffix = ".msg";
constexpr std::string_view kTempSuffix = ".tmp";
constexpr std::string_view kCorruptDir = "corrupt";
constexpr mode_t kDirMode = 0750;

// One allocation for an error text, however many pieces.
std::string cat(std::initializer_list<std::string_view> parts) {
  size_t size = 0;
  for (std::string_view p : parts) size += p.size();
  std::string out;
  out.reserve(size);
  for (std::string_view p : parts) out.append(p);
  return out;
}

// ---------------------------------------------------------------- writing

constexpr bool breaks_line(char c) {
  return c == '\r' || c == '\n' || c == '\0';
}

// Tokens are separated by single spaces, so a space inside one would split it.
constexpr bool breaks_token(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u <= 0x20 || u == 0x7F;
}

void append_clean(std::string& out, std::string_view value) {
  for (char c : value) out.push_back(breaks_line(c) ? '?' : c);
}

void append_token(std::string& out, std::string_view value) {
  for (char c : value) out.push_back(breaks_token(c) ? '?' : c);
}

template <typename Int>
void append_number(std::string& out, Int value) {
  char buf[24];
  const auto res = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, res.ptr);
}

// Writes "key: value\n", or "key:\n" for an empty value so no line ends in a
// space that an editor might strip.
void append_line(std::string& out, std::string_view key, std::string_view value) {
  out.append(key);
  out.push_back(':');
  if (!value.empty()) {
    out.push_back(' ');
    append_clean(out, value);
  }
  out.push_back('\n');
}

// Index just past the '>' that closes an address whose first octet is at
// `pos` (just after '<'), or npos. Quoted local parts may hold spaces and '>'
// (RFC 5321 qtextSMTP), so the scan honours quotes and backslash escapes.
size_t address_end(std::string_view s, size_t pos) {
  bool quoted = false;
  for (size_t i = pos; i < s.size(); ++i) {
    const char c = s[i];
    if (quoted) {
      if (c == '\\') {
        ++i;  // the escaped octet, whatever it is
      } else if (c == '"') {
        quoted = false;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == '>') {
      return i + 1;
    }
  }
  return std::string_view::npos;
}

// True when address_end would stop exactly after "<address>": no '>' outside
// quotes, every quote closed. The same scan as above, without allocating on
// the per-message path. CR/LF/NUL replacement cannot change the outcome.
bool address_round_trips(std::string_view address) {
  bool quoted = false;
  for (size_t i = 0; i < address.size(); ++i) {
    const char c = address[i];
    if (quoted) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        quoted = false;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == '>') {
      return false;
    }
  }
  return !quoted;
}

void append_address(std::string& out, std::string_view address) {
  out.push_back('<');
  if (address_round_trips(address)) {
    append_clean(out, address);
  } else {
    // Unbalanced quoting would make the parser run past the '>'; validated
    // input never gets here, but a spool file must always parse back.
    for (char c : address) {
      out.push_back(breaks_line(c) || c == '"' || c == '\\' || c == '>' ? '?' : c);
    }
  }
  out.push_back('>');
}

void append_param(std::string& out, std::string_view keyword, std::string_view value) {
  out.push_back(' ');
  out.append(keyword);
  out.push_back('=');
  append_token(out, value);
}

std::string_view body_name(BodyType body) {
  switch (body) {
    case BodyType::seven_bit: return "7BIT";
    case BodyType::eight_bit_mime: return "8BITMIME";
    case BodyType::binary_mime: return "BINARYMIME";
    case BodyType::unspecified: break;
  }
  return {};
}

std::string_view ret_name(DsnRet ret) {
  switch (ret) {
    case DsnRet::full: return "FULL";
    case DsnRet::hdrs: return "HDRS";
    case DsnRet::unspecified: break;
  }
  return {};
}

struct NotifyName {
  std::string_view name;
  uint8_t bit;
};
constexpr NotifyName kNotifyNames[] = {
    {"SUCCESS", notify_success},
    {"FAILURE", notify_failure},
    {"DELAY", notify_delay},
};

void append_notify(std::string& out, uint8_t notify) {
  // Unknown bits alone would write an empty NOTIFY= that does not parse back.
  constexpr uint8_t kKnown = notify_never | notify_success | notify_failure | notify_delay;
  if ((notify & kKnown) == 0) return;
  out.append(" NOTIFY=");
  if ((notify & notify_never) != 0) {
    out.append("NEVER");
    return;
  }
  bool first = true;
  for (const auto& n : kNotifyNames) {
    if ((notify & n.bit) == 0) continue;
    if (!first) out.push_back(',');
    out.append(n.name);
    first = false;
  }
}

// ---------------------------------------------------------------- parsing

template <typename Int>
bool parse_int(std::string_view s, Int& out) {
  if (s.empty()) return false;
  const char* end = s.data() + s.size();
  const auto res = std::from_chars(s.data(), end, out);
  return res.ec == std::errc() && res.ptr == end;
}

enum class Key : uint8_t {
  queue_id,
  received_at,
  client,
  helo,
  ptr,
  protocol,
  tls,
  mail_from,
  rcpt_to,
  message_size,
  count
};

constexpr std::string_view kKeyNames[] = {
    "queue-id", "received-at", "client",    "helo",    "ptr",
    "protocol", "tls",         "mail-from", "rcpt-to", "message-size",
};
static_assert(std::size(kKeyNames) == static_cast<size_t>(Key::count));

constexpr uint32_t bit(Key k) {
  return 1u << static_cast<unsigned>(k);
}

constexpr uint32_t kRequired = bit(Key::queue_id) | bit(Key::received_at) | bit(Key::client) |
                               bit(Key::protocol) | bit(Key::mail_from) | bit(Key::rcpt_to) |
                               bit(Key::message_size);

Key find_key(std::string_view name) {
  for (size_t i = 0; i < std::size(kKeyNames); ++i) {
    if (kKeyNames[i] == name) return static_cast<Key>(i);
  }
  return Key::count;
}

// Splits "<address> P1 P2" into the address (without brackets) and the
// parameter list after the '>' (empty, or starting with one space).
bool split_path(std::string_view value, std::string& address, std::string_view& params,
                std::string& error) {
  if (value.empty() || value.front() != '<') {
    error = "address must start with '<'";
    return false;
  }
  const size_t end = address_end(value, 1);
  if (end == std::string_view::npos) {
    error = "address has no closing '>'";
    return false;
  }
  address.assign(value.substr(1, end - 2));
  params = value.substr(end);
  if (!params.empty() && params.front() != ' ') {
    error = "text after '>' is not a parameter";
    return false;
  }
  return true;
}

// Calls fn(keyword, value, has_value) for every parameter of " K=V K2 ...";
// stops at the first false it returns.
template <typename Fn>
bool for_each_param(std::string_view params, std::string& error, Fn fn) {
  while (!params.empty()) {
    params.remove_prefix(1);  // the separating space
    const size_t space = params.find(' ');
    const std::string_view token = params.substr(0, space);
    params = space == std::string_view::npos ? std::string_view{} : params.substr(space);
    if (token.empty()) {
      error = "empty parameter (two spaces or a trailing space)";
      return false;
    }
    const size_t eq = token.find('=');
    const std::string_view keyword = token.substr(0, eq);
    const bool has_value = eq != std::string_view::npos;
    const std::string_view value = has_value ? token.substr(eq + 1) : std::string_view{};
    if (!fn(keyword, value, has_value)) return false;
  }
  return true;
}

std::string param_error(std::string_view what, std::string_view keyword) {
  std::string e(what);
  e.append(" parameter ");
  e.append(keyword);
  return e;
}

bool parse_mail_from(std::string_view value, SpoolEntry& out, std::string& error) {
  std::string_view params;
  if (!split_path(value, out.sender, params, error)) return false;
  MailParams& mail = out.mail;
  bool have_body = false;
  bool have_ret = false;
  bool have_envid = false;
  const auto fail = [&error](std::string_view what, std::string_view key) {
    error = param_error(what, key);
    return false;
  };
  return for_each_param(params, error, [&](std::string_view key, std::string_view v, bool has_v) {
    if (key == "SIZE") {
      if (mail.has_size) return fail("duplicate", key);
      if (!has_v || !parse_int(v, mail.size)) return fail("bad", key);
      mail.has_size = true;
    } else if (key == "BODY") {
      if (have_body) return fail("duplicate", key);
      if (v == "7BIT") {
        mail.body = BodyType::seven_bit;
      } else if (v == "8BITMIME") {
        mail.body = BodyType::eight_bit_mime;
      } else if (v == "BINARYMIME") {
        mail.body = BodyType::binary_mime;
      } else {
        return fail("bad", key);
      }
      have_body = true;
    } else if (key == "SMTPUTF8") {
      if (mail.smtputf8) return fail("duplicate", key);
      if (has_v) return fail("bad", key);
      mail.smtputf8 = true;
    } else if (key == "RET") {
      if (have_ret) return fail("duplicate", key);
      if (v == "FULL") {
        mail.ret = DsnRet::full;
      } else if (v == "HDRS") {
        mail.ret = DsnRet::hdrs;
      } else {
        return fail("bad", key);
      }
      have_ret = true;
    } else if (key == "ENVID") {
      if (have_envid) return fail("duplicate", key);
      if (v.empty()) return fail("bad", key);
      mail.envid.assign(v);
      have_envid = true;
    } else {
      return fail("unknown", key);
    }
    return true;
  });
}

bool parse_notify(std::string_view v, uint8_t& notify) {
  if (v == "NEVER") {
    notify = notify_never;
    return true;
  }
  notify = notify_none;
  while (true) {
    const size_t comma = v.find(',');
    const std::string_view item = v.substr(0, comma);
    const auto* it = std::find_if(std::begin(kNotifyNames), std::end(kNotifyNames),
                                  [item](const NotifyName& n) { return n.name == item; });
    if (it == std::end(kNotifyNames) || (notify & it->bit) != 0) return false;
    notify = static_cast<uint8_t>(notify | it->bit);
    if (comma == std::string_view::npos) return true;
    v.remove_prefix(comma + 1);
  }
}

bool parse_rcpt_to(std::string_view value, SpoolEntry& out, std::string& error) {
  Recipient& rcpt = out.recipients.emplace_back();
  std::string_view params;
  if (!split_path(value, rcpt.address, params, error)) return false;
  RcptParams& p = rcpt.params;
  bool have_orcpt = false;
  const auto fail = [&error](std::string_view what, std::string_view key) {
    error = param_error(what, key);
    return false;
  };
  return for_each_param(params, error, [&](std::string_view key, std::string_view v, bool) {
    if (key == "NOTIFY") {
      if (p.notify != notify_none) return fail("duplicate", key);
      if (!parse_notify(v, p.notify)) return fail("bad", key);
    } else if (key == "ORCPT") {
      if (have_orcpt) return fail("duplicate", key);
      const size_t semi = v.find(';');
      if (semi == 0 || semi == std::string_view::npos) return fail("bad", key);
      p.orcpt_type.assign(v.substr(0, semi));
      p.orcpt.assign(v.substr(semi + 1));
      have_orcpt = true;
    } else {
      return fail("unknown", key);
    }
    return true;
  });
}

bool parse_client(std::string_view value, SpoolEntry& out) {
  constexpr std::string_view kSep = " port ";
  const size_t sep = value.rfind(kSep);
  if (sep == std::string_view::npos) return false;
  out.client_ip.assign(value.substr(0, sep));
  return parse_int(value.substr(sep + kSep.size()), out.client_port);
}

// Sets `error` to why the value is bad, or leaves it empty.
void parse_value(Key key, std::string_view value, SpoolEntry& out, std::string& error) {
  switch (key) {
    case Key::queue_id:
      if (value.empty()) error = "empty";
      out.queue_id.assign(value);
      break;
    case Key::received_at:
      if (!parse_int(value, out.received_at)) error = "not a number";
      break;
    case Key::client:
      if (!parse_client(value, out)) error = "expected \"ADDRESS port N\"";
      break;
    case Key::helo: out.helo.assign(value); break;
    case Key::ptr: out.ptr.assign(value); break;
    case Key::protocol: out.protocol.assign(value); break;
    case Key::tls: {
      const size_t space = value.find(' ');
      out.tls_version.assign(value.substr(0, space));
      if (space != std::string_view::npos) out.tls_cipher.assign(value.substr(space + 1));
      if (out.tls_version.empty()) error = "no TLS version";
      break;
    }
    case Key::mail_from: parse_mail_from(value, out, error); break;
    case Key::rcpt_to: parse_rcpt_to(value, out, error); break;
    case Key::message_size:
      if (!parse_int(value, out.message_size)) error = "not a number";
      break;
    case Key::count: error = "unknown key"; break;
  }
}

std::string line_error(size_t line_no, std::string_view what) {
  std::string e = "line ";
  append_number(e, line_no);
  e.append(": ");
  e.append(what);
  return e;
}

// ---------------------------------------------------------------- recovery

std::string errno_text(int err) {
  return std::system_category().message(err);
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

class Dir {
 public:
  explicit Dir(DIR* d) : dir_(d) {}
  Dir(const Dir&) = delete;
  Dir& operator=(const Dir&) = delete;
  ~Dir() {
    if (dir_ != nullptr) ::closedir(dir_);
  }
  DIR* get() const { return dir_; }

 private:
  DIR* dir_;
};

bool ends_with_name(std::string_view name, std::string_view suffix) {
  return name.size() > suffix.size() && name.ends_with(suffix);
}

// A new directory entry is only durable once its parent is synced; without
// this a crash could take the fresh spool directory, and the messages
// acknowledged in it, away.
void sync_dir(const std::string& path) {
  const Fd fd(::open(path.empty() ? "." : path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() >= 0) ::fsync(fd.get());
}

// mkdir -p: every missing component is created with kDirMode.
void make_dirs(const std::string& dir) {
  for (size_t end = 1; end <= dir.size(); ++end) {
    if (end < dir.size() && dir[end] != '/') continue;
    const std::string prefix = dir.substr(0, end);
    if (prefix.back() == '/') continue;  // "//" or a trailing '/'
    if (::mkdir(prefix.c_str(), kDirMode) == 0) {
      const size_t parent_end = prefix.find_last_of('/');
      sync_dir(parent_end == std::string::npos ? std::string() : prefix.substr(0, parent_end + 1));
      continue;
    }
    const int err = errno;
    // An existing directory may still fail with EACCES or EROFS rather than EEXIST.
    struct stat st {};
    if (::stat(prefix.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) continue;
    throw std::runtime_error(cat({"spool directory ", dir, ": cannot create ", prefix, ": ",
                                  errno_text(err == EEXIST ? ENOTDIR : err)}));
  }
}

bool is_regular(int dir_fd, const dirent& entry) {
  if (entry.d_type == DT_REG) return true;
  if (entry.d_type != DT_UNKNOWN) return false;
  struct stat st {};
  return ::fstatat(dir_fd, entry.d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

// A read-only mapping of a whole file. Mapped rather than read because
// parse_spool_file looks only at the envelope block and the length, so start-up
// touches one page per message however large the spool is.
class Mapping {
 public:
  Mapping() = default;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (addr_ != nullptr) ::munmap(addr_, size_);
  }

  // Returns false and sets `error` when the file cannot be opened or mapped.
  bool map(int dir_fd, const std::string& name, std::string& error) {
    const Fd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (fd.get() < 0) {
      error = "cannot open: " + errno_text(errno);
      return false;
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
      error = "cannot stat: " + errno_text(errno);
      return false;
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ == 0) return true;  // mmap refuses a zero length
    void* addr = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd.get(), 0);
    if (addr == MAP_FAILED) {
      error = "cannot map: " + errno_text(errno);
      size_ = 0;
      return false;
    }
    addr_ = addr;
    return true;
  }
  std::string_view view() const { return {static_cast<const char*>(addr_), size_}; }
  size_t size() const { return size_; }

 private:
  void* addr_ = nullptr;
  size_t size_ = 0;
};

// Moves a bad file to corrupt/ under a name not yet taken there, so an older
// copy is never overwritten. Returns an empty string or why it failed.
std::string move_to_corrupt(int dir_fd, const std::string& name) {
  const std::string corrupt(kCorruptDir);
  if (::mkdirat(dir_fd, corrupt.c_str(), kDirMode) != 0 && errno != EEXIST) {
    return cat({"cannot create ", kCorruptDir, "/: ", errno_text(errno)});
  }
  std::string target = cat({kCorruptDir, "/", name});
  struct stat st {};
  for (int n = 1; ::fstatat(dir_fd, target.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0; ++n) {
    target = cat({kCorruptDir, "/", name, ".", std::to_string(n)});
  }
  if (::renameat(dir_fd, name.c_str(), dir_fd, target.c_str()) != 0) {
    return cat({"cannot move to ", kCorruptDir, "/: ", errno_text(errno)});
  }
  return {};
}

bool parse_record(std::string_view data, SpoolEntry& out, std::string& error, size_t& consumed);

// Parses records from the start; returns the end offset of the last complete
// one. `clean_tail` is true when what follows is just an unfinished record.
size_t parse_complete_records(std::string_view data, std::vector<SpoolEntry>& out,
                              std::string& error, bool& clean_tail) {
  out.clear();
  clean_tail = false;
  size_t pos = 0;
  while (pos < data.size()) {
    SpoolEntry e;
    size_t consumed = 0;
    if (!parse_record(data.substr(pos), e, error, consumed)) {
      // Clean: the tail is the start of a record that was still being
      // written (it begins like one), not something else.
      const std::string_view tail = data.substr(pos);
      const std::string head = std::string(kHeaderLine) + "\n";
      clean_tail = error.starts_with("truncated") &&
                   head.compare(0, std::min(tail.size(), head.size()), tail.data(),
                                std::min(tail.size(), head.size())) == 0;
      error = cat({"record ", std::to_string(out.size() + 1), ": ", error});
      return pos;
    }
    out.push_back(std::move(e));
    pos += consumed;
  }
  return pos;
}

// Copies the bytes after `keep` to corrupt/NAME.tail; returns a note on failure.
std::string save_tail(int dir_fd, const std::string& name, size_t keep) {
  const std::string corrupt(kCorruptDir);
  if (::mkdirat(dir_fd, corrupt.c_str(), kDirMode) != 0 && errno != EEXIST) {
    return cat({"cannot create ", kCorruptDir, "/: ", errno_text(errno)});
  }
  const Fd in(::openat(dir_fd, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  std::string target = cat({kCorruptDir, "/", name, ".tail"});
  const Fd out(::openat(dir_fd, target.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640));
  if (in.get() < 0 || out.get() < 0) return "cannot save the tail: " + errno_text(errno);
  char buf[65536];
  off_t off = static_cast<off_t>(keep);
  for (;;) {
    const ssize_t n = ::pread(in.get(), buf, sizeof buf, off);
    if (n <= 0) break;
    if (::write(out.get(), buf, static_cast<size_t>(n)) != n) return "short write saving tail";
    off += n;
  }
  return "tail saved as " + target;
}

// Truncates NAME to `keep` octets (removes it when nothing is left).
std::string cut_tail(int dir_fd, const std::string& name, size_t keep) {
  if (keep == 0) {
    if (::unlinkat(dir_fd, name.c_str(), 0) != 0) return "cannot remove: " + errno_text(errno);
    return "removed";
  }
  const Fd fd(::openat(dir_fd, name.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0 || ::ftruncate(fd.get(), static_cast<off_t>(keep)) != 0) {
    return "cannot truncate: " + errno_text(errno);
  }
  return {};
}

}  // namespace

void append_spool_envelope(std::string& out, const Message& msg, const SpoolClient& client,
                           uint64_t message_size) {
  const Envelope& env = msg.envelope;
  out.append(kHeaderLine);
  out.append("\nqueue-id: ");
  append_token(out, env.queue_id);
  out.append("\nreceived-at: ");
  append_number(out, msg.received_at_unix);
  out.append("\nclient: ");
  append_clean(out, client.ip);
  out.append(" port ");
  append_number(out, client.port);
  out.push_back('\n');
  append_line(out, "helo", client.helo);
  if (!client.ptr.empty()) append_line(out, "ptr", client.ptr);
  append_line(out, "protocol", client.protocol);
  if (!client.tls_version.empty()) {
    out.append("tls: ");
    append_token(out, client.tls_version);
    if (!client.tls_cipher.empty()) {
      out.push_back(' ');
      append_token(out, client.tls_cipher);
    }
    out.push_back('\n');
  }

  const MailParams& mail = env.mail;
  out.append("mail-from: ");
  append_address(out, env.sender);
  if (mail.has_size) {
    out.append(" SIZE=");
    append_number(out, mail.size);
  }
  if (mail.body != BodyType::unspecified) append_param(out, "BODY", body_name(mail.body));
  if (mail.smtputf8) out.append(" SMTPUTF8");
  if (mail.ret != DsnRet::unspecified) append_param(out, "RET", ret_name(mail.ret));
  if (!mail.envid.empty()) append_param(out, "ENVID", mail.envid);
  out.push_back('\n');

  for (const Recipient& r : env.recipients) {
    out.append("rcpt-to: ");
    append_address(out, r.address);
    append_notify(out, r.params.notify);
    if (!r.params.orcpt_type.empty()) {
      out.append(" ORCPT=");
      append_token(out, r.params.orcpt_type);
      out.push_back(';');
      append_token(out, r.params.orcpt);
    }
    out.push_back('\n');
  }

  out.append("message-size: ");
  append_number(out, message_size);
  out.append("\n\n");
}

namespace {

// One record at the start of `data`; `consumed` is its length. Trailing data
// (the next record of a batch file) is left to the caller.
bool parse_record(std::string_view data, SpoolEntry& out, std::string& error, size_t& consumed) {
  out = SpoolEntry{};
  error.clear();
  size_t pos = 0;
  size_t line_no = 0;
  uint32_t seen = 0;
  while (true) {
    const size_t nl = data.find('\n', pos);
    if (nl == std::string_view::npos) {
      error = data.empty() ? "truncated: empty file" : "truncated: envelope block has no end";
      return false;
    }
    const std::string_view line = data.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (line.find_first_of(std::string_view("\r\0", 2)) != std::string_view::npos) {
      error = line_error(line_no, "CR or NUL in the envelope block");
      return false;
    }
    if (line_no == 1) {
      if (line != kHeaderLine) {
        error = line.starts_with("ringmx-spool ")
                    ? cat({"unsupported format \"", line, "\", want \"ringmx-spool 1\""})
                    : "not a ringmx spool file (first line is not \"ringmx-spool 1\")";
        return false;
      }
      out.version = kVersion;
      continue;
    }
    if (line.empty()) break;

    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      error = line_error(line_no, "expected \"key: value\"");
      return false;
    }
    const std::string_view name = line.substr(0, colon);
    std::string_view value = line.substr(colon + 1);
    if (!value.empty()) {
      if (value.front() != ' ') {
        error = line_error(line_no, "expected a space after ':'");
        return false;
      }
      value.remove_prefix(1);
    }
    const Key key = find_key(name);
    if (key == Key::count) {
      error = line_error(line_no, cat({"unknown key \"", name, "\""}));
      return false;
    }
    if ((seen & bit(key)) != 0 && key != Key::rcpt_to) {
      error = line_error(line_no, cat({"duplicate key ", name}));
      return false;
    }
    seen |= bit(key);
    std::string why;
    parse_value(key, value, out, why);
    if (!why.empty()) {
      error = line_error(line_no, cat({name, ": ", why}));
      return false;
    }
  }

  if ((seen & kRequired) != kRequired) {
    error = "missing key";
    for (size_t i = 0; i < std::size(kKeyNames); ++i) {
      if ((kRequired & ~seen & bit(static_cast<Key>(i))) == 0) continue;
      error.push_back(' ');
      error.append(kKeyNames[i]);
    }
    return false;
  }

  const uint64_t have = data.size() - pos;
  if (have < out.message_size) {
    error = "truncated: ";
    append_number(error, have);
    error.append(" of ");
    append_number(error, out.message_size);
    error.append(" octets");
    return false;
  }
  out.message = data.substr(pos, static_cast<size_t>(out.message_size));
  consumed = pos + static_cast<size_t>(out.message_size);
  return true;
}

}  // namespace

bool parse_spool_file(std::string_view data, SpoolEntry& out, std::string& error) {
  size_t consumed = 0;
  if (!parse_record(data, out, error, consumed)) return false;
  if (consumed != data.size()) {
    error = "trailing data: ";
    append_number(error, data.size() - consumed + out.message_size);
    error.append(" of ");
    append_number(error, out.message_size);
    error.append(" octets");
    return false;
  }
  return true;
}

bool parse_spool_records(std::string_view data, std::vector<SpoolEntry>& out, std::string& error) {
  out.clear();
  size_t pos = 0;
  do {
    SpoolEntry e;
    size_t consumed = 0;
    if (!parse_record(data.substr(pos), e, error, consumed)) {
      error = cat({"record ", std::to_string(out.size() + 1), ": ", error});
      return false;
    }
    out.push_back(std::move(e));
    pos += consumed;
  } while (pos < data.size());
  return true;
}

std::string spool_final_name(std::string_view queue_id) {
  std::string name(queue_id);
  name.append(kFinalSuffix);
  return name;
}

std::string spool_temp_name(std::string_view queue_id) {
  std::string name(queue_id);
  name.append(kTempSuffix);
  return name;
}

RecoveryReport recover_spool_dir(const std::string& dir) {
  if (dir.empty()) throw std::runtime_error("spool directory: empty path");
  make_dirs(dir);
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) {
    const int err = errno;
    throw std::runtime_error(cat({"spool directory ", dir, ": cannot open: ", errno_text(err)}));
  }
  const Dir listing(::fdopendir(dir_fd));
  if (listing.get() == nullptr) {
    const int err = errno;
    ::close(dir_fd);
    throw std::runtime_error(cat({"spool directory ", dir, ": cannot open: ", errno_text(err)}));
  }

  // Names first, changes after: readdir is unspecified about entries that
  // come and go while it runs. Sorted so the report is in queue-id order.
  std::vector<std::string> names;
  while (true) {
    errno = 0;
    const dirent* entry = ::readdir(listing.get());
    if (entry == nullptr) {
      const int err = errno;
      if (err != 0) {
        throw std::runtime_error(
            cat({"spool directory ", dir, ": cannot list: ", errno_text(err)}));
      }
      break;
    }
    const std::string_view name = entry->d_name;
    if (name == kCorruptDir || !is_regular(dir_fd, *entry)) continue;
    if (ends_with_name(name, kTempSuffix) || ends_with_name(name, kFinalSuffix)) {
      names.emplace_back(name);
    }
  }
  std::sort(names.begin(), names.end());

  RecoveryReport report;
  for (const std::string& name : names) {
    if (ends_with_name(name, kTempSuffix)) {
      // Never acknowledged: the 250 comes only after the rename.
      if (::unlinkat(dir_fd, name.c_str(), 0) == 0) {
        ++report.removed_temp;
      } else {
        report.problems.push_back(cat({name, ": cannot remove: ", errno_text(errno)}));
      }
      continue;
    }
    std::string error;
    std::vector<SpoolEntry> entries;
    size_t good = 0;
    size_t file_size = 0;
    bool clean_tail = false;
    bool mapped = false;
    {
      Mapping file;
      mapped = file.map(dir_fd, name, error);
      if (mapped) {
        file_size = file.size();
        good = parse_complete_records(file.view(), entries, error, clean_tail);
        if (file_size == 0) {
          error = "empty file";  // created, then the crash came before any data
          clean_tail = true;
        } else if (good == file_size) {
          report.kept += entries.size();
          report.bytes += file_size;
          continue;
        }
      }
    }
    if (mapped && (good > 0 || clean_tail)) {
      // A segment whose last append was cut short by a crash: the records
      // before it were acknowledged and stay; the tail never was. A tail that
      // is not a clean prefix of a record is kept aside for inspection.
      std::string note;
      if (!clean_tail) {
        note = save_tail(dir_fd, name, good);
        ++report.bad;
      }
      const std::string cut = cut_tail(dir_fd, name, good);
      report.kept += entries.size();
      report.bytes += good;
      ++report.truncated;
      report.problems.push_back(cat({name, ": ", error, ": cut back to ", std::to_string(good),
                                     " octets", note.empty() ? "" : " (", note,
                                     note.empty() ? "" : ")", cut.empty() ? "" : " ", cut}));
      continue;
    }
    ++report.bad;
    const std::string moved = move_to_corrupt(dir_fd, name);
    report.problems.push_back(moved.empty() ? cat({name, ": ", error})
                                            : cat({name, ": ", error, " (", moved, ")"}));
  }
  return report;
}

}  // namespace ringmx
