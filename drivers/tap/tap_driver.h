// TapDriver: the driver's data plane. Moves frames between a NicDevice and
// the stack's packet pool through the four rings of a PoolRegion:
//
//   RX  rxFree (stack -> driver) -> read from the device -> rxActive (driver -> stack)
//   TX  txActive (stack -> driver) -> write to the device -> txFree (driver -> stack)
//
// On a device with offload() (a TAP with virtio-net headers), consecutive
// TCP segments of one flow go out as one super-frame (TcpCoalescer), and
// super-frames the kernel sends are cut into wire-sized frames, one pool
// buffer each, before they reach the stack (tcp_offload.h).
//
// The driver keeps no state the stack needs: every buffer it holds came off
// rxFree or txActive, and when the driver dies the stack reclaims all of
// them, resets the rings and hands a new instance a clean attachment.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <vector>

#include "drivers/tap/nic_device.h"
#include "drivers/tap/tcp_offload.h"
#include "ipc/doorbell.h"
#include "ipc/pool_region.h"
#include "ipc/spsc_ring.h"

namespace mknet::drivers {

struct TapDriverOptions {
  // Most frames handled per direction per loop round (NAPI-style budget).
  uint32_t burst = 64;
  // Buffers kept in the private RX stash (taken from rxFree ahead of need).
  uint32_t rxStash = 64;
  // How long to keep polling the rings and the device after the last piece
  // of work before sleeping in poll().
  std::chrono::microseconds spin{50};
};

// A snapshot of the counters. Every field only grows while the driver lives.
struct TapDriverStats {
  uint64_t rxFrames = 0;           // frames published on rxActive
  uint64_t rxBytes = 0;
  uint64_t rxDropped = 0;          // rxDroppedNoBuffer + rxDroppedOversize + rxDroppedBadOffload
  uint64_t rxDroppedNoBuffer = 0;  // frames (super-frame segments included) read while neither
                                   // the stash nor rxFree had a buffer for them
  uint64_t rxDroppedOversize = 0;  // frame longer than a pool buffer (and not a super-frame)
  uint64_t rxDroppedBadOffload = 0;  // super-frame or partial checksum we cannot handle
  uint64_t rxGsoFrames = 0;        // super-frames read and segmented (their segments are in rxFrames)
  uint64_t rxChecksumsCompleted = 0;  // frames whose partial checksum the driver completed
  uint64_t txFrames = 0;           // frames the device accepted (alone or in a super-frame)
  uint64_t txBytes = 0;
  uint64_t txGsoFrames = 0;        // super-frames written
  uint64_t txAcksThinned = 0;      // bare ACKs not written: the next frame acknowledged more
  uint64_t txCoalescedFrames = 0;  // frames that went out inside a super-frame
  uint64_t txGsoFallbacks = 0;     // super-frames the device refused: their frames went out alone
  uint64_t txErrors = 0;           // frames the device refused (buffer returned on txFree)
  uint64_t badDescriptors = 0;     // descriptors from rxFree/txActive with a bad index or length
  uint64_t wakeups = 0;            // times the loop slept in poll() and woke up
};

// Why run() returned.
enum class TapDriverStop : uint8_t {
  kStopped,      // requestStop() was called
  kRingCorrupt,  // the stack broke the ring contract: drop this attachment
  kDeviceError,  // the device failed (interface deleted...): the driver cannot go on
};
const char* toString(TapDriverStop s);

class TapDriver {
 public:
  // All parts are borrowed and must outlive the driver. `region` is attached
  // with the configuration from the registration answer; `toDriver` is the
  // doorbell the stack rings, `toStack` the one the driver rings; `control`
  // is rung by requestStop() to wake a sleeping loop.
  TapDriver(NicDevice& nic, ipc::PoolRegion& region, const ipc::Doorbell& toDriver,
            const ipc::Doorbell& toStack, const ipc::Doorbell& control,
            TapDriverOptions options = {});
  TapDriver(const TapDriver&) = delete;
  TapDriver& operator=(const TapDriver&) = delete;

  // The loop: runs on the calling thread until requestStop(), a corrupt ring
  // or a device failure. Call it once.
  TapDriverStop run();

