// echo_tcp: every byte echoed over many concurrent TCP connections, both ways
// round: mknet-echo server on mknet with 200 clients from Linux, and a Linux
// server with 50 clients from mknet. The client checks every echoed byte
// against its own copy of the stream and exits 0 only if all matched.
#include <gtest/gtest.h>

#include "tests/integration/testbed.h"

namespace mknet::itest {
namespace {

void expectAllVerified(const CommandResult& r, int connections, uint64_t bytes, const char* what) {
  ASSERT_EQ(r.status, 0) << what << ": " << tail(r.output);
  auto kv = parseKeyValues(lastLineWith(r.output, "result="));
  EXPECT_EQ(kv["result"], "ok") << what << ": " << tail(r.output);
  EXPECT_EQ(kv["connections"], std::to_string(connections)) << what;
  EXPECT_EQ(kv["ok"], std::to_string(connections)) << what;
  EXPECT_EQ(kv["failed"], "0") << what;
  EXPECT_EQ(kv["mismatches"], "0") << what;
  EXPECT_EQ(kv["bytes_sent"], std::to_string(connections * bytes)) << what;
  EXPECT_EQ(kv["bytes_verified"], std::to_string(connections * bytes)) << what;
  record(std::string(what) + "_summary", lastLineWith(r.output, "result="));
}

// 1 MiB each way per connection: 200 MiB verified through the stack in one test.
constexpr uint64_t kBytesPerConnection = 1024 * 1024;

TEST(EchoTcp, LinuxClients200ToMknetServer) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  Process server = tb.spawnApp({Bin::echo(), "server", "--port", "7"}, "echo-server.log");
  ASSERT_TRUE(server.waitForLine("listen=", 10s)) << server.output();
  auto r = tb.runInNs({Bin::echoKernel(), "client", "--connect", tb.mknetIp() + ":7", "--connections", "200",
                       "--bytes", std::to_string(kBytesPerConnection), "--seed", "31", "--timeout", "40"},
                      45s);
  EXPECT_TRUE(tb.stack().running()) << "mknet-stack died during the run";
  expectAllVerified(r, 200, kBytesPerConnection, "echo_tcp_linux_to_mknet");
  EXPECT_TRUE(server.running()) << tail(server.output());
  EXPECT_EQ(tb.peerFaults(), "") << "the stack counted faults of well-behaved peers";
  server.stop();
  EXPECT_EQ(tb.leftovers(), "") << "leak check: what the stack still holds after every app has exited";
}

TEST(EchoTcp, MknetClients50ToLinuxServer) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  Process server = tb.spawnInNs({Bin::echoKernel(), "server", "--port", "7"}, "echo-server.log");
  ASSERT_TRUE(server.waitForLine("listen=", 10s)) << server.output();
  auto r = tb.runApp({Bin::echo(), "client", "--connect", tb.linuxIp() + ":7", "--connections", "50", "--bytes",
                      std::to_string(kBytesPerConnection), "--seed", "32", "--timeout", "40"},
                     45s);
  EXPECT_TRUE(tb.stack().running()) << "mknet-stack died during the run";
  expectAllVerified(r, 50, kBytesPerConnection, "echo_tcp_mknet_to_linux");
  EXPECT_EQ(tb.peerFaults(), "") << "the stack counted faults of well-behaved peers";
  server.stop();
  EXPECT_EQ(tb.leftovers(), "") << "leak check: what the stack still holds after every app has exited";
}

}  // namespace
}  // namespace mknet::itest
