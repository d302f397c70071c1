// CRC32C, two ways: the SSE4.2 crc32 instruction (8 octets per instruction,
// one dependency chain; bench/micro/crc32c_bench.cc measured 10 GB/s on 1 MiB
// and 16 GB/s on 1 KiB in cache: small next to the copy of the body that every
// message already costs), and a slicing-by-8 table for CPUs without it (about
// 2 GB/s). The instruction is compiled with a target attribute, so the rest
// of the build keeps the baseline x86-64 ISA, and chosen at run time. A
// three-stream interleave would go faster still; not needed while the disk
// is the bound.
#include "pipeline/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace ringmx {

namespace {

constexpr uint32_t kPoly = 0x82F63B78;  // reflected Castagnoli polynomial

// kTable[0] is the classic byte-at-a-time table; kTable[k][b] is the CRC
// state after byte b followed by k zero bytes, so eight bytes are folded with
// eight independent lookups.
constexpr std::array<std::array<uint32_t, 256>, 8> make_tables() {
  std::array<std::array<uint32_t, 256>, 8> t{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t c = b;
    for (int i = 0; i < 8; ++i) c = (c >> 1) ^ ((c & 1) != 0 ? kPoly : 0);
    t[0][b] = c;
  }
  for (size_t k = 1; k < 8; ++k) {
    for (size_t b = 0; b < 256; ++b) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xFF];
  }
  return t;
}

constexpr auto kTable = make_tables();

uint64_t load_le64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t extend_sse42(uint32_t crc, const unsigned char* p,
                                                        size_t n) {
  uint64_t c = ~crc;
  for (; n >= 8; n -= 8, p += 8) c = _mm_crc32_u64(c, load_le64(p));
  auto c32 = static_cast<uint32_t>(c);
  for (; n > 0; --n, ++p) c32 = _mm_crc32_u8(c32, *p);
  return ~c32;
}

uint32_t extend_sse42_entry(uint32_t crc, const void* data, size_t n) {
  return extend_sse42(crc, static_cast<const unsigned char*>(data), n);
}
#endif

using ExtendFn = uint32_t (*)(uint32_t, const void*, size_t);

ExtendFn pick() {
#if defined(__x86_64__)
  if (crc32c_hardware_available()) return extend_sse42_entry;
#endif
  return crc32c_extend_table;
}

}  // namespace

uint32_t crc32c_extend_table(uint32_t crc, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = ~crc;
  for (; n >= 8; n -= 8, p += 8) {
    const uint64_t v = load_le64(p) ^ c;
    c = kTable[7][v & 0xFF] ^ kTable[6][(v >> 8) & 0xFF] ^ kTable[5][(v >> 16) & 0xFF] ^
        kTable[4][(v >> 24) & 0xFF] ^ kTable[3][(v >> 32) & 0xFF] ^ kTable[2][(v >> 40) & 0xFF] ^
        kTable[1][(v >> 48) & 0xFF] ^ kTable[0][v >> 56];
  }
  for (; n > 0; --n, ++p) c = (c >> 8) ^ kTable[0][(c ^ *p) & 0xFF];
  return ~c;
}

uint32_t crc32c_extend_hardware(uint32_t crc, const void* data, size_t n) {
#if defined(__x86_64__)
  if (crc32c_hardware_available()) return extend_sse42_entry(crc, data, n);
#endif
  return crc32c_extend_table(crc, data, n);
}

bool crc32c_hardware_available() {
#if defined(__x86_64__)
  static const bool kAvailable = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") != 0;
  }();
  return kAvailable;
#else
  return false;
#endif
}

namespace {

// Polynomials modulo P in the reflected bit order the CRC uses: bit 31 is x^0.
constexpr uint32_t kXPow0 = 0x80000000u;

// a(x) * b(x) mod P.
uint32_t mul_mod_p(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (uint32_t m = kXPow0; m != 0; m >>= 1) {
    if ((a & m) != 0) product ^= b;
    b = (b & 1) != 0 ? (b >> 1) ^ kPoly : b >> 1;  // b *= x
  }
  return product;
}

// x^(8 * n) mod P: n zero octets appended shift a CRC by this factor.
uint32_t x_pow_8n_mod_p(uint64_t n) {
  uint32_t square = kXPow0 >> 8;  // x^8: below x^32, a power of x is one bit
  uint32_t result = kXPow0;
  for (; n != 0; n >>= 1) {
    if ((n & 1) != 0) result = mul_mod_p(result, square);
    square = mul_mod_p(square, square);
  }
  return result;
}

}  // namespace

// The pre- and post-conditioning (0xFFFFFFFF in, 0xFFFFFFFF out) cancel:
// crc(A || B) = crc(A) * x^(8 |B|) + crc(B) over GF(2).
uint32_t crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b) {
  return mul_mod_p(crc_a, x_pow_8n_mod_p(len_b)) ^ crc_b;
}

uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n) {
  static const ExtendFn kImpl = pick();
  return kImpl(crc, data, n);
}

}  // namespace ringmx
