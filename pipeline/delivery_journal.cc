// Contract: see delivery_journal.h.
#include "pipeline/delivery_journal.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>

#include "pipeline/crc32c.h"
#include "pipeline/durable_dir.h"
#include "pipeline/spool_format.h"
#include "pipeline/spool_internal.h"

namespace ringmx {

namespace {

using spool_internal::cat;

constexpr char kHex[] = "0123456789abcdef";

void finish_line(std::string& out, size_t start) {
  const uint32_t crc = crc32c(std::string_view(out).substr(start));
  out.push_back(' ');
  for (int shift = 28; shift >= 0; shift -= 4) out.push_back(kHex[(crc >> shift) & 15]);
  out.push_back('\n');
}

template <class Int>
bool parse_number(std::string_view s, Int& out) {
  if (s.empty()) return false;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// Splits `line` (without its LF) at single spaces.
std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  while (true) {
    const size_t sp = line.find(' ');
    out.push_back(line.substr(0, sp));
    if (sp == std::string_view::npos) return out;
    line.remove_prefix(sp + 1);
  }
}

bool valid_line(std::string_view line, std::string_view& body) {
  if (line.size() < 10 || line[line.size() - 9] != ' ') return false;
  body = line.substr(0, line.size() - 9);
  uint32_t want = 0;
  const std::string_view hex = line.substr(line.size() - 8);
  const auto r = std::from_chars(hex.data(), hex.data() + hex.size(), want, 16);
  if (r.ec != std::errc() || r.ptr != hex.data() + hex.size()) return false;
  return crc32c(body) == want;
}

std::string error_text(int err) {
  return std::strerror(err);
}

// A file mapped read-only (an empty file maps to an empty view).
class Mapped {
 public:
  explicit Mapped(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error(cat({"cannot open ", path, ": ", error_text(errno)}));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int e = errno;
      ::close(fd);
      throw std::runtime_error(cat({"cannot stat ", path, ": ", error_text(e)}));
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int e = errno;
        ::close(fd);
        throw std::runtime_error(cat({"cannot map ", path, ": ", error_text(e)}));
      }
      data_ = static_cast<const char*>(p);
    }
    ::close(fd);
  }
  ~Mapped() {
    if (data_) ::munmap(const_cast<char*>(data_), size_);
  }
  Mapped(const Mapped&) = delete;
  Mapped& operator=(const Mapped&) = delete;
  std::string_view view() const { return {data_ ? data_ : "", size_}; }

 private:
  const char* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace

void append_journal_message_done(std::string& out, std::string_view queue_id) {
  const size_t start = out.size();
  out.append("M ");
  out.append(queue_id);
  finish_line(out, start);
}

void append_journal_rcpt_done(std::string& out, std::string_view queue_id, uint32_t index) {
  const size_t start = out.size();
  out.append("D ");
  out.append(queue_id);
  out.push_back(' ');
  out.append(std::to_string(index));
  finish_line(out, start);
}

void append_journal_hold(std::string& out, std::string_view queue_id, bool held) {
  const size_t start = out.size();
  out.append(held ? "H " : "U ");
  out.append(queue_id);
  finish_line(out, start);
}

void append_journal_retry(std::string& out, std::string_view queue_id, uint32_t attempts,
                          int64_t next_unix_ms) {
  const size_t start = out.size();
  out.append("R ");
  out.append(queue_id);
  out.push_back(' ');
  out.append(std::to_string(attempts));
  out.push_back(' ');
  out.append(std::to_string(next_unix_ms));
  finish_line(out, start);
}

JournalState parse_journal(std::string_view data) {
  JournalState st;
  while (!data.empty()) {
    const size_t nl = data.find('\n');
    if (nl == std::string_view::npos) {  // cut short: never synced
      ++st.bad_lines;
      break;
    }
    const std::string_view line = data.substr(0, nl);
    data.remove_prefix(nl + 1);
    ++st.lines;
    std::string_view body;
    if (!valid_line(line, body)) {
      ++st.bad_lines;
      continue;
    }
    const std::vector<std::string_view> f = fields(body);
    if (f.size() < 2 || f[1].empty()) {
      ++st.bad_lines;
      continue;
    }
    if (f[0] == "M" && f.size() == 2) {
      st.entries[std::string(f[1])].message_done = true;
    } else if ((f[0] == "H" || f[0] == "U") && f.size() == 2) {
      st.entries[std::string(f[1])].held = f[0] == "H";
    } else if (f[0] == "D" && f.size() == 3) {
      uint32_t idx = 0;
      if (!parse_number(f[2], idx)) {
        ++st.bad_lines;
        continue;
      }
      st.entries[std::string(f[1])].rcpts_done.push_back(idx);
    } else if (f[0] == "R" && f.size() == 4) {
      uint32_t attempts = 0;
      int64_t next = 0;
      if (!parse_number(f[2], attempts) || !parse_number(f[3], next)) {
        ++st.bad_lines;
        continue;
      }
      JournalEntry& e = st.entries[std::string(f[1])];
      e.attempts = std::max(e.attempts, attempts);
      e.next_unix_ms = next;
    } else {
      ++st.bad_lines;
    }
  }
  return st;
}

std::string journal_name(std::string_view segment) {
  if (segment.ends_with(spool_internal::kFinalSuffix)) {
    segment.remove_suffix(spool_internal::kFinalSuffix.size());
  }
  return cat({segment, kJournalSuffix});
}

void adopt_spool_dir(const std::string& from, const std::string& to) {
  std::vector<std::string> segments;
  DIR* d = ::opendir(from.c_str());
  if (!d) throw std::runtime_error(cat({"cannot open ", from, ": ", error_text(errno)}));
  while (const dirent* e = ::readdir(d)) {
    const std::string_view name = e->d_name;
    if (name.size() > spool_internal::kFinalSuffix.size() &&
        name.ends_with(spool_internal::kFinalSuffix)) {
      segments.emplace_back(name);
    }
  }
  ::closedir(d);
  if (segments.empty()) return;
  make_durable_dirs(to);
  for (const std::string& seg : segments) {
    for (const std::string& name : {seg, journal_name(seg)}) {
      const std::string a = cat({from, "/", name});
      const std::string b = cat({to, "/", name});
      if (::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_NOREPLACE) != 0 &&
          errno != ENOENT) {
        throw std::runtime_error(cat({"cannot move ", a, " to ", to, ": ", error_text(errno)}));
      }
    }
  }
  for (const std::string& dir : {to, from}) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error(cat({"cannot open ", dir, ": ", error_text(errno)}));
    const int e = sync_dir_fd(fd);
    ::close(fd);
    if (e != 0) throw std::runtime_error(cat({"cannot sync ", dir, ": ", error_text(e)}));
  }
}

