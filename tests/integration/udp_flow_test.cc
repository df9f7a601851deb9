// udp_flow: an mknet app sending UDP as fast as send() returns must not
// make the stack drop datagrams for want of transmit buffers: send() waits
// instead (as a full socket buffer makes it on Linux). Whatever is lost may
// only be lost where Linux loses it too, at the Linux receiver's socket.
#include <gtest/gtest.h>

#include "tests/integration/testbed.h"

namespace mknet::itest {
namespace {

TEST(UdpFlow, FastSenderLosesNothingInTheStack) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  for (const char* size : {"64", "1472"}) {
    SCOPED_TRACE(size);
    Process recv = tb.spawnInNs({MKNET_UDP_KERNEL_BIN, "recv", "--port", "7200", "--idle-timeout", "2"},
                                std::string("udp-recv-") + size + ".log");
    ASSERT_TRUE(recv.waitForLine("listen=", 10s)) << recv.output();
    auto before = tb.counter("engine_tx_no_buffer");
    ASSERT_TRUE(before);
    auto send = tb.runApp({MKNET_UDP_BIN, "send", "--connect", tb.linuxIp() + ":7200", "--size", size, "--count",
                           "200000", "--seconds", "30"},
                          60s);
    ASSERT_TRUE(send.ok()) << send.output;
    auto s = parseKeyValues(lastLineWith(send.output, "mode=send"));
    EXPECT_EQ(s["sent"], "200000") << send.output;
    EXPECT_EQ(s["errors"], "0") << send.output;
    ASSERT_TRUE(recv.wait(20s)) << recv.output();
    auto r = parseKeyValues(lastLineWith(recv.output(), "mode=recv"));
    EXPECT_EQ(r["bad"], "0") << recv.output();
    EXPECT_GT(std::stoull(r["received"].empty() ? "0" : r["received"]), 100000u) << recv.output();
    auto after = tb.counter("engine_tx_no_buffer");
    ASSERT_TRUE(after);
    EXPECT_EQ(*after, *before) << "the stack dropped datagrams for want of transmit buffers";
    record(std::string("udp_flow_") + size + "_received", r["received"]);
  }
  EXPECT_EQ(tb.leftovers(), "") << "leak check";
}

}  // namespace
}  // namespace mknet::itest
