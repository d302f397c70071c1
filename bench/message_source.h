// Contract: where the load generator's messages come from, besides
// message_gen itself.
//
// Size mix (--size): one size ("1024", "4k", "1m") or a weighted list
// "SIZE:WEIGHT,SIZE:WEIGHT,..." ("1k:70,10k:25,1m:5"). k/K = 1024, m/M =
// 1048576. Sizes run from kMinMessageSize (the smallest size make_message
// makes exactly) to kMaxMessageSize; weights are whole numbers from 1 to
// kMaxWeight; at most kMaxSizeClasses sizes, each listed once, adding up to at
// most kMaxMessageSize (one body of each size is kept in memory). A lone size
// may carry a weight ("2k:1"); in a list every size needs one.
// draw_size_class() picks message `id`'s size class from the seed and the id
// alone (a hash, no shared state), so every worker draws the same class for
// the same id, whatever the order: same seed, same sequence.
//
// Eml directory (--eml-dir): every regular file whose name ends in ".eml"
// (any case) directly in the directory, in byte order of the names, read once.
// Each is normalised to CRLF line ends (LF and lone CR become CRLF) with a
// final CRLF added when missing. Refused with a message: a directory that
// cannot be read or holds no .eml file, more than kMaxEmlFiles of them, a file
// over kMaxEmlFileBytes or empty, more than kMaxEmlTotalBytes in all.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ringmx::bench {

constexpr size_t kMinMessageSize = 512;
constexpr size_t kMaxMessageSize = size_t{256} << 20;
constexpr uint64_t kMaxWeight = 1'000'000;
constexpr size_t kMaxSizeClasses = 64;
constexpr size_t kMaxEmlFiles = 100'000;
constexpr uint64_t kMaxEmlFileBytes = uint64_t{64} << 20;
constexpr uint64_t kMaxEmlTotalBytes = uint64_t{1} << 30;

struct SizeClass {
  size_t size = 0;
  uint64_t weight = 1;
};

struct SizeMix {
  std::vector<SizeClass> classes;  // in the order given
  uint64_t total_weight() const;
  double mean_size() const;  // weighted
  // "1024" for one size, else "1024:70,10240:25,1048576:5" (octets).
  std::string describe() const;
};

// "1024", "4k", "1M": false (with `err`) for anything else, or out of range.
bool parse_size(std::string_view text, size_t& out, std::string& err);
// The --size argument (see above). On failure `err` says what is wrong.
bool parse_size_mix(std::string_view text, SizeMix& out, std::string& err);
// Message `id`'s size class (index into mix.classes), from seed and id only.
size_t draw_size_class(const SizeMix& mix, uint64_t seed, uint64_t id);

// LF, CRLF or lone CR line ends -> CRLF; a final CRLF when missing (not for
// an empty input).
std::string normalize_crlf(std::string_view text);

struct EmlFile {
  std::string name;     // file name, no directory
  std::string message;  // normalised, not dot-stuffed
};

// Loads the directory's .eml files (see above), sorted by name.
bool load_eml_dir(const std::string& dir, std::vector<EmlFile>& out, std::string& err);

}  // namespace ringmx::bench
