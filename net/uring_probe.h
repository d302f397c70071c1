// Start-up check that this kernel's io_uring has every operation, set-up flag
// and feature the shard runtime uses. A missing one is a clear error naming
// it, instead of an obscure errno later.
#pragma once

#include <string>

namespace ringmx {

// Empty when everything is there; otherwise one line per missing piece.
std::string check_uring_support();

// Ring set-up flags the shards use (single issuer + deferred task running).
unsigned shard_ring_flags();

}  // namespace ringmx
