// Contract: see message_source.h. The size draw is a SplitMix64 hash of the
// seed and the message id: no PRNG state is shared between workers.
#include "bench/message_source.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <system_error>

namespace ringmx::bench {

namespace {

uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A whole number of at most `max`: digits only, no sign, no overflow.
bool parse_number(std::string_view text, uint64_t max, uint64_t& out) {
  if (text.empty() || text.size() > 19) return false;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > max) return false;
  out = v;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool ends_with_eml(const std::string& name) {
  if (name.size() <= 4) return false;
  std::string ext = name.substr(name.size() - 4);
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".eml";
}

// The whole file, but no more than kMaxEmlFileBytes + 1 octets.
bool read_file(const std::string& path, std::string& out) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  out.clear();
  char buf[65536];
  size_t n = 0;
  while (out.size() <= kMaxEmlFileBytes && (n = std::fread(buf, 1, sizeof buf, f)) > 0) {
    out.append(buf, n);
  }
  const bool ok = !std::ferror(f);
  std::fclose(f);
  return ok;
}

}  // namespace

uint64_t SizeMix::total_weight() const {
  uint64_t total = 0;
  for (const SizeClass& c : classes) total += c.weight;
  return total;
}

double SizeMix::mean_size() const {
  const uint64_t total = total_weight();
  if (total == 0) return 0;
  double sum = 0;
  for (const SizeClass& c : classes) {
    sum += static_cast<double>(c.size) * static_cast<double>(c.weight);
  }
  return sum / static_cast<double>(total);
}

std::string SizeMix::describe() const {
  if (classes.size() == 1) return std::to_string(classes[0].size);
  std::string out;
  for (const SizeClass& c : classes) {
    if (!out.empty()) out += ',';
    out += std::to_string(c.size) + ':' + std::to_string(c.weight);
  }
  return out;
}

bool parse_size(std::string_view text, size_t& out, std::string& err) {
  const std::string_view given = text;
  text = trim(text);
  uint64_t unit = 1;
  if (!text.empty()) {
    const char last = text.back();
    if (last == 'k' || last == 'K') unit = uint64_t{1} << 10;
    if (last == 'm' || last == 'M') unit = uint64_t{1} << 20;
    if (unit != 1) text.remove_suffix(1);
  }
  uint64_t n = 0;
  if (!parse_number(text, kMaxMessageSize, n)) {
    err = "not a size (octets, or with a k or m suffix): \"" + std::string(given) + "\"";
    return false;
  }
  n *= unit;
  if (n < kMinMessageSize || n > kMaxMessageSize) {
    err = "size " + std::string(trim(given)) + " out of range (" + std::to_string(kMinMessageSize) +
          " to " + std::to_string(kMaxMessageSize >> 20) + "m octets)";
    return false;
  }
  out = static_cast<size_t>(n);
  return true;
}

bool parse_size_mix(std::string_view text, SizeMix& out, std::string& err) {
  SizeMix mix;
  if (trim(text).empty()) {
    err = "empty size list";
    return false;
  }
  size_t pos = 0;
  bool weighted_all = true;
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    const std::string_view item = trim(text.substr(pos, comma - pos));
    pos = comma + 1;
    if (item.empty()) {
      err = "empty item in the size list \"" + std::string(text) + "\"";
      return false;
    }
    SizeClass c;
    const size_t colon = item.find(':');
    if (!parse_size(item.substr(0, colon), c.size, err)) return false;
    if (colon == std::string_view::npos) {
      weighted_all = false;
    } else if (!parse_number(trim(item.substr(colon + 1)), kMaxWeight, c.weight) || c.weight == 0) {
      err = "weight of \"" + std::string(item) + "\" must be a whole number from 1 to " +
            std::to_string(kMaxWeight);
      return false;
    }
    for (const SizeClass& seen : mix.classes) {
      if (seen.size == c.size) {
        err = "size " + std::to_string(c.size) + " listed twice";
        return false;
      }
    }
    mix.classes.push_back(c);
    if (mix.classes.size() > kMaxSizeClasses) {
      err = "more than " + std::to_string(kMaxSizeClasses) + " sizes";
      return false;
    }
  }
  if (mix.classes.size() > 1 && !weighted_all) {
    err = "a list of sizes needs SIZE:WEIGHT for every item";
    return false;
  }
  uint64_t sum = 0;
  for (const SizeClass& c : mix.classes) sum += c.size;
  if (sum > kMaxMessageSize) {
    err = "the sizes of the list add up to more than " + std::to_string(kMaxMessageSize >> 20) +
          "m octets";
    return false;
  }
  out = std::move(mix);
  return true;
}

size_t draw_size_class(const SizeMix& mix, uint64_t seed, uint64_t id) {
  if (mix.classes.size() <= 1) return 0;
  // Weights add up to at most 2^26: the modulo bias is below 2^-38.
  uint64_t r = mix64(mix64(seed) ^ id) % mix.total_weight();
  for (size_t i = 0; i < mix.classes.size(); ++i) {
    if (r < mix.classes[i].weight) return i;
    r -= mix.classes[i].weight;
  }
  return mix.classes.size() - 1;
}

std::string normalize_crlf(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 32 + 2);
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\r') {
      out += "\r\n";
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
    } else if (c == '\n') {
      out += "\r\n";
    } else {
      out.push_back(c);
    }
  }
  if (!out.empty() && out.back() != '\n') out += "\r\n";
  return out;
}

bool load_eml_dir(const std::string& dir, std::vector<EmlFile>& out, std::string& err) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<std::string> names;
  fs::directory_iterator it(dir, ec);
  if (ec) {
    err = "--eml-dir " + dir + ": " + ec.message();
    return false;
  }
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const std::string name = it->path().filename().string();
    if (!ends_with_eml(name) || !it->is_regular_file(ec)) continue;  // follows symlinks
    if (names.size() == kMaxEmlFiles) {
      err = "--eml-dir " + dir + ": more than " + std::to_string(kMaxEmlFiles) + " .eml files";
      return false;
    }
    names.push_back(name);
  }
  if (ec) {
    err = "--eml-dir " + dir + ": " + ec.message();
    return false;
  }
  if (names.empty()) {
    err = "--eml-dir " + dir + ": no .eml file";
    return false;
  }
  std::sort(names.begin(), names.end());
  std::vector<EmlFile> files;
  files.reserve(names.size());
  uint64_t total = 0;
  for (const std::string& name : names) {
    const std::string path = (fs::path(dir) / name).string();
    const uint64_t size = fs::file_size(path, ec);
    if (ec) {
      err = path + ": " + ec.message();
      return false;
    }
    if (size > kMaxEmlFileBytes) {
      err = path + ": larger than " + std::to_string(kMaxEmlFileBytes >> 20) + " MiB";
      return false;
    }
    total += size;
    if (total > kMaxEmlTotalBytes) {
      err = "--eml-dir " + dir + ": more than " + std::to_string(kMaxEmlTotalBytes >> 20) +
            " MiB of .eml files";
      return false;
    }
    std::string raw;
    if (!read_file(path, raw)) {
      err = path + ": cannot read";
      return false;
    }
    if (raw.size() > kMaxEmlFileBytes) {  // grew while we looked
      err = path + ": larger than " + std::to_string(kMaxEmlFileBytes >> 20) + " MiB";
      return false;
    }
    if (raw.empty()) {
      err = path + ": empty";
      return false;
    }
    files.push_back({name, normalize_crlf(raw)});
  }
  out = std::move(files);
  return true;
}

}  // namespace ringmx::bench
