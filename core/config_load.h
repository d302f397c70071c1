// TOML text -> ServerConfig. Pure: the caller reads the file and passes its
// text and name. Every problem (syntax, unknown key, wrong type, value out of
// range) is reported with file, line and key; nothing is silently ignored.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"

namespace ringmx {

struct ConfigError {
  std::string file;
  uint32_t line = 0;  // 0 when the problem has no one place (e.g. a missing table)
  uint32_t column = 0;
  std::string key;  // dotted path, e.g. "limits.max_recipients"
  std::string message;
  // "file:line:column: key: message"
  std::string to_string() const;
};

struct ConfigLoadResult {
  ServerConfig config;
  std::vector<ConfigError> errors;
  bool ok() const { return errors.empty(); }
};

// Starts from `base` (the embedded defaults) and applies the file over it.
ConfigLoadResult load_config(std::string_view toml_text, std::string_view file_name,
                             const ServerConfig& base = {});

// Checks a finished config (after command-line overrides): ranges from
// kLimitSpecs, listener addresses that parse, a non-empty hostname...
std::vector<ConfigError> validate_config(const ServerConfig& cfg);

// "127.0.0.1:25" / "[::1]:25" / "0.0.0.0:25" -> true and fills host/port.
bool split_host_port(std::string_view s, std::string& host, uint16_t& port);

}  // namespace ringmx
