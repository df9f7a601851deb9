// ClientSession: one process's session with the stack. Data and socket
// operations both go through the session's shared memory (rings, control
// mailbox). In the multi-process arrangement a control thread holds the
// Cap'n Proto connection the session was opened over: its hang-up is how the
// stack learns that the app died, and how the app learns that the stack did.
// In the single-process arrangement the session comes from an in-process
// stack and no connection exists.
#pragma once

#include <sched.h>
#include <signal.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "ipc/doorbell.h"
#include "ipc/result.h"
#include "ipc/session_region.h"
#include "ipc/unique_fd.h"

namespace mknet::client {

// How long a waiting thread spins (yielding) before it sleeps on the
// doorbell: a wake-up across CPUs costs 10-50 us on these machines, more
// than most waits for the stack take. 100 us unless MKNET_SPIN_US says
// otherwise (0..100000; read once; a bad value is reported on stderr and
// ignored).
std::chrono::microseconds spinTime();

// Watches the stack's heartbeat (SessionHeader::stackBeat) during a spin: a
// beat that has not moved for kStall and names this thread's CPU means the
// stack is asleep (it will ring the doorbell) or waiting for this very CPU,
// and spinning on would only keep the CPU from it. On a machine with fewer
// CPUs than busy threads, and with the stack in another scheduling group (its
// own session or cgroup), a spinning app otherwise takes half the machine
// while the stack waits. A stack standing still on another CPU (behind the
// driver or the peer there) loses nothing to this spin, while a sleep here
// would cost the answer a wake-up of this CPU (10-50 us): the spin goes on.
class StackWatch {
 public:
  static constexpr auto kStall = std::chrono::microseconds(15);
  // beat null: a watch that never reports a stall.
  explicit StackWatch(const std::atomic<uint64_t>* beat, std::chrono::steady_clock::time_point now)
      : beat_(beat), last_(beat != nullptr ? beat->load(std::memory_order_relaxed) : 0), moved_(now) {}
  // True once the beat has stood still for kStall on this thread's CPU.
  bool stalled(std::chrono::steady_clock::time_point now) { return stalled(now, sched_getcpu()); }
  // The same, for a thread on CPU `myCpu` (-1: unknown, any stall counts).
  bool stalled(std::chrono::steady_clock::time_point now, int myCpu) {
    if (beat_ == nullptr) return false;
    uint64_t b = beat_->load(std::memory_order_relaxed);
    if (b != last_) {
      last_ = b;
      moved_ = now;
      return false;
    }
    if (now - moved_ < kStall) return false;
    const int stackCpu = ipc::beatCpu(b);
    return stackCpu < 0 || myCpu < 0 || stackCpu == myCpu;
  }

 private:
  const std::atomic<uint64_t>* beat_ = nullptr;
  uint64_t last_ = 0;
  std::chrono::steady_clock::time_point moved_{};
};

// The spin before a sleep, the same for every waiting call (ClientSession::
// wait, mknet_ppoll, the shim's epoll_wait): rounds of "look, then
// sched_yield()" for at most spinTime() and until the deadline, and only while
// the stack's heartbeat moves (StackWatch). A yield rather than a pause: on a
// small machine the stack or the driver we wait for may need this very CPU.
class Spin {
 public:
  using Clock = std::chrono::steady_clock;
  // beat: the stack's heartbeat in the session waited on (null: the time
  // limits alone). It must stay mapped while the Spin is used.
  explicit Spin(const std::atomic<uint64_t>* beat, Clock::time_point deadline = Clock::time_point::max())
      : start_(Clock::now()), end_(std::min(deadline, start_ + spinTime())), watch_(beat, start_) {}
  // Call after a round that found nothing: false once the spin is over (the
  // caller then sleeps); otherwise yields the CPU and returns true.
  bool again() {
    const auto now = Clock::now();
    if (now >= end_ || watch_.stalled(now)) return false;
    sched_yield();
    return true;
  }

 private:
  Clock::time_point start_, end_;
  StackWatch watch_;
};

// Holds the calling thread's asynchronous signals while a poll-like call
// (mknet_ppoll, the shim's epoll_wait) spins and scans, and gives the mask
// its ppoll() sleeps with: the caller's own, or the call's sigmask. A signal
// arriving between two looks at the rings then stays pending and interrupts
// the next ppoll() (EINTR), instead of running its handler where the call
// cannot see it and going back to sleep. Linux's poll and epoll_wait return
// EINTR once a handler ran during the call, and servers that stop on a signal
// depend on it (nginx's worker sat in epoll_wait after SIGQUIT). Synchronous
// signals (faults, traps) are never held. The destructor restores the mask:
// a signal still held runs its handler then, as the call returns.
class SignalHold {
 public:
  // callMask: the sigmask argument of ppoll/epoll_pwait, or null.
  explicit SignalHold(const sigset_t* callMask);
  ~SignalHold();
  SignalHold(const SignalHold&) = delete;
  SignalHold& operator=(const SignalHold&) = delete;
  // The mask to pass to ppoll().
  const sigset_t* sleepMask() const { return &sleep_; }

