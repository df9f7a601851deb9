// app_kill: an mknet app holding 100 open TCP connections to a Linux server
// is SIGKILLed, 50 times in a row (a new app each time). After each kill:
//   - the Linux server sees all 100 of its connections reset (ECONNRESET on
//     recv, not an orderly EOF), and none left open;
//   - the stack's sessions, sockets, engine_sockets and pool_free return to
//     their baseline (taken before the first app) within 5 s.
// The app is mknet-fault-app `hold` (C API: 100 connects, one byte each,
// then it waits to be killed); the server is a HoldServer in the test
// process, listening inside the testbed's namespace.
#include <gtest/gtest.h>

#include <csignal>

#include "tests/fault/fault_util.h"

namespace mknet::ftest {
namespace {

using itest::Process;

constexpr int kRounds = 50;
constexpr uint64_t kConnections = 100;

TEST(AppKill, HundredConnectionsResetAndFreedFiftyTimes) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  StackWatch watch(tb.stackSocket());
  HoldServer server(tb, 6000, /*read=*/true);
  ASSERT_TRUE(server.ok()) << server.error();
  ASSERT_TRUE(tb.pingOk(1));  // ARP settled: the idle pool is what it will be
  auto base = watch.fresh();
  ASSERT_TRUE(base) << "the stack does not answer";
  const char* kKeys[] = {"sessions", "sockets", "engine_sockets", "pool_free"};
  auto atBaseline = [&](const Status& st) {
    for (const char* k : kKeys)
      if (st.at(k) != base->at(k)) return false;
    return true;
  };
  auto describe = [&](const Status& st) {
    std::string s;
    for (const char* k : kKeys)
      s += std::string(k) + "=" + std::to_string(st.at(k)) + " (baseline " + std::to_string(base->at(k)) + ") ";
    return s;
  };

  std::vector<double> resetMs, freedMs;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    Process app = tb.spawnApp({MKNET_FAULT_APP_BIN, "hold", "--connect", tb.linuxIp() + ":6000", "--connections",
                               std::to_string(kConnections)},
                              "hold-" + std::to_string(round) + ".log");
    ASSERT_TRUE(app.waitForLine("ready ", 20s)) << app.output();
    const uint64_t accepted = kConnections * static_cast<uint64_t>(round + 1);
    ASSERT_TRUE(server.waitFor([&](const auto& c) { return c.accepted == accepted && c.open == kConnections; }, 5s))
        << server.describe();
    auto held = watch.fresh();
    ASSERT_TRUE(held);
    EXPECT_EQ((*held)["sockets"], base->at("sockets") + kConnections);
    EXPECT_EQ((*held)["sessions"], base->at("sessions") + 1);

    const auto killed = Clock::now();
    app.signal(SIGKILL);
    EXPECT_EQ(app.wait(5s), std::optional<int>(128 + SIGKILL));
    const bool reset = server.waitFor(
        [&](const auto& c) { return c.open == 0 && c.resets + c.eofs + c.otherErrors == accepted; }, 5s);
    const auto resetAt = Clock::now();
    EXPECT_TRUE(reset) << "the Linux side still holds connections: " << server.describe();
    auto freed = watch.waitFor(atBaseline, 5s);
    auto now = watch.fresh();
    ASSERT_TRUE(now);
    EXPECT_TRUE(freed) << "after the app's death the stack holds " << describe(*now);
    resetMs.push_back(msBetween(killed, resetAt));
    if (freed) freedMs.push_back(msBetween(killed, *freed));
    auto c = server.counts();
    ASSERT_EQ(c.resets, accepted) << "connections ended without a reset: " << server.describe();
    ASSERT_FALSE(HasFailure());
  }
  itest::record("rounds", std::to_string(kRounds));
  itest::record("all_reset_ms_p50", std::to_string(percentile(resetMs, 50)));
  itest::record("all_reset_ms_max", std::to_string(percentile(resetMs, 100)));
  itest::record("stack_freed_ms_p50", std::to_string(percentile(freedMs, 50)));
  itest::record("stack_freed_ms_max", std::to_string(percentile(freedMs, 100)));
  EXPECT_EQ(tb.peerFaults(), "");
  EXPECT_EQ(tb.leftovers(), "") << "leak check: what the stack still holds after every app has exited";
}

}  // namespace
}  // namespace mknet::ftest
