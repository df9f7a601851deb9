// conn_churn: many short connections (connect, one 64-byte request and its
// echo, close) between mknet and the Linux kernel, both ways. Every
// connection must succeed and every echo match (mknet-connrate verifies each
// byte and counts failures). The mknet server closes first, so its side
// goes through TIME_WAIT thousands of times and the Linux client reuses its
// ports: that stalled connect() before the stack recycled TIME_WAIT on a
// new SYN, and the TIME_WAIT list must stay bounded.
#include <gtest/gtest.h>

#include "tests/integration/testbed.h"

namespace mknet::itest {
namespace {

TEST(ConnChurn, LinuxClientsToAnMknetServer) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  Process server = tb.spawnApp({MKNET_CONNRATE_BIN, "server", "--port", "6100"}, "connrate-server.log");
  ASSERT_TRUE(server.waitForLine("listen=", 10s)) << server.output();
  auto before = tb.counter("engine_timewait_trimmed");
  ASSERT_TRUE(before);
  // Two client threads, 8000 connections: far past the port reuse that
  // used to stall and past the 256-entry TIME_WAIT cap.
  auto r = tb.runInNs({MKNET_CONNRATE_KERNEL_BIN, "client", "--connect", tb.mknetIp() + ":6100", "--conns", "2",
                       "--count", "8000", "--seconds", "60"},
                      90s);
  auto kv = parseKeyValues(lastLineWith(r.output, "mode=connrate"));
  record("conn_churn_linux_to_mknet_per_s", kv["conn_per_s"]);
  EXPECT_TRUE(r.ok()) << r.output;
  EXPECT_EQ(kv["connections"], "8000") << r.output;
  EXPECT_EQ(kv["failed"], "0") << r.output;
  auto after = tb.counter("engine_timewait_trimmed");
  ASSERT_TRUE(after);
  EXPECT_GE(*after - *before, 8000u - 256u - 64u) << "the TIME_WAIT list was not kept within its cap";
  server.kill();
  EXPECT_EQ(tb.leftovers(), "") << "leak check";
}

TEST(ConnChurn, AnMknetClientToALinuxServer) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  Process server = tb.spawnInNs({MKNET_CONNRATE_KERNEL_BIN, "server", "--port", "6101"}, "connrate-server.log");
  ASSERT_TRUE(server.waitForLine("listen=", 10s)) << server.output();
  auto r = tb.runApp({MKNET_CONNRATE_BIN, "client", "--connect", tb.linuxIp() + ":6101", "--conns", "2", "--count",
                      "3000", "--seconds", "60"},
                     90s);
  auto kv = parseKeyValues(lastLineWith(r.output, "mode=connrate"));
  record("conn_churn_mknet_to_linux_per_s", kv["conn_per_s"]);
  EXPECT_TRUE(r.ok()) << r.output;
  EXPECT_EQ(kv["connections"], "3000") << r.output;
  EXPECT_EQ(kv["failed"], "0") << r.output;
  EXPECT_EQ(tb.leftovers(), "") << "leak check";
}

}  // namespace
}  // namespace mknet::itest
