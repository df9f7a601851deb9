// RogueDriver: the test plays the NIC driver. It registers with a Testbed's
// stack the way mknet-tapdrv does (drivers/tap/stack_link.cc: Stack ->
// drivers() -> register(), receiveFd() for the pool region and the doorbells,
// PoolRegion::attach), so a test can put any descriptor or any frame on
// rxActive and read what the stack transmits on txActive.
//
// Stop the real driver first (Testbed::stopDriver). The registration lives
// as long as the object; the destructor hangs up, and the stack detaches the
// port as it does for a dead driver. Use it on the test's main thread: it
// owns a kj event loop (one per thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ipc/pool_region.h"
#include "ipc/spsc_ring.h"
#include "tests/integration/testbed.h"

namespace mknet::itest {

class RogueDriver {
 public:
  explicit RogueDriver(const Testbed& tb);
  ~RogueDriver();
  RogueDriver(const RogueDriver&) = delete;
  RogueDriver& operator=(const RogueDriver&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  const ipc::PoolConfig& config() const { return config_; }

  // Buffer indices the stack lent us on rxFree (taken at registration),
  // ascending; an index given back with pushFrame() is no longer ours.
  const std::vector<uint32_t>& lent() const { return lent_; }

  // Pushes descriptors as they are, unchecked, and rings the stack.
  bool pushRaw(std::span<const ipc::Descriptor> descriptors);
  // Copies `frame` into lent buffer `index` and pushes it on rxActive.
  bool pushFrame(uint32_t index, std::span<const uint8_t> frame);
  // Frames the stack transmitted, oldest first, each handed back on txFree;
  // waits up to `timeout` for the first one, then takes what else is there.
  std::vector<std::vector<uint8_t>> takeTx(std::chrono::milliseconds timeout);

 private:
  struct Kj;
  std::unique_ptr<Kj> kj_;
  std::string error_;
  ipc::PoolConfig config_;
  std::vector<uint32_t> lent_;
};

}  // namespace mknet::itest
