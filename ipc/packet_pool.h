// PacketPool: N fixed 2 KiB packet buffers in shared memory, addressed by index.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "ipc/result.h"
#include "ipc/spsc_ring.h"

namespace mknet::ipc {

inline constexpr uint32_t kBufferSize = 2048;

// Why a descriptor was refused; callers count these per reason.
enum class DescriptorError : uint8_t { kNone = 0, kBadIndex, kBadLength };
const char* toString(DescriptorError e);

// A view of the pool's buffers. Owns no memory; the region does. The count is
// the viewer's own configuration, so a peer can't widen it.
class PacketPool {
 public:
  PacketPool() = default;
  PacketPool(std::span<std::byte> memory, uint32_t count);
  static size_t bytesFor(uint32_t count) { return size_t{count} * kBufferSize; }

  uint32_t count() const { return count_; }

  // Checks a descriptor copied from a ring: index in range, length within a
  // buffer. Returns kNone if it may be used.
  DescriptorError check(const Descriptor& d) const {
    if (d.index >= count_) return DescriptorError::kBadIndex;
    if (d.length > kBufferSize) return DescriptorError::kBadLength;
    return DescriptorError::kNone;
  }

  // The whole buffer `index`; nullopt if out of range.
  std::optional<std::span<std::byte>> buffer(uint32_t index) const {
    if (index >= count_) return std::nullopt;
    return memory_.subspan(size_t{index} * kBufferSize, kBufferSize);
  }

  // The bytes a descriptor names; nullopt (and the reason in *why) if invalid.
  std::optional<std::span<std::byte>> bytes(const Descriptor& d,
                                            DescriptorError* why = nullptr) const {
    DescriptorError e = check(d);
    if (why != nullptr) *why = e;
    if (e != DescriptorError::kNone) return std::nullopt;
    return memory_.subspan(size_t{d.index} * kBufferSize, d.length);
  }

 private:
  std::span<std::byte> memory_;
  uint32_t count_ = 0;
};

// Owner-side bookkeeping of which buffers are free. Lives in the owner's
// private memory, never in the shared region, so no peer can corrupt it.
// A double release or an unknown index is refused (and the caller counts it),
// which is how a buggy or malicious peer returning a buffer twice is caught.
class BufferAllocator {
 public:
  explicit BufferAllocator(uint32_t count);

  // A free buffer index, or nullopt when all are in use.
  std::optional<uint32_t> allocate();
  // Returns `index` to the free set. False if out of range or already free.
  bool release(uint32_t index);
  // Marks every buffer free again (owner only, e.g. after a peer died and all
  // of its buffers were reclaimed).
  void releaseAll();
  bool isFree(uint32_t index) const { return index < count_ && free_[index]; }

  uint32_t count() const { return count_; }
  uint32_t available() const { return static_cast<uint32_t>(stack_.size()); }
  uint32_t inUse() const { return count_ - available(); }

 private:
  uint32_t count_;
  std::vector<uint32_t> stack_;  // free indices, LIFO for cache warmth
  std::vector<bool> free_;
};

}  // namespace mknet::ipc
