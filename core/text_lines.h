// Walking a small configuration file line by line (users, sender logins):
// LF-ended lines, a CR before the LF dropped, blanks trimmed at both ends,
// numbered from 1 for the error messages ("file:line: what").
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace ringmx {

class TextLines {
 public:
  explicit TextLines(std::string_view text) : rest_(text) {}

  // The next line, trimmed; false at the end. raw_size() is its length
  // before trimming (for a line-length bound).
  bool next(std::string_view& line) {
    if (rest_.empty()) return false;
    ++number_;
    const size_t nl = rest_.find('\n');
    line = rest_.substr(0, nl);
    rest_ = nl == std::string_view::npos ? std::string_view() : rest_.substr(nl + 1);
    raw_size_ = line.size();
    line = trim(line);
    return true;
  }
  size_t number() const { return number_; }
  size_t raw_size() const { return raw_size_; }
  // "file:N: what", N the number of the last line read.
  std::string error(std::string_view file, std::string_view what) const {
    return std::string(file) + ":" + std::to_string(number_) + ": " + std::string(what);
  }

  static std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
      s.remove_suffix(1);
    }
    return s;
  }

 private:
  std::string_view rest_;
  size_t number_ = 0;
  size_t raw_size_ = 0;
};

}  // namespace ringmx
