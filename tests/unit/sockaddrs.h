// Test helpers: socket addresses from their text form.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>

namespace ringmx::test {

inline sockaddr_storage v4(const char* addr, uint16_t port) {
  sockaddr_storage ss{};
  auto* sa = reinterpret_cast<sockaddr_in*>(&ss);
  sa->sin_family = AF_INET;
  sa->sin_port = htons(port);
  EXPECT_EQ(inet_pton(AF_INET, addr, &sa->sin_addr), 1) << addr;
  return ss;
}

inline sockaddr_storage v6(const char* addr, uint16_t port) {
  sockaddr_storage ss{};
  auto* sa = reinterpret_cast<sockaddr_in6*>(&ss);
  sa->sin6_family = AF_INET6;
  sa->sin6_port = htons(port);
  EXPECT_EQ(inet_pton(AF_INET6, addr, &sa->sin6_addr), 1) << addr;
  return ss;
}

}  // namespace ringmx::test
