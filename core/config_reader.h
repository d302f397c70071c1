// The pieces every part of the config loader reads TOML with: each reader
// records a problem (file, line, column, dotted key, message) and leaves the
// field as it was, so one load reports every mistake in a file at once.
// Internal to core/config_load*.cc.
#pragma once

#include <toml++/toml.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "core/config_load.h"

namespace ringmx {

// TOML integers are int64, so no file can express more than this for a uint64 field.
inline constexpr uint64_t kTomlIntMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

template <typename E>
struct EnumName {
  std::string_view name;
  E value;
};

template <typename E, size_t N>
std::string one_of_message(const EnumName<E> (&names)[N]) {
  std::string msg = "must be one of: ";
  for (size_t i = 0; i < N; ++i) {
    if (i > 0) msg += ", ";
    msg += names[i].name;
  }
  return msg;
}

// An unsigned 32-bit key of a section C, with its range.
template <class C>
struct UintField {
  std::string_view name;
  uint32_t C::*field;
  uint64_t min;
  uint64_t max;
};

std::string range_message(uint64_t min, uint64_t max);
std::string_view type_phrase(toml::node_type t);

class TomlReader {
 public:
  TomlReader(std::string_view file, std::vector<ConfigError>& errors)
      : file_(file), errors_(errors) {}

 protected:
  void add(const toml::source_region& where, std::string key, std::string message) {
    ConfigError e;
    e.file = file_;
    e.line = where.begin.line;
    e.column = where.begin.column;
    e.key = std::move(key);
    e.message = std::move(message);
    errors_.push_back(std::move(e));
  }

  void wrong_type(const toml::node& n, std::string key, std::string_view expected) {
    add(n.source(), std::move(key),
        "expected " + std::string(expected) + ", not " + std::string(type_phrase(n.type())));
  }

  void unknown(const toml::key& k, const toml::node& v, std::string key) {
    // Keys of implicitly created tables may carry no position; the value's is the next best.
    const toml::source_region& where = k.source().begin.line != 0 ? k.source() : v.source();
    add(where, std::move(key), v.is_table() ? "unknown table" : "unknown key");
  }

  static std::string dotted(std::string_view section, const toml::key& k) {
    std::string key(section);
    key += '.';
    key += k.str();
    return key;
  }

  const toml::table* section(const toml::node& n, std::string_view key) {
    const toml::table* t = n.as_table();
    if (t == nullptr) wrong_type(n, std::string(key), "a table");
    return t;
  }

  bool read_uint(const toml::node& n, const std::string& key, uint64_t min, uint64_t max,
                 uint64_t& out) {
    const auto* v = n.as_integer();
    if (v == nullptr) {
      wrong_type(n, key, "an integer");
      return false;
    }
    // Compared as signed first: a negative value must be refused, not wrapped into range.
    const int64_t x = v->get();
    if (x < 0 || static_cast<uint64_t>(x) < min || static_cast<uint64_t>(x) > max) {
      add(n.source(), key, range_message(min, max));
      return false;
    }
    out = static_cast<uint64_t>(x);
    return true;
  }

  const std::string* read_string(const toml::node& n, const std::string& key) {
    const auto* v = n.as_string();
    if (v == nullptr) {
      wrong_type(n, key, "a string");
      return nullptr;
    }
    return &v->get();
  }

  // Reads a string and applies `check`; `out` changes only when both pass.
  template <typename Check>
  bool read_checked(const toml::node& n, const std::string& key, Check check, std::string& out) {
    const std::string* s = read_string(n, key);
    if (s == nullptr) return false;
    std::string problem = check(*s);
    if (!problem.empty()) {
      add(n.source(), key, std::move(problem));
      return false;
    }
    out = *s;
    return true;
  }

  void read_bool(const toml::node& n, const std::string& key, bool& out) {
    const auto* v = n.as_boolean();
    if (v == nullptr) {
      wrong_type(n, key, "a boolean");
      return;
    }
    out = v->get();
  }

  // An array of strings, each passing `check`; `out` is replaced only when all do.
  template <typename Check>
  void read_checked_list(const toml::node& n, const std::string& key, Check check, size_t max,
                         std::vector<std::string>& out) {
    const toml::array* arr = n.as_array();
    if (arr == nullptr) {
      wrong_type(n, key, "an array of strings");
      return;
    }
    if (arr->size() > max) {
      add(n.source(), key, "at most " + std::to_string(max) + " entries are allowed");
      return;
    }
    std::vector<std::string> got;
    bool ok = true;
    for (size_t j = 0; j < arr->size(); ++j) {
      std::string v;
      if (read_checked((*arr)[j], key + "[" + std::to_string(j) + "]", check, v)) {
        got.push_back(std::move(v));
      } else {
        ok = false;
      }
    }
    if (ok) out = std::move(got);
  }

  template <typename E, size_t N>
  void read_enum(const toml::node& n, const std::string& key, const EnumName<E> (&names)[N],
                 E& out) {
    const std::string* s = read_string(n, key);
    if (s == nullptr) return;
    for (const EnumName<E>& e : names) {
      if (e.name == *s) {
        out = e.value;
        return;
      }
    }
    add(n.source(), key, one_of_message(names));
  }

  bool read_int(const toml::node& n, const std::string& key, int64_t min, int64_t max,
                int64_t& out) {
    const auto* v = n.as_integer();
    if (v == nullptr) {
      wrong_type(n, key, "an integer");
      return false;
    }
    const int64_t x = v->get();
    if (x < min || x > max) {
      add(n.source(), key,
          "must be between " + std::to_string(min) + " and " + std::to_string(max));
      return false;
    }
    out = x;
    return true;
  }

  std::string file_;
  std::vector<ConfigError>& errors_;
};

}  // namespace ringmx
