// driver_kill_echo: mknet-echo's server on mknet, and mknet-echo-kernel's
// client on the Linux side with 50 concurrent connections, each sending its
// own pseudo-random stream and verifying every byte that comes back, while
// the driver is SIGKILLed every 200-500 ms (fixed seed) and a new one is
// started at once. Every connection must survive (none reset, none failed,
// no mismatch, every byte verified); at least 20 kills land during the
// traffic (another round of 50 connections follows if a round ends sooner).
#include <gtest/gtest.h>

#include <cstdio>

#include "tests/fault/fault_util.h"

namespace mknet::ftest {
namespace {

using itest::Bin;
using itest::Process;

constexpr int kConnections = 50;
constexpr uint64_t kBytesPerConnection = 8ull << 20;
constexpr size_t kMinKills = 20;

TEST(DriverKillEcho, FiftyConnectionsSurviveKillsEvery200To500ms) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  StackWatch watch(tb.stackSocket());
  auto before = watch.fresh();
  ASSERT_TRUE(before) << "the stack does not answer";

  Process server = tb.spawnApp({Bin::echo(), "server", "--port", "7000"}, "echo-server.log");
  ASSERT_TRUE(server.waitForLine("listen=", 10s)) << server.output();

  DriverKiller killer(tb, watch, /*seed=*/777001);
  std::vector<KillRecord> kills;
  for (int round = 0; kills.size() < kMinKills && round < 3; ++round) {
    ProgressWatch progress(tb, 7000);
    ASSERT_TRUE(progress.ok());
    Process client = tb.spawnInNs({Bin::echoKernel(), "client", "--connect", tb.mknetIp() + ":7000",
                                   "--connections", std::to_string(kConnections), "--bytes",
                                   std::to_string(kBytesPerConnection), "--seed", std::to_string(31 + round),
                                   "--timeout", "40"},
                                  "echo-client-" + std::to_string(round) + ".log");
    ASSERT_TRUE(progress.waitEstablished(kConnections, 10s))
        << progress.established() << " connections established: " << client.output();
    std::string err;
    auto k = killWhileRunning(killer, client, &progress, 1000, 45s, &err);
    EXPECT_EQ(err, "");
    kills.insert(kills.end(), k.begin(), k.end());
    auto st = client.wait(10s);
    const std::string out = client.output();
    auto kv = itest::parseKeyValues(itest::lastLineWith(out, "mode=tcp"));
    EXPECT_EQ(st, std::optional<int>(0)) << out;
    EXPECT_EQ(kv["result"], "ok") << out;
    EXPECT_EQ(kv["ok"], std::to_string(kConnections)) << out;
    EXPECT_EQ(kv["failed"], "0") << out;
    EXPECT_EQ(kv["mismatches"], "0") << out;
    EXPECT_EQ(kv["bytes_verified"], std::to_string(kConnections * kBytesPerConnection)) << out;
    itest::record("echo_round" + std::to_string(round) + "_summary", itest::lastLineWith(out, "mode=tcp"));
    itest::record("echo_round" + std::to_string(round) + "_kills", std::to_string(k.size()));
    ASSERT_FALSE(HasFailure());
  }
  EXPECT_GE(kills.size(), kMinKills);
  std::vector<double> restart, stall;
  for (size_t i = 0; i < kills.size(); ++i) {
    std::printf("kill %-3zu restart_ms=%7.1f stall_ms=%7.1f\n", i + 1, kills[i].restartMs, kills[i].stallMs);
    restart.push_back(kills[i].restartMs);
    if (kills[i].stallMs >= 0) stall.push_back(kills[i].stallMs);
  }
  std::fflush(stdout);
  itest::record("kills", std::to_string(kills.size()));
  itest::record("restart_ms_p50", std::to_string(percentile(restart, 50)));
  itest::record("restart_ms_p99", std::to_string(percentile(restart, 99)));
  itest::record("stall_ms_p50", std::to_string(percentile(stall, 50)));
  itest::record("stall_ms_p99", std::to_string(percentile(stall, 99)));

  EXPECT_TRUE(server.running()) << "the mknet echo server died: " << server.output();
  auto after = watch.fresh();
  ASSERT_TRUE(after);
  EXPECT_EQ((*after)["driver_attaches"], (*before)["driver_attaches"] + kills.size());
  EXPECT_EQ((*after)["driver_detaches"], (*before)["driver_detaches"] + kills.size());
  EXPECT_EQ(tb.peerFaults(), "") << "a killed driver is not a misbehaving one";
  server.stop();
  EXPECT_EQ(tb.leftovers(), "") << "leak check: what the stack still holds after every app has exited";
}

}  // namespace
}  // namespace mknet::ftest
