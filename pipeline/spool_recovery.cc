// Start-up recovery of one shard's spool directory (docs/spool.md, "Start-up
// recovery"): what a crash or a power cut left behind is put right before the
// shards start, so the writer only ever appends to files that are whole.
//
// Contract: recover_spool_dir runs before the shards start: blocking POSIX
// calls, one directory, no recursion. It throws std::runtime_error only when
// the directory itself cannot be created, made durable, opened or listed;
// trouble with single files goes into the report. It never drops a byte it
// cannot explain: a file's records are kept up to its first bad one; what
// follows is either an unfinished append (a clean prefix of a record, never
// acknowledged: cut off) or damage (a failed checksum, garbage: copied to
// corrupt/ and synced before the file is cut). Every change it makes is
// durable before it returns: a truncation is fsynced, and so are the
// directories whose entries it created, renamed or removed, so a second power
// cut cannot bring back what it cut. It may call the format's parser
// (spool_format.h) and make_durable_dirs (durable_dir.h), nothing above.
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "pipeline/durable_dir.h"
#include "pipeline/spool_format.h"
#include "pipeline/spool_internal.h"

namespace ringmx {

namespace {

constexpr std::string_view kCorruptDir = "corrupt";
constexpr mode_t kDirMode = 0750;

using spool_internal::cat;
using spool_internal::kFinalSuffix;
using spool_internal::kTempSuffix;

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

bool is_regular(int dir_fd, const dirent& entry) {
  if (entry.d_type == DT_REG) return true;
  if (entry.d_type != DT_UNKNOWN) return false;
  struct stat st {};
  return ::fstatat(dir_fd, entry.d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

// A read-only mapping of a whole file. Mapped rather than read: a version-1
// record is checked by its envelope block and length alone (one page per
// message); a version-2 record's checksum reads every octet, but from the
// page cache with no copy.
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

// The directory being recovered and its corrupt/ subdirectory, with what
// must be synced before recovery returns.
struct SpoolDir {
  int fd = -1;
  int corrupt_fd = -1;     // opened on first use
  bool dir_dirty = false;  // an entry was removed or renamed away
  std::vector<std::string>* problems = nullptr;

  ~SpoolDir() {
    if (corrupt_fd >= 0) ::close(corrupt_fd);
  }

  // corrupt/, created (and its name synced) if needed. Empty or why not.
  std::string open_corrupt() {
    if (corrupt_fd >= 0) return {};
    const std::string corrupt(kCorruptDir);
    if (::mkdirat(fd, corrupt.c_str(), kDirMode) == 0) {
      if (const int err = sync_dir_fd(fd); err != 0) {
        return cat({"cannot sync after creating ", kCorruptDir, "/: ", errno_text(err)});
      }
    } else if (errno != EEXIST) {
      return cat({"cannot create ", kCorruptDir, "/: ", errno_text(errno)});
    }
    corrupt_fd = ::openat(fd, corrupt.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (corrupt_fd < 0) return cat({"cannot open ", kCorruptDir, "/: ", errno_text(errno)});
    return {};
  }

  // A name in corrupt/ not yet taken, so an older copy is never overwritten:
  // `base`, then base.1, base.2, ...
  std::string free_corrupt_name(const std::string& base) const {
    std::string target = base;
    struct stat st {};
    for (int n = 1; ::fstatat(corrupt_fd, target.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0; ++n) {
      target = cat({base, ".", std::to_string(n)});
    }
    return target;
  }
};

// Moves a bad file to corrupt/ under a free name, durably (corrupt/ is
// synced now, the directory it left at the end). Sets `where` to the new
// path; returns an empty string or why it failed.
std::string move_to_corrupt(SpoolDir& d, const std::string& name, std::string& where) {
  if (std::string why = d.open_corrupt(); !why.empty()) return why;
  const std::string target = d.free_corrupt_name(name);
  if (::renameat(d.fd, name.c_str(), d.corrupt_fd, target.c_str()) != 0) {
    return cat({"cannot move to ", kCorruptDir, "/: ", errno_text(errno)});
  }
  d.dir_dirty = true;
  where = cat({kCorruptDir, "/", target});
  if (const int err = sync_dir_fd(d.corrupt_fd); err != 0) {
    return cat({"moved to ", where, " but cannot sync ", kCorruptDir, "/: ", errno_text(err)});
  }
  return {};
}

// Copies the bytes of NAME from `keep` on to corrupt/NAME.tail (a free name)
// and makes the copy durable (file and directory entry), so that cutting the
// original afterwards loses nothing. Sets `where`; returns empty or why not.
std::string save_tail(SpoolDir& d, const std::string& name, size_t keep, std::string& where) {
  if (std::string why = d.open_corrupt(); !why.empty()) return why;
  const Fd in(::openat(d.fd, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (in.get() < 0) return "cannot open to save the tail: " + errno_text(errno);
  const std::string target = d.free_corrupt_name(name + ".tail");
  const Fd out(
      ::openat(d.corrupt_fd, target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640));
  if (out.get() < 0) return "cannot save the tail: " + errno_text(errno);
  where = cat({kCorruptDir, "/", target});
  char buf[65536];
  off_t off = static_cast<off_t>(keep);
  for (;;) {
    const ssize_t n = ::pread(in.get(), buf, sizeof buf, off);
    if (n < 0) return "cannot read the tail: " + errno_text(errno);
    if (n == 0) break;
    if (::write(out.get(), buf, static_cast<size_t>(n)) != n) {
      return "cannot save the tail: short write to " + where;
    }
    off += n;
  }
  if (::fsync(out.get()) != 0) return "cannot sync " + where + ": " + errno_text(errno);
  if (const int err = sync_dir_fd(d.corrupt_fd); err != 0) {
    return cat({"cannot sync ", kCorruptDir, "/: ", errno_text(err)});
  }
  return {};
}

// Cuts NAME back to `keep` octets and syncs the cut (without the sync a power
// cut could bring the tail back); removes the file when nothing is left.
// Returns a note for the report, empty when the cut is done and durable.
std::string cut_tail(SpoolDir& d, const std::string& name, size_t keep) {
  if (keep == 0) {
    if (::unlinkat(d.fd, name.c_str(), 0) != 0) return "cannot remove: " + errno_text(errno);
    d.dir_dirty = true;
    return "removed";
  }
  const Fd fd(::openat(d.fd, name.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0 || ::ftruncate(fd.get(), static_cast<off_t>(keep)) != 0) {
    return "cannot truncate: " + errno_text(errno);
  }
  if (::fsync(fd.get()) != 0) return "cut but cannot sync: " + errno_text(errno);
  return {};
}

// What reading a file's records found.
struct FileScan {
  size_t good = 0;  // end of the last good record
  uint64_t records = 0;
  SpoolDefect defect = SpoolDefect::none;  // of the first bad record, if any
  std::string error;                       // "record K: why"
};

FileScan scan_records(std::string_view data) {
  FileScan scan;
  SpoolEntry e;
  while (scan.good < data.size()) {
    size_t consumed = 0;
    scan.defect = parse_spool_record(data.substr(scan.good), e, scan.error, consumed);
    if (scan.defect != SpoolDefect::none) {
      scan.error = cat({"record ", std::to_string(scan.records + 1), ": ", scan.error});
      return scan;
    }
    ++scan.records;
    scan.good += consumed;
  }
  return scan;
}

std::vector<std::string> list_names(DIR* listing, int dir_fd, const std::string& dir) {
  // Names first, changes after: readdir is unspecified about entries that
  // come and go while it runs. Sorted so the report is in queue-id order.
  std::vector<std::string> names;
  while (true) {
    errno = 0;
    const dirent* entry = ::readdir(listing);
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
  return names;
}

// A file none of which can be trusted goes to corrupt/ whole, and says so.
void set_aside(SpoolDir& d, const std::string& name, const std::string& why,
               RecoveryReport& report) {
  ++report.bad;
  std::string where;
  const std::string moved = move_to_corrupt(d, name, where);
  report.problems.push_back(
      cat({name, ": ", why, " (", moved.empty() ? "moved to " + where : moved, ")"}));
}

void recover_file(SpoolDir& d, const std::string& name, RecoveryReport& report) {
  FileScan scan;
  size_t file_size = 0;
  {
    Mapping file;
    if (!file.map(d.fd, name, scan.error)) return set_aside(d, name, scan.error, report);
    file_size = file.size();
    scan = scan_records(file.view());
  }
  if (file_size == 0) {
    // Created, then the crash came before any data.
    scan.error = "empty file";
    scan.defect = SpoolDefect::truncated;
  } else if (scan.defect == SpoolDefect::none) {
    report.kept += scan.records;
    report.bytes += file_size;
    return;
  }
  if (scan.defect == SpoolDefect::checksum) ++report.checksum_failures;

  // A first record that is damaged, not merely unfinished: nothing in the
  // file can be trusted (its first append was acknowledged only after its
  // sync, so damage there is not a torn append). Set aside whole.
  if (scan.good == 0 && scan.defect != SpoolDefect::truncated) {
    return set_aside(d, name, scan.error, report);
  }

  // Cut back to the last good record. An unfinished append (a clean prefix
  // of a record) was never acknowledged and goes; anything else is kept in
  // corrupt/ first, since records after damage may have been acknowledged.
  std::string note;
  bool cut_ok = true;
  if (scan.defect != SpoolDefect::truncated) {
    ++report.bad;
    std::string where;
    const std::string why = save_tail(d, name, scan.good, where);
    note = why.empty() ? "tail saved as " + where : why;
    // Never cut what could not be put aside: the next start tries again.
    cut_ok = why.empty();
  }
  std::string cut;
  if (cut_ok) {
    cut = cut_tail(d, name, scan.good);
    ++report.truncated;
  } else {
    cut = "left as it is";
  }
  report.kept += scan.records;
  report.bytes += scan.good;
  report.problems.push_back(
      cat({name, ": ", scan.error, ": cut back to ", std::to_string(scan.good), " octets",
           note.empty() ? "" : " (", note, note.empty() ? "" : ")", cut.empty() ? "" : " ", cut}));
}

}  // namespace

RecoveryReport recover_spool_dir(const std::string& dir) {
  if (dir.empty()) throw std::runtime_error("spool directory: empty path");
  make_durable_dirs(dir);
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
  const std::vector<std::string> names = list_names(listing.get(), dir_fd, dir);

  RecoveryReport report;
  SpoolDir d;
  d.fd = dir_fd;
  for (const std::string& name : names) {
    if (ends_with_name(name, kTempSuffix)) {
      // Not written by this version; an older one was never acknowledged.
      if (::unlinkat(dir_fd, name.c_str(), 0) == 0) {
        ++report.removed_temp;
        d.dir_dirty = true;
      } else {
        report.problems.push_back(cat({name, ": cannot remove: ", errno_text(errno)}));
      }
      continue;
    }
    recover_file(d, name, report);
  }
  // Removals and moves out of this directory: durable before the shards
  // start, so a power cut cannot bring back a file recovery took away.
  if (d.dir_dirty) {
    if (const int err = sync_dir_fd(dir_fd); err != 0) {
      report.problems.push_back(cat({dir, ": cannot sync the directory: ", errno_text(err)}));
    }
  }
  return report;
}

}  // namespace ringmx
