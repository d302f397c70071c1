// The [auth] table of the config file (core/auth_config.h) and the checks
// that tie it to the listeners' `auth` keys. Internal to the config loader.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/auth_config.h"
#include "core/config_reader.h"

namespace ringmx {

struct ServerConfig;

class AuthLoader : TomlReader {
 public:
  using TomlReader::TomlReader;
  // [auth]; received_header_user goes to the session config.
  void load(const toml::node& n, AuthConfig& out, bool& received_names_user);
};

// Every problem of a finished config's [auth] and listener auth keys, as (key, message).
std::vector<std::pair<std::string, std::string>> check_auth_config(const ServerConfig& cfg);

}  // namespace ringmx
