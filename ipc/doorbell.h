// Doorbell: an eventfd one process rings to wake another, with a wait that
// spins for a bounded time before it sleeps.
#pragma once

#include <chrono>
#include <cstdint>

#include "ipc/result.h"
#include "ipc/unique_fd.h"

namespace mknet::ipc {

enum class WaitResult : uint8_t {
  kReady,        // the condition holds (maybe without ever sleeping)
  kTimeout,      // the deadline passed first
  kInterrupted,  // a signal arrived while sleeping (EINTR)
  kError,        // poll/read failed: the fd is broken
};

class Doorbell {
 public:
  Doorbell() = default;
  explicit Doorbell(UniqueFd fd) : fd_(std::move(fd)) {}
  // A new non-blocking, close-on-exec eventfd. Errors carry errno.
  static Result<Doorbell> create();

  // Wakes the sleeper. Async-signal-safe; never blocks (an eventfd counter
  // saturating is impossible at 2^64-2 rings).
  void ring() const;
  // Consumes pending rings without blocking; true if there were any.
  bool drain() const;
  // Sleeps until rung or `timeout` passes (negative: forever), then drains.
  WaitResult sleep(std::chrono::nanoseconds timeout) const;

  // Waits until ready() is true: calls it in a loop for up to `spin`, then
  // calls prepareSleep() (which must announce the sleep in the ring and return
  // false if the condition became true meanwhile), sleeps on the doorbell and
  // calls cancelSleep() after waking, and repeats until ready() or timeout.
  template <typename Ready, typename PrepareSleep, typename CancelSleep>
  WaitResult wait(Ready ready, PrepareSleep prepareSleep, CancelSleep cancelSleep,
                  std::chrono::nanoseconds spin, std::chrono::nanoseconds timeout) const {
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    const auto spinEnd = start + spin;
    // Reading the clock costs ~20 ns; check it every 64 polls. No spin at
    // all when none is asked for (64 polls would be ~2 us here).
    for (uint32_t i = 0; spin.count() > 0; ++i) {
      if (ready()) return WaitResult::kReady;
      if ((i & 63) == 63 && Clock::now() >= spinEnd) break;
      cpuRelax();
    }
    for (;;) {
      std::chrono::nanoseconds left{-1};
      if (timeout.count() >= 0) {
        left = timeout - (Clock::now() - start);
        if (left.count() <= 0) return ready() ? WaitResult::kReady : WaitResult::kTimeout;
      }
      if (!prepareSleep()) {
        if (ready()) return WaitResult::kReady;
        continue;
      }
      WaitResult r = sleep(left);
      cancelSleep();
      if (ready()) return WaitResult::kReady;
      if (r == WaitResult::kInterrupted || r == WaitResult::kError) return r;
    }
  }

  int fd() const { return fd_.get(); }
  bool valid() const { return fd_.valid(); }
  Result<UniqueFd> dupFd() const;

  static void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }

 private:
  UniqueFd fd_;
};

}  // namespace mknet::ipc
