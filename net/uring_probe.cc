// io_uring capability probe.
#include "net/uring_probe.h"

#include <liburing.h>
#include <sys/mman.h>

#include <cstring>

namespace ringmx {

unsigned shard_ring_flags() {
  return IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
}

std::string check_uring_support() {
  std::string missing;
  io_uring ring;
  io_uring_params p{};
  p.flags = shard_ring_flags();
  p.cq_entries = 64;
  int r = io_uring_queue_init_params(8, &ring, &p);
  if (r < 0) {
    missing += "io_uring_setup with SINGLE_ISSUER|DEFER_TASKRUN|CQSIZE failed: ";
    missing += std::strerror(-r);
    missing +=
        " (kernel 6.1 or later needed; is io_uring disabled by sysctl kernel.io_uring_disabled?)\n";
    return missing;
  }
  if (!(p.features & IORING_FEAT_EXT_ARG))
    missing += "feature IORING_FEAT_EXT_ARG (wait with timeout)\n";
  if (!(p.features & IORING_FEAT_NODROP)) missing += "feature IORING_FEAT_NODROP\n";
  io_uring_probe* probe = io_uring_get_probe_ring(&ring);
  if (!probe) {
    missing += "io_uring probe (IORING_REGISTER_PROBE)\n";
  } else {
    struct Op {
      int op;
      const char* name;
    };
    static constexpr Op kOps[] = {
        {IORING_OP_ACCEPT, "ACCEPT"},     {IORING_OP_RECV, "RECV"},
        {IORING_OP_SEND, "SEND"},         {IORING_OP_OPENAT, "OPENAT"},
        {IORING_OP_WRITEV, "WRITEV"},     {IORING_OP_FSYNC, "FSYNC"},
        {IORING_OP_RENAMEAT, "RENAMEAT"}, {IORING_OP_UNLINKAT, "UNLINKAT"},
        {IORING_OP_CLOSE, "CLOSE"},       {IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL"},
        {IORING_OP_READ, "READ"},         {IORING_OP_SHUTDOWN, "SHUTDOWN"},
    };
    for (const Op& o : kOps) {
      if (!io_uring_opcode_supported(probe, o.op)) {
        missing += "operation IORING_OP_";
        missing += o.name;
        missing += '\n';
      }
    }
    io_uring_free_probe(probe);
  }
  // Provided-buffer rings (multishot recv needs them).
  const size_t entries = 8;
  void* mem = mmap(nullptr, entries * sizeof(io_uring_buf), PROT_READ | PROT_WRITE,
                   MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) {
    missing += "mmap for a buffer ring\n";
  } else {
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uint64_t>(mem);
    reg.ring_entries = entries;
    reg.bgid = 0;
    if (io_uring_register_buf_ring(&ring, &reg, 0) < 0) {
      missing += "provided buffer rings (IORING_REGISTER_PBUF_RING)\n";
    } else {
      io_uring_unregister_buf_ring(&ring, 0);
    }
    munmap(mem, entries * sizeof(io_uring_buf));
  }
  io_uring_queue_exit(&ring);
  return missing;
}

}  // namespace ringmx
