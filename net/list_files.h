// Reading the files a config names: the [recipients] file into a
// RecipientTable (core/recipient_table.h), [auth] sender_logins_file into
// SenderLogins (core/sender_logins.h). Called where a config snapshot is built
// (RuntimeConfig::make: start-up,
// --check-config, every reload), on the main thread, never on a shard.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>

#include "core/config.h"
#include "core/recipient_table.h"
#include "core/sender_logins.h"
#include "core/users_file.h"

namespace ringmx {

// A file that cannot be used; what() names its key, the file (and line).
class ListFileLoadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Largest recipients file read (far beyond the tens of millions of entries
// the table is meant for; the table's arena stops at 4 GiB anyway).
inline constexpr uint64_t kMaxRecipientFileBytes = uint64_t{2} << 30;

// The table `cfg.file` lists, read afresh (a file rewritten under the same
// name is read again on every reload); null when cfg.file is empty. Throws
// ListFileLoadError: missing or unreadable file, a bad line (file:line).
std::shared_ptr<const RecipientTable> load_recipient_file(const RecipientsConfig& cfg);

// Largest sender_logins_file read.
inline constexpr uint64_t kMaxSenderLoginsFileBytes = uint64_t{256} << 20;

// The table cfg.sender_logins_file holds, read afresh; null when it is
// empty. Throws ListFileLoadError like load_recipient_file.
std::shared_ptr<const SenderLogins> load_sender_logins(const AuthConfig& cfg);

// Largest users_file read.
inline constexpr uint64_t kMaxUsersFileBytes = uint64_t{256} << 20;

// The users of cfg.users_file with backend = "file", read afresh; null for
// any other backend. Throws ListFileLoadError like load_recipient_file.
std::shared_ptr<const UsersFile> load_users_file(const AuthConfig& cfg);

}  // namespace ringmx
