// SpscRing: a lock-free single-producer/single-consumer ring of fixed-size
// records in shared memory, after seL4 sDDF's queues.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>

#include "ipc/result.h"
#include "ipc/shm_region.h"

namespace mknet::ipc {

inline constexpr uint32_t kRingMagic = 0x474e4952;  // "RING"
inline constexpr uint32_t kRingLayoutVersion = 1;

// A packet descriptor: which pool buffer, how many bytes. Never a pointer.
struct Descriptor {
  uint32_t index;   // pool buffer index, < pool count
  uint32_t length;  // bytes used in the buffer, <= kBufferSize
  uint32_t flags;   // kDescFlag*; meaning depends on the ring
  uint32_t cookie;  // free for the producer (sequence numbers in tests)
};
static_assert(sizeof(Descriptor) == 16);

// Control block at the start of every ring. Field by field: who writes it.
struct RingControl {
  // Written by the owner when the ring is created, never after.
  uint32_t magic;
  uint32_t version;
  uint32_t capacity;    // slots (or bytes for ByteRing); a power of two
  uint32_t recordSize;  // sizeof(T)
  // Written by the producer only: free-running count of records published.
  alignas(kCacheLine) std::atomic<uint32_t> head;
  // Written by the consumer only: free-running count of records consumed.
  alignas(kCacheLine) std::atomic<uint32_t> tail;
  // Set by the consumer just before it sleeps; cleared by whoever wakes it.
  alignas(kCacheLine) std::atomic<uint32_t> consumerSleeping;
  // Set by the producer just before it sleeps on a full ring; cleared by the
  // consumer when it frees space and rings the producer's doorbell.
  std::atomic<uint32_t> producerSleeping;
};
static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(sizeof(RingControl) == 4 * kCacheLine);

// Checks a control block against the reader's own expectations; used by both
// ring kinds. EPROTO with a message naming the field on mismatch.
Result<void> checkRingControl(const RingControl* c, uint32_t capacity, uint32_t recordSize,
                              const char* what);
// Initialises a control block in zeroed memory (owner side).
void initRingControl(RingControl* c, uint32_t capacity, uint32_t recordSize);
inline bool isPowerOfTwo(uint32_t v) { return v != 0 && (v & (v - 1)) == 0; }

// The shared memory of a ring: control block, then `capacity` records.
template <typename T>
struct SpscRingMemory {
  static_assert(std::is_trivially_copyable_v<T>, "ring records are copied with memcpy");

  static size_t bytesFor(uint32_t capacity) {
    return sizeof(RingControl) + size_t{capacity} * sizeof(T);
  }
  // Owner: lays out a ring of `capacity` (power of two) records in `mem`.
  static Result<RingControl*> init(std::span<std::byte> mem, uint32_t capacity) {
    if (!isPowerOfTwo(capacity)) return makeError(EINVAL, "ring capacity must be a power of two");
    if (mem.size() < bytesFor(capacity)) return makeError(EINVAL, "ring memory too small");
    auto* c = reinterpret_cast<RingControl*>(mem.data());
    initRingControl(c, capacity, sizeof(T));
    return c;
  }
  // Peer: validates a ring found in a region against our own `capacity`.
  static Result<RingControl*> open(std::span<std::byte> mem, uint32_t capacity, const char* what) {
    if (mem.size() < bytesFor(capacity)) return makeError(EPROTO, std::string(what) + ": too small");
    auto* c = reinterpret_cast<RingControl*>(mem.data());
    if (auto r = checkRingControl(c, capacity, sizeof(T), what); !r) return r.error();
    return c;
  }
  static T* slots(RingControl* c) { return reinterpret_cast<T*>(c + 1); }
};

// Copies n records into / out of a ring array of `cap` slots starting at slot
// `at`, in at most two memcpy calls (before and after the wrap).
template <typename T>
inline void copyIn(T* ring, uint32_t at, uint32_t cap, const T* src, uint32_t n) {
  if (n == 0) return;  // src may be null for an empty span (memcpy forbids it)
  uint32_t first = n < cap - at ? n : cap - at;
  std::memcpy(ring + at, src, size_t{first} * sizeof(T));
  if (n > first) std::memcpy(ring, src + first, size_t{n - first} * sizeof(T));
}
template <typename T>
inline void copyOut(T* dst, const T* ring, uint32_t at, uint32_t cap, uint32_t n) {
  if (n == 0) return;
  uint32_t first = n < cap - at ? n : cap - at;
  std::memcpy(dst, ring + at, size_t{first} * sizeof(T));
  if (n > first) std::memcpy(dst + first, ring, size_t{n - first} * sizeof(T));
}

// The producer end. Keeps its own head; reads the consumer's tail and treats
// any value that would make more than `capacity` records outstanding as a
// corrupt ring (the peer broke the contract). Not thread-safe: one producer.
template <typename T>
class SpscProducer {
 public:
  SpscProducer() = default;
  // `capacity` comes from the caller's own configuration, not shared memory.
  // Resumes at the published head, so a restarted producer continues.
  SpscProducer(RingControl* c, uint32_t capacity)
      : c_(c), slots_(SpscRingMemory<T>::slots(c)), mask_(capacity - 1), capacity_(capacity),
        head_(c->head.load(std::memory_order_relaxed)),
        tailCache_(c->tail.load(std::memory_order_acquire)) {}

