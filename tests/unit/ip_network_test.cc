#include "core/ip_network.h"

#include <gtest/gtest.h>

namespace ringmx {
namespace {

bool in(std::string_view net, std::string_view ip) {
  auto n = parse_network(net);
  auto a = parse_ip(ip);
  EXPECT_TRUE(n.has_value()) << net;
  EXPECT_TRUE(a.has_value()) << ip;
  return n && a && n->contains(*a);
}

TEST(IpNetwork, Ipv4Prefixes) {
  EXPECT_TRUE(in("10.0.0.0/8", "10.255.1.2"));
  EXPECT_FALSE(in("10.0.0.0/8", "11.0.0.1"));
  EXPECT_TRUE(in("192.168.4.0/22", "192.168.7.255"));
  EXPECT_FALSE(in("192.168.4.0/22", "192.168.8.0"));
  EXPECT_FALSE(in("192.168.4.0/22", "192.168.3.255"));
  EXPECT_TRUE(in("127.0.0.1", "127.0.0.1"));  // a bare address is a host
  EXPECT_FALSE(in("127.0.0.1", "127.0.0.2"));
  EXPECT_TRUE(in("127.0.0.1/32", "127.0.0.1"));
  EXPECT_TRUE(in("0.0.0.0/0", "203.0.113.9"));
  EXPECT_TRUE(in("128.0.0.0/1", "200.0.0.1"));
  EXPECT_FALSE(in("128.0.0.0/1", "127.255.255.255"));
}

TEST(IpNetwork, Ipv6Prefixes) {
  EXPECT_TRUE(in("2001:db8::/32", "2001:db8:ffff::1"));
  EXPECT_FALSE(in("2001:db8::/32", "2001:db9::1"));
  EXPECT_TRUE(in("::1", "::1"));
  EXPECT_FALSE(in("::1", "::2"));
  EXPECT_TRUE(in("fe80::/10", "febf::1"));
  EXPECT_FALSE(in("fe80::/10", "fec0::1"));
  EXPECT_TRUE(in("2001:db8::1/128", "2001:db8::1"));
}

TEST(IpNetwork, FamiliesDoNotMix) {
  EXPECT_FALSE(in("10.0.0.0/8", "::a00:1"));  // v4-compatible, not v4
  EXPECT_FALSE(in("0.0.0.0/0", "2001:db8::1"));
  EXPECT_FALSE(in("::/0", "10.0.0.1"));  // "every IPv6 client" is not every IPv4 one
  EXPECT_FALSE(in("::/8", "10.0.0.1"));
  EXPECT_TRUE(in("::/0", "2001:db8::1"));
  EXPECT_TRUE(in("::ffff:0:0/96", "10.0.0.1"));
  // A mapped address is the IPv4 client it names.
  EXPECT_TRUE(in("10.0.0.0/8", "::ffff:10.1.2.3"));
}

TEST(IpNetwork, RefusesBadText) {
  for (const char* bad :
       {"", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/08", "10.0.0.0/8x", "10.0.0/8",
        "10.0.0.256", "::1/129", "[::1]/128", "fe80::1%eth0", "localhost", "10.0.0.1/8",
        "2001:db8::1/32", " 10.0.0.0/8", "10.0.0.0 /8"}) {
    std::string why;
    EXPECT_FALSE(parse_network(bad, &why).has_value()) << bad;
    EXPECT_FALSE(why.empty()) << bad;
    EXPECT_EQ(check_network(bad), why) << bad;
  }
  EXPECT_NE(check_network("10.0.0.1/8").find("host bits"), std::string::npos);
  EXPECT_EQ(check_network("10.0.0.0/8"), "");
  EXPECT_FALSE(parse_ip("10.0.0.1/8").has_value());
  EXPECT_FALSE(parse_ip(std::string(100, '1')).has_value());
}

TEST(NetworkSet, AnyOfSeveral) {
  NetworkSet s({"10.0.0.0/8", "192.0.2.7", "2001:db8::/48"});
  EXPECT_TRUE(s.contains("10.9.9.9"));
  EXPECT_TRUE(s.contains("192.0.2.7"));
  EXPECT_FALSE(s.contains("192.0.2.8"));
  EXPECT_TRUE(s.contains("2001:db8:0:1::5"));
  EXPECT_FALSE(s.contains("2001:db8:1::5"));
  EXPECT_FALSE(s.contains("unknown"));
  EXPECT_FALSE(s.contains(""));
  EXPECT_TRUE(NetworkSet().empty());
  EXPECT_FALSE(NetworkSet().contains("10.0.0.1"));
}

}  // namespace
}  // namespace ringmx
