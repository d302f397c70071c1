// CRC32C of a spool record's bytes: the SSE4.2 instruction against the
// slicing-by-8 table, on a small (1 KiB) and a large (1 MiB) buffer.
// Run: tools/dev.sh bench (or ringmx_microbench --benchmark_filter=crc32c).
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "pipeline/crc32c.h"

namespace {

using namespace ringmx;

std::vector<uint8_t> random_bytes(size_t n) {
  std::mt19937_64 rng(1);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

void bm_crc32c_hardware(benchmark::State& state) {
  if (!crc32c_hardware_available()) {
    state.SkipWithError("no SSE4.2 on this CPU");
    return;
  }
  const std::vector<uint8_t> buf = random_bytes(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    benchmark::DoNotOptimize(crc32c_extend_hardware(0, buf.data(), buf.size()));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(bm_crc32c_hardware)->Arg(1 << 10)->Arg(1 << 20);

void bm_crc32c_table(benchmark::State& state) {
  const std::vector<uint8_t> buf = random_bytes(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    benchmark::DoNotOptimize(crc32c_extend_table(0, buf.data(), buf.size()));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(bm_crc32c_table)->Arg(1 << 10)->Arg(1 << 20);

}  // namespace
