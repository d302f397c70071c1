#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time over its seed corpus.
# Usage: run_fuzzer.sh FUZZER WORK_DIR SEED_DIR SECONDS
# Exits non-zero when the fuzzer finds a crash, a leak or a timeout; the
# reproducer is left in WORK_DIR/artifacts for a regression test.
set -euo pipefail
fuzzer=$1 work=$2 seeds=$3 seconds=$4
mkdir -p "$work/corpus" "$work/artifacts"
exec "$fuzzer" "$work/corpus" "$seeds" \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
  -print_final_stats=1 -artifact_prefix="$work/artifacts/"
