// echo_udp: 10,000 datagrams of random sizes (8..1472 bytes) echoed and
// verified in full, mknet server with a Linux client and the reverse.
#include <gtest/gtest.h>

#include "tests/integration/testbed.h"

namespace mknet::itest {
namespace {

void expectAllVerified(const CommandResult& r, const char* what) {
  ASSERT_EQ(r.status, 0) << what << ": " << r.output;
  const std::string line = lastLineWith(r.output, "result=");
  auto kv = parseKeyValues(line);
  EXPECT_EQ(kv["result"], "ok") << what << ": " << r.output;
  EXPECT_EQ(kv["mode"], "udp") << line;
  // Every datagram answered and verified; no field reports a mismatch.
  EXPECT_EQ(kv["datagrams"], "10000") << line;
  EXPECT_EQ(kv["verified"], "10000") << line;
  EXPECT_EQ(kv["mismatches"], "0") << line;
  EXPECT_EQ(kv["lost"], "0") << line;
  EXPECT_EQ(kv["strangers"], "0") << line;
  record(std::string(what) + "_summary", line);
}

TEST(EchoUdp, LinuxClientToMknetServer) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  Process server = tb.spawnApp({Bin::echo(), "server", "--port", "7", "--udp"}, "echo-server.log");
  ASSERT_TRUE(server.waitForLine("listen=", 10s)) << server.output();
  auto r = tb.runInNs({Bin::echoKernel(), "client", "--udp", "--connect", tb.mknetIp() + ":7", "--datagrams",
                       "10000", "--seed", "41", "--timeout", "20"},
                      25s);
  expectAllVerified(r, "echo_udp_linux_to_mknet");
  record("echo_udp_linux_to_mknet_stack_udp_rx_dropped", std::to_string(tb.counter("udp_rx_dropped").value_or(0)));
  EXPECT_TRUE(server.running()) << server.output();
  EXPECT_EQ(tb.peerFaults(), "") << "the stack counted faults of well-behaved peers";
  server.stop();
  EXPECT_EQ(tb.leftovers(), "") << "leak check: what the stack still holds after every app has exited";
}

TEST(EchoUdp, MknetClientToLinuxServer) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  Process server = tb.spawnInNs({Bin::echoKernel(), "server", "--port", "7", "--udp"}, "echo-server.log");
  ASSERT_TRUE(server.waitForLine("listen=", 10s)) << server.output();
  auto r = tb.runApp({Bin::echo(), "client", "--udp", "--connect", tb.linuxIp() + ":7", "--datagrams", "10000",
                      "--seed", "42", "--timeout", "20"},
                     25s);
  expectAllVerified(r, "echo_udp_mknet_to_linux");
  // Retransmits are allowed (UDP); say where datagrams were dropped.
  EXPECT_EQ(tb.peerFaults(), "") << "the stack counted faults of well-behaved peers";
  record("echo_udp_mknet_to_linux_stack_udp_rx_dropped", std::to_string(tb.counter("udp_rx_dropped").value_or(0)));
  server.stop();
  EXPECT_EQ(tb.leftovers(), "") << "leak check: what the stack still holds after every app has exited";
}

}  // namespace
}  // namespace mknet::itest
