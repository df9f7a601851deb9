// The waiting helpers of clients/lib/client_session.h: StackWatch (a
// spinning app thread stops once the stack's heartbeat has stood still for
// kStall, and not before), Spin, and SignalHold (a signal arriving while a
// poll-like call spins interrupts its sleep instead of being missed).
#include <poll.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cerrno>
#include <chrono>

#include <gtest/gtest.h>

#include "clients/lib/client_session.h"

namespace mknet::client {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST(StackWatchTest, StallsOnlyAfterTheBeatStoodStillForKStall) {
  constexpr int kCpu = 3;
  std::atomic<uint64_t> beat{ipc::makeBeat(41, kCpu)};
  const Clock::time_point t0 = Clock::now();
  StackWatch w(&beat, t0);
  EXPECT_FALSE(w.stalled(t0, kCpu));
  EXPECT_FALSE(w.stalled(t0 + StackWatch::kStall - 1us, kCpu));
  EXPECT_TRUE(w.stalled(t0 + StackWatch::kStall, kCpu));
  // A beat restarts the clock from when it was seen.
  beat.store(ipc::makeBeat(42, kCpu));
  const Clock::time_point t1 = t0 + StackWatch::kStall + 5us;
  EXPECT_FALSE(w.stalled(t1, kCpu));
  EXPECT_FALSE(w.stalled(t1 + StackWatch::kStall - 1us, kCpu));
  beat.store(ipc::makeBeat(43, kCpu));
  EXPECT_FALSE(w.stalled(t1 + StackWatch::kStall, kCpu));  // moved again: not stalled
  EXPECT_TRUE(w.stalled(t1 + 2 * StackWatch::kStall, kCpu));
}

// The beat's CPU: a stack standing still on another CPU is not waiting for
// ours, so that is no stall; an unknown CPU on either side counts as ours.
TEST(StackWatchTest, AStackStandingStillOnAnotherCpuIsNoStall) {
  std::atomic<uint64_t> beat{ipc::makeBeat(9, 1)};
  const Clock::time_point t0 = Clock::now();
  StackWatch w(&beat, t0);
  const Clock::time_point late = t0 + 10 * StackWatch::kStall;
  EXPECT_FALSE(w.stalled(late, 0));
  EXPECT_FALSE(w.stalled(late, 2));
  EXPECT_TRUE(w.stalled(late, 1));
  EXPECT_TRUE(w.stalled(late, -1));
  beat.store(ipc::makeBeat(10, -1));
  EXPECT_FALSE(w.stalled(late, 0));  // moved
  EXPECT_TRUE(w.stalled(late + StackWatch::kStall, 0));
}

TEST(StackWatchTest, BeatKeepsRoundAndCpuApart) {
  EXPECT_EQ(ipc::beatCpu(ipc::makeBeat(5, 0)), 0);
  EXPECT_EQ(ipc::beatCpu(ipc::makeBeat(5, 17)), 17);
  EXPECT_EQ(ipc::beatCpu(ipc::makeBeat(5, -1)), -1);
  EXPECT_EQ(ipc::beatCpu(ipc::makeBeat(5, 1 << 20)), -1);  // beyond the field: unknown
  EXPECT_EQ(ipc::makeBeat(5, 17) >> ipc::kBeatCpuBits, 5u);
  EXPECT_NE(ipc::makeBeat(5, 17), ipc::makeBeat(6, 17));
}

// Spin: over once the deadline, spinTime() or (with a heartbeat) a stall of
// kStall has passed, and not before.
TEST(StackWatchTest, SpinEndsAtTheFirstOfDeadlineSpinTimeAndStall) {
  EXPECT_FALSE(Spin(nullptr, Clock::now() - 1us).again());

  auto t0 = Clock::now();
  Spin timeOnly(nullptr);
  int rounds = 0;
  while (timeOnly.again()) ++rounds;
  EXPECT_GE(Clock::now() - t0, spinTime());
  EXPECT_GT(rounds, 0);

  // A beat standing still on an unknown CPU: a stall wherever we run.
  std::atomic<uint64_t> still{ipc::makeBeat(7, -1)};
  t0 = Clock::now();
  Spin stalled(&still);
  while (stalled.again()) {
  }
  auto took = Clock::now() - t0;
  EXPECT_GE(took, StackWatch::kStall);
  EXPECT_EQ(still.load(), ipc::makeBeat(7, -1));

  // Standing still on a CPU that is not ours (no machine has this many):
  // the spin runs its full time.
  std::atomic<uint64_t> elsewhere{ipc::makeBeat(7, 60000)};
  t0 = Clock::now();
  Spin away(&elsewhere);
  while (away.again()) {
  }
  EXPECT_GE(Clock::now() - t0, spinTime());

  // A beat that keeps moving: the spin runs its full time.
  std::atomic<uint64_t> moving{0};
  t0 = Clock::now();
  Spin busy(&moving);
  while (busy.again()) moving.fetch_add(1);
  EXPECT_GE(Clock::now() - t0, spinTime());
}

TEST(StackWatchTest, SpinTimeDefaultsTo100Microseconds) {
  // The test runs without MKNET_SPIN_US (ctest's environment); spinTime()
  // reads it once per process.
  ASSERT_EQ(std::getenv("MKNET_SPIN_US"), nullptr);
  EXPECT_EQ(spinTime(), 100us);
}

TEST(StackWatchTest, WithoutABeatNeverStalls) {
  const Clock::time_point t0 = Clock::now();
  StackWatch w(nullptr, t0);
  EXPECT_FALSE(w.stalled(t0 + 100 * StackWatch::kStall));
}

std::atomic<int> gHandled{0};
void onUsr1(int) { gHandled.fetch_add(1); }

TEST(SignalHoldTest, ASignalDuringTheSpinInterruptsTheSleep) {
  struct sigaction sa {};
  sa.sa_handler = onUsr1;
  sigemptyset(&sa.sa_mask);
  struct sigaction old {};
  ASSERT_EQ(sigaction(SIGUSR1, &sa, &old), 0);
  gHandled = 0;
  {
    SignalHold hold(nullptr);
    // Arrives "between two looks at the rings": held, its handler not run.
    ASSERT_EQ(pthread_kill(pthread_self(), SIGUSR1), 0);
    EXPECT_EQ(gHandled.load(), 0);
    sigset_t now;
    pthread_sigmask(SIG_SETMASK, nullptr, &now);
    EXPECT_EQ(sigismember(&now, SIGUSR1), 1);
    EXPECT_EQ(sigismember(&now, SIGSEGV), 0) << "synchronous signals are never held";
    EXPECT_EQ(sigismember(hold.sleepMask(), SIGUSR1), 0) << "the sleep uses the caller's mask";
    // The sleep it would have slept through returns EINTR at once.
    const auto t0 = Clock::now();
    timespec ts{5, 0};
    errno = 0;
    EXPECT_EQ(ppoll(nullptr, 0, &ts, hold.sleepMask()), -1);
    EXPECT_EQ(errno, EINTR);
    EXPECT_LT(Clock::now() - t0, 1s);
    EXPECT_EQ(gHandled.load(), 1);
  }
  // Held and not slept on: the handler runs when the hold ends.
  {
    SignalHold hold(nullptr);
    ASSERT_EQ(pthread_kill(pthread_self(), SIGUSR1), 0);
    EXPECT_EQ(gHandled.load(), 1);
  }
  EXPECT_EQ(gHandled.load(), 2);
  // With a call mask (ppoll/epoll_pwait's sigmask), the sleep uses that one.
  sigset_t callMask;
  sigemptyset(&callMask);
  sigaddset(&callMask, SIGUSR2);
  {
    SignalHold hold(&callMask);
    EXPECT_EQ(sigismember(hold.sleepMask(), SIGUSR2), 1);
    EXPECT_EQ(sigismember(hold.sleepMask(), SIGUSR1), 0);
  }
  sigset_t after;
  pthread_sigmask(SIG_SETMASK, nullptr, &after);
  EXPECT_EQ(sigismember(&after, SIGUSR1), 0) << "the hold restored the mask";
  sigaction(SIGUSR1, &old, nullptr);
}

}  // namespace
}  // namespace mknet::client
