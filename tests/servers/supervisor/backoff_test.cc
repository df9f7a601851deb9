#include "servers/supervisor/backoff.h"

#include <gtest/gtest.h>

#include <vector>

namespace mknet::supervisor {
namespace {

using std::chrono::milliseconds;

std::vector<long> quickDeaths(Backoff& b, int n, milliseconds ran = milliseconds(5)) {
  std::vector<long> d;
  for (int i = 0; i < n; ++i) d.push_back(static_cast<long>(b.next(ran).count()));
  return d;
}

TEST(Backoff, FirstAtOnceThenDoublingCappedAtTwoSeconds) {
  Backoff b(BackoffPolicy{});
  EXPECT_EQ(quickDeaths(b, 9), (std::vector<long>{0, 100, 200, 400, 800, 1600, 2000, 2000, 2000}));
  EXPECT_EQ(b.consecutive(), 9u);
}

TEST(Backoff, HealthyRunResetsToAtOnce) {
  Backoff b(BackoffPolicy{});
  quickDeaths(b, 5);
  EXPECT_EQ(b.next(milliseconds(29999)).count(), 1600);  // not quite healthy
  EXPECT_EQ(b.next(milliseconds(30000)).count(), 0);     // healthy: at once
  EXPECT_EQ(b.next(milliseconds(10)).count(), 100);      // and the sequence starts over
  EXPECT_EQ(b.next(milliseconds(10)).count(), 200);
}

TEST(Backoff, CustomPolicy) {
  Backoff b(BackoffPolicy{milliseconds(30), milliseconds(100), milliseconds(1000)});
  EXPECT_EQ(quickDeaths(b, 6), (std::vector<long>{0, 30, 60, 100, 100, 100}));
}

TEST(Backoff, NoOverflowHoweverLongItDies) {
  Backoff b(BackoffPolicy{});
  long last = 0;
  for (int i = 0; i < 100000; ++i) last = static_cast<long>(b.next(milliseconds(0)).count());
  EXPECT_EQ(last, 2000);
}

}  // namespace
}  // namespace mknet::supervisor
