// Which keys a reload changes, for the log: the two config files' texts are
// compared key by key (what the operator wrote, whatever the defaults).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ringmx {

// Dotted keys as the loader names them ("server.max_connections",
// "listener[1].tls", "route[0].domains"), sorted: set in one text and not
// the other, or set to different values. Empty when either text is not TOML.
std::vector<std::string> changed_config_keys(std::string_view old_text, std::string_view new_text);

}  // namespace ringmx
