// A provided-buffer ring for multishot recv: the kernel picks a free buffer
// for each completion, so an idle socket holds none. liburing 2.3 has no
// io_uring_setup_buf_ring, so the ring memory is mapped and registered here.
// Header-only: the shards and the load generator (bench/) both use it.
#pragma once

#include <liburing.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace ringmx {

class ProvidedBufferRing {
 public:
  ProvidedBufferRing() = default;
  ProvidedBufferRing(const ProvidedBufferRing&) = delete;
  ProvidedBufferRing& operator=(const ProvidedBufferRing&) = delete;
  ~ProvidedBufferRing() {
    if (ring_) munmap(ring_, ring_bytes_);
  }

  // `count` must be a power of two. Throws std::runtime_error on failure.
  void setup(io_uring& uring, uint32_t count, uint32_t size, uint16_t group) {
    count_ = count;
    size_ = size;
    group_ = group;
    ring_bytes_ = size_t{count} * sizeof(io_uring_buf);
    void* mem =
        mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) throw std::runtime_error("mmap of the buffer ring failed");
    ring_ = static_cast<io_uring_buf_ring*>(mem);
    io_uring_buf_ring_init(ring_);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uint64_t>(ring_);
    reg.ring_entries = count;
    reg.bgid = group;
    const int r = io_uring_register_buf_ring(&uring, &reg, 0);
    if (r < 0) throw std::runtime_error(std::string("register buffer ring: ") + std::strerror(-r));
    bufs_ = std::make_unique<char[]>(size_t{count} * size);
    const int mask = io_uring_buf_ring_mask(count);
    for (uint32_t i = 0; i < count; ++i) {
      io_uring_buf_ring_add(ring_, bufs_.get() + size_t{i} * size, size,
                            static_cast<unsigned short>(i), mask, static_cast<int>(i));
    }
    io_uring_buf_ring_advance(ring_, static_cast<int>(count));
  }

  uint16_t group() const { return group_; }

  // A multishot recv on `fd` that takes its buffers from this ring.
  void prep_recv_multishot(io_uring_sqe* sqe, int fd) const {
    io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = group_;
  }

  // The buffer a recv completion filled.
  static uint16_t buffer_id(uint32_t cqe_flags) {
    return static_cast<uint16_t>(cqe_flags >> IORING_CQE_BUFFER_SHIFT);
  }

  // The bytes a completion delivered into buffer `bid`.
  std::string_view data(uint16_t bid, size_t len) const {
    return {bufs_.get() + size_t{bid} * size_, len};
  }

  // Gives buffer `bid` back to the kernel.
  void recycle(uint16_t bid) {
    io_uring_buf_ring_add(ring_, bufs_.get() + size_t{bid} * size_, size_, bid,
                          io_uring_buf_ring_mask(count_), 0);
    io_uring_buf_ring_advance(ring_, 1);
  }

 private:
  io_uring_buf_ring* ring_ = nullptr;
  size_t ring_bytes_ = 0;
  std::unique_ptr<char[]> bufs_;
  uint32_t count_ = 0;
  uint32_t size_ = 0;
  uint16_t group_ = 0;
};

}  // namespace ringmx
