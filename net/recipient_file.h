// Reading the [recipients] file into a RecipientTable (core/recipient_table.h).
// Called where a config snapshot is built (RuntimeConfig::make: start-up,
// --check-config, every reload), on the main thread, never on a shard.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>

#include "core/config.h"
#include "core/recipient_table.h"

namespace ringmx {

// A recipients file that cannot be used; what() names the file (and line).
class RecipientFileLoadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Largest recipients file read (far beyond the tens of millions of entries
// the table is meant for; the table's arena stops at 4 GiB anyway).
inline constexpr uint64_t kMaxRecipientFileBytes = uint64_t{2} << 30;

// The table `cfg.file` lists, read afresh (a file rewritten under the same
// name is read again on every reload); null when cfg.file is empty. Throws
// RecipientFileLoadError: missing or unreadable file, a bad line (file:line).
std::shared_ptr<const RecipientTable> load_recipient_file(const RecipientsConfig& cfg);

}  // namespace ringmx
