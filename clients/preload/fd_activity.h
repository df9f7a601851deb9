// FdActivity: per-fd counters of the I/O calls a program made on its mknet
// sockets, read by edge-triggered epoll.
//
// Linux reports an EPOLLET socket again when something new happens on it
// (data arrives, buffer space frees after a send found it full). mknet's
// shared memory has no such event counter, only the current level. So the
// shim counts, per fd, reads (any recv/read/accept call) and writes that
// found the send ring full (EAGAIN or a short write): after one of those,
// epoll reports the fd's level again, even without a visible edge. A program
// that drains to EAGAIN, as EPOLLET programs must, then never misses a
// wake-up; at worst it sees one extra report after a read that did not drain.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace mknet::preload {

class FdActivity {
 public:
  void readDone(int fd) { bump(fd, 0); }
  void writeBlocked(int fd) { bump(fd, 1); }
  uint32_t reads(int fd) const { return load(fd, 0); }
  uint32_t writesBlocked(int fd) const { return load(fd, 1); }

 private:
  static constexpr size_t kChunkBits = 12, kChunkSize = size_t{1} << kChunkBits, kChunks = 1024;
  struct Counters {
    std::atomic<uint32_t> c[2];
  };
  // Lock-free: chunks are allocated on first use and never freed.
  void bump(int fd, int which) {
    if (fd < 0 || static_cast<size_t>(fd) >= kChunkSize * kChunks) return;
    auto& slot = chunks_[static_cast<size_t>(fd) >> kChunkBits];
    Counters* c = slot.load(std::memory_order_acquire);
    if (c == nullptr) {
      auto* fresh = new Counters[kChunkSize]();
      if (slot.compare_exchange_strong(c, fresh, std::memory_order_acq_rel)) c = fresh;
      else delete[] fresh;
    }
    c[static_cast<size_t>(fd) & (kChunkSize - 1)].c[which].fetch_add(1, std::memory_order_release);
  }
  uint32_t load(int fd, int which) const {
    if (fd < 0 || static_cast<size_t>(fd) >= kChunkSize * kChunks) return 0;
    const Counters* c = chunks_[static_cast<size_t>(fd) >> kChunkBits].load(std::memory_order_acquire);
    return c == nullptr ? 0 : c[static_cast<size_t>(fd) & (kChunkSize - 1)].c[which].load(std::memory_order_acquire);
  }

  std::atomic<Counters*> chunks_[kChunks] = {};
};

}  // namespace mknet::preload
