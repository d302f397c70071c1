// make_durable_dirs: mkdir -p plus the fsyncs that make every name on the way
// durable (docs/spool.md, "Directories"). Blocking POSIX calls; start-up only.
#include "pipeline/durable_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace ringmx {

namespace {

constexpr mode_t kDirMode = 0750;

std::string errno_text(int err) {
  return std::system_category().message(err);
}

[[noreturn]] void fail(const std::string& path, const std::string& what, const std::string& comp,
                       int err) {
  throw std::runtime_error("spool directory " + path + ": " + what + " " + comp + ": " +
                           errno_text(err));
}

// The absolute path of the working directory, without a trailing '/'
// (empty for "/").
std::string working_dir() {
  std::string buf(PATH_MAX, '\0');
  if (::getcwd(buf.data(), buf.size()) == nullptr) return ".";  // unlinked cwd: sync what we can
  buf.resize(buf.find('\0'));
  if (buf == "/") buf.clear();
  return buf;
}

// Opens and fsyncs directory `dir`. `required`: a failure to open is an
// error (we made an entry in it); otherwise EACCES/EPERM skip it.
bool sync_path(const std::string& path, const std::string& dir, bool required) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (!required && (err == EACCES || err == EPERM)) return false;
    fail(path, "cannot open", dir, err);
  }
  const int err = sync_dir_fd(fd);
  ::close(fd);
  if (err != 0) fail(path, "cannot sync", dir, err);
  return true;
}

}  // namespace

int sync_dir_fd(int fd) {
  if (::fsync(fd) == 0 || errno == EINVAL) return 0;
  return errno;
}

DurableDirs make_durable_dirs(const std::string& path) {
  if (path.empty()) throw std::runtime_error("spool directory: empty path");
  // Components as given (for creating, and for messages), and the absolute
  // form of each (for syncing parents above a relative path too).
  const bool relative = path.front() != '/';
  const std::string base = relative ? working_dir() : std::string();
  DurableDirs out;
  // The chain above a relative path: the working directory's own name.
  if (relative && base != ".") {
    std::string parent = "/";
    for (size_t end = 1; end <= base.size(); ++end) {
      if (end < base.size() && base[end] != '/') continue;
      if (sync_path(path, parent, false)) out.synced.push_back(parent);
      parent = base.substr(0, end);
    }
  }
  std::string parent = relative ? "." : "/";
  size_t start = 0;
  while (start < path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    const std::string name = path.substr(start, end - start);
    start = end + 1;
    if (name.empty() || name == ".") continue;  // "//", "./", a trailing '/'
    const std::string comp = path.substr(0, end);
    bool made = false;
    if (::mkdir(comp.c_str(), kDirMode) == 0) {
      made = true;
      out.created.push_back(comp);
    } else {
      const int err = errno;
      // An existing directory may fail with EACCES or EROFS rather than EEXIST.
      struct stat st {};
      if (::stat(comp.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        fail(path, "cannot create", comp, err == EEXIST ? ENOTDIR : err);
      }
    }
    if (sync_path(path, parent, made)) out.synced.push_back(parent);
    parent = comp;
  }
  // The directory itself: its own inode, and any entry a crashed earlier run
  // made in it without syncing (cheap when there is nothing to write).
  if (sync_path(path, parent, true)) out.synced.push_back(parent);
  return out;
}

}  // namespace ringmx
