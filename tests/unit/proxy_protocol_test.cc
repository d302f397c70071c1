// net/proxy_protocol: every header fed whole, at every split point and
// octet by octet must give the same result; hostile headers are refused as
// early as their octets allow; the octets after a header stay the session's.
#include "net/proxy_protocol.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <string>
#include <vector>

#include "bench/proxy_header.h"
#include "pipeline/crc32c.h"
#include "tests/unit/sockaddrs.h"

namespace ringmx {
namespace {

using Status = ProxyParser::Status;

using test::v4;
using test::v6;

std::string text(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    port = ntohs(a->sin6_port);
  } else {
    return "none";
  }
  return std::string(buf) + " " + std::to_string(port);
}

struct Outcome {
  Status status = Status::need_more;
  size_t header = 0;     // header_size() when done
  size_t after = 0;      // octets fed that were not header
  size_t fail_at = 0;    // octets fed when the parser said error
  std::string src, dst;  // text() of the addresses, when proxied
  bool proxied = false;
  std::string summary() const {
    return std::to_string(static_cast<int>(status)) + "/" + std::to_string(header) + "/" +
           std::to_string(after) + "/" + std::to_string(fail_at) + "/" + src + "/" + dst + "/" +
           (proxied ? "p" : "-");
  }
};

// Feeds `in` in the pieces `cuts` makes (offsets), stopping at done or error.
Outcome run(ProxyAccept accept, std::string_view in, const std::vector<size_t>& cuts,
            ProxyParser* keep = nullptr) {
  ProxyParser local(accept);
  ProxyParser& p = keep ? *keep : local;
  Outcome o;
  size_t at = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(in.size());
  for (const size_t end : ends) {
    if (end < at) continue;
    const Status s = p.feed(in.substr(at, end - at));
    if (s == Status::done) {
      o.after = (end - at - p.used()) + (in.size() - end);
      break;
    }
    if (s == Status::error) {
      o.fail_at = at + p.used();
      break;
    }
    EXPECT_EQ(p.used(), end - at);  // while more is needed, everything is taken
    at = end;
  }
  o.status = p.status();
  if (o.status == Status::done) {
    o.header = p.header_size();
    o.proxied = p.info().proxied;
    if (o.proxied) {
      o.src = text(p.info().src);
      o.dst = text(p.info().dst);
    }
  }
  return o;
}

// The same outcome whole, at every split into two, and octet by octet.
Outcome every_split(ProxyAccept accept, std::string_view in) {
  const Outcome whole = run(accept, in, {});
  for (size_t cut = 0; cut <= in.size(); ++cut) {
    EXPECT_EQ(run(accept, in, {cut}).summary(), whole.summary()) << "split at " << cut;
  }
  std::vector<size_t> each;
  for (size_t i = 1; i < in.size(); ++i) each.push_back(i);
  EXPECT_EQ(run(accept, in, each).summary(), whole.summary()) << "octet by octet";
  return whole;
}

const std::string kSmtp = "EHLO client.example\r\n";

TEST(ProxyProtocol, V1FromTheLoadGeneratorThenSmtp) {
  const std::string h = bench::proxy_header_v1(v4("192.0.2.7", 40001), v4("198.51.100.2", 25));
  const Outcome o = every_split(ProxyAccept::any, h + kSmtp);
  EXPECT_EQ(o.status, Status::done);
  EXPECT_EQ(o.header, h.size());
  EXPECT_EQ(o.after, kSmtp.size());
  EXPECT_TRUE(o.proxied);
  EXPECT_EQ(o.src, "192.0.2.7 40001");
  EXPECT_EQ(o.dst, "198.51.100.2 25");
  const std::string h6 = bench::proxy_header_v1(v6("2001:db8::7", 1), v6("2001:db8::1", 587));
  const Outcome o6 = every_split(ProxyAccept::v1, h6 + kSmtp);
  EXPECT_EQ(o6.src, "2001:db8::7 1");
  EXPECT_EQ(o6.dst, "2001:db8::1 587");
  EXPECT_EQ(o6.after, kSmtp.size());
}

TEST(ProxyProtocol, V2FromTheLoadGeneratorThenATlsClientHello) {
  const std::string hello("\x16\x03\x01\x00\x05hello", 10);
  const std::string h = bench::proxy_header_v2(v4("127.3.4.5", 65535), v4("127.0.0.1", 465));
  const Outcome o = every_split(ProxyAccept::v2, h + hello);
  EXPECT_EQ(o.status, Status::done);
  EXPECT_EQ(o.header, 28U);
  EXPECT_EQ(o.after, hello.size());
  EXPECT_EQ(o.src, "127.3.4.5 65535");
  const std::string h6 = bench::proxy_header_v2(v6("::1", 2), v6("fe80::1", 25));
  const Outcome o6 = every_split(ProxyAccept::any, h6);
  EXPECT_EQ(o6.header, 52U);
  EXPECT_EQ(o6.src, "::1 2");
  EXPECT_EQ(o6.dst, "fe80::1 25");
  EXPECT_EQ(o6.after, 0U);
}

TEST(ProxyProtocol, V1SpecificationLimits) {
  const std::string v4max = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
  EXPECT_EQ(every_split(ProxyAccept::v1, v4max).src, "255.255.255.255 65535");
  const std::string f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  const std::string v6max = "PROXY TCP6 " + f + " " + f + " 65535 65535\r\n";
  EXPECT_EQ(v6max.size(), 104U);
  EXPECT_EQ(every_split(ProxyAccept::v1, v6max).status, Status::done);
  const Outcome unknown = every_split(ProxyAccept::any, "PROXY UNKNOWN\r\n" + kSmtp);
  EXPECT_EQ(unknown.status, Status::done);
  EXPECT_FALSE(unknown.proxied);  // the real peer is the client
  EXPECT_EQ(unknown.after, kSmtp.size());
  const std::string unknown_max = "PROXY UNKNOWN " + f + " " + f + " 65535 65535\r\n";
  EXPECT_EQ(unknown_max.size(), 107U);
  EXPECT_EQ(every_split(ProxyAccept::v1, unknown_max).status, Status::done);
  // One octet more, and it is refused at the 107th octet without a LF.
  const Outcome over =
      every_split(ProxyAccept::v1, "PROXY UNKNOWN " + f + " " + f + " 65535 655355\r\n");
  EXPECT_EQ(over.status, Status::error);
  EXPECT_EQ(over.fail_at, 107U);
}

TEST(ProxyProtocol, HostileV1HeadersAreRefused) {
  for (const char* bad : {
           "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n",        // bare LF
           "PROXY TCP4 192.0.2.1 192.0.2.2 01 2\r\n",     // leading zero
           "PROXY TCP4 192.0.2.1 192.0.2.2 65536 2\r\n",  // port too big
           "PROXY TCP4 192.0.2.1 192.0.2.2 -1 2\r\n",     // sign
           "PROXY TCP4 2001:db8::1 192.0.2.2 1 2\r\n",    // family mismatch
           "PROXY TCP6 192.0.2.1 192.0.2.2 1 2\r\n",      // family mismatch
           "PROXY TCP4 192.0.2.1  192.0.2.2 1 2\r\n",     // two spaces
           "PROXY TCP4 192.0.2.1 192.0.2.2 1 2 3\r\n",    // a field too many
           "PROXY TCP4 192.0.2.1 192.0.2.2 1\r\n",        // a field too few
           "PROXY TCP5 192.0.2.1 192.0.2.2 1 2\r\n",      // protocol
           "PROXY TCP4 192.0.2.001 192.0.2.2 1 2\r\n",    // octal-looking octet
           "PROXY TCP4 192.0.2.1 192.0.2.2 1 2 \r\n",     // trailing space
           "PROXY\r\n",                                   // nothing
       }) {
    EXPECT_EQ(every_split(ProxyAccept::any, bad).status, Status::error) << bad;
  }
  // Not a proxy at all: refused at the first octet that cannot start a header.
  EXPECT_EQ(every_split(ProxyAccept::any, kSmtp).fail_at, 1U);
  EXPECT_EQ(every_split(ProxyAccept::any, "proxy TCP4").fail_at, 1U);
  EXPECT_EQ(every_split(ProxyAccept::any, "PROXYTCP4").fail_at, 6U);
  EXPECT_EQ(every_split(ProxyAccept::any, std::string("\x16\x03\x01", 3)).fail_at, 1U);
  // A listener that takes one version refuses the other at its first octet.
  const std::string v1 = bench::proxy_header_v1(v4("192.0.2.7", 1), v4("192.0.2.8", 2));
  const std::string v2 = bench::proxy_header_v2(v4("192.0.2.7", 1), v4("192.0.2.8", 2));
  EXPECT_EQ(every_split(ProxyAccept::v2, v1).fail_at, 1U);
  EXPECT_EQ(every_split(ProxyAccept::v1, v2).fail_at, 1U);
}

// A v2 header by hand: command, family/protocol, the address block, TLVs.
std::string v2(uint8_t ver_cmd, uint8_t fam_proto, const std::string& body) {
  std::string h("\r\n\r\n\0\r\nQUIT\n", 12);
  h.push_back(static_cast<char>(ver_cmd));
  h.push_back(static_cast<char>(fam_proto));
  h.push_back(static_cast<char>(body.size() >> 8));
  h.push_back(static_cast<char>(body.size() & 0xFF));
  return h + body;
}

std::string tlv(uint8_t type, const std::string& value) {
  std::string t(1, static_cast<char>(type));
  t.push_back(static_cast<char>(value.size() >> 8));
  t.push_back(static_cast<char>(value.size() & 0xFF));
  return t + value;
}

const std::string kInet4(  // 10.1.2.3:1025 -> 10.0.0.1:25
    "\x0a\x01\x02\x03\x0a\x00\x00\x01\x04\x01\x00\x19", 12);

TEST(ProxyProtocol, V2LocalUnspecAndUnixUseTheRealPeer) {
  const Outcome local = every_split(ProxyAccept::v2, v2(0x20, 0x00, "") + kSmtp);  // health check
  EXPECT_EQ(local.status, Status::done);
  EXPECT_FALSE(local.proxied);
  EXPECT_EQ(local.after, kSmtp.size());
  // LOCAL with addresses: they are skipped, not believed.
  EXPECT_FALSE(every_split(ProxyAccept::v2, v2(0x20, 0x11, kInet4)).proxied);
  EXPECT_EQ(every_split(ProxyAccept::v2, v2(0x20, 0x11, kInet4)).status, Status::done);
  EXPECT_FALSE(every_split(ProxyAccept::v2, v2(0x21, 0x00, "")).proxied);
  const Outcome unix_sock = every_split(ProxyAccept::v2, v2(0x21, 0x31, std::string(216, 'u')));
  EXPECT_EQ(unix_sock.status, Status::done);
  EXPECT_FALSE(unix_sock.proxied);
  const Outcome inet = every_split(ProxyAccept::v2, v2(0x21, 0x11, kInet4));
  EXPECT_TRUE(inet.proxied);
  EXPECT_EQ(inet.src, "10.1.2.3 1025");
  EXPECT_EQ(inet.dst, "10.0.0.1 25");
}

TEST(ProxyProtocol, V2TlvsAreReadOrSkippedAndMustFit) {
  const std::string ssl = tlv(0x20, std::string("\x01\x00\x00\x00\x00", 5) + tlv(0x21, "TLSv1.3") +
                                        tlv(0x22, "client.example"));
  const std::string body = kInet4 + tlv(0x04, "noop") + tlv(0x05, "id-42") + ssl + tlv(0xE0, "x");
  ProxyParser p(ProxyAccept::v2);
  const Outcome o = run(ProxyAccept::v2, v2(0x21, 0x11, body), {}, &p);
  ASSERT_EQ(o.status, Status::done) << p.error();
  EXPECT_EQ(p.info().unique_id, "id-42");
  EXPECT_TRUE(p.info().ssl);
  EXPECT_EQ(p.info().ssl_version, "TLSv1.3");
  EXPECT_EQ(p.info().ssl_cn, "client.example");
  EXPECT_EQ(every_split(ProxyAccept::v2, v2(0x21, 0x11, body)).status, Status::done);

  for (const std::string& bad : {
           kInet4 + "\x05",                            // TLV head cut short
           kInet4 + tlv(0x05, "abc").substr(0, 5),     // value longer than the header
           kInet4 + tlv(0x05, std::string(129, 'i')),  // unique id over 128
           kInet4 + tlv(0x20, "\x01\x00"),             // SSL TLV cut short
           kInet4 + tlv(0x20, std::string("\x01\x00\x00\x00\x00\x21\x00\x09"
                                          "abc",
                                          11)),
           kInet4 + tlv(0x03, "abc"),                 // CRC32C not 4 octets
           kInet4 + tlv(0x03, std::string(4, '\0')),  // CRC32C wrong
           std::string(8, 'a'),                       // INET block too short
       }) {
    EXPECT_EQ(every_split(ProxyAccept::v2, v2(0x21, 0x11, bad)).status, Status::error);
  }
}

TEST(ProxyProtocol, V2Crc32cIsChecked) {
  std::string h = v2(0x21, 0x11, kInet4 + tlv(0x03, std::string(4, '\0')));
  const uint32_t c = crc32c(h);
  for (int i = 0; i < 4; ++i) h[h.size() - 4 + i] = static_cast<char>(c >> (24 - 8 * i));
  EXPECT_EQ(every_split(ProxyAccept::v2, h).status, Status::done);
  h[16] ^= 1;  // one address bit changed
  EXPECT_EQ(every_split(ProxyAccept::v2, h).status, Status::error);
}

TEST(ProxyProtocol, HostileV2HeadersAreRefusedEarly) {
  EXPECT_EQ(every_split(ProxyAccept::v2, v2(0x11, 0x11, kInet4)).status, Status::error);  // v1
  EXPECT_EQ(every_split(ProxyAccept::v2, v2(0x22, 0x11, kInet4)).status, Status::error);  // cmd
  EXPECT_EQ(every_split(ProxyAccept::v2, v2(0x21, 0x41, kInet4)).status, Status::error);  // family
  EXPECT_EQ(every_split(ProxyAccept::v2, v2(0x21, 0x12, kInet4)).status, Status::error);  // UDP
  EXPECT_EQ(every_split(ProxyAccept::v2, v2(0x21, 0x10, kInet4)).status, Status::error);
  // A length past the limit is refused at the 16th octet, before its body.
  const std::string huge = v2(0x21, 0x11, std::string(ProxyParser::kDefaultMaxV2, 'x'));
  const Outcome o = every_split(ProxyAccept::v2, huge);
  EXPECT_EQ(o.status, Status::error);
  EXPECT_EQ(o.fail_at, 16U);
  // The signature's first octets, then something else.
  EXPECT_EQ(every_split(ProxyAccept::v2, std::string("\r\n\r\n\0\r\nQUIT", 11) + "X").fail_at, 12U);
}

TEST(ProxyProtocol, NothingChangesAfterDoneOrError) {
  ProxyParser p(ProxyAccept::any);
  EXPECT_EQ(p.feed("PROXY UNKNOWN\r\nEHLO"), Status::done);
  EXPECT_EQ(p.used(), 15U);
  EXPECT_EQ(p.feed("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\r\n"), Status::done);
  EXPECT_EQ(p.used(), 0U);
  EXPECT_FALSE(p.info().proxied);
  ProxyParser q(ProxyAccept::any);
  EXPECT_EQ(q.feed("HELO"), Status::error);
  EXPECT_EQ(q.feed("PROXY UNKNOWN\r\n"), Status::error);
  EXPECT_EQ(q.used(), 0U);
  EXPECT_FALSE(q.error().empty());
}

}  // namespace
}  // namespace ringmx
