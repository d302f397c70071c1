// DATA body decoding: a small state machine for line starts, CR and dots, and
// a SIMD scan that skips the middle of lines 16 octets at a time. Octets are
// copied to the message buffer in runs, so a normal body is a few memcpy calls.
#include "core/data_decoder.h"

#include <algorithm>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace ringmx {

void LineMeter::feed(std::string_view piece) {
  const char* p = piece.data();
  const char* const end = p + piece.size();
  while (p < end) {
    const auto* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
    if (nl == nullptr) {
      current += static_cast<uint64_t>(end - p);
      cr = end[-1] == '\r';
      return;
    }
    uint64_t len = current + static_cast<uint64_t>(nl - p);
    const bool before_cr = nl > p ? nl[-1] == '\r' : cr;
    if (before_cr && len > 0) --len;  // the CR of CRLF is not part of the line
    if (len > longest) longest = len;
    current = 0;
    cr = false;
    p = nl + 1;
  }
}

size_t scan_body_event(const char* p, size_t from, size_t n) {
  size_t limit = n >= 2 ? n - 2 : 0;
  size_t j = from;
#if defined(__SSE2__)
  const __m128i cr = _mm_set1_epi8('\r');
  const __m128i lf = _mm_set1_epi8('\n');
  const __m128i dot = _mm_set1_epi8('.');
  // Position j looks at p[j-1] .. p[j+17]; stay inside [0, n).
  while (j + 16 <= limit) {
    const __m128i prev = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + j - 1));
    const __m128i cur = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + j));
    const __m128i next = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + j + 1));
    const __m128i next2 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + j + 2));
    const __m128i is_cr = _mm_cmpeq_epi8(cur, cr);
    const __m128i is_lf = _mm_cmpeq_epi8(cur, lf);
    const __m128i next_lf = _mm_cmpeq_epi8(next, lf);
    const __m128i prev_cr = _mm_cmpeq_epi8(prev, cr);
    const __m128i next2_dot = _mm_cmpeq_epi8(next2, dot);
    // bare CR | bare LF | CR LF "."
    const __m128i bare_cr = _mm_andnot_si128(next_lf, is_cr);
    const __m128i bare_lf = _mm_andnot_si128(prev_cr, is_lf);
    const __m128i crlf_dot = _mm_and_si128(_mm_and_si128(is_cr, next_lf), next2_dot);
    const int mask = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(bare_cr, bare_lf), crlf_dot));
    if (mask != 0) return j + static_cast<size_t>(__builtin_ctz(static_cast<unsigned>(mask)));
    j += 16;
  }
#endif
  for (; j < limit; ++j) {
    char c = p[j];
    if (c == '\r') {
      if (p[j + 1] != '\n' || p[j + 2] == '.') return j;
    } else if (c == '\n') {
      if (p[j - 1] != '\r') return j;
    }
  }
  // Never stop between the CR and LF of a pair already checked: the caller
  // resumes in the middle-of-line state, where that LF would look bare.
  if (limit > from && p[limit - 1] == '\r') return limit - 1;
  return std::max(from, limit);
}

void DataDecoder::reset(BareLinePolicy policy, uint64_t max_stored) {
  state_ = State::line_start;
  policy_ = policy;
  bare_cr_ = bare_lf_ = overflow_ = dropping_ = false;
  max_stored_ = max_stored;
  total_ = 0;
}

void DataDecoder::emit(ByteBuffer& out, const char* p, size_t n) {
  // The limit counts every octet of the body, stored here or handed on
  // (a spilled body's pieces leave `out` as they are decoded).
  const uint64_t before = total_;
  total_ += n;
  if (overflow_ || dropping_) return;
  if (total_ > max_stored_) {
    out.append(p, static_cast<size_t>(max_stored_ - before));
    overflow_ = true;
    return;
  }
  out.append(p, n);
}

DataDecoder::Result DataDecoder::decode(std::string_view in, ByteBuffer& out) {
  const char* p = in.data();
  const size_t n = in.size();
  const bool normalise = policy_ == BareLinePolicy::normalise;
  size_t i = 0;
  size_t run = 0;  // start of the octets to copy verbatim, up to i
  auto flush = [&](size_t end) {
    if (end > run) emit(out, p + run, end - run);
    run = end;
  };
  while (i < n) {
    if (state_ == State::mid && i >= 1) {
      i = scan_body_event(p, i, n);
      if (i >= n) break;
    }
    const char c = p[i];
    switch (state_) {
      case State::line_start:
        if (c == '.') {  // stuffed dot or the end line: never part of the body
          flush(i);
          run = ++i;
          state_ = State::dot;
          continue;
        }
        [[fallthrough]];
      case State::mid:
        if (c == '\r') {
          state_ = State::cr;  // CR is stored in every case; its LF decides the state
        } else if (c == '\n') {
          bare_lf_ = true;
          if (normalise) {
            flush(i);
            emit(out, "\r", 1);
          }
          state_ = State::mid;
        } else {
          state_ = State::mid;
        }
        ++i;
        continue;
      case State::cr:
        if (c == '\n') {
          state_ = State::line_start;
          ++i;
          continue;
        }
        bare_cr_ = true;
        if (normalise) {
          flush(i);
          emit(out, "\n", 1);
        }
        state_ = State::mid;  // look at c again as an ordinary octet
        continue;
      case State::dot:
        if (c == '\r') {  // hold the CR: it belongs to the end line if LF follows
          run = ++i;
          state_ = State::dot_cr;
          continue;
        }
        state_ = State::mid;  // ".x": the dot was stuffing, already dropped
        continue;
      case State::dot_cr:
        if (c == '\n') {
          state_ = State::line_start;
          return {i + 1, true};
        }
        // ".<CR>x": the dot was stuffing, the CR a bare one.
        bare_cr_ = true;
        emit(out, normalise ? "\r\n" : "\r", normalise ? 2 : 1);
        run = i;
        state_ = State::mid;
        continue;
    }
  }
  flush(n);
  return {n, false};
}

}  // namespace ringmx
