#include "core/users_file.h"

#include <array>

#include "core/text_lines.h"

namespace ringmx {

namespace {

constexpr size_t kMaxLine = 4096;

// The crypt(3) hash in `field`, without a Dovecot {SCHEME} prefix; empty
// when the scheme is not one libcrypt verifies safely.
std::string_view crypt_hash(std::string_view field) {
  if (!field.empty() && field.front() == '{') {
    const size_t close = field.find('}');
    if (close == std::string_view::npos) return {};
    const std::string_view scheme = field.substr(1, close - 1);
    if (scheme != "BLF-CRYPT" && scheme != "SHA512-CRYPT" && scheme != "SHA256-CRYPT" &&
        scheme != "CRYPT" && scheme != "ARGON2ID" && scheme != "ARGON2I") {
      return {};
    }
    field.remove_prefix(close + 1);
  }
  static constexpr std::array<std::string_view, 10> kPrefixes = {
      "$y$", "$gy$", "$7$", "$2b$", "$2y$", "$2a$", "$6$", "$5$", "$argon2id$", "$argon2i$"};
  for (std::string_view p : kPrefixes) {
    if (field.substr(0, p.size()) == p && field.size() > p.size() + 8) return field;
  }
  return {};
}

}  // namespace

std::shared_ptr<const UsersFile> UsersFile::parse(std::string_view text, std::string_view file,
                                                  std::string& error) {
  auto table = std::make_shared<UsersFile>();
  TextLines lines(text);
  auto fail = [&](std::string_view what) {
    error = lines.error(file, what);
    return nullptr;
  };
  std::string_view line;
  while (lines.next(line)) {
    if (lines.raw_size() > kMaxLine) return fail("line longer than 4096 octets");
    if (line.empty() || line.front() == '#') continue;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return fail("expected \"user:hash\"");
    const std::string_view user = line.substr(0, colon);
    std::string_view rest = line.substr(colon + 1);
    const std::string_view field = rest.substr(0, rest.find(':'));
    const std::string_view hash = crypt_hash(field);
    if (hash.empty()) {
      return fail(
          "not a crypt(3) hash of a supported scheme (yescrypt, bcrypt, sha512-crypt, ...)");
    }
    if (!table->users_.emplace(std::string(user), std::string(hash)).second) {
      return fail("user \"" + std::string(user) + "\" given twice");
    }
    if (table->decoy_.empty()) table->decoy_ = hash;
  }
  return table;
}

const std::string* UsersFile::find(std::string_view user) const {
  const auto it = users_.find(user);
  return it == users_.end() ? nullptr : &it->second;
}

}  // namespace ringmx
