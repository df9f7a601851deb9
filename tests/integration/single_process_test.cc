// single_process: the single-process arrangement (servers/inprocess) — the
// stack and the TAP driver as threads of the app — against the Linux kernel
// on the same kind of TAP the multi-process tests use. The testbed's own
// stack runs without a driver, so the TAP is free for the app to attach.
// Streams are checked by SHA-256 end to end, round trips by count.
#include <gtest/gtest.h>

#include "tests/integration/testbed.h"

namespace mknet::itest {
namespace {

class SingleProcess : public ::testing::Test {
 protected:
  SingleProcess() : tb_(TestbedOptions{.startDriver = false}) {}
  // argv run inside the namespace (where the TAP is) with MKNET_INPROCESS set.
  Argv inprocess(Argv argv) const {
    Argv a{"env", "MKNET_INPROCESS=tap=" + tb_.tap() + ",ip=" + tb_.mknetIp() + "/24"};
    a.insert(a.end(), argv.begin(), argv.end());
    return a;
  }
  Testbed tb_;
};

TEST_F(SingleProcess, BulkBothWaysArrivesIntact) {
  ASSERT_TRUE(tb_.ok()) << tb_.error();
  // app -> Linux
  Process sink = tb_.spawnInNs({Bin::bulkKernel(), "sink", "--port", "6200", "--once"}, "sink.log");
  ASSERT_TRUE(sink.waitForLine("listen=", 10s)) << sink.output();
  auto send = tb_.runInNs(inprocess({MKNET_BULK_SP_BIN, "send", "--connect", tb_.linuxIp() + ":6200", "--bytes",
                                     "268435456", "--seed", "41"}),
                          60s);
  ASSERT_TRUE(send.ok()) << send.output;
  ASSERT_TRUE(sink.wait(20s)) << sink.output();
  auto s = parseKeyValues(lastLineWith(sink.output(), "mode=sink"));
  auto a = parseKeyValues(lastLineWith(send.output, "mode=send"));
  EXPECT_EQ(s["bytes"], "268435456") << sink.output();
  EXPECT_EQ(s["sha256"], a["sha256"]) << "the Linux side received something else than the app sent";
  EXPECT_EQ(a["sha256"].size(), 64u);
  record("single_process_app_to_linux_gbps", s["gbps"]);

  // Linux -> app
  Process appSink = tb_.spawnInNs(inprocess({MKNET_BULK_SP_BIN, "sink", "--port", "6201", "--once"}), "app-sink.log");
  ASSERT_TRUE(appSink.waitForLine("listen=", 10s)) << appSink.output();
  auto peer = tb_.runInNs({Bin::bulkKernel(), "send", "--connect", tb_.mknetIp() + ":6201", "--bytes", "268435456",
                           "--seed", "42"},
                          60s);
  ASSERT_TRUE(peer.ok()) << peer.output;
  ASSERT_TRUE(appSink.wait(20s)) << appSink.output();
  auto r = parseKeyValues(lastLineWith(appSink.output(), "mode=sink"));
  auto p = parseKeyValues(lastLineWith(peer.output, "mode=send"));
  EXPECT_EQ(r["bytes"], "268435456") << appSink.output();
  EXPECT_EQ(r["sha256"], p["sha256"]) << "the app received something else than Linux sent";
  record("single_process_linux_to_app_gbps", r["gbps"]);
}

TEST_F(SingleProcess, RoundTripsAndShortConnections) {
  ASSERT_TRUE(tb_.ok()) << tb_.error();
  Process echo = tb_.spawnInNs({MKNET_RTT_KERNEL_BIN, "server", "--port", "6202"}, "rtt-server.log");
  ASSERT_TRUE(echo.waitForLine("listen=", 10s)) << echo.output();
  auto rtt = tb_.runInNs(inprocess({MKNET_RTT_SP_BIN, "client", "--connect", tb_.linuxIp() + ":6202", "--count",
                                    "5000"}),
                         60s);
  ASSERT_TRUE(rtt.ok()) << rtt.output;
  auto kv = parseKeyValues(lastLineWith(rtt.output, "count="));
  EXPECT_EQ(kv["count"], "5000") << rtt.output;
  record("single_process_rtt_p50_us", kv["p50_us"]);

  // A server in the app process, many Linux clients' connections.
  Process server = tb_.spawnInNs(inprocess({MKNET_CONNRATE_SP_BIN, "server", "--port", "6203"}), "connrate.log");
  ASSERT_TRUE(server.waitForLine("listen=", 10s)) << server.output();
  auto churn = tb_.runInNs({MKNET_CONNRATE_KERNEL_BIN, "client", "--connect", tb_.mknetIp() + ":6203", "--conns",
                            "2", "--count", "2000", "--seconds", "60"},
                           90s);
  auto c = parseKeyValues(lastLineWith(churn.output, "mode=connrate"));
  EXPECT_TRUE(churn.ok()) << churn.output;
  EXPECT_EQ(c["connections"], "2000") << churn.output;
  EXPECT_EQ(c["failed"], "0") << churn.output;
  server.kill();
}

}  // namespace
}  // namespace mknet::itest