DeliveryScan scan_for_delivery(const std::string& dir) {
  DeliveryScan scan;
  std::vector<std::string> segments;
  std::vector<std::string> journals;
  DIR* d = ::opendir(dir.c_str());
  if (!d) throw std::runtime_error(cat({"cannot open ", dir, ": ", error_text(errno)}));
  while (const dirent* e = ::readdir(d)) {
    const std::string_view name = e->d_name;
    if (name.size() > spool_internal::kFinalSuffix.size() &&
        name.ends_with(spool_internal::kFinalSuffix)) {
      segments.emplace_back(name);
    } else if (name.size() > kJournalSuffix.size() && name.ends_with(kJournalSuffix)) {
      journals.emplace_back(name);
    }
  }
  ::closedir(d);
  std::sort(segments.begin(), segments.end());  // queue ids sort by time

  const auto remove = [&dir](const std::string& name) {
    const std::string path = cat({dir, "/", name});
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      throw std::runtime_error(cat({"cannot remove ", path, ": ", error_text(errno)}));
    }
  };
  bool removed_any = false;
  for (const std::string& seg : segments) {
    const std::string path = cat({dir, "/", seg});
    const std::string jname = journal_name(seg);
    JournalState journal;
    if (std::find(journals.begin(), journals.end(), jname) != journals.end()) {
      const Mapped j(cat({dir, "/", jname}));
      journal = parse_journal(j.view());
      scan.journal_bad_lines += journal.bad_lines;
    }
    std::vector<std::shared_ptr<QueuedMessage>> pending;
    uint64_t done = 0;
    uint64_t bytes = 0;
    uint32_t records = 0;
    {
      const Mapped file(path);
      const std::string_view data = file.view();
      bytes = data.size();
      std::vector<SpoolEntry> entries;
      std::string error;
      if (!parse_spool_records(data, entries, error)) {
        // Recovery left only whole records: this is a file it could not
        // judge (or one changed since). Keep it, deliver nothing from it.
        scan.problems.push_back(cat({seg, ": not scanned for delivery: ", error}));
        continue;
      }
      records = static_cast<uint32_t>(entries.size());
      for (SpoolEntry& e : entries) {
        const auto it = journal.entries.find(e.queue_id);
        const JournalEntry* j = it == journal.entries.end() ? nullptr : &it->second;
        auto m = std::make_shared<QueuedMessage>();
        m->queue_id = e.queue_id;
        m->segment = seg;
        m->offset = static_cast<uint64_t>(e.message.data() - data.data());
        m->size = e.message_size;
        m->received_at_unix = e.received_at;
        m->sender = std::move(e.sender);
        m->mail = std::move(e.mail);
        for (Recipient& r : e.recipients) {
          QueuedRecipient& q = m->rcpts.emplace_back();
          q.address = std::move(r.address);
          q.params = std::move(r.params);
        }
        if (j) {
          for (const uint32_t idx : j->rcpts_done) {
            if (idx < m->rcpts.size()) m->rcpts[idx].state = RcptState::delivered;
          }
          if (j->message_done) {
            for (QueuedRecipient& q : m->rcpts) q.state = RcptState::delivered;
          }
          for (QueuedRecipient& q : m->rcpts) q.attempts = j->attempts;
          m->next_attempt_unix_ms = j->next_unix_ms;
          m->held = j->held;
        }
        if (m->done()) {
          ++done;
          continue;
        }
        pending.push_back(std::move(m));
      }
    }
    if (pending.empty()) {
      remove(seg);  // the segment first: a journal alone is removed next time
      remove(jname);
      ++scan.segments_removed;
      removed_any = true;
      continue;
    }
    scan.messages_done += done;
    scan.live[seg] = {static_cast<uint32_t>(pending.size()), records, bytes};
    for (auto& m : pending) scan.pending.push_back(std::move(m));
  }
  for (const std::string& j : journals) {
    const bool orphan = std::none_of(segments.begin(), segments.end(),
                                     [&j](const std::string& s) { return journal_name(s) == j; });
    if (!orphan) continue;
    remove(j);
    ++scan.journals_removed;
    removed_any = true;
  }
  if (removed_any) {
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) throw std::runtime_error(cat({"cannot open ", dir, ": ", error_text(errno)}));
    const int e = sync_dir_fd(dfd);
    ::close(dfd);
    if (e != 0) throw std::runtime_error(cat({"cannot sync ", dir, ": ", error_text(e)}));
  }
  return scan;
}

}  // namespace ringmx
