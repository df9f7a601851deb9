#include "ipc/session_region.h"

#include <string>

namespace mknet::ipc {

namespace {

Result<void> checkConfig(const SessionConfig& c) {
  if (c.maxSockets == 0 || c.maxSockets > 65536) return makeError(EINVAL, "maxSockets must be 1..65536");
  if (!isPowerOfTwo(c.ringBytes) || c.ringBytes < 4096 || c.ringBytes > (64u << 20))
    return makeError(EINVAL, "ringBytes must be a power of two in 4 KiB..64 MiB");
  // One pending notification per slot plus one for the control mailbox.
  if (!isPowerOfTwo(c.notifyCapacity) || c.notifyCapacity < 2 * c.maxSockets + kControlMailboxes)
    return makeError(EINVAL, "notifyCapacity must be a power of two >= 2 * maxSockets + kControlMailboxes");
  return ok();
}

}  // namespace

Result<SessionRegion> SessionRegion::create(const SessionConfig& config) {
  if (auto r = checkConfig(config); !r) return r.error();
  size_t ring = SpscRingMemory<std::byte>::bytesFor(config.ringBytes);
  size_t bytes = sizeof(SessionHeader) + kControlMailboxes * sizeof(ControlMailbox) + config.maxSockets * (sizeof(SlotStatus) + sizeof(SlotAppFlags)) +
                 size_t{config.maxSockets} * 2 * (ring + kCacheLine) +
                 SpscRingMemory<Notify>::bytesFor(config.notifyCapacity) +
                 size_t{config.maxSockets} * 256 + 64 * 1024;  // Boost's index and names
  auto region = ShmRegion::create("session", bytes, RegionKind::kSession, kSessionContentVersion);
  if (!region) return region.error();
  SessionRegion s(std::move(region).value(), config);
  if (auto r = s.locate(true); !r) return r.error();
  return s;
}

Result<SessionRegion> SessionRegion::attach(UniqueFd fd, const SessionConfig& config) {
  if (auto r = checkConfig(config); !r) return r.error();
  auto region = ShmRegion::attach(std::move(fd), RegionKind::kSession, kSessionContentVersion);
  if (!region) return region.error();
  SessionRegion s(std::move(region).value(), config);
  if (auto r = s.locate(false); !r) return r.error();
  return s;
}

Result<void> SessionRegion::locate(bool create) {
  auto get = [&](const std::string& name, size_t bytes) {
    return create ? region_.allocate(name, bytes) : region_.find(name, bytes);
  };
  const uint32_t n = config_.maxSockets;
  auto h = get("header", sizeof(SessionHeader));
  if (!h) return h.error();
  header_ = reinterpret_cast<SessionHeader*>(h->data());
  auto cm = get("control", kControlMailboxes * sizeof(ControlMailbox));
  if (!cm) return cm.error();
  control_ = reinterpret_cast<ControlMailbox*>(cm->data());
  auto st = get("status", n * sizeof(SlotStatus));
  if (!st) return st.error();
  status_ = reinterpret_cast<SlotStatus*>(st->data());
  auto af = get("appFlags", n * sizeof(SlotAppFlags));
  if (!af) return af.error();
  appFlags_ = reinterpret_cast<SlotAppFlags*>(af->data());
  auto nr = get("notify", SpscRingMemory<Notify>::bytesFor(config_.notifyCapacity));
  if (!nr) return nr.error();
  auto nc = create ? SpscRingMemory<Notify>::init(*nr, config_.notifyCapacity)
                   : SpscRingMemory<Notify>::open(*nr, config_.notifyCapacity, "notify");
  if (!nc) return nc.error();
  notify_ = *nc;

  size_t ringBytes = SpscRingMemory<std::byte>::bytesFor(config_.ringBytes);
  rx_.resize(n);
  tx_.resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    for (int dir = 0; dir < 2; ++dir) {
      std::string name = (dir == 0 ? "rx." : "tx.") + std::to_string(i);
      auto mem = get(name, ringBytes);
      if (!mem) return mem.error();
      auto c = create ? SpscRingMemory<std::byte>::init(*mem, config_.ringBytes)
                      : SpscRingMemory<std::byte>::open(*mem, config_.ringBytes, name.c_str());
      if (!c) return c.error();
      (dir == 0 ? rx_ : tx_)[i] = *c;
    }
  }
  return ok();
}

void SessionRegion::resetSlot(uint32_t slot) {
  resetRing(rx_[slot]);
  resetRing(tx_[slot]);
  appFlags_[slot].notifyPending.store(0, std::memory_order_relaxed);
  appFlags_[slot].acceptInterest.store(0, std::memory_order_relaxed);
  appFlags_[slot].acceptWanted.store(0, std::memory_order_relaxed);
  SlotStatus& s = status_[slot];
  s.events.store(0, std::memory_order_relaxed);
  s.error.store(0, std::memory_order_relaxed);
  s.localIp.store(0, std::memory_order_relaxed);
  s.peerIp.store(0, std::memory_order_relaxed);
  s.localPort.store(0, std::memory_order_relaxed);
  s.peerPort.store(0, std::memory_order_relaxed);
}

}  // namespace mknet::ipc
