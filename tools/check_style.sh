#!/usr/bin/env bash
# Style gate run by ctest: clang-format must agree with every C++ file, and
# clang-tidy (.clang-tidy) must pass on every .cc of our libraries.
# Usage: check_style.sh format|tidy SOURCE_DIR [BUILD_DIR]
set -euo pipefail
mode=$1 src=$2 build=${3:-}
cd "$src"
mapfile -t files < <(git ls-files -co --exclude-standard -- '*.cc' '*.h' 2>/dev/null ||
  find core net tls pipeline bench tests tools -name '*.cc' -o -name '*.h')
case "$mode" in
  format)
    clang-format --dry-run -Werror "${files[@]}"
    echo "clang-format: ${#files[@]} files clean"
    ;;
  tidy)
    mapfile -t units < <(printf '%s\n' "${files[@]}" | grep -E '^(core|net|tls|pipeline|bench)/.*\.cc$')
    clang-tidy --quiet -p "$build" "${units[@]}"
    echo "clang-tidy: ${#units[@]} files clean"
    ;;
esac
