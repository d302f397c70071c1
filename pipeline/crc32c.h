// CRC32C (Castagnoli: reflected polynomial 0x82F63B78, initial value and final
// xor 0xFFFFFFFF), the checksum that ends every version-2 spool record
// (docs/spool.md). crc32c("123456789") == 0xE3069283.
//
// Contract: pure functions, no allocation, any length and alignment. The
// value passed in and returned is always a finished CRC, so a record can be
// summed piece by piece (envelope, Received header, body):
//   crc32c_extend(crc32c_extend(0, a, na), b, nb) == CRC of a followed by b.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ringmx {

// CRC32C of `n` octets at `data` appended to bytes whose CRC32C was `crc`
// (0 for nothing). Uses the SSE4.2 crc32 instruction when the CPU has it
// (checked once, at the first call), the table otherwise.
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n);

inline uint32_t crc32c(std::string_view data) {
  return crc32c_extend(0, data.data(), data.size());
}

// The CRC32C of A followed by B, from crc32c(A), crc32c(B) and B's length:
// a record whose first bytes are only known at its end (a body streamed to
// disk ahead of its envelope's size field) is summed without reading back.
// O(log len_b) multiplications in GF(2)[x] modulo the polynomial.
uint32_t crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

// The two implementations, exposed for the tests and the benchmark.
uint32_t crc32c_extend_table(uint32_t crc, const void* data, size_t n);
// Only when crc32c_hardware_available(); falls back to the table elsewhere.
uint32_t crc32c_extend_hardware(uint32_t crc, const void* data, size_t n);
bool crc32c_hardware_available();

}  // namespace ringmx
