// driver_stop: the driver is SIGSTOPped for 2 s while data flows both ways
// (mknet-bulk send -> Linux sink, Linux serve -> mknet-bulk recv, 512 MiB
// each, at the same time), then SIGCONT. A stopped driver is not a dead one:
// the stack keeps it attached (no detach, no new registration), nothing
// crashes, traffic resumes in both directions and every byte arrives intact
// (byte counts and SHA-256 equal at both ends).
#include <gtest/gtest.h>

#include <csignal>

#include "tests/fault/fault_util.h"

namespace mknet::ftest {
namespace {

using itest::Bin;
using itest::Process;

constexpr uint64_t kBytes = 512ull << 20;

TEST(DriverStop, TwoSecondStopThenTrafficResumesIntact) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  StackWatch watch(tb.stackSocket());
  auto before = watch.fresh();
  ASSERT_TRUE(before);
  const std::string bytes = std::to_string(kBytes);

  ProgressWatch pOut(tb, 5301), pIn(tb, 5302);
  ASSERT_TRUE(pOut.ok() && pIn.ok());
  Process sink = tb.spawnInNs({Bin::bulkKernel(), "sink", "--port", "5301", "--once"}, "sink.log");
  Process serve = tb.spawnInNs({Bin::bulkKernel(), "serve", "--port", "5302", "--bytes", bytes, "--seed", "77",
                                "--once"},
                               "serve.log");
  ASSERT_TRUE(sink.waitForLine("listen=", 10s)) << sink.output();
  ASSERT_TRUE(serve.waitForLine("listen=", 10s)) << serve.output();
  Process send = tb.spawnApp({Bin::bulk(), "send", "--connect", tb.linuxIp() + ":5301", "--bytes", bytes, "--seed",
                              "66"},
                             "send.log");
  Process recv = tb.spawnApp({Bin::bulk(), "recv", "--connect", tb.linuxIp() + ":5302"}, "recv.log");
  ASSERT_TRUE(pOut.waitEstablished(1, 10s) && pIn.waitEstablished(1, 10s));
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(send.running() && recv.running()) << "the transfers ended before the stop";
  ASSERT_LT(pOut.bytes(), kBytes / 2);
  ASSERT_LT(pIn.bytes(), kBytes / 2);

  const pid_t driverPid = tb.driver().pid();
  const auto stopped = Clock::now();
  tb.driver().signal(SIGSTOP);
  std::this_thread::sleep_for(200ms);  // what was already on its way arrives
  const uint64_t outAt = pOut.bytes(), inAt = pIn.bytes();
  std::this_thread::sleep_for(1800ms);
  const uint64_t outMoved = pOut.bytes() - outAt, inMoved = pIn.bytes() - inAt;
  const auto continued = Clock::now();
  tb.driver().signal(SIGCONT);
  itest::record("bytes_during_stop_out", std::to_string(outMoved));
  itest::record("bytes_during_stop_in", std::to_string(inMoved));
  EXPECT_EQ(outMoved, 0u) << "data crossed a stopped driver?";
  EXPECT_EQ(inMoved, 0u) << "data crossed a stopped driver?";

  auto sendSt = send.wait(40s), recvSt = recv.wait(40s);
  auto sinkSt = sink.wait(10s), serveSt = serve.wait(10s);
  EXPECT_EQ(sendSt, std::optional<int>(0)) << send.output() << sink.output();
  EXPECT_EQ(recvSt, std::optional<int>(0)) << recv.output() << serve.output();
  EXPECT_EQ(sinkSt, std::optional<int>(0)) << sink.output();
  EXPECT_EQ(serveSt, std::optional<int>(0)) << serve.output();
  for (auto [s, r, what] : {std::tuple{&send, &sink, "out"}, std::tuple{&serve, &recv, "in"}}) {
    auto a = itest::parseKeyValues(itest::lastLineWith(s->output(), "mode="));
    auto b = itest::parseKeyValues(itest::lastLineWith(r->output(), "mode="));
    EXPECT_EQ(a["bytes"], bytes) << what;
    EXPECT_EQ(b["bytes"], bytes) << what;
    EXPECT_EQ(a["sha256"].size(), 64u) << what;
    EXPECT_EQ(a["sha256"], b["sha256"]) << what;
  }
  for (auto [p, what] : {std::pair{&pOut, "out"}, std::pair{&pIn, "in"}}) {
    auto resumed = p->progressAfter(continued);
    ASSERT_TRUE(resumed) << what << ": no progress after SIGCONT";
    itest::record(std::string("resumed_ms_") + what, std::to_string(msBetween(continued, *resumed)));
    itest::record(std::string("longest_gap_ms_") + what, std::to_string(p->longestGapMs(stopped, *resumed)));
  }

  EXPECT_TRUE(tb.driver().running()) << "the driver died after SIGCONT:\n" << tb.logTails();
  EXPECT_EQ(tb.driver().pid(), driverPid);
  EXPECT_TRUE(tb.stack().running());
  auto after = watch.fresh();
  ASSERT_TRUE(after);
  EXPECT_EQ((*after)["driver_attaches"], (*before)["driver_attaches"]) << "a stopped driver is not a dead one";
  EXPECT_EQ((*after)["driver_detaches"], (*before)["driver_detaches"]);
  EXPECT_EQ((*after)["driver_pid"], static_cast<uint64_t>(driverPid));
  EXPECT_EQ(tb.peerFaults(), "");
  EXPECT_EQ(tb.leftovers(), "") << "leak check: what the stack still holds after every app has exited";
}

}  // namespace
}  // namespace mknet::ftest
