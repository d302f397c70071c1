// Contract: the PROXY protocol headers ringmx-bench sends, byte for byte as
// haproxy's proxy-protocol.txt lays them out: v1 text ("PROXY TCP4 ...\r\n",
// the spec's own example addresses), v2 binary (12-byte signature, version 2 +
// PROXY, TCP over IPv4 / IPv6, length, addresses and ports in network order);
// mixed families give no header.
#include "bench/proxy_header.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <gtest/gtest.h>

#include <string>

#include "tests/unit/sockaddrs.h"

namespace ringmx::bench {
namespace {

using test::v4;
using test::v6;

std::string bytes(std::initializer_list<int> list) {
  std::string out;
  for (int b : list) out += static_cast<char>(b);
  return out;
}

const std::string kSignature =
    bytes({0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A});

TEST(BenchProxyHeader, V1Ipv4IsTheSpecExample) {
  EXPECT_EQ(proxy_header_v1(v4("192.168.0.1", 56324), v4("192.168.0.11", 443)),
            "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
}

TEST(BenchProxyHeader, V1LongestIpv4FitsTheSpecLimit) {
  const std::string h = proxy_header_v1(v4("255.255.255.255", 65535), v4("255.255.255.255", 65535));
  EXPECT_EQ(h, "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n");
  EXPECT_LE(h.size(), 107U);  // the spec's maximum line length
}

TEST(BenchProxyHeader, V1Ipv6) {
  EXPECT_EQ(proxy_header_v1(v6("2001:db8::1", 1025), v6("::1", 25)),
            "PROXY TCP6 2001:db8::1 ::1 1025 25\r\n");
}

TEST(BenchProxyHeader, V2Ipv4ByteForByte) {
  const std::string want = kSignature + bytes({0x21, 0x11, 0x00, 0x0C,  // PROXY, TCP4, 12
                                               10, 1, 2, 3,             // source address
                                               127, 0, 0, 1,            // destination
                                               0xC0, 0x01,              // 49153
                                               0x00, 0x19});            // 25
  EXPECT_EQ(proxy_header_v2(v4("10.1.2.3", 49153), v4("127.0.0.1", 25)), want);
  EXPECT_EQ(want.size(), 16U + 12U);
}

TEST(BenchProxyHeader, V2Ipv6ByteForByte) {
  std::string want = kSignature + bytes({0x21, 0x21, 0x00, 0x24});  // PROXY, TCP6, 36
  want += bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07});  // 2001:db8::7
  want += bytes({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});                 // ::1
  want += bytes({0x01, 0xBB, 0x02, 0x4B});                                         // 443, 587
  EXPECT_EQ(proxy_header_v2(v6("2001:db8::7", 443), v6("::1", 587)), want);
  EXPECT_EQ(want.size(), 16U + 36U);
}

TEST(BenchProxyHeader, MixedFamiliesAndNoneGiveNoHeader) {
  EXPECT_EQ(proxy_header_v1(v4("10.0.0.1", 1), v6("::1", 25)), "");
  EXPECT_EQ(proxy_header_v2(v6("::1", 1), v4("127.0.0.1", 25)), "");
  EXPECT_EQ(proxy_header(ProxyVersion::none, v4("10.0.0.1", 1), v4("127.0.0.1", 25)), "");
  EXPECT_EQ(proxy_header(ProxyVersion::v1, v4("10.0.0.1", 1), v4("127.0.0.1", 25)),
            "PROXY TCP4 10.0.0.1 127.0.0.1 1 25\r\n");
  EXPECT_EQ(proxy_header(ProxyVersion::v2, v4("10.0.0.1", 1), v4("127.0.0.1", 25)).substr(0, 12),
            kSignature);
}

TEST(BenchProxyHeader, ParsesVersionNames) {
  ProxyVersion v = ProxyVersion::none;
  EXPECT_TRUE(parse_proxy_version("v1", v));
  EXPECT_EQ(v, ProxyVersion::v1);
  EXPECT_TRUE(parse_proxy_version("2", v));
  EXPECT_EQ(v, ProxyVersion::v2);
  EXPECT_FALSE(parse_proxy_version("v3", v));
  EXPECT_EQ(v, ProxyVersion::v2);
}

}  // namespace
}  // namespace ringmx::bench
