// Directories the spool depends on, made durable: a directory's name is on
// disk only once its parent directory has been fsynced, so creating it is not
// enough, and neither is finding it there (a crash right after an earlier
// run's mkdir can leave a name that was never synced). One helper for every
// spool directory: DIR, DIR/shard-N, DIR/shard-N/corrupt.
#pragma once

#include <string>
#include <vector>

namespace ringmx {

struct DurableDirs {
  std::vector<std::string> created;  // components this call created
  std::vector<std::string> synced;   // directories fsynced, parents first
};

// Creates every missing component of `path` (mode 0750 less the umask) and
// fsyncs the parent of every component, created now or not, then `path`
// itself. A relative path is taken from the working directory, whose own
// ancestors are synced too. Blocking; start-up only. Throws
// std::runtime_error naming `path`, the component and the reason when a
// component cannot be created or is not a directory, or a sync fails. A
// parent that existed before and that this process may not open (search
// permission only) is skipped: its entries are not ours to sync.
DurableDirs make_durable_dirs(const std::string& path);

// fsync of an open directory. Returns 0 or the errno; EINVAL (a file system
// that cannot sync directories) counts as success.
int sync_dir_fd(int fd);

}  // namespace ringmx
