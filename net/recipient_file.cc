#include "net/recipient_file.h"

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

}  // namespace

std::shared_ptr<const RecipientTable> load_recipient_file(const RecipientsConfig& cfg) {
  if (cfg.file.empty()) return nullptr;
  const std::string where = "recipients.file: " + cfg.file;
  Fd f;
  f.fd = ::open(cfg.file.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) throw RecipientFileLoadError(where + ": " + errno_text(errno));
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) throw RecipientFileLoadError(where + ": " + errno_text(errno));
  if (!S_ISREG(st.st_mode)) throw RecipientFileLoadError(where + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > kMaxRecipientFileBytes) {
    throw RecipientFileLoadError(where + ": larger than " +
                                 std::to_string(kMaxRecipientFileBytes >> 30) + " GiB");
  }
  std::string text;
  text.resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  for (;;) {
    if (got == text.size()) text.resize(got + 65536);  // it grew since the fstat
    const ssize_t n = ::read(f.fd, text.data() + got, text.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw RecipientFileLoadError(where + ": " + errno_text(errno));
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
    if (got > kMaxRecipientFileBytes) {
      throw RecipientFileLoadError(where + ": larger than " +
                                   std::to_string(kMaxRecipientFileBytes >> 30) + " GiB");
    }
  }
  text.resize(got);
  RecipientOptions opts;
  opts.case_sensitive = cfg.case_sensitive;
  opts.subaddress_separator = cfg.subaddress_separator;
  RecipientFileError err;
  auto table = RecipientTable::parse(text, cfg.file, opts, err);
  if (!table) throw RecipientFileLoadError("recipients.file: " + err.to_string());
  return table;
}

}  // namespace ringmx
