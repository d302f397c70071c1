// DATA body receiver (RFC 5321 4.1.1.4, 4.5.2): removes dot-stuffing and finds
// the end-of-data line CRLF "." CRLF across any split of the input, copying
// each body byte once into the message buffer.
//
// Only CRLF "." CRLF ends the body. A bare CR or bare LF never starts or ends
// a line for that purpose, so <LF>.<LF>, <CR>.<CR>, <LF>.<CR><LF> and
// <CR><LF>.<LF> are body content (SMTP smuggling). Whether a message holding
// bare line endings is refused or normalised is the caller's policy; the
// decoder records that it saw them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/byte_buffer.h"
#include "core/session_config.h"

namespace ringmx {

class DataDecoder {
 public:
  struct Result {
    size_t consumed;  // input octets used; less than the input only when done
    bool done;        // the end-of-data line was consumed
  };

  // Starts a new body. Octets beyond `max_stored` are counted but not stored.
  void reset(BareLinePolicy policy, uint64_t max_stored);

  Result decode(std::string_view in, ByteBuffer& out);

  bool saw_bare_cr() const { return bare_cr_; }
  bool saw_bare_lf() const { return bare_lf_; }
  // True when the body was larger than max_stored (the stored copy is cut).
  bool overflow() const { return overflow_; }
  // Stores nothing more of this body (it is still decoded to its end).
  void drop_rest() { dropping_ = true; }
  // Body octets after unstuffing, stored or not.
  uint64_t body_size() const { return total_; }

 private:
  enum class State : uint8_t { line_start, mid, cr, dot, dot_cr };
  void emit(ByteBuffer& out, const char* p, size_t n);
  State state_ = State::line_start;
  BareLinePolicy policy_ = BareLinePolicy::reject;
  bool bare_cr_ = false;
  bool bare_lf_ = false;
  bool overflow_ = false;
  bool dropping_ = false;
  uint64_t max_stored_ = 0;
  uint64_t total_ = 0;
};

// The line lengths of a message as it is stored, fed in pieces: `longest` is
// the longest line that ended, without its CRLF (or bare LF); `current` the
// octets of the line not ended yet. max() is the longest of either.
struct LineMeter {
  uint64_t current = 0;
  uint64_t longest = 0;
  bool cr = false;  // the last octet fed was a CR
  void feed(std::string_view piece);
  uint64_t max() const { return longest > current ? longest : current; }
};

// Returns the offset of the first position in [from, n-2) where a DATA body
// needs attention in the middle of a line: a CR not followed by LF, an LF not
// preceded by CR, or CR LF ".". Needs from >= 1 (it looks one octet back).
// When there is none it returns a position near the end (never between a CR
// and its LF) from which the caller goes on octet by octet. Exposed for tests.
size_t scan_body_event(const char* p, size_t from, size_t n);

}  // namespace ringmx
