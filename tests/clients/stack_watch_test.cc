// StackWatch (clients/lib/client_session.h): a spinning app thread stops
// once the stack's heartbeat has stood still for kStall, and not before.
#include <atomic>
#include <chrono>

#include <gtest/gtest.h>

#include "clients/lib/client_session.h"

namespace mknet::client {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST(StackWatchTest, StallsOnlyAfterTheBeatStoodStillForKStall) {
  std::atomic<uint64_t> beat{41};
  const Clock::time_point t0 = Clock::now();
  StackWatch w(&beat, t0);
  EXPECT_FALSE(w.stalled(t0));
  EXPECT_FALSE(w.stalled(t0 + StackWatch::kStall - 1us));
  EXPECT_TRUE(w.stalled(t0 + StackWatch::kStall));
  // A beat restarts the clock from when it was seen.
  beat.store(42);
  const Clock::time_point t1 = t0 + StackWatch::kStall + 5us;
  EXPECT_FALSE(w.stalled(t1));
  EXPECT_FALSE(w.stalled(t1 + StackWatch::kStall - 1us));
  beat.store(43);
  EXPECT_FALSE(w.stalled(t1 + StackWatch::kStall));  // moved again: not stalled
  EXPECT_TRUE(w.stalled(t1 + 2 * StackWatch::kStall));
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

  std::atomic<uint64_t> still{7};
  t0 = Clock::now();
  Spin stalled(&still);
  while (stalled.again()) {
  }
  auto took = Clock::now() - t0;
  EXPECT_GE(took, StackWatch::kStall);
  EXPECT_EQ(still.load(), 7u);

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

}  // namespace
}  // namespace mknet::client
