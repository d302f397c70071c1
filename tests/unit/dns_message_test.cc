// DNS responses built octet by octet: records of the asked type with their
// TTLs, compressed names, the RFC 2308 negative TTL, and malformed messages.
#include "core/dns_message.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ringmx {
namespace {

using Bytes = std::vector<uint8_t>;

void put16(Bytes& b, unsigned v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}
void put32(Bytes& b, uint32_t v) {
  put16(b, v >> 16);
  put16(b, v & 0xffff);
}
void name(Bytes& b, const std::string& n) {
  size_t start = 0;
  while (start < n.size()) {
    size_t dot = n.find('.', start);
    if (dot == std::string::npos) dot = n.size();
    b.push_back(static_cast<uint8_t>(dot - start));
    b.insert(b.end(), n.begin() + static_cast<long>(start), n.begin() + static_cast<long>(dot));
    start = dot + 1;
  }
  b.push_back(0);
}

// A response header and the question "example.org" type `qtype` (the name at offset 12).
Bytes response(unsigned rcode, unsigned an, unsigned ns, uint16_t qtype) {
  Bytes b;
  put16(b, 0x1234);
  put16(b, 0x8180 | rcode);
  put16(b, 1);
  put16(b, an);
  put16(b, ns);
  put16(b, 0);
  name(b, "example.org");
  put16(b, qtype);
  put16(b, 1);
  return b;
}
// A record header whose owner is a pointer to the question's name.
void rr(Bytes& b, uint16_t type, uint32_t ttl, const Bytes& rdata) {
  put16(b, 0xc00c);
  put16(b, type);
  put16(b, 1);
  put32(b, ttl);
  put16(b, static_cast<unsigned>(rdata.size()));
  b.insert(b.end(), rdata.begin(), rdata.end());
}

TEST(DnsMessage, ARecordsWithTtls) {
  Bytes b = response(0, 2, 0, dns_type::kA);
  rr(b, dns_type::kA, 300, {192, 0, 2, 1});
  rr(b, dns_type::kA, 0x80000064, {192, 0, 2, 2});  // top bit set: read as 100 (RFC 2181 8)
  DnsResponse r;
  ASSERT_TRUE(parse_dns_response(b.data(), b.size(), dns_type::kA, r));
  EXPECT_EQ(r.rcode, 0);
  ASSERT_EQ(r.records.size(), 2u);
  EXPECT_EQ(r.records[0].data, std::string("\xc0\x00\x02\x01", 4));
  EXPECT_EQ(r.records[0].ttl, 300u);
  EXPECT_EQ(r.records[1].ttl, 100u);
}

TEST(DnsMessage, MxPtrTxtAndCnameSkipped) {
  Bytes b = response(0, 3, 0, dns_type::kMx);
  Bytes cname;
  name(cname, "alias.example.org");
  rr(b, dns_type::kCname, 60, cname);
  Bytes mx;
  put16(mx, 10);
  mx.push_back(2);
  mx.push_back('M');
  mx.push_back('X');
  put16(mx, 0xc00c);  // "mx" + pointer to example.org
  rr(b, dns_type::kMx, 3600, mx);
  Bytes null_mx;
  put16(null_mx, 0);
  null_mx.push_back(0);  // RFC 7505: preference 0, exchange "."
  rr(b, dns_type::kMx, 3600, null_mx);
  DnsResponse r;
  ASSERT_TRUE(parse_dns_response(b.data(), b.size(), dns_type::kMx, r));
  ASSERT_EQ(r.records.size(), 2u);
  EXPECT_EQ(r.records[0].preference, 10);
  EXPECT_EQ(r.records[0].data, "mx.example.org");  // lower case, decompressed
  EXPECT_EQ(r.records[1].data, "");

  Bytes t = response(0, 1, 0, dns_type::kTxt);
  rr(t, dns_type::kTxt, 5, {3, '1', '2', '7', 2, 'x', 'y'});
  ASSERT_TRUE(parse_dns_response(t.data(), t.size(), dns_type::kTxt, r));
  ASSERT_EQ(r.records.size(), 1u);
  EXPECT_EQ(r.records[0].data, "127xy");
}

TEST(DnsMessage, NegativeTtlFromTheSoa) {
  Bytes b = response(3, 0, 1, dns_type::kA);
  Bytes soa;
  name(soa, "ns.example.org");
  name(soa, "hostmaster.example.org");
  for (uint32_t v : {1u, 7200u, 900u, 1209600u, 120u}) put32(soa, v);  // MINIMUM 120
  rr(b, dns_type::kSoa, 3600, soa);
  DnsResponse r;
  ASSERT_TRUE(parse_dns_response(b.data(), b.size(), dns_type::kA, r));
  EXPECT_EQ(r.rcode, 3);
  EXPECT_TRUE(r.records.empty());
  EXPECT_EQ(r.negative_ttl, 120u);  // the lesser of the SOA's TTL and MINIMUM

  Bytes c = response(0, 0, 1, dns_type::kMx);
  rr(c, dns_type::kSoa, 30, soa);  // NODATA, SOA TTL below its MINIMUM
  ASSERT_TRUE(parse_dns_response(c.data(), c.size(), dns_type::kMx, r));
  EXPECT_EQ(r.negative_ttl, 30u);
}

TEST(DnsMessage, MalformedIsRefused) {
  DnsResponse r;
  Bytes q = response(0, 0, 0, dns_type::kA);
  q[2] &= 0x7f;  // a query, not a response
  EXPECT_FALSE(parse_dns_response(q.data(), q.size(), dns_type::kA, r));
  EXPECT_FALSE(parse_dns_response(q.data(), 11, dns_type::kA, r));

  Bytes loop = response(0, 1, 0, dns_type::kPtr);
  Bytes self;
  put16(self, 0xc000 | static_cast<unsigned>(loop.size() + 12));  // points at itself
  rr(loop, dns_type::kPtr, 5, self);
  EXPECT_FALSE(parse_dns_response(loop.data(), loop.size(), dns_type::kPtr, r));

  Bytes cut = response(0, 1, 0, dns_type::kA);
  rr(cut, dns_type::kA, 5, {1, 2, 3, 4});
  for (size_t n = 12; n < cut.size(); ++n) {
    EXPECT_FALSE(parse_dns_response(cut.data(), n, dns_type::kA, r)) << n;
  }
  Bytes bad_a = response(0, 1, 0, dns_type::kA);
  rr(bad_a, dns_type::kA, 5, {1, 2, 3});
  EXPECT_FALSE(parse_dns_response(bad_a.data(), bad_a.size(), dns_type::kA, r));

  Bytes long_name = response(0, 1, 0, dns_type::kPtr);
  Bytes target;
  for (int i = 0; i < 5; ++i) {
    target.push_back(63);
    target.insert(target.end(), 63, 'a');
  }
  target.push_back(0);  // 320 octets: over 255
  rr(long_name, dns_type::kPtr, 5, target);
  EXPECT_FALSE(parse_dns_response(long_name.data(), long_name.size(), dns_type::kPtr, r));
}

// RFC 1035 2.3.4: 255 octets on the wire with the root label, 253 characters of text.
TEST(DnsMessage, NameLengthLimit) {
  for (const size_t last : {61u, 62u}) {
    Bytes b = response(0, 1, 0, dns_type::kPtr);
    Bytes target;
    for (const size_t l : {size_t{63}, size_t{63}, size_t{63}, last}) {
      target.push_back(static_cast<uint8_t>(l));
      target.insert(target.end(), l, 'a');
    }
    target.push_back(0);
    rr(b, dns_type::kPtr, 5, target);
    DnsResponse r;
    const bool ok = parse_dns_response(b.data(), b.size(), dns_type::kPtr, r);
    if (last == 61) {
      ASSERT_TRUE(ok);
      EXPECT_EQ(r.records[0].data.size(), 253u);
    } else {
      EXPECT_FALSE(ok);
    }
  }
}

TEST(DnsMessage, ReverseNames) {
  IpBytes v4{};
  v4[10] = v4[11] = 0xff;
  v4[12] = 192;
  v4[13] = 0;
  v4[14] = 2;
  v4[15] = 7;
  EXPECT_EQ(reverse_name(v4), "7.2.0.192.in-addr.arpa");
  EXPECT_EQ(reverse_name(v4, "zen.example.net"), "7.2.0.192.zen.example.net");
  IpBytes v6{};
  v6[0] = 0x20;
  v6[1] = 0x01;
  v6[2] = 0x0d;
  v6[3] = 0xb8;
  v6[15] = 0x1;
  EXPECT_EQ(reverse_name(v6),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
}

}  // namespace
}  // namespace ringmx
