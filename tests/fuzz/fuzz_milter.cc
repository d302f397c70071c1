// libFuzzer target for core/milter_codec and core/milter_steps: any bytes
// from a milter, in any split. The first octet picks the piece size and the
// limits; the rest is the stream. Whole and in pieces must give the same
// responses; no response field is over its limit; the decoder never holds
// more than one packet (4 + max_packet octets); the reply tracker takes every
// response without crashing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "core/milter_codec.h"
#include "core/milter_steps.h"

namespace {

using namespace ringmx::milter;  // NOLINT(google-build-using-namespace)

void check(bool cond) {
  if (!cond) std::abort();
}

void check_bounds(const Response& r, const DecoderLimits& l) {
  if (const auto* h = std::get_if<AddHeader>(&r)) {
    check(!h->name.empty() && h->name.size() <= l.max_header_name);
    check(h->value.size() <= l.max_header_value);
  } else if (const auto* i = std::get_if<InsertHeader>(&r)) {
    check(!i->name.empty() && i->name.size() <= l.max_header_name);
    check(i->value.size() <= l.max_header_value);
  } else if (const auto* c = std::get_if<ChangeHeader>(&r)) {
    check(!c->name.empty() && c->name.size() <= l.max_header_name);
    check(c->value.size() <= l.max_header_value);
  } else if (const auto* b = std::get_if<ReplaceBody>(&r)) {
    check(b->chunk.size() < l.max_packet);
  } else if (const auto* y = std::get_if<ReplyCode>(&r)) {
    check(y->code >= 400 && y->code <= 599 && y->text.size() < l.max_packet);
    check(y->text.find('\0') == std::string::npos);
  } else if (const auto* e = std::get_if<MilterProtocolError>(&r)) {
    check(!e->message.empty());
  } else if (const auto* a = std::get_if<AddRecipient>(&r)) {
    check(!a->rcpt.empty() && a->rcpt.size() < l.max_packet);
  }
}

std::vector<std::string> run(std::string_view in, size_t piece, const DecoderLimits& limits) {
  MilterDecoder d(limits);
  std::vector<std::string> out;
  size_t errors = 0;
  for (size_t at = 0; at < in.size(); at += piece) {
    d.feed(in.substr(at, piece));
    check(d.buffered() <= limits.max_packet + 4);
    while (auto r = d.next()) {
      check_bounds(*r, limits);
      if (is_error(*r)) ++errors;
      // A summary that differs when any field differs.
      std::string s(1, static_cast<char>(reply_of(*r)));
      std::visit(
          [&s](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, ReplyCode>) s += v.text + "|" + v.enhanced;
            if constexpr (std::is_same_v<T, ReplaceBody>) s += v.chunk;
            if constexpr (std::is_same_v<T, AddHeader>) s += v.name + '\0' + v.value;
            if constexpr (std::is_same_v<T, ChangeFrom>) s += v.from + '\0' + v.args;
            if constexpr (std::is_same_v<T, MilterProtocolError>) s += v.message;
          },
          *r);
      out.push_back(std::move(s));
    }
  }
  check(errors <= 1);
  check(errors == 0 || (d.failed() && out.back().size() > 1));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  DecoderLimits limits;
  limits.max_packet = 8 + size_t{data[0] & 0x3u} * 100;
  limits.max_header_name = 4 + (data[0] >> 2 & 0x3u) * 8;
  limits.max_header_value = 16 + (data[0] >> 4 & 0x3u) * 16;
  const size_t piece = 1 + (data[0] >> 6) * 3;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  const auto whole = run(in, in.size() + 1, limits);
  check(run(in, piece, limits) == whole);

  // The same responses through the reply tracker, as if each followed EOB.
  MilterDecoder d(limits);
  d.feed(in);
  Negotiated terms;
  terms.version = kProtocolVersion;
  terms.actions = action::kAll;
  terms.protocol = proto::kSkip;
  MilterReplyTracker t(terms, TrackerLimits{4});
  bool eob = (data[0] & 1) != 0;
  while (auto r = d.next()) {
    if (!t.reply_due()) t.sent(eob ? Command::eob : Command::body);
    const auto outcome = t.on_response(*r);
    check(outcome != MilterReplyTracker::Outcome::error || !t.error().empty());
    check(t.modifications() <= 4);
    eob = !eob;
  }
  return 0;
}
