#include "ipc/packet_pool.h"

#include <cassert>

namespace mknet::ipc {

const char* toString(DescriptorError e) {
  switch (e) {
    case DescriptorError::kNone: return "ok";
    case DescriptorError::kBadIndex: return "buffer index out of range";
    case DescriptorError::kBadLength: return "length exceeds buffer";
  }
  return "unknown";
}

PacketPool::PacketPool(std::span<std::byte> memory, uint32_t count) : memory_(memory), count_(count) {
  // Our own bug if the caller hands a region smaller than its own count.
  assert(memory.size() >= bytesFor(count) && "pool memory smaller than its buffer count");
  memory_ = memory.first(bytesFor(count));
}

BufferAllocator::BufferAllocator(uint32_t count) : count_(count), free_(count, true) {
  stack_.reserve(count);
  for (uint32_t i = count; i > 0; --i) stack_.push_back(i - 1);
}

std::optional<uint32_t> BufferAllocator::allocate() {
  if (stack_.empty()) return std::nullopt;
  uint32_t i = stack_.back();
  stack_.pop_back();
  free_[i] = false;
  return i;
}

bool BufferAllocator::release(uint32_t index) {
  if (index >= count_ || free_[index]) return false;
  free_[index] = true;
  stack_.push_back(index);
  return true;
}

void BufferAllocator::releaseAll() {
  stack_.clear();
  for (uint32_t i = count_; i > 0; --i) {
    stack_.push_back(i - 1);
    free_[i - 1] = true;
  }
}

}  // namespace mknet::ipc
