// Who may send as whom once authenticated ([auth] sender_logins_file): the
// idea of Postfix's smtpd_sender_login_maps, written from the login's side.
// One line per login:
//   alice@example.org: alice@example.org, alice.smith@example.org, @lists.example.org
//   relay-app: *
// An address matches itself (case-insensitively); "@domain" any address at
// that domain; "*" any sender. '#' starts a comment; blank lines are
// ignored. A login the file does not name, or no file at all, may send only
// as its login itself. The null sender (bounces, auto-replies) is always
// allowed.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ringmx {

class SenderLogins {
 public:
  // Parses `text` (`file` names it in errors); null and `error` ("file:line:
  // what") on a bad line.
  static std::shared_ptr<const SenderLogins> parse(std::string_view text, std::string_view file,
                                                   std::string& error);

  // Whether `login` may use `sender` in MAIL FROM. `table` may be null (no file).
  static bool allows(const SenderLogins* table, std::string_view login, std::string_view sender);

  size_t logins() const { return map_.size(); }

 private:
  struct Owned {
    bool any = false;
    std::vector<std::string> addresses;  // lower-cased
    std::vector<std::string> domains;    // lower-cased, without '@'
  };
  std::unordered_map<std::string, Owned> map_;  // by lower-cased login
};

}  // namespace ringmx
