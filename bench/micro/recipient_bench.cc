// Micro-benchmarks of the valid-recipient table (core/recipient_table.h):
// loading a million entries, and lookups that hit and miss in it.
// Run: build/release/bench/ringmx_microbench --benchmark_filter=recipient
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/recipient_table.h"

namespace {

using namespace ringmx;

constexpr size_t kEntries = 1'000'000;

// "first.last1234@domainN.example" style addresses over 50 domains, and the
// text of a file listing them.
struct Corpus {
  std::vector<std::string> listed;
  std::vector<std::string> unlisted;
  std::string text;
};

std::string make_address(std::mt19937_64& rng, uint64_t serial) {
  static constexpr char kLetters[] = "abcdefghijklmnopqrstuvwxyz";
  std::string s;
  const size_t first = 3 + rng() % 6;
  for (size_t i = 0; i < first; ++i) s.push_back(kLetters[rng() % 26]);
  s.push_back('.');
  const size_t last = 4 + rng() % 7;
  for (size_t i = 0; i < last; ++i) s.push_back(kLetters[rng() % 26]);
  s += std::to_string(serial);
  s += "@domain" + std::to_string(rng() % 50) + ".example";
  return s;
}

const Corpus& corpus() {
  static const Corpus kCorpus = [] {
    Corpus out;
    std::mt19937_64 rng(42);
    out.listed.reserve(kEntries);
    for (uint64_t i = 0; i < kEntries; ++i) {
      out.listed.push_back(make_address(rng, i));
      out.text += out.listed.back();
      out.text += '\n';
    }
    // The serial makes every address distinct: these are not in the file.
    for (uint64_t i = 0; i < 100'000; ++i) out.unlisted.push_back(make_address(rng, kEntries + i));
    return out;
  }();
  return kCorpus;
}

std::shared_ptr<const RecipientTable> load(const std::string& text) {
  RecipientFileError err;
  return RecipientTable::parse(text, "bench", RecipientOptions{}, err);
}

void bm_recipient_load_1m(benchmark::State& state) {
  const Corpus& c = corpus();
  size_t memory = 0;
  for (auto _ : state) {
    auto t = load(c.text);
    if (!t) state.SkipWithError("load failed");
    memory = t ? t->memory_bytes() : 0;
    benchmark::DoNotOptimize(t);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kEntries));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * c.text.size()));
  state.counters["table_MiB"] = static_cast<double>(memory) / (1 << 20);
  state.counters["file_MiB"] = static_cast<double>(c.text.size()) / (1 << 20);
}
BENCHMARK(bm_recipient_load_1m)->Unit(benchmark::kMillisecond)->Iterations(5);

// Lookups spread over the whole table in a shuffled order. The probe
// addresses are laid out one after another in that order, so reading them
// is sequential and the cache misses measured are the table's own.
void lookups(benchmark::State& state, const std::vector<std::string>& keys, bool want) {
  static const std::shared_ptr<const RecipientTable> kTable = load(corpus().text);
  std::vector<size_t> order(keys.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937_64(7));
  std::string flat;
  std::vector<std::pair<size_t, size_t>> spans;
  for (const size_t k : order) {
    spans.emplace_back(flat.size(), keys[k].size());
    flat += keys[k];
  }
  size_t i = 0;
  size_t wrong = 0;
  for (auto _ : state) {
    const std::string_view key(flat.data() + spans[i].first, spans[i].second);
    const bool found = kTable->accepts(key);
    wrong += found != want ? 1 : 0;
    if (++i == spans.size()) i = 0;
  }
  if (wrong != 0) state.SkipWithError("a lookup gave the wrong answer");
  state.SetItemsProcessed(state.iterations());
}

void bm_recipient_lookup_hit(benchmark::State& state) {
  lookups(state, corpus().listed, true);
}
BENCHMARK(bm_recipient_lookup_hit);

// A miss walks every step: the address, its base without a tag (none here),
// the domain's catch-all, the postmaster check.
void bm_recipient_lookup_miss(benchmark::State& state) {
  lookups(state, corpus().unlisted, false);
}
BENCHMARK(bm_recipient_lookup_miss);

// A subaddressed hit: the address misses, its base hits.
void bm_recipient_lookup_subaddress(benchmark::State& state) {
  static const std::vector<std::string> kTagged = [] {
    std::vector<std::string> out;
    const auto& listed = corpus().listed;
    for (size_t i = 0; i < 100'000; ++i) {
      std::string a = listed[i * 7];
      a.insert(a.find('@'), "+tag");
      out.push_back(std::move(a));
    }
    return out;
  }();
  lookups(state, kTagged, true);
}
BENCHMARK(bm_recipient_lookup_subaddress);

// For comparison only: the node-based set the table's layout avoids (one
// heap node and string per entry), looked up the same way.
void bm_recipient_lookup_hit_unordered_set_baseline(benchmark::State& state) {
  static const std::unordered_set<std::string> kSet(corpus().listed.begin(), corpus().listed.end());
  const std::vector<std::string>& keys = corpus().listed;
  std::vector<size_t> order(keys.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937_64(7));
  std::vector<std::string> probes;
  probes.reserve(order.size());
  for (const size_t k : order) probes.push_back(keys[k]);
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(kSet.count(probes[i]));
    if (++i == probes.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(bm_recipient_lookup_hit_unordered_set_baseline);

}  // namespace
