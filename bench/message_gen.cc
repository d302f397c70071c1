// Message generator: a small xorshift PRNG, so output never depends on the
// standard library's distributions.
#include "bench/message_gen.h"

#include <algorithm>

namespace ringmx::bench {

namespace {

struct Rng {
  uint64_t s;
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  size_t below(size_t n) { return static_cast<size_t>(next() % n); }
};

constexpr char kWords[] =
    "the quick brown fox jumps over lazy dog mail server queue relay message "
    "delivery status header body line report invoice meeting agenda ";

}  // namespace

std::string make_message(uint64_t seed, size_t size) {
  Rng rng{seed * 0x9E3779B97F4A7C15ull + 1};
  std::string m;
  m.reserve(size + 128);
  m += "Received: from relay.example.net (relay.example.net [192.0.2.10])\r\n";
  m += "\tby mx.example.org with ESMTP id " + std::to_string(rng.next() % 1000000) + "\r\n";
  m += "From: Sender <sender@example.net>\r\n";
  m += "To: Recipient <rcpt@example.org>\r\n";
  m += "Subject: generated message " + std::to_string(seed) + "\r\n";
  m += "Message-ID: <" + std::to_string(rng.next()) + "@example.net>\r\n";
  m += "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n";
  const size_t words_len = sizeof(kWords) - 1;
  // Fill with lines up to exactly `size` (never leaving a 1-octet gap).
  while (m.size() + 2 <= size) {
    const size_t room = size - m.size() - 2;
    // Line lengths: mostly 60-78 (wrapped text), some short, some long; 2% lead with a dot.
    const size_t r = rng.below(100);
    size_t len = r < 70 ? 60 + rng.below(19) : r < 90 ? rng.below(20) : 78 + rng.below(300);
    len = std::min(len, room);
    if (room - len == 1) ++len;
    if (len > 0 && rng.below(50) == 0) {
      m.push_back('.');
      --len;
    }
    while (len > 0) {
      const size_t off = rng.below(words_len);
      const size_t n = std::min(len, words_len - off);
      m.append(kWords + off, n);
      len -= n;
    }
    m += "\r\n";
  }
  return m;
}

std::string dot_stuff(const std::string& message) {
  std::string out;
  out.reserve(message.size() + message.size() / 64);
  bool line_start = true;
  for (size_t i = 0; i < message.size(); ++i) {
    char c = message[i];
    if (line_start && c == '.') out.push_back('.');
    out.push_back(c);
    line_start = c == '\n' && i > 0 && message[i - 1] == '\r';
  }
  return out;
}

}  // namespace ringmx::bench
