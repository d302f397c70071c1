// The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and
// 2) that a load balancer puts in front of a connection to name the client
// it accepted. A pure, incremental parser over the bytes as they arrive (no
// MSG_PEEK): feed() takes any split of the stream, says how many bytes of
// each piece were header, and decides as early as the bytes allow, so a
// client that is not a proxy is refused at its first wrong byte.
//
//   v1: "PROXY TCP4 <src> <dst> <sport> <dport>\r\n", TCP6 likewise,
//       "PROXY UNKNOWN[ anything]\r\n"; 107 octets at most, single spaces,
//       addresses as inet_pton reads them, ports 0-65535 without leading zeros.
//   v2: the 12-octet signature, version 2 with command LOCAL or PROXY,
//       family UNSPEC / INET / INET6 / UNIX with protocol UNSPEC or STREAM,
//       a length, the addresses, then TLVs: each must fit; PP2_TYPE_CRC32C is
//       checked; UNIQUE_ID (128 octets at most) and SSL (its version and the
//       client certificate's CN) are kept; the others are skipped.
//
// A header that names no usable address (v1 UNKNOWN, v2 LOCAL, UNSPEC or
// UNIX) leaves `proxied` false: the connection's own peer is the client
// (what a health check from the proxy itself looks like).
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ringmx {

enum class ProxyAccept : uint8_t { v1 = 1, v2 = 2, any = 3 };

struct ProxyInfo {
  uint8_t version = 0;   // 1 or 2
  bool proxied = false;  // src and dst name the client and the address it reached
  sockaddr_storage src{};
  sockaddr_storage dst{};
  // v2 TLVs, raw octets (escape them before logging).
  std::string unique_id;
  bool ssl = false;         // PP2_TYPE_SSL present with PP2_CLIENT_SSL set
  std::string ssl_version;  // PP2_SUBTYPE_SSL_VERSION, e.g. "TLSv1.3"
  std::string ssl_cn;       // PP2_SUBTYPE_SSL_CN
};

class ProxyParser {
 public:
  enum class Status : uint8_t { need_more, done, error };
  // v2 headers longer than this (16 + the length field) are refused: TLVs
  // are small, and a peer must not make us hold 64 KiB per connection.
  static constexpr size_t kDefaultMaxV2 = 4096;
  static constexpr size_t kMaxV1 = 107;
  static constexpr size_t kMaxUniqueId = 128;

  explicit ProxyParser(ProxyAccept accept, size_t max_v2 = kDefaultMaxV2)
      : accept_(accept), max_v2_(max_v2) {}

  // Takes the next bytes of the connection. Returns need_more while the
  // header is incomplete, done once it is parsed (`used()` of these bytes
  // were header; the rest belongs to the session), or error (`error()` says
  // why). After done or error, feed() changes nothing.
  Status feed(std::string_view bytes);

  Status status() const { return status_; }
  size_t used() const { return used_; }               // of the last feed()
  size_t header_size() const { return buf_.size(); }  // when done
  const ProxyInfo& info() const { return info_; }
  const std::string& error() const { return error_; }

 private:
  Status fail(std::string why);
  bool bad(std::string why);  // fail(), for the TLV walk
  Status parse_v1();
  Status parse_v2();
  bool parse_tlvs(std::string_view tlvs, bool nested);

  ProxyAccept accept_;
  size_t max_v2_;
  uint8_t version_ = 0;  // decided from the first octets; 0 while unknown
  size_t need_ = 0;      // v2: the header's full size, once its length is read
  std::string buf_;      // the header's octets so far
  Status status_ = Status::need_more;
  size_t used_ = 0;
  ProxyInfo info_;
  std::string error_;
};

}  // namespace ringmx
