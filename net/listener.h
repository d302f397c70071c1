// Listening sockets: one SO_REUSEPORT socket per shard per configured
// listener, so the kernel spreads connections over the shards.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

namespace ringmx {

// Opens a non-blocking listening TCP socket on host:port (numeric host) with
// SO_REUSEADDR, SO_REUSEPORT and TCP_NODELAY (accepted sockets inherit it:
// without it pipelined replies stall on Nagle + delayed ACK). IPv6 sockets
// are v6-only. Throws std::runtime_error naming the address on failure.
int open_listener(const std::string& host, uint16_t port, int backlog = 4096);

// Fails (std::runtime_error) when another process already listens on
// host:port. SO_REUSEPORT would otherwise let a second ringmx silently share
// the port. Retries for up to `wait_ms` (a just-killed predecessor's socket
// can linger for a moment).
void ensure_port_free(const std::string& host, uint16_t port, int wait_ms = 2000);

// An address as logs, limits and Received headers spell it: IPv4 dotted
// (an IPv4-mapped IPv6 address too), IPv6 in RFC 5952 form; "unknown" for
// any other family. Sets `port` (0 for other families).
std::string ip_text(const sockaddr_storage& ss, uint16_t& port);

// The port a socket is bound to (for "port 0" in tests).
uint16_t bound_port(int fd);

}  // namespace ringmx
