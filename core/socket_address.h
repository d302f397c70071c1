// The socket address of a local service ringmx talks to (a milter, Dovecot's
// auth-client socket), as Postfix and Sendmail write it:
//   unix:/run/milter.sock  (or local:/path, or a bare /path)
//   inet:127.0.0.1:11332   inet:[::1]:11332   inet6:[::1]:11332
//   inet:11332@127.0.0.1   (Sendmail's order)   inet:localhost:11332
// Hosts are address literals or "localhost" (no DNS at start-up or later).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace ringmx {

struct SocketAddress {
  enum class Kind : uint8_t { unix_path, inet };
  Kind kind = Kind::inet;
  std::string path;  // unix_path
  std::string ip;    // inet: "127.0.0.1", "::1"
  uint16_t port = 0;
};

// Parses `text`; on failure returns false and says why in `error`.
bool parse_socket_address(std::string_view text, SocketAddress& out, std::string& error);

// The sockaddr to connect to (AF_UNIX, AF_INET or AF_INET6, in `family`);
// false when the address does not fit one (a path too long, a bad literal).
bool to_sockaddr(const SocketAddress& a, sockaddr_storage& out, socklen_t& len, int& family);

}  // namespace ringmx
