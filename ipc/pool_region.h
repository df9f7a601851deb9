// PoolRegion: the stack<->driver shared region — the packet pool and the four
// descriptor rings rxFree, rxActive, txActive, txFree — created by the stack,
// attached by a driver.
#pragma once

#include <cstdint>

#include "ipc/packet_pool.h"
#include "ipc/result.h"
#include "ipc/shm_region.h"
#include "ipc/spsc_ring.h"

namespace mknet::ipc {

// Bump when the names, order or meaning of anything in the region changes.
inline constexpr uint32_t kPoolContentVersion = 1;

// Sizes both sides agree on. The driver takes them from the registration
// answer, compares them with its own limits, and never reads them from the
// shared memory itself.
struct PoolConfig {
  uint32_t bufferCount = 4096;   // 8 MiB of 2 KiB buffers
  uint32_t ringCapacity = 4096;  // >= bufferCount: a ring can hold every buffer, so it never overflows
};

// Descriptor flags on the four rings.
inline constexpr uint32_t kDescFlagNone = 0;
// rxActive: the driver wrote this frame's TCP/UDP checksum itself (it
// completed a checksum the host kernel left to it, VIRTIO_NET_HDR_F_NEEDS_CSUM,
// or built the segment out of a GSO super-frame), so it cannot be wrong unless
// the driver is. The stack then skips its own check of that checksum; lwIP
// still verifies every TCP/UDP checksum, so a lying driver gets nothing past
// it (such drops are just not in the stack's rx_bad counters).
inline constexpr uint32_t kDescFlagL4ChecksumByDriver = 1u << 0;

// The rings, by role and direction (sDDF naming):
//   rxFree   stack -> driver  empty buffers for the driver to receive into
//   rxActive driver -> stack  received frames
//   txActive stack -> driver  frames to transmit
//   txFree   driver -> stack  transmitted buffers handed back
// A buffer is always owned by exactly one side: the stack owns buffers in its
// allocator, in lwIP and in rxFree/txActive until the driver pops them; the
// driver owns what it popped until it pushes to rxActive/txFree.
class PoolRegion {
 public:
  // Stack side: creates the region, the pool and the four empty rings.
  static Result<PoolRegion> create(const PoolConfig& config);
  // Driver side: attaches a region received over the control socket and
  // checks every ring against `config` (which came from the registration
  // answer and was checked against the driver's own limits).
  static Result<PoolRegion> attach(UniqueFd fd, const PoolConfig& config);

  const PoolConfig& config() const { return config_; }
  ShmRegion& region() { return region_; }
  PacketPool& pool() { return pool_; }
  RingControl* rxFree() const { return rxFree_; }
  RingControl* rxActive() const { return rxActive_; }
  RingControl* txActive() const { return txActive_; }
  RingControl* txFree() const { return txFree_; }

  // Stack only, with no driver attached: empties all four rings.
  void resetRings();

 private:
  PoolRegion(ShmRegion region, PoolConfig config) : region_(std::move(region)), config_(config) {}
  Result<void> locate(bool create);

  ShmRegion region_;
  PoolConfig config_;
  PacketPool pool_;
  RingControl* rxFree_ = nullptr;
  RingControl* rxActive_ = nullptr;
  RingControl* txActive_ = nullptr;
  RingControl* txFree_ = nullptr;
};

}  // namespace mknet::ipc
