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

TEST(StackWatchTest, SpinTimeDefaultsTo100Microseconds) {
  // The test runs without MKNET_SPIN_US (ctest's environment); spinTime()
  // reads it once per process.
  ASSERT_EQ(std::getenv("MKNET_SPIN_US"), nullptr);
  EXPECT_EQ(spinTime(), 100us);
}

}  // namespace
}  // namespace mknet::client
