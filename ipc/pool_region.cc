#include "ipc/pool_region.h"

namespace mknet::ipc {

namespace {

constexpr const char* kRingNames[4] = {"rxFree", "rxActive", "txActive", "txFree"};

Result<void> checkConfig(const PoolConfig& c) {
  if (c.bufferCount == 0 || c.bufferCount > (1u << 20))
    return makeError(EINVAL, "pool buffer count must be 1..1048576");
  if (!isPowerOfTwo(c.ringCapacity) || c.ringCapacity < c.bufferCount)
    return makeError(EINVAL, "ring capacity must be a power of two >= the buffer count");
  return ok();
}

}  // namespace

Result<PoolRegion> PoolRegion::create(const PoolConfig& config) {
  if (auto r = checkConfig(config); !r) return r.error();
  size_t bytes = PacketPool::bytesFor(config.bufferCount) +
                 4 * (SpscRingMemory<Descriptor>::bytesFor(config.ringCapacity) + kCacheLine) +
                 64 * 1024;  // Boost's index and names
  auto region = ShmRegion::create("pool", bytes, RegionKind::kPacketPool, kPoolContentVersion);
  if (!region) return region.error();
  PoolRegion p(std::move(region).value(), config);
  if (auto r = p.locate(true); !r) return r.error();
  return p;
}

Result<PoolRegion> PoolRegion::attach(UniqueFd fd, const PoolConfig& config) {
  if (auto r = checkConfig(config); !r) return r.error();
  auto region = ShmRegion::attach(std::move(fd), RegionKind::kPacketPool, kPoolContentVersion);
  if (!region) return region.error();
  PoolRegion p(std::move(region).value(), config);
  if (auto r = p.locate(false); !r) return r.error();
  return p;
}

Result<void> PoolRegion::locate(bool create) {
  size_t poolBytes = PacketPool::bytesFor(config_.bufferCount);
  auto pool = create ? region_.allocate("buffers", poolBytes) : region_.find("buffers", poolBytes);
  if (!pool) return pool.error();
  pool_ = PacketPool(*pool, config_.bufferCount);
  RingControl** rings[4] = {&rxFree_, &rxActive_, &txActive_, &txFree_};
  size_t ringBytes = SpscRingMemory<Descriptor>::bytesFor(config_.ringCapacity);
  for (int i = 0; i < 4; ++i) {
    auto mem = create ? region_.allocate(kRingNames[i], ringBytes) : region_.find(kRingNames[i], ringBytes);
    if (!mem) return mem.error();
    auto c = create ? SpscRingMemory<Descriptor>::init(*mem, config_.ringCapacity)
                    : SpscRingMemory<Descriptor>::open(*mem, config_.ringCapacity, kRingNames[i]);
    if (!c) return c.error();
    *rings[i] = *c;
  }
  return ok();
}

void PoolRegion::resetRings() {
  for (RingControl* c : {rxFree_, rxActive_, txActive_, txFree_}) resetRing(c);
}

}  // namespace mknet::ipc
