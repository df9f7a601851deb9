// DriverPort: the stack's end of one NIC driver attachment — the packet pool,
// the four rings, who owns which buffer, and what to do when the driver dies.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "ipc/doorbell.h"
#include "ipc/packet_pool.h"
#include "ipc/pool_region.h"
#include "libnet/frame.h"
#include "servers/stack/engine.h"

namespace mknet::stack {

struct DriverPortCounters {
  uint64_t rxFrames = 0, rxBytes = 0, txFrames = 0, txBytes = 0;
  uint64_t rxMartian = 0;         // IPv4 source is our own address or 127/8
  uint64_t rxL4ChecksumByDriver = 0;  // frames whose TCP/UDP checksum the driver wrote (not summed again here)
  uint64_t badDescriptors = 0;     // index/length out of range, or a buffer the driver doesn't hold
  uint64_t corruptRings = 0;       // a ring index the driver broke: attachment dropped
  uint64_t txDroppedNoDriver = 0;  // frames lwIP sent while no driver was attached
  uint64_t txRequeued = 0;         // unconfirmed frames sent again after a driver restart
  uint64_t attaches = 0, detaches = 0;
  std::array<uint64_t, net::kFrameErrorCount> rxBad{};  // malformed frames by reason
};

// The fds a newly registered driver receives.
struct DriverAttachment {
  ipc::UniqueFd region, toDriver, toStack;
  ipc::PoolConfig config;
};

class DriverPort : public FrameSink {
 public:
  // Creates the pool region once; it outlives every driver instance.
  static Result<std::unique_ptr<DriverPort>> create(const ipc::PoolConfig& config,
                                                    const ipc::Doorbell& stackBell);

  void setEngine(Engine* engine) { engine_ = engine; }

  // A driver registered. Any previous instance is detached first (its
  // buffers reclaimed); then the rings are reset and rxFree is filled.
  Result<DriverAttachment> attach(const std::string& name, uint32_t pid);
  // The driver is gone (its control connection closed, or it broke a ring):
  // every buffer it held comes back; frames it never confirmed are kept to be
  // sent again first when the next driver attaches ("duplication over loss").
  void detach(const char* why);
  bool attached() const { return attached_; }

  // One round of the data plane: rxActive into the engine, txFree back,
  // rxFree topped up. Returns how much work it found (0: idle).
  uint32_t poll(uint32_t budget);
  // Announces that the stack is about to sleep on its doorbell; false if
  // work arrived meanwhile.
  bool prepareSleep();
  void cancelSleep();

  // FrameSink (called by the engine).
  std::span<std::byte> beginFrame() override;
  void endFrame(size_t length) override;
  void releaseRxBuffer(uint32_t index) override;

  const DriverPortCounters& counters() const { return counters_; }
  uint32_t freeBuffers() const { return alloc_.available(); }
  uint32_t txBuffersFree() const override { return attached_ ? alloc_.available() : UINT32_MAX; }
  uint32_t bufferCount() const { return region_.config().bufferCount; }
  const std::string& driverName() const { return name_; }
  uint32_t driverPid() const { return pid_; }
  uint32_t registrations() const { return registrations_; }

 private:
  // Who holds each buffer; only the stack's private memory says so.
  enum class Owner : uint8_t { kFree, kDriverRx, kEngine, kDriverTx, kTxQueued, kTxBuilding };

  DriverPort(ipc::PoolRegion region, ipc::Doorbell toDriver, ipc::Doorbell toStack);
  void refillRxFree();
  void flushTx();
  void ringDriver();
  void corrupt(const char* which);

  ipc::PoolRegion region_;
  ipc::Doorbell toDriver_;
  ipc::Doorbell toStack_;  // a dup of the stack's doorbell, handed to drivers
  ipc::BufferAllocator alloc_;
  std::vector<Owner> owner_;
  Engine* engine_ = nullptr;

  bool attached_ = false;
  std::string name_;
  uint32_t pid_ = 0, registrations_ = 0;
  ipc::DescriptorProducer rxFree_, txActive_;
  ipc::DescriptorConsumer rxActive_, txFree_;
  // Frames on txActive in push order: the driver confirms them in order on
  // txFree; what is here when it dies was never confirmed.
  std::deque<ipc::Descriptor> txInFlight_;
  // Frames waiting for room on txActive or for a driver.
  std::deque<ipc::Descriptor> txPending_;
  uint32_t engineHeld_ = 0;  // received buffers lwIP has not freed yet
  uint32_t building_ = UINT32_MAX;  // buffer handed out by beginFrame()
  bool needRing_ = false;
  DriverPortCounters counters_;
};

}  // namespace mknet::stack