 private:
  sigset_t old_, sleep_;
};

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
  // The same over a connection made earlier (a forked child's; see fork
  // handling in client_session.cc). Takes ownership of `connected`.
  static Result<std::shared_ptr<ClientSession>> open(const std::string& path, ipc::UniqueFd connected);

  // A session handed over directly by a stack in this same process.
  using Offer = ipc::SessionOffer;
  static Result<std::shared_ptr<ClientSession>> openLocal(Offer offer);
  ~ClientSession();

  // True once the stack is gone or closed the session: every socket of this
  // session fails from now on; a new session is needed.
  bool dead() const {
    return dead_.load(std::memory_order_acquire) || inherited() ||
           region_->header()->closed.load(std::memory_order_acquire) != 0;
  }
  // True in a child process for the sessions its parent had at fork(): they
  // are the parent's (its rings, its connection) and this process never
  // touches them again, except to name their sockets in a share request.
  bool inherited() const;
  // The stack's name for this session (see SessionHeader::token).
  uint64_t token() const { return region_->header()->token; }

  // A control call through one of the session's mailboxes (the first free
  // one from the calling thread's own; callers queue only when all are
  // busy), never interrupted half-way (a signal does not cancel it). On a
  // dead session: ControlReply{ECONNRESET}.
  enum class Op { kSocket, kBind, kListen, kConnect, kShutdown, kSetOption, kGetOption, kNames, kShare };
  struct Request {
    explicit Request(Op o, uint32_t i = 0) : op(o), id(i) {}
    Op op;
    uint32_t id = 0;
    int a = 0, b = 0;        // type / backlog / how / level+name
    uint32_t ip = 0, port = 0;
    std::string value;
  };
  ControlReply call(const Request& r);

  // Closes the socket in `slot`: posted, not asked (see ipc::kCloseBit), so
  // it returns at once. Thread-safe.
  void postClose(uint32_t slot, uint32_t generation) { (void)pushNotify(ipc::Notify{slot | ipc::kCloseBit, generation}); }

  // Tells the stack to look at `slot` (new tx data, or rx space freed),
  // coalesced through the slot's notifyPending flag. Thread-safe.
  void notify(uint32_t slot, uint32_t generation);
  // Queues any notification for the stack, ringing it if it sleeps. False
  // if the ring is full (only when the stack is gone). Thread-safe.
  bool pushNotify(const ipc::Notify& n);

  // Blocks until ready() is true, the deadline passes (false, ETIMEDOUT in
  // *err), the session dies (false, ECONNRESET), or a signal arrives (false,
  // EINTR). Any number of threads may wait at once.
  bool wait(const std::function<bool()>& ready, std::chrono::steady_clock::time_point deadline, int* err);

  // For mknet_poll: the fd to add to a kernel poll set, and what to do after
  // it was readable.
  int wakeFd() const { return toApp_.fd(); }
  void announceSleep() { region_->header()->appSleeping.store(1, std::memory_order_seq_cst); }
  // The stack's heartbeat in this session (see StackWatch).
  const std::atomic<uint64_t>* stackBeat() const { return &region_->header()->stackBeat; }
  void consumeWake();

  ipc::SessionRegion& region() { return *region_; }
  const ipc::SessionConfig& config() const { return region_->config(); }

 private:
  struct Control;  // the Cap'n Proto side, kept out of this header
  ClientSession();
  Result<void> attach(Offer offer);

  std::unique_ptr<ipc::SessionRegion> region_;
  ipc::Doorbell toApp_, toStack_;
  ipc::Doorbell selfWake_;  // a dup of toApp_, rung by us when the stack dies
  std::mutex notifyMu_;
  std::unique_ptr<ipc::SpscProducer<ipc::Notify>> notifyRing_;
  struct Mailbox {
    std::mutex mu;     // one request at a time in this mailbox
    uint32_t seq = 0;  // under mu
  };
  std::array<Mailbox, ipc::kControlMailboxes> mailboxes_;

  std::atomic<bool> dead_{false};
  std::atomic<bool> leader_{false};     // one thread sleeps on the eventfd...
  std::atomic<uint32_t> wakeEpoch_{0};  // ...the others on this futex word

  std::unique_ptr<Control> ctl_;
  uint32_t forkEpoch_;    // the process's fork count when this session was made
  int controlFd_ = -1;    // the Cap'n Proto connection's fd, for forgetInChild()

  friend struct ForkHandlers;
  // In a child, right after fork(): closes this process's copies of the
  // parent's connection and doorbells, so the stack still sees the parent's
  // connection close when the parent dies.
  void forgetInChild();
};

// The process's current session, opened lazily and replaced when it dies.
// Errors: ENETDOWN when the stack cannot be reached.
Result<std::shared_ptr<ClientSession>> currentSession();

// How currentSession() opens a session. By default: over the stack's control
// socket (MKNET_STACK_SOCKET, or MKNET_RUNTIME_DIR/stack.sock). The
// single-process wiring (servers/inprocess) installs its own.
using SessionOpener = Result<std::shared_ptr<ClientSession>> (*)();
void setSessionOpener(SessionOpener opener);

}  // namespace mknet::client
