#include "core/config_diff.h"

#include <toml++/toml.h>

#include <algorithm>
#include <map>
#include <sstream>

namespace ringmx {

namespace {

using Flat = std::map<std::string, std::string>;

bool array_of_tables(const toml::array& a) {
  if (a.empty()) return false;
  for (const toml::node& n : a) {
    if (!n.is_table()) return false;
  }
  return true;
}

void flatten(const toml::node& n, const std::string& path, Flat& out) {
  if (const toml::table* t = n.as_table()) {
    for (const auto& [k, v] : *t) {
      flatten(v, path.empty() ? std::string(k.str()) : path + "." + std::string(k.str()), out);
    }
    return;
  }
  if (const toml::array* a = n.as_array(); a != nullptr && array_of_tables(*a)) {
    for (size_t i = 0; i < a->size(); ++i) {
      flatten((*a)[i], path + "[" + std::to_string(i) + "]", out);
    }
    return;
  }
  std::ostringstream os;
  n.visit([&os](const auto& v) { os << v; });
  out[path] = os.str();
}

bool parse_flat(std::string_view text, Flat& out) {
  try {
    const toml::table root = toml::parse(text);
    flatten(root, {}, out);
    return true;
  } catch (...) {
    return false;
  }
}

}  // namespace

std::vector<std::string> changed_config_keys(std::string_view old_text, std::string_view new_text) {
  Flat a;
  Flat b;
  if (!parse_flat(old_text, a) || !parse_flat(new_text, b)) return {};
  std::vector<std::string> out;
  for (const auto& [k, v] : a) {
    const auto it = b.find(k);
    if (it == b.end() || it->second != v) out.push_back(k);
  }
  for (const auto& [k, v] : b) {
    if (a.find(k) == a.end()) out.push_back(k);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace ringmx
