// driver_kill_bulk: 1 GiB each way between mknet-bulk on mknet and
// mknet-bulk-kernel on the Linux side while the driver is SIGKILLed every
// 200-500 ms (fixed seed) and a new one is started at once each time:
//   out  mknet `send` -> Linux `sink`
//   in   Linux `serve` -> mknet `recv`
// The stack keeps TCP state across driver deaths, so no connection may be
// reset (both apps exit 0) and the SHA-256 both ends computed must agree.
// At least 20 kills land in each direction; when a transfer ends sooner,
// another 1 GiB transfer follows (each one verified on its own).
// Per kill it prints restart_ms (kill -> the stack counted the new driver's
// registration) and stall_ms (kill -> the receiver's next progress, from the
// Linux end's tcp_info over sock_diag). Afterwards the stack's counters must
// show every kill, and the leak check must hold.
#include <gtest/gtest.h>

#include <cstdio>

#include "tests/fault/fault_util.h"

namespace mknet::ftest {
namespace {

using itest::Bin;
using itest::Process;

constexpr uint64_t kBytes = 1ull << 30;
constexpr size_t kMinKills = 20;

struct Figures {
  std::vector<double> restart, stall;
};

// One 1 GiB transfer under kills; returns its kills.
std::vector<KillRecord> transferUnderKills(Testbed& tb, DriverKiller& killer, bool out, uint16_t port,
                                           uint64_t seed, int round) {
  const std::string bytes = std::to_string(kBytes), tag = std::string(out ? "out" : "in") + std::to_string(round);
  ProgressWatch progress(tb, port);
  EXPECT_TRUE(progress.ok()) << "sock_diag in the namespace";
  Process linuxEnd = out ? tb.spawnInNs({Bin::bulkKernel(), "sink", "--port", std::to_string(port), "--once"},
                                        "linux-" + tag + ".log")
                         : tb.spawnInNs({Bin::bulkKernel(), "serve", "--port", std::to_string(port), "--bytes",
                                         bytes, "--seed", std::to_string(seed), "--once"},
                                        "linux-" + tag + ".log");
  if (!linuxEnd.waitForLine("listen=", 10s)) {
    ADD_FAILURE() << "the Linux end did not listen: " << linuxEnd.output();
    return {};
  }
  const std::string to = tb.linuxIp() + ":" + std::to_string(port);
  Process app = out ? tb.spawnApp({Bin::bulk(), "send", "--connect", to, "--bytes", bytes, "--seed",
                                   std::to_string(seed)},
                                  "mknet-" + tag + ".log")
                    : tb.spawnApp({Bin::bulk(), "recv", "--connect", to}, "mknet-" + tag + ".log");
  if (!progress.waitEstablished(1, 10s)) {
    ADD_FAILURE() << "no connection on port " << port << ": " << app.output();
    return {};
  }
  std::string err;
  // At most 40 kills per transfer: enough for the 20 per direction, and the
  // rest of the GiB then runs at full speed, which keeps the test's time
  // bounded on a loaded machine.
  auto kills = killWhileRunning(killer, app, &progress, 40, 40s, &err);
  EXPECT_EQ(err, "");
  auto appStatus = app.wait(30s);
  auto linuxStatus = linuxEnd.wait(10s);
  EXPECT_EQ(appStatus, std::optional<int>(0)) << "mknet-bulk " << (out ? "send" : "recv") << " (a reset?): "
                                              << app.output() << "\nLinux end: " << linuxEnd.output();
  EXPECT_EQ(linuxStatus, std::optional<int>(0)) << "mknet-bulk-kernel: " << linuxEnd.output();
  auto s = itest::parseKeyValues(itest::lastLineWith(out ? app.output() : linuxEnd.output(), "mode="));
  auto r = itest::parseKeyValues(itest::lastLineWith(out ? linuxEnd.output() : app.output(), "mode="));
  EXPECT_EQ(s["bytes"], bytes) << tag;
  EXPECT_EQ(r["bytes"], bytes) << tag << ": bytes lost or duplicated";
  EXPECT_EQ(s["sha256"].size(), 64u) << tag;
  EXPECT_EQ(s["sha256"], r["sha256"]) << tag << ": the stream arrived corrupted";
  const double longest = progress.longestGapMs(kills.empty() ? Clock::now() : kills.front().killedAt,
                                               kills.empty() ? Clock::now() : kills.back().killedAt);
  itest::record("bulk_" + tag + "_kills", std::to_string(kills.size()));
  itest::record("bulk_" + tag + "_gbps", r["gbps"]);
  itest::record("bulk_" + tag + "_longest_gap_ms", std::to_string(longest));
  return kills;
}

TEST(DriverKillBulk, OneGiBEachWaySurvivesKillsEvery200To500ms) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  StackWatch watch(tb.stackSocket());
  auto before = watch.fresh();
  ASSERT_TRUE(before) << "the stack does not answer";
  DriverKiller killer(tb, watch, /*seed=*/20240611);
  Figures fig;
  size_t total = 0;
  for (bool out : {true, false}) {
    std::vector<KillRecord> kills;
    for (int round = 0; kills.size() < kMinKills && round < 5 && !HasFailure(); ++round) {
      auto k = transferUnderKills(tb, killer, out, static_cast<uint16_t>(out ? 5101 + round : 5201 + round),
                                  out ? 101 + round : 202 + round, round);
      kills.insert(kills.end(), k.begin(), k.end());
    }
    ASSERT_FALSE(HasFailure());
    EXPECT_GE(kills.size(), kMinKills) << (out ? "out" : "in");
    for (size_t i = 0; i < kills.size(); ++i) {
      std::printf("kill %-3zu dir=%-3s restart_ms=%7.1f stall_ms=%7.1f\n", total + i + 1, out ? "out" : "in",
                  kills[i].restartMs, kills[i].stallMs);
      fig.restart.push_back(kills[i].restartMs);
      if (kills[i].stallMs >= 0) fig.stall.push_back(kills[i].stallMs);
    }
    total += kills.size();
  }
  std::fflush(stdout);
  itest::record("kills", std::to_string(total));
  itest::record("restart_ms_p50", std::to_string(percentile(fig.restart, 50)));
  itest::record("restart_ms_p99", std::to_string(percentile(fig.restart, 99)));
  itest::record("restart_ms_max", std::to_string(percentile(fig.restart, 100)));
  itest::record("stall_ms_p50", std::to_string(percentile(fig.stall, 50)));
  itest::record("stall_ms_p99", std::to_string(percentile(fig.stall, 99)));
  itest::record("stall_ms_max", std::to_string(percentile(fig.stall, 100)));

  auto after = watch.fresh();
  ASSERT_TRUE(after) << "the stack does not answer";
  EXPECT_EQ((*after)["driver_attaches"], (*before)["driver_attaches"] + total);
  EXPECT_EQ((*after)["driver_detaches"], (*before)["driver_detaches"] + total);
  EXPECT_EQ((*after)["registrations"], (*before)["registrations"] + total);
  itest::record("tx_requeued", std::to_string((*after)["tx_requeued"]));
  EXPECT_EQ(tb.peerFaults(), "") << "a killed driver is not a misbehaving one";
  EXPECT_EQ(tb.leftovers(), "") << "leak check: what the stack still holds after every app has exited";
}

}  // namespace
}  // namespace mknet::ftest
