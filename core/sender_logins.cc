#include "core/sender_logins.h"

#include <algorithm>

#include "core/text_lines.h"

namespace ringmx {

namespace {

// A line is at most this long (a login with many addresses fits easily).
constexpr size_t kMaxLine = 8192;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool has_space_or_control(std::string_view s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; });
}

}  // namespace

std::shared_ptr<const SenderLogins> SenderLogins::parse(std::string_view text,
                                                        std::string_view file, std::string& error) {
  auto table = std::make_shared<SenderLogins>();
  TextLines lines(text);
  auto fail = [&](std::string_view what) {
    error = lines.error(file, what);
    return nullptr;
  };
  std::string_view line;
  while (lines.next(line)) {
    if (lines.raw_size() > kMaxLine) return fail("line longer than 8192 octets");
    const size_t hash = line.find('#');
    if (hash != std::string_view::npos) line = TextLines::trim(line.substr(0, hash));
    if (line.empty()) continue;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) return fail("expected \"login: senders\"");
    const std::string_view login = TextLines::trim(line.substr(0, colon));
    if (login.empty() || has_space_or_control(login)) return fail("bad login");
    Owned& owned = table->map_[lower(login)];
    std::string_view rest = line.substr(colon + 1);
    size_t entries = 0;
    while (!rest.empty()) {
      const size_t comma = rest.find(',');
      const std::string_view item = TextLines::trim(rest.substr(0, comma));
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      if (item.empty()) continue;
      if (has_space_or_control(item)) return fail("bad sender \"" + std::string(item) + "\"");
      ++entries;
      if (item == "*") {
        owned.any = true;
      } else if (item.front() == '@') {
        if (item.size() == 1) return fail("\"@\" needs a domain");
        owned.domains.push_back(lower(item.substr(1)));
      } else if (item.find('@') != std::string_view::npos) {
        owned.addresses.push_back(lower(item));
      } else {
        return fail("\"" + std::string(item) + "\" is not an address, @domain or *");
      }
    }
    if (entries == 0) return fail("no senders for the login");
  }
  return table;
}

bool SenderLogins::allows(const SenderLogins* table, std::string_view login,
                          std::string_view sender) {
  if (sender.empty()) return true;  // the null sender
  const std::string s = lower(sender);
  const std::string l = lower(login);
  if (table != nullptr) {
    const auto it = table->map_.find(l);
    if (it != table->map_.end()) {
      const Owned& o = it->second;
      if (o.any) return true;
      if (std::find(o.addresses.begin(), o.addresses.end(), s) != o.addresses.end()) return true;
      const size_t at = s.rfind('@');
      if (at != std::string::npos) {
        const std::string_view domain = std::string_view(s).substr(at + 1);
        if (std::find(o.domains.begin(), o.domains.end(), domain) != o.domains.end()) return true;
      }
      return false;
    }
  }
  return s == l;
}

}  // namespace ringmx
