// ByteRing: an SPSC byte stream in shared memory (socket send/receive data).
#pragma once

#include "ipc/spsc_ring.h"

namespace mknet::ipc {

// A byte ring is an SpscRing whose records are single bytes: writes and reads
// of any length, partial when the ring is full or empty, wrapping around the
// end of the array in at most two memcpy calls. The same control block, index
// validation and sleep/wake-up flags as the descriptor rings.
using ByteRingMemory = SpscRingMemory<std::byte>;

// Producer side: write() copies as much as fits and returns the count.
class ByteWriter : public SpscProducer<std::byte> {
 public:
  using SpscProducer<std::byte>::SpscProducer;
  Result<uint32_t> write(std::span<const std::byte> data) { return push(data); }
};

// Consumer side: read() copies out what is there (up to the buffer's size);
// peek()/consume() let a caller hand data on and release it only once taken.
class ByteReader : public SpscConsumer<std::byte> {
 public:
  using SpscConsumer<std::byte>::SpscConsumer;
  Result<uint32_t> read(std::span<std::byte> out) { return pop(out); }
};

}  // namespace mknet::ipc
