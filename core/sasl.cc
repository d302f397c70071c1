// SASL PLAIN and LOGIN on the server side, and base64.
#include "core/sasl.h"

#include <string.h>  // explicit_bzero

#include <array>
#include <cstring>

#include "core/command.h"  // starts_with_nocase

namespace ringmx::sasl {

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// The value of each base64 character; kInvalid for anything else.
constexpr uint8_t kInvalid = 64;
constexpr std::array<uint8_t, 256> make_values() {
  std::array<uint8_t, 256> v{};
  for (auto& x : v) x = kInvalid;
  for (uint8_t i = 0; i < 64; ++i) v[static_cast<unsigned char>(kAlphabet[i])] = i;
  return v;
}
constexpr std::array<uint8_t, 256> kValues = make_values();

// The LOGIN mechanism's prompts, base64: "Username:" and "Password:".
constexpr std::string_view kUserPrompt = "VXNlcm5hbWU6";
constexpr std::string_view kPasswordPrompt = "UGFzc3dvcmQ6";

using Step = ServerExchange::Step;

Step challenge(std::string_view c) {
  return Step{Step::Kind::challenge, c, 0, {}, {}};
}
Step error(uint16_t code, std::string_view enhanced, std::string_view text) {
  return Step{Step::Kind::error, {}, code, enhanced, text};
}
Step done() {
  return Step{Step::Kind::done, {}, 0, {}, {}};
}

void wipe_string(std::string& s) {
  if (!s.empty()) explicit_bzero(s.data(), s.size());
  s.clear();
}

}  // namespace

std::optional<Mechanism> parse_mechanism(std::string_view name) {
  if (name.size() == 5 && starts_with_nocase(name, "PLAIN")) return Mechanism::plain;
  if (name.size() == 5 && starts_with_nocase(name, "LOGIN")) return Mechanism::login;
  return std::nullopt;
}

std::string_view mechanism_name(Mechanism m) {
  return m == Mechanism::plain ? "PLAIN" : "LOGIN";
}

bool base64_decode(std::string_view in, std::string& out) {
  out.clear();
  if (in.size() % 4 != 0) return false;
  out.reserve(in.size() / 4 * 3);
  for (size_t i = 0; i < in.size(); i += 4) {
    const bool last = i + 4 == in.size();
    uint32_t v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = in[i + static_cast<size_t>(k)];
      if (c == '=' && last && k >= 2) {
        v[k] = 0;
        ++pad;
        continue;
      }
      if (pad != 0) return false;  // data after padding
      v[k] = kValues[static_cast<unsigned char>(c)];
      if (v[k] == kInvalid) return false;
    }
    const uint32_t n = v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3];
    // Bits the padding leaves over must be zero (RFC 4648 3.5: one encoding only).
    if (pad == 2 && (n & 0xffff) != 0) return false;
    if (pad == 1 && (n & 0xff) != 0) return false;
    out.push_back(static_cast<char>(n >> 16));
    if (pad < 2) out.push_back(static_cast<char>((n >> 8) & 0xff));
    if (pad < 1) out.push_back(static_cast<char>(n & 0xff));
  }
  return true;
}

void base64_encode(std::string_view in, std::string& out) {
  out.clear();
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t n = static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << 16 |
                       static_cast<uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8 |
                       static_cast<unsigned char>(in[i + 2]);
    out.push_back(kAlphabet[n >> 18]);
    out.push_back(kAlphabet[(n >> 12) & 63]);
    out.push_back(kAlphabet[(n >> 6) & 63]);
    out.push_back(kAlphabet[n & 63]);
  }
  const size_t rest = in.size() - i;
  if (rest == 0) return;
  uint32_t n = static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << 16;
  if (rest == 2) n |= static_cast<uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
  out.push_back(kAlphabet[n >> 18]);
  out.push_back(kAlphabet[(n >> 12) & 63]);
  out.push_back(rest == 2 ? kAlphabet[(n >> 6) & 63] : '=');
  out.push_back('=');
}

void Credentials::wipe() {
  wipe_string(authzid);
  wipe_string(user);
  wipe_string(password);
}

void ServerExchange::wipe() {
  wipe_string(decoded_);
  creds_.wipe();
}

Step ServerExchange::start(Mechanism m, std::optional<std::string_view> initial_response) {
  wipe();
  mech_ = m;
  want_ = m == Mechanism::plain ? Want::plain : Want::login_user;
  if (!initial_response) return challenge(m == Mechanism::plain ? "" : kUserPrompt);
  // RFC 4954 4: "=" is an initial response of zero length.
  return take(*initial_response == "=" ? std::string_view() : *initial_response);
}

Step ServerExchange::respond(std::string_view line) {
  if (line == "*") {  // RFC 4954 4: the client cancels
    wipe();
    return error(501, "5.0.0", "Authentication aborted");
  }
  return take(line);
}

Step ServerExchange::take(std::string_view b64) {
  if (!base64_decode(b64, decoded_)) {
    wipe();
    return error(501, "5.5.2", "Error: the response is not valid base64");
  }
  switch (want_) {
    case Want::plain: return decode_plain();
    case Want::login_user:
      if (decoded_.empty() || decoded_.size() > kMaxCredential ||
          decoded_.find('\0') != std::string::npos) {
        wipe();
        return error(501, "5.5.2", "Error: invalid user name");
      }
      creds_.user.swap(decoded_);
      wipe_string(decoded_);
      want_ = Want::login_password;
      return challenge(kPasswordPrompt);
    case Want::login_password:
      if (decoded_.empty() || decoded_.size() > kMaxCredential ||
          decoded_.find('\0') != std::string::npos) {
        wipe();
        return error(501, "5.5.2", "Error: invalid password");
      }
      creds_.password.swap(decoded_);
      wipe_string(decoded_);
      return done();
  }
  return error(501, "5.5.2", "Error: invalid response");
}

// RFC 4616 2: message = [authzid] NUL authcid NUL passwd, the last two not empty.
Step ServerExchange::decode_plain() {
  const std::string_view d = decoded_;
  const size_t a = d.find('\0');
  const size_t b = a == std::string_view::npos ? a : d.find('\0', a + 1);
  if (b == std::string_view::npos || d.find('\0', b + 1) != std::string_view::npos) {
    wipe();
    return error(501, "5.5.2", "Error: malformed PLAIN response");
  }
  const std::string_view authzid = d.substr(0, a);
  const std::string_view user = d.substr(a + 1, b - a - 1);
  const std::string_view password = d.substr(b + 1);
  if (user.empty() || password.empty()) {
    wipe();
    return error(501, "5.5.2", "Error: malformed PLAIN response");
  }
  if (authzid.size() > kMaxCredential || user.size() > kMaxCredential ||
      password.size() > kMaxCredential) {
    wipe();
    return error(501, "5.5.2", "Error: user name or password too long");
  }
  creds_.authzid.assign(authzid);
  creds_.user.assign(user);
  creds_.password.assign(password);
  wipe_string(decoded_);
  return done();
}

}  // namespace ringmx::sasl
