// bad_descriptors: a rogue driver. The real driver is stopped (SIGTERM by
// PID); the test registers with the stack itself (RogueDriver, the way
// mknet-tapdrv does), and pushes broken descriptors on rxActive: indices
// beyond the pool, lengths beyond a buffer, and a buffer it was never lent.
// The stack must count each one in `bad_descriptors`, exactly, and keep
// serving: a correct frame pushed after them is still received and answered.
// Then the rogue hangs up, the real driver starts again, and ping works.
#include <gtest/gtest.h>

#include <array>
#include <set>
#include <thread>
#include <vector>

#include "libnet/frame.h"
#include "tests/integration/rogue_driver.h"
#include "tests/integration/testbed.h"

namespace mknet::itest {
namespace {

using ipc::Descriptor;

// Waits until counter `name` reaches `value`, then a little longer so that
// an overshoot would show; returns the last value seen.
uint64_t settle(const Testbed& tb, const std::string& name, uint64_t value) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (tb.counter(name).value_or(0) < value && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  std::this_thread::sleep_for(300ms);
  return tb.counter(name).value_or(0);
}

TEST(BadDescriptors, CountedStackSurvivesRealDriverReturns) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  ASSERT_TRUE(tb.pingOk(2));
  ASSERT_TRUE(tb.stopDriver()) << tb.logTails();
  auto before = tb.status();
  ASSERT_TRUE(before);
  auto b = *before;

  {
    RogueDriver rogue(tb);
    ASSERT_TRUE(rogue.ok()) << rogue.error();
    ASSERT_TRUE(tb.waitCounter("link_up", 1, 5s));
    const auto& lent = rogue.lent();
    ASSERT_GE(lent.size(), 8u);
    const std::set<uint32_t> held(lent.begin(), lent.end());
    uint32_t notLent = 0;
    while (held.count(notLent) != 0) ++notLent;
    ASSERT_LT(notLent, rogue.config().bufferCount);
    const uint32_t count = rogue.config().bufferCount;

    const std::vector<Descriptor> bad = {
        {count, 60, 0, 1},  // one past the last buffer
        {count + 1000, 60, 0, 2},
        {UINT32_MAX, 60, 0, 3},
        {lent[0], ipc::kBufferSize + 1, 0, 4},  // a lent buffer, longer than a buffer
        {lent[1], 1u << 20, 0, 5},
        {lent[2], UINT32_MAX, 0, 6},
        {notLent, 60, 0, 7},  // in range, but not a buffer the driver holds
        {notLent, 60, 0, 8},
    };
    ASSERT_TRUE(rogue.pushRaw(bad));
    const uint64_t want = b["bad_descriptors"] + bad.size();
    EXPECT_EQ(settle(tb, "bad_descriptors", want), want);
    record("bad_descriptors_pushed", std::to_string(bad.size()));
    auto mid = tb.status();
    ASSERT_TRUE(mid) << "the stack stopped answering";
    EXPECT_TRUE(tb.stack().running());
    EXPECT_EQ((*mid)["corrupt_rings"], b["corrupt_rings"]);
    EXPECT_EQ((*mid)["rx_frames"], b["rx_frames"]) << "a bad descriptor reached the engine";

    // A correct frame after them, an echo request from a made-up host on the
    // subnet, is received and answered (ARP first): the port keeps working.
    net::FrameBuilder fb{.srcMac = *net::MacAddress::parse("02:00:00:00:00:77"),
                         .dstMac = *net::MacAddress::parse(tb.mac()),
                         .srcIp = *net::Ipv4Address::parse("198.18." + std::to_string(tb.subnet()) + ".77"),
                         .dstIp = *net::Ipv4Address::parse(tb.mknetIp())};
    std::array<uint8_t, 32> payload{};
    std::vector<uint8_t> frame(1514);
    auto n = fb.buildIcmp(frame, net::IcmpBuilder::echoRequest(7, 1), payload);
    ASSERT_TRUE(n);
    frame.resize(*n);
    ASSERT_TRUE(rogue.pushFrame(lent[3], frame));
    EXPECT_EQ(settle(tb, "rx_frames", b["rx_frames"] + 1), b["rx_frames"] + 1);
    EXPECT_FALSE(rogue.takeTx(2s).empty()) << "the stack sent nothing in answer to a valid echo request";
    EXPECT_EQ(tb.counter("bad_descriptors").value_or(0), want);
  }  // hangs up

  ASSERT_TRUE(tb.waitCounter("link_up", 0, 5s)) << "the stack did not notice the rogue driver leave";
  ASSERT_TRUE(tb.stack().running()) << tb.logTails();
  ASSERT_TRUE(tb.startDriver()) << tb.error();
  EXPECT_TRUE(tb.pingOk(5));
  EXPECT_EQ(tb.counter("corrupt_rings").value_or(1), b["corrupt_rings"]);
  EXPECT_EQ(tb.leftovers(), "") << "leak check: what the stack still holds after every app has exited";
}

}  // namespace
}  // namespace mknet::itest
