// [auth] backend = "file": the users a small set-up authenticates without
// Dovecot, one per line, "user:hash", as Dovecot's passwd-file writes them
// (further ':' fields are ignored). The hash is a crypt(3) string of a scheme
// libcrypt (libxcrypt) verifies: yescrypt ($y$), bcrypt ($2b$, $2y$, $2a$),
// sha512-crypt ($6$), sha256-crypt ($5$), scrypt ($7$), gost-yescrypt ($gy$),
// and argon2 ($argon2id$, $argon2i$: libargon2); Dovecot's {BLF-CRYPT},
// {SHA512-CRYPT}, {SHA256-CRYPT}, {CRYPT}, {ARGON2ID} and {ARGON2I} prefixes
// are taken and dropped. Anything else (a plaintext {PLAIN} password, an
// unknown scheme, DES crypt) is refused with its line. '#' comments and blank
// lines are ignored. Pure: the file is read elsewhere (net/list_files.h).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

namespace ringmx {

class UsersFile {
 public:
  // Null and `error` ("file:line: what") on a bad line.
  static std::shared_ptr<const UsersFile> parse(std::string_view text, std::string_view file,
                                                std::string& error);
  // The user's hash, or null (user names compare exactly).
  const std::string* find(std::string_view user) const;
  size_t size() const { return users_.size(); }

  // A hash the file holds (the first), verified for a user the file does
  // not know (and refused whatever the outcome), so that an unknown user
  // costs what a known one does and cannot be told apart by the delay.
  // Empty for an empty file.
  const std::string& decoy() const { return decoy_; }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, std::string, Hash, std::equal_to<>> users_;
  std::string decoy_;
};

}  // namespace ringmx
