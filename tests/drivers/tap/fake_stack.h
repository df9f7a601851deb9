// FakeStack: the smallest stack server a driver can talk to, for tests.
//
// Control: serves Stack.drivers() / DriverRegistry.register() on a Unix
// socket (RpcServer on its own kj thread), creating one PoolRegion and two
// doorbells up front and handing dups of them to every registration.
// Data: a thread that drains rxActive and txFree, answers ARP requests and
// ICMP echo requests for its IPv4 address (checking the echo payload against
// ping's -p pattern) by rewriting the received buffer and queueing it on
// txActive, and recycles every other buffer to rxFree.
//
// Buffer accounting follows every index: a buffer is either the stack's or
// lent to the driver (via rxFree or txActive). A descriptor coming back that
// was not lent, or lent the other way, is an accounting error. When a driver
// dies (its session is dropped) or a new one registers, everything still
// lent is reclaimed, the rings are reset and rxFree is filled again.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <kj/async.h>

#include "ipc/doorbell.h"
#include "ipc/pool_region.h"
#include "ipc/spsc_ring.h"
#include "libnet/ethernet.h"
#include "libnet/ipv4.h"

namespace mknet::drivers::test {

struct FakeStackOptions {
  std::string socketPath;
  net::Ipv4Address ip;
  uint32_t buffers = 256;
  // Expected ICMP echo payload from byte 16 on (after ping's timestamp):
  // ping -p <hex> repeats the pattern from the start of the payload.
  std::vector<uint8_t> echoPattern;
};

struct FakeStackCounters {
  uint32_t registrations = 0;
  uint32_t sessionsLost = 0;       // driver connections that went away
  uint64_t arpReplies = 0;
  uint64_t echoReplies = 0;
  uint64_t echoPayloadErrors = 0;  // echo requests whose payload was not the pattern
  uint64_t otherFrames = 0;        // anything else (IPv6, frames for others...)
  uint64_t badFrames = 0;          // failed parseFrame()
  uint64_t accountingErrors = 0;   // a buffer came back that was not lent that way
  uint64_t badDescriptors = 0;     // out-of-range index or length from the driver
  uint64_t reclaims = 0;           // times lent buffers were taken back
  uint64_t buffersReclaimed = 0;   // total buffers taken back
  uint64_t lastReclaimed = 0;      // buffers taken back the last time
  uint64_t lentToDriver = 0;       // buffers lent now (rings + what the driver holds)
  uint64_t heldByDriver = 0;       // lent and already taken off rxFree/txActive by the driver
  uint64_t statsReports = 0;
  uint64_t reportedRxFrames = 0;   // from the last reportStats
  uint64_t reportedTxFrames = 0;
};

struct RegisteredDriver {
  std::string name;
  std::vector<uint8_t> mac;
  uint32_t mtu = 0;
  bool linkUp = false;
  uint32_t pid = 0;
  uint32_t abiVersion = 0;
};

class FakeStack {
 public:
  explicit FakeStack(FakeStackOptions options);
  ~FakeStack();
  FakeStack(const FakeStack&) = delete;
  FakeStack& operator=(const FakeStack&) = delete;

  // Empty if the server is listening, else why not.
  const std::string& startError() const { return startError_; }

  FakeStackCounters counters();
  std::optional<RegisteredDriver> lastDriver();
  // True while a driver is registered and its connection is open.
  bool driverAttached();
  // Breaks the ring contract: publishes a txActive head that claims more
  // records than the ring holds, and rings the driver.
  void corruptTxActive();
  // Waits until counters() satisfies pred; false on timeout.
  template <typename Pred>
  bool waitUntil(Pred pred, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (pred(counters())) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return pred(counters());
  }

  // Called from the control thread.
  struct Attachment {
    ipc::UniqueFd region, toDriver, toStack;
    uint32_t bufferCount, ringCapacity;
    uint64_t generation;
  };
  Attachment onRegister(const RegisteredDriver& driver);
  void onSessionGone(uint64_t generation);
  void onStats(uint64_t rxFrames, uint64_t txFrames);
  void onSetLink(bool up);

 private:
  enum class Where : uint8_t { kStack, kRxFree, kTxActive };

  void controlThread();
  void dataThread();
  // With mu_ held: one burst of rxActive and txFree; returns descriptors handled.
  uint32_t processRings();
  // With mu_ held: builds a reply in buffer `index` (holding `length` bytes
  // received); returns its length or 0 to recycle the buffer.
  uint32_t answer(uint32_t index, uint32_t length);
  // With mu_ held: takes back every lent buffer, resets and refills the rings.
  void reclaimLocked(bool driverWasAttached);
  void lendRx(uint32_t index);
  void lendTx(uint32_t index, uint32_t length);
  void flushLocked();

  FakeStackOptions options_;
  std::string startError_;
  net::MacAddress mac_;  // the registered driver's, used as ours

  std::mutex mu_;
  std::optional<ipc::PoolRegion> region_;
  ipc::Doorbell toDriver_, toStack_, wake_;
  ipc::DescriptorProducer rxFree_, txActive_;
  ipc::DescriptorConsumer rxActive_, txFree_;
  std::vector<Where> where_;
  std::vector<ipc::Descriptor> rxFreeOut_, txActiveOut_;
  bool attached_ = false;
  uint64_t generation_ = 0;
  FakeStackCounters counters_;
  std::optional<RegisteredDriver> driver_;

  std::atomic<bool> stopping_{false};
  std::thread control_;
  std::thread data_;
  // Set by the control thread once it listens (or failed to).
  std::mutex startMu_;
  std::condition_variable startCv_;
  bool started_ = false;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stopFulfiller_;  // under startMu_
};

}  // namespace mknet::drivers::test
