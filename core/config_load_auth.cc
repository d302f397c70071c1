#include "core/config_load_auth.h"

#include <array>

#include "core/config.h"
#include "core/socket_address.h"

namespace ringmx {
namespace {

constexpr EnumName<AuthBackendKind> kAuthBackends[] = {
    {"none", AuthBackendKind::none},
    {"dovecot", AuthBackendKind::dovecot},
    {"file", AuthBackendKind::file},
};

using AuthUint = UintField<AuthConfig>;

constexpr AuthUint kAuthUints[] = {
    {"timeout_ms", &AuthConfig::timeout_ms, 100, 300'000},
    {"max_pending", &AuthConfig::max_pending, 1, 1'000'000},
    {"failure_delay_ms", &AuthConfig::failure_delay_ms, 0, 60'000},
    {"max_failure_delay_ms", &AuthConfig::max_failure_delay_ms, 0, 300'000},
    {"max_failures", &AuthConfig::max_failures, 1, 1'000'000},
    {"failure_window_s", &AuthConfig::failure_window_s, 1, 86'400},
    {"block_s", &AuthConfig::block_s, 0, 604'800},  // a week
    {"max_tracked", &AuthConfig::max_tracked, 1, 10'000'000},
    {"hash_workers", &AuthConfig::hash_workers, 1, 64},
};

std::string check_auth_socket(std::string_view s) {
  SocketAddress a;
  std::string error;
  if (!parse_socket_address(s, a, error)) return error;
  return {};
}

// Dovecot's service names are short words; this one goes into a protocol line.
std::string check_service(std::string_view s) {
  if (s.empty() || s.size() > 32) return "must be 1 to 32 characters";
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) return "must be letters, digits, '-' or '_'";
  }
  return {};
}

std::string check_path(std::string_view f) {
  if (f.find('\0') != std::string_view::npos) return "must not contain NUL";
  return {};
}

}  // namespace

void AuthLoader::load(const toml::node& n, AuthConfig& out, bool& received_names_user) {
  const toml::table* t = section(n, "auth");
  if (t == nullptr) return;
  for (const auto& [k, v] : *t) {
    const std::string key = dotted("auth", k);
    const std::string_view name = k.str();
    if (name == "backend") {
      read_enum(v, key, kAuthBackends, out.backend);
    } else if (name == "dovecot_socket") {
      read_checked(v, key, check_auth_socket, out.dovecot_socket);
    } else if (name == "dovecot_service") {
      read_checked(v, key, check_service, out.dovecot_service);
    } else if (name == "users_file") {
      read_checked(v, key, check_path, out.users_file);
    } else if (name == "sender_logins_file") {
      read_checked(v, key, check_path, out.sender_logins_file);
    } else if (name == "received_header_user") {
      read_bool(v, key, received_names_user);
    } else {
      bool found = false;
      for (const AuthUint& f : kAuthUints) {
        if (f.name != name) continue;
        found = true;
        uint64_t x = 0;
        if (read_uint(v, key, f.min, f.max, x)) out.*f.field = static_cast<uint32_t>(x);
      }
      if (!found) unknown(k, v, key);
    }
  }
}

std::vector<std::pair<std::string, std::string>> check_auth_config(const ServerConfig& cfg) {
  std::vector<std::pair<std::string, std::string>> out;
  auto check = [&out](std::string key, std::string problem) {
    if (!problem.empty()) out.emplace_back(std::move(key), std::move(problem));
  };
  const AuthConfig& a = cfg.auth;
  for (const AuthUint& f : kAuthUints) {
    const uint64_t v = a.*f.field;
    if (v < f.min || v > f.max) check("auth." + std::string(f.name), range_message(f.min, f.max));
  }
  check("auth.dovecot_socket", check_auth_socket(a.dovecot_socket));
  check("auth.dovecot_service", check_service(a.dovecot_service));
  check("auth.sender_logins_file", check_path(a.sender_logins_file));
  check("auth.users_file", check_path(a.users_file));
  if (a.backend == AuthBackendKind::file && a.users_file.empty()) {
    check("auth.users_file", "is required with backend = \"file\"");
  }
  if (a.max_failure_delay_ms < a.failure_delay_ms) {
    check("auth.max_failure_delay_ms", "must not be less than auth.failure_delay_ms");
  }
  for (size_t i = 0; i < cfg.listeners.size(); ++i) {
    const ListenerConfig& l = cfg.listeners[i];
    if (l.auth == AuthMode::none) continue;
    const std::string key = "listener[" + std::to_string(i) + "].auth";
    if (a.backend == AuthBackendKind::none) {
      check(key, "needs an [auth] backend");
    }
    // AUTH is only ever offered under TLS: without it the listener could not.
    if (effective_tls(cfg, l) == ListenerTls::none) {
      check(key,
            "needs TLS on the listener (tls = \"starttls\" or \"implicit\"): "
            "AUTH is never offered in plaintext");
    }
  }
  return out;
}

}  // namespace ringmx
