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

// The app's last close reaches its peer although the process ends right
// after it (the stack and driver are its threads and end with it): a Linux
// sender that ends its side and then reads until the app closes must see
// that close. A race made it miss it now and then (twice in about twenty
// 5-8 s transfers by hand: the FIN still in the driver's ring at exit, the
// Linux sender left in FIN-WAIT-2 for ever). The race needs the driver thread
// to be off its CPU at the app's exit, which this test cannot arrange: in 36
// rounds without the fix it did not occur. It checks the behaviour, in
// rounds, and fails if a close goes missing.
TEST_F(SingleProcess, PeerSeesTheCloseOfAnAppThatExits) {
  ASSERT_TRUE(tb_.ok()) << tb_.error();
  for (int round = 0; round < 12; ++round) {
    const std::string port = std::to_string(6210 + round);
    Process serve = tb_.spawnInNs({Bin::bulkKernel(), "serve", "--port", port, "--once", "--bytes", "4194304",
                                   "--seed", std::to_string(round + 1)},
                                  "serve-" + port + ".log");
    ASSERT_TRUE(serve.waitForLine("listen=", 10s)) << serve.output();
    auto recv = tb_.runInNs(inprocess({MKNET_BULK_SP_BIN, "recv", "--connect", tb_.linuxIp() + ":" + port}), 30s);
    ASSERT_TRUE(recv.ok()) << "round " << round << ": " << recv.output;
    auto st = serve.wait(5s);
    ASSERT_TRUE(st) << "round " << round << ": the Linux sender never saw the exited app's close\n"
                    << serve.output();
    EXPECT_EQ(*st, 0) << serve.output();
    auto r = parseKeyValues(lastLineWith(recv.output, "mode=recv"));
    auto p = parseKeyValues(lastLineWith(serve.output(), "mode=serve"));
    EXPECT_EQ(r["bytes"], "4194304") << recv.output;
    EXPECT_EQ(r["sha256"], p["sha256"]) << "round " << round;
  }
}

}  // namespace
}  // namespace mknet::itest
