// libFuzzer target for core/address: parse_path in every mode, with its invariants checked.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/address.h"

namespace {

using ringmx::AddrError;
using ringmx::parse_path;
using ringmx::PathKind;
using ringmx::PathResult;

void check(bool cond) {
  if (!cond) std::abort();
}

bool within(std::string_view part, std::string_view whole) {
  if (part.empty()) return true;
  return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

bool same(const PathResult& a, const PathResult& b) {
  return a.error == b.error && a.consumed == b.consumed && a.error_pos == b.error_pos &&
         a.path.mailbox.data() == b.path.mailbox.data() &&
         a.path.mailbox.size() == b.path.mailbox.size() &&
         a.path.local.size() == b.path.local.size() &&
         a.path.domain.size() == b.path.domain.size() && a.path.is_null == b.path.is_null &&
         a.path.is_postmaster == b.path.is_postmaster &&
         a.path.domain_is_literal == b.path.domain_is_literal && a.path.has_utf8 == b.path.has_utf8;
}

PathResult check_one(std::string_view in, PathKind kind, bool allow_utf8) {
  const PathResult r = parse_path(in, kind, allow_utf8);
  check(r.consumed <= in.size());
  check(!ringmx::describe(r.error).empty());
  if (!r.ok()) {
    check(r.consumed == 0);
    check(r.error_pos <= in.size());
    return r;
  }
  const std::string_view path = in.substr(0, r.consumed);
  check(r.consumed >= 2 && path.front() == '<' && path.back() == '>');
  check(r.consumed <= 256);
  check(within(r.path.mailbox, path) && within(r.path.local, path) && within(r.path.domain, path));
  check(r.path.local.size() <= 64);
  check(r.path.domain.size() <= 255);
  if (!allow_utf8) check(!r.path.has_utf8);
  if (allow_utf8) check(ringmx::is_valid_utf8(r.path.mailbox));
  if (r.path.is_null) {
    check(kind == PathKind::reverse && r.consumed == 2 && r.path.mailbox.empty());
  } else if (r.path.is_postmaster) {
    check(kind == PathKind::forward && r.path.domain.empty());
    check(r.path.mailbox.size() == 10 && r.path.mailbox.data() == r.path.local.data());
  } else {
    // mailbox = local "@" domain, contiguous, and the domain passes the HELO check.
    check(!r.path.local.empty() && !r.path.domain.empty());
    check(r.path.mailbox.data() == r.path.local.data());
    check(r.path.local.size() + 1 + r.path.domain.size() == r.path.mailbox.size());
    check(r.path.mailbox[r.path.local.size()] == '@');
    check(r.path.domain.data() == r.path.mailbox.data() + r.path.local.size() + 1);
    check(r.path.domain_is_literal == (r.path.domain.front() == '['));
    check(ringmx::is_valid_domain(r.path.domain, allow_utf8));
  }
  // Nothing past '>' is looked at: the cut input gives the same answer.
  check(same(parse_path(path, kind, allow_utf8), r));
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const PathResult rev_ascii = check_one(in, PathKind::reverse, false);
  const PathResult rev_utf8 = check_one(in, PathKind::reverse, true);
  const PathResult fwd_ascii = check_one(in, PathKind::forward, false);
  const PathResult fwd_utf8 = check_one(in, PathKind::forward, true);

  // Allowing UTF-8 only widens the language.
  if (rev_ascii.ok()) check(same(rev_ascii, rev_utf8));
  if (fwd_ascii.ok()) check(same(fwd_ascii, fwd_utf8));
  // The kinds differ only on "<>" and "<postmaster>".
  if (rev_utf8.ok() && !rev_utf8.path.is_null) check(same(rev_utf8, fwd_utf8));
  if (fwd_utf8.ok() && !fwd_utf8.path.is_postmaster) check(same(rev_utf8, fwd_utf8));
  if (rev_ascii.error == AddrError::none || fwd_ascii.error == AddrError::none) {
    check(ringmx::is_valid_utf8(
        in.substr(0, rev_ascii.ok() ? rev_ascii.consumed : fwd_ascii.consumed)));
  }

  const bool dom_ascii = ringmx::is_valid_domain(in, false);
  const bool dom_utf8 = ringmx::is_valid_domain(in, true);
  if (dom_ascii) check(dom_utf8);
  if (dom_utf8) check(in.size() <= 255 && ringmx::is_valid_utf8(in));
  (void)ringmx::is_valid_utf8(in);
  return 0;
}
