// A growable byte buffer for message bodies: malloc/realloc-backed, never
// zero-fills (std::string::resize would), and hands out spare room so a
// decoder can write straight into it.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>
#include <utility>

namespace ringmx {

class ByteBuffer {
 public:
  ByteBuffer() = default;
  ByteBuffer(const ByteBuffer&) = delete;
  ByteBuffer& operator=(const ByteBuffer&) = delete;
  ByteBuffer(ByteBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)),
        size_(std::exchange(o.size_, 0)),
        cap_(std::exchange(o.cap_, 0)) {}
  ByteBuffer& operator=(ByteBuffer&& o) noexcept {
    if (this != &o) {
      std::free(data_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      cap_ = std::exchange(o.cap_, 0);
    }
    return *this;
  }
  ~ByteBuffer() { std::free(data_); }

  const char* data() const { return data_; }
  char* data() { return data_; }
  size_t size() const { return size_; }
  size_t capacity() const { return cap_; }
  bool empty() const { return size_ == 0; }
  std::string_view view() const { return {data_ ? data_ : "", size_}; }

  void clear() { size_ = 0; }
  // Gives the memory back (after a transaction, so an idle session holds none).
  void release() {
    std::free(data_);
    data_ = nullptr;
    size_ = cap_ = 0;
  }
  void reserve(size_t n) {
    if (n <= cap_) return;
    void* p = std::realloc(data_, n);
    if (!p) throw std::bad_alloc();
    data_ = static_cast<char*>(p);
    cap_ = n;
  }
  void append(const char* p, size_t n) {
    if (n == 0) return;
    if (cap_ - size_ < n) grow(n);
    std::memcpy(data_ + size_, p, n);
    size_ += n;
  }
  void append(std::string_view s) { append(s.data(), s.size()); }
  void push_back(char c) {
    if (size_ == cap_) grow(1);
    data_[size_++] = c;
  }

 private:
  void grow(size_t need) {
    size_t want = cap_ ? cap_ * 2 : 4096;
    while (want - size_ < need) want *= 2;
    reserve(want);
  }
  char* data_ = nullptr;
  size_t size_ = 0;
  size_t cap_ = 0;
};

}  // namespace ringmx
