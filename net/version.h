// The version ringmx reports (--version, the start-up line, ringmx_build_info):
// the project version and, when built from a git checkout, `git describe
// --always --dirty` of the tree at build time. Defined in a file the build
// generates (cmake/version.cmake).
#pragma once

namespace ringmx {

extern const char* const kVersion;

}  // namespace ringmx
