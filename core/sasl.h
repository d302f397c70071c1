// SMTP AUTH (RFC 4954) on the server side, as pure logic: base64 (RFC 4648
// 4), the mechanism names, and the exchange of the two mechanisms ringmx
// offers, PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login), both of
// which carry a user name and a password that the session decodes here and
// hands to a backend to verify. The session (core/session.cc) feeds it the
// AUTH command's arguments and then each response line; it answers with the
// next challenge, the credentials, or the reply that ends the exchange.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ringmx::sasl {

enum class Mechanism : uint8_t { plain, login };

// Case-insensitive; nullopt for a mechanism not offered.
std::optional<Mechanism> parse_mechanism(std::string_view name);
std::string_view mechanism_name(Mechanism m);  // "PLAIN", "LOGIN"

// Strict RFC 4648 4 base64: padding required, no white space, no bits left
// over in the last character. False (and `out` unspecified) when invalid.
bool base64_decode(std::string_view in, std::string& out);
void base64_encode(std::string_view in, std::string& out);

// RFC 4616 requires servers to take at least 255 octets for each of the
// user name and the password; more than this many of either is refused.
inline constexpr size_t kMaxCredential = 1024;

struct Credentials {
  std::string authzid;  // the identity to act as; empty: the user's own
  std::string user;
  std::string password;
  // Overwrites the secrets before they are freed or reused.
  void wipe();
};

// One exchange, from the AUTH command to its credentials. A new AUTH starts
// it again (start()); the credentials are wiped by wipe() and by the next start().
class ServerExchange {
 public:
  struct Step {
    enum class Kind : uint8_t {
      challenge,  // send "334 <challenge>" and read one response line
      done,       // credentials() are complete: ask the backend
      error,      // send the reply; the exchange is over
    };
    Kind kind = Kind::error;
    std::string_view challenge;  // base64, possibly empty (kind == challenge)
    uint16_t code = 0;           // kind == error
    std::string_view enhanced;
    std::string_view text;
  };

  ServerExchange() = default;
  ServerExchange(const ServerExchange&) = delete;
  ServerExchange& operator=(const ServerExchange&) = delete;
  ~ServerExchange() { wipe(); }

  // The AUTH command: its mechanism and, when given, the initial response
  // ("=" stands for an empty one, RFC 4954 4).
  Step start(Mechanism m, std::optional<std::string_view> initial_response);
  // A response line (without CRLF) to the last challenge.
  Step respond(std::string_view line);

  Mechanism mechanism() const { return mech_; }
  const Credentials& credentials() const { return creds_; }
  void wipe();

 private:
  enum class Want : uint8_t { plain, login_user, login_password };
  Step take(std::string_view b64);
  Step decode_plain();

  Mechanism mech_ = Mechanism::plain;
  Want want_ = Want::plain;
  std::string decoded_;
  Credentials creds_;
};

}  // namespace ringmx::sasl
