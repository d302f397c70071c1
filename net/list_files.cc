#include "net/list_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ringmx {

namespace {

std::string errno_text(int err) {
  return std::strerror(err);
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// The whole of `path` (named `key` in errors), at most `max` octets.
std::string read_list_file(const std::string& key, const std::string& path, uint64_t max) {
  const std::string where = key + ": " + path;
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) throw ListFileLoadError(where + ": " + errno_text(errno));
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) throw ListFileLoadError(where + ": " + errno_text(errno));
  if (!S_ISREG(st.st_mode)) throw ListFileLoadError(where + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > max) {
    throw ListFileLoadError(where + ": larger than " + std::to_string(max >> 20) + " MiB");
  }
  std::string text;
  text.resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  for (;;) {
    if (got == text.size()) text.resize(got + 65536);  // it grew since the fstat
    const ssize_t n = ::read(f.fd, text.data() + got, text.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw ListFileLoadError(where + ": " + errno_text(errno));
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
    if (got > max) {
      throw ListFileLoadError(where + ": larger than " + std::to_string(max >> 20) + " MiB");
    }
  }
  text.resize(got);
  return text;
}

}  // namespace

std::shared_ptr<const RecipientTable> load_recipient_file(const RecipientsConfig& cfg) {
  if (cfg.file.empty()) return nullptr;
  const std::string text = read_list_file("recipients.file", cfg.file, kMaxRecipientFileBytes);
  RecipientOptions opts;
  opts.case_sensitive = cfg.case_sensitive;
  opts.subaddress_separator = cfg.subaddress_separator;
  RecipientFileError err;
  auto table = RecipientTable::parse(text, cfg.file, opts, err);
  if (!table) throw ListFileLoadError("recipients.file: " + err.to_string());
  return table;
}

std::shared_ptr<const SenderLogins> load_sender_logins(const AuthConfig& cfg) {
  if (cfg.sender_logins_file.empty()) return nullptr;
  const std::string text =
      read_list_file("auth.sender_logins_file", cfg.sender_logins_file, kMaxSenderLoginsFileBytes);
  std::string error;
  auto table = SenderLogins::parse(text, cfg.sender_logins_file, error);
  if (!table) throw ListFileLoadError("auth.sender_logins_file: " + error);
  return table;
}

std::shared_ptr<const UsersFile> load_users_file(const AuthConfig& cfg) {
  if (cfg.backend != AuthBackendKind::file) return nullptr;
  const std::string text = read_list_file("auth.users_file", cfg.users_file, kMaxUsersFileBytes);
  std::string error;
  auto table = UsersFile::parse(text, cfg.users_file, error);
  if (!table) throw ListFileLoadError("auth.users_file: " + error);
  return table;
}

}  // namespace ringmx
