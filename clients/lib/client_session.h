// ClientSession: one process's session with the stack. A control thread owns
// the Cap'n Proto connection (one kj event loop per thread); app threads use
// the shared memory directly and reach the control plane through the control
// thread's kj::Executor only for the rare socket operations.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "ipc/doorbell.h"
#include "ipc/result.h"
#include "ipc/session_region.h"

namespace mknet::client {

// The reply of a control call: 0 or an errno, plus call-specific values.
struct ControlReply {
  ControlReply() = default;
  explicit ControlReply(int e, uint32_t i = 0) : err(e), id(i) {}
  int err = 0;
  uint32_t id = 0;
  uint32_t ip = 0, port = 0, peerIp = 0, peerPort = 0;
  std::string value;
};

class ClientSession {
 public:
  // Connects to the stack at `path` and opens a session. ENETDOWN-style
  // errors (no stack, refused, version mismatch) come back as Error.
  static Result<std::shared_ptr<ClientSession>> open(const std::string& path);
  ~ClientSession();

  // True once the stack is gone or closed the session: every socket of this
  // session fails from now on; a new session is needed.
  bool dead() const {
    return dead_.load(std::memory_order_acquire) ||
           region_->header()->closed.load(std::memory_order_acquire) != 0;
  }

  // Control calls, executed on the control thread. `fill` builds the request
  // (a schema::Session::Client call) and returns its promise mapped to a
  // ControlReply. On a dead session: ControlReply{ECONNRESET}.
  enum class Op { kSocket, kBind, kListen, kConnect, kShutdown, kClose, kSetOption, kGetOption, kNames };
  struct Request {
    explicit Request(Op o, uint32_t i = 0) : op(o), id(i) {}
    Op op;
    uint32_t id = 0;
    int a = 0, b = 0;        // type / backlog / how / level+name
    uint32_t ip = 0, port = 0;
    std::string value;
  };
  ControlReply call(const Request& r);

  // Tells the stack to look at `slot` (new tx data, or rx space freed),
  // coalesced through the slot's notifyPending flag. Thread-safe.
  void notify(uint32_t slot, uint32_t generation);

  // Blocks until ready() is true, the deadline passes (false, ETIMEDOUT in
  // *err), the session dies (false, ECONNRESET), or a signal arrives (false,
  // EINTR). Any number of threads may wait at once.
  bool wait(const std::function<bool()>& ready, std::chrono::steady_clock::time_point deadline, int* err);

  // For mknet_poll: the fd to add to a kernel poll set, and what to do after
  // it was readable.
  int wakeFd() const { return toApp_.fd(); }
  void announceSleep() { region_->header()->appSleeping.store(1, std::memory_order_seq_cst); }
  void consumeWake();

  ipc::SessionRegion& region() { return *region_; }
  const ipc::SessionConfig& config() const { return region_->config(); }

 private:
  struct Control;  // the Cap'n Proto side, kept out of this header
  ClientSession();

  std::unique_ptr<ipc::SessionRegion> region_;
  ipc::Doorbell toApp_, toStack_;
  ipc::Doorbell selfWake_;  // a dup of toApp_, rung by us when the stack dies
  std::mutex notifyMu_;
  std::unique_ptr<ipc::SpscProducer<ipc::Notify>> notifyRing_;

  std::atomic<bool> dead_{false};
  std::atomic<bool> leader_{false};     // one thread sleeps on the eventfd...
  std::atomic<uint32_t> wakeEpoch_{0};  // ...the others on this futex word

  std::unique_ptr<Control> ctl_;
};

// The process's current session, opened lazily and replaced when it dies.
// Errors: ENETDOWN when the stack cannot be reached.
Result<std::shared_ptr<ClientSession>> currentSession();

}  // namespace mknet::client