  // Copies up to items.size() records into the ring and publishes them with
  // one index store. Returns how many were pushed (0 when full), or EPROTO if
  // the consumer's index is corrupt.
  Result<uint32_t> push(std::span<const T> items) {
    uint32_t room = capacity_ - (head_ - tailCache_);
    if (room < items.size()) {
      uint32_t t = c_->tail.load(std::memory_order_acquire);
      if (head_ - t > capacity_) return corrupt();
      tailCache_ = t;
      room = capacity_ - (head_ - t);
    }
    auto n = static_cast<uint32_t>(items.size() < room ? items.size() : room);
    copyIn(slots_, head_ & mask_, capacity_, items.data(), n);
    head_ += n;
    if (n != 0) c_->head.store(head_, std::memory_order_seq_cst);
    return n;
  }
  Result<uint32_t> push(const T& item) { return push(std::span<const T>(&item, 1)); }

  // After a push: true if the consumer announced it sleeps, in which case the
  // caller must ring its doorbell. Clears the flag so one doorbell is rung
  // per sleep. seq_cst pairs with the consumer's prepareSleep() (Dekker).
  bool consumerNeedsWakeup() {
    return c_->consumerSleeping.load(std::memory_order_seq_cst) != 0 &&
           c_->consumerSleeping.exchange(0, std::memory_order_seq_cst) != 0;
  }

  // Records the ring can take now, re-reading the consumer's index.
  Result<uint32_t> freeSlots() {
    uint32_t t = c_->tail.load(std::memory_order_acquire);
    if (head_ - t > capacity_) return corrupt();
    tailCache_ = t;
    return capacity_ - (head_ - t);
  }

  // Before sleeping on a full ring: announce it and re-check. Returns true if
  // the caller may sleep (still full), false if room appeared meanwhile.
  bool prepareSleep() {
    c_->producerSleeping.store(1, std::memory_order_seq_cst);
    uint32_t t = c_->tail.load(std::memory_order_seq_cst);
    if (head_ - t < capacity_) {
      c_->producerSleeping.store(0, std::memory_order_relaxed);
      return false;
    }
    return true;
  }
  void cancelSleep() { c_->producerSleeping.store(0, std::memory_order_relaxed); }

  uint32_t capacity() const { return capacity_; }
  bool valid() const { return c_ != nullptr; }

 private:
  Error corrupt() const { return makeError(EPROTO, "ring corrupt: consumer index out of range"); }

  RingControl* c_ = nullptr;
  T* slots_ = nullptr;
  uint32_t mask_ = 0, capacity_ = 0;
  uint32_t head_ = 0, tailCache_ = 0;
};

// The consumer end. Copies every record out of shared memory once; the caller
// validates the copy. Not thread-safe: one consumer.
template <typename T>
class SpscConsumer {
 public:
  SpscConsumer() = default;
  SpscConsumer(RingControl* c, uint32_t capacity)
      : c_(c), slots_(SpscRingMemory<T>::slots(c)), mask_(capacity - 1), capacity_(capacity),
        tail_(c->tail.load(std::memory_order_relaxed)) {}

