// ping: 1000 ICMP echo requests from the Linux side to the mknet stack, none lost.
#include <gtest/gtest.h>

#include <regex>

#include "tests/integration/testbed.h"

namespace mknet::itest {
namespace {

TEST(Ping, ThousandEchoRequestsNoneLost) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  const auto before = tb.counter("rx_frames");
  ASSERT_TRUE(before);

  // -i 0.002: 500 requests a second (root only); -W 2: wait at most 2 s for
  // the last answers. Bounded: 1000 requests, ~2 s.
  auto r = tb.runInNs({"ping", "-c", "1000", "-i", "0.002", "-W", "2", "-q", tb.mknetIp()}, 45s);
  ASSERT_EQ(r.status, 0) << r.output;

  std::smatch m;
  static const std::regex counts(R"((\d+) packets transmitted, (\d+) received(, \+(\d+) duplicates)?(, \+(\d+) errors)?)");
  ASSERT_TRUE(std::regex_search(r.output, m, counts)) << r.output;
  EXPECT_EQ(std::stoi(m[1]), 1000) << r.output;
  EXPECT_EQ(std::stoi(m[2]), 1000) << r.output;
  EXPECT_FALSE(m[3].matched) << "duplicate replies: " << r.output;
  EXPECT_FALSE(m[5].matched) << "ICMP errors: " << r.output;
  record("ping_summary", lastLineWith(r.output, "packets transmitted"));
  record("ping_rtt", lastLineWith(r.output, "rtt"));

  // Every request went through the driver and the stack's frame check.
  const auto after = tb.counter("rx_frames");
  ASSERT_TRUE(after);
  EXPECT_GE(*after - *before, 1000u);
  EXPECT_EQ(tb.peerFaults(), "") << "the stack counted faults of well-behaved peers";
  EXPECT_EQ(tb.leftovers(), "") << "leak check: what the stack still holds after every app has exited";
}

}  // namespace
}  // namespace mknet::itest
