#include "ipc/spsc_ring.h"

namespace mknet::ipc {

void initRingControl(RingControl* c, uint32_t capacity, uint32_t recordSize) {
  c->magic = kRingMagic;
  c->version = kRingLayoutVersion;
  c->capacity = capacity;
  c->recordSize = recordSize;
  resetRing(c);
}

void resetRing(RingControl* c) {
  c->head.store(0, std::memory_order_relaxed);
  c->tail.store(0, std::memory_order_relaxed);
  c->consumerSleeping.store(0, std::memory_order_relaxed);
  c->producerSleeping.store(0, std::memory_order_seq_cst);
}

Result<void> checkRingControl(const RingControl* c, uint32_t capacity, uint32_t recordSize,
                              const char* what) {
  // Plain reads of fields the owner wrote once before handing out the fd.
  auto bad = [&](const std::string& field, uint32_t got, uint32_t want) {
    return makeError(EPROTO, std::string(what) + ": ring " + field + " is " + std::to_string(got) +
                                 ", expected " + std::to_string(want));
  };
  if (c->magic != kRingMagic) return bad("magic", c->magic, kRingMagic);
  if (c->version != kRingLayoutVersion) return bad("version", c->version, kRingLayoutVersion);
  if (c->capacity != capacity) return bad("capacity", c->capacity, capacity);
  if (c->recordSize != recordSize) return bad("record size", c->recordSize, recordSize);
  uint32_t h = c->head.load(std::memory_order_acquire);
  uint32_t t = c->tail.load(std::memory_order_acquire);
  if (h - t > capacity) return makeError(EPROTO, std::string(what) + ": ring indices out of range");
  return ok();
}

}  // namespace mknet::ipc