  // Copies up to out.size() records out and releases their slots. Returns how
  // many (0 when empty), or EPROTO if the producer's index is corrupt.
  Result<uint32_t> pop(std::span<T> out) {
    uint32_t h = c_->head.load(std::memory_order_acquire);
    uint32_t avail = h - tail_;
    if (avail > capacity_) return corrupt();
    auto n = static_cast<uint32_t>(out.size() < avail ? out.size() : avail);
    copyOut(out.data(), slots_, tail_ & mask_, capacity_, n);
    tail_ += n;
    if (n != 0) c_->tail.store(tail_, std::memory_order_seq_cst);
    return n;
  }

  // Copies up to out.size() records starting `offset` records past the oldest,
  // without consuming them. Returns how many were copied, or EPROTO.
  Result<uint32_t> peek(std::span<T> out, uint32_t offset = 0) const {
    uint32_t avail = c_->head.load(std::memory_order_acquire) - tail_;
    if (avail > capacity_) return corrupt();
    if (offset >= avail) return 0u;
    avail -= offset;
    auto n = static_cast<uint32_t>(out.size() < avail ? out.size() : avail);
    copyOut(out.data(), slots_, (tail_ + offset) & mask_, capacity_, n);
    return n;
  }

  // Zero-copy read access: sets `first` and `second` to the (at most two)
  // contiguous runs of waiting records, oldest first, and returns their total.
  // The memory stays valid until consume(); the producer may not be trusted,
  // so treat the bytes as opaque data (copy them once, e.g. into lwIP).
  Result<uint32_t> readable(std::span<T>& first, std::span<T>& second) const {
    uint32_t avail = c_->head.load(std::memory_order_acquire) - tail_;
    if (avail > capacity_) return corrupt();
    uint32_t at = tail_ & mask_;
    uint32_t run = avail < capacity_ - at ? avail : capacity_ - at;
    first = std::span<T>(slots_ + at, run);
    second = std::span<T>(slots_, avail - run);
    return avail;
  }

  // Releases the n oldest records (after peek). EPROTO if fewer are waiting
  // or the producer's index is corrupt.
  Result<void> consume(uint32_t n) {
    uint32_t avail = c_->head.load(std::memory_order_acquire) - tail_;
    if (avail > capacity_) return corrupt();
    if (n > avail) return makeError(EINVAL, "consume beyond what is available");
    tail_ += n;
    if (n != 0) c_->tail.store(tail_, std::memory_order_seq_cst);
    return ok();
  }

  // Records waiting, or EPROTO.
  Result<uint32_t> available() const {
    uint32_t avail = c_->head.load(std::memory_order_acquire) - tail_;
    if (avail > capacity_) return corrupt();
    return avail;
  }
  bool empty() const { return c_->head.load(std::memory_order_acquire) == tail_; }

  // Before sleeping: announce it and re-check (sDDF's double check, so no
  // wake-up is lost). Returns true if the caller may sleep, false if records
  // arrived meanwhile (the flag is withdrawn).
  bool prepareSleep() {
    c_->consumerSleeping.store(1, std::memory_order_seq_cst);
    if (c_->head.load(std::memory_order_seq_cst) != tail_) {
      c_->consumerSleeping.store(0, std::memory_order_relaxed);
      return false;
    }
    return true;
  }
  void cancelSleep() { c_->consumerSleeping.store(0, std::memory_order_relaxed); }

  // After a pop freed space: true if the producer sleeps on a full ring and
  // must be rung.
  bool producerNeedsWakeup() {
    return c_->producerSleeping.load(std::memory_order_seq_cst) != 0 &&
           c_->producerSleeping.exchange(0, std::memory_order_seq_cst) != 0;
  }

  uint32_t capacity() const { return capacity_; }
  bool valid() const { return c_ != nullptr; }

 private:
  Error corrupt() const { return makeError(EPROTO, "ring corrupt: producer index out of range"); }

  RingControl* c_ = nullptr;
  T* slots_ = nullptr;
  uint32_t mask_ = 0, capacity_ = 0;
  uint32_t tail_ = 0;
};

// Owner only, with both peers stopped (e.g. after a driver died): empties the
// ring by setting both indices to zero and clearing the sleep flags.
void resetRing(RingControl* c);

using DescriptorProducer = SpscProducer<Descriptor>;
using DescriptorConsumer = SpscConsumer<Descriptor>;

}  // namespace mknet::ipc