  // One round without sleeping: RX burst, then TX burst. Returns how many
  // frames and descriptors it handled, or the reason to stop. For tests and
  // for callers with their own loop.
  Result<uint32_t> pollOnce();

  // Thread-safe; async-signal-safe. run() returns kStopped soon after.
  void requestStop();

  // Thread-safe snapshot of the counters.
  TapDriverStats stats() const;

  // Buffers the driver holds privately right now (the RX stash plus TX
  // frames waiting for the device). Call only from run()'s thread or after
  // run() returned; for leak checks in tests.
  size_t heldBuffers() const { return stash_.size() + pendingTx_.size(); }

 private:
  // Single-writer counter readable from other threads without a lock prefix.
  struct Counter {
    std::atomic<uint64_t> v{0};
    void add(uint64_t n) { v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
    uint64_t get() const { return v.load(std::memory_order_relaxed); }
  };

  Result<uint32_t> receive();
  Result<uint32_t> transmit();
  Result<void> refillStash();
  // Cuts a TCP/IPv4 super-frame read into `d` (its head) and the device's
  // overflow into segments: the first in `d` itself, the others in buffers
  // from the stash; appends them to rxOut_ in order.
  Result<void> receiveGso(ipc::Descriptor d, std::span<std::byte> buf, const RxFrame& f);
  // Writes the run of pendingTx_ starting at `at`: a super-frame if the
  // device takes them and the frames coalesce, else one frame. Returns how
  // many entries it completed (appended to txDone_), 0 on EAGAIN.
  size_t transmitRun(size_t at);
  Result<void> publish(ipc::DescriptorProducer& ring, const ipc::Descriptor* d, uint32_t n,
                       const char* what);
  // Sleeps in poll() until a doorbell, the device or the control fd wakes it.
  Result<void> sleep();
  // Rate-limited (one line a second) warnings.
  void logPeerFault(const char* what, const ipc::Descriptor& d);
  void logTxError(const Error& e);

  // A descriptor popped from txActive, waiting for its turn: sent when its
  // turn comes, or (refused: valid index, bad length) only handed back.
  struct TxEntry {
    ipc::Descriptor desc;
    bool refused;
  };

  NicDevice& nic_;
  ipc::PacketPool& pool_;
  const ipc::Doorbell& toDriver_;
  const ipc::Doorbell& toStack_;
  const ipc::Doorbell& control_;
  TapDriverOptions options_;

  ipc::DescriptorConsumer rxFree_;
  ipc::DescriptorProducer rxActive_;
  ipc::DescriptorConsumer txActive_;
  ipc::DescriptorProducer txFree_;

  std::atomic<bool> stop_{false};
  bool deviceFailed_ = false;

  std::vector<ipc::Descriptor> stash_;      // valid empty buffers from rxFree, used LIFO
  std::vector<ipc::Descriptor> rxOut_;      // filled this round, to publish on rxActive
  std::vector<ipc::Descriptor> txIn_;       // popped from txActive this round
  std::vector<TxEntry> pendingTx_;          // popped, not yet done, in txActive order
  std::vector<ipc::Descriptor> txDone_;     // to return on txFree this round
  std::vector<std::byte> dropBuffer_;       // frames read without a pool buffer land here
  TcpCoalescer coalescer_;
  // Whether transmit() builds super-frames: the device's offload(), until it
  // refused kMaxGsoRefusals super-frames in a row (then it plainly does not
  // take them, and trying each time would cost a syscall per run).
  static constexpr uint32_t kMaxGsoRefusals = 16;
  bool coalesce_ = false;
  uint32_t gsoRefusalsInRow_ = 0;

  Counter rxFrames_, rxBytes_, rxDroppedNoBuffer_, rxDroppedOversize_, rxDroppedBadOffload_;
  Counter rxGsoFrames_, rxChecksumsCompleted_;
  Counter txFrames_, txBytes_, txGsoFrames_, txCoalescedFrames_, txGsoFallbacks_, txErrors_, txAcksThinned_;
  Counter badDescriptors_, wakeups_;
  int64_t lastLogNs_ = 0;
  uint64_t suppressedLogs_ = 0;
};

}  // namespace mknet::drivers
