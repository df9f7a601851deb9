// mknet-tapdrv as a process: the kernel in a test namespace pings the fake
// stack through the real driver binary, and the driver is killed and
// replaced mid-traffic.
#include <signal.h>

#include <iostream>

#include <gtest/gtest.h>

#include "tests/drivers/tap/tapdrv_fixture.h"

namespace mknet::drivers::test {
namespace {

// 200 echo requests at 2 ms intervals: all answered, payloads intact (ping
// checks the echoed bytes, the fake stack checks the requests), registration
// carries the right facts, stats arrive, SIGTERM ends the driver with 0.
TEST_F(TapdrvTest, EveryEchoRequestIsAnswered) {
  startStack();
  size_t d = startDriver();
  ASSERT_TRUE(stack_->waitUntil([](const FakeStackCounters& c) { return c.registrations == 1; }, 10s))
      << "driver did not register";
  auto info = stack_->lastDriver();
  ASSERT_TRUE(info);
  EXPECT_EQ(info->name, ns_->tap());
  ASSERT_EQ(info->mac.size(), 6u);
  EXPECT_EQ(info->mac[0] & 0x03, 0x02) << "random MAC must be unicast, locally administered";
  EXPECT_EQ(info->mtu, 1500u);
  EXPECT_TRUE(info->linkUp);
  EXPECT_EQ(info->pid, static_cast<uint32_t>(drivers_[d].pid()));
  EXPECT_EQ(info->abiVersion, 1u);
  ASSERT_TRUE(waitForCarrier());

  PingSummary s = ping(200);
  EXPECT_EQ(s.transmitted, 200);
  EXPECT_EQ(s.received, 200);
  EXPECT_EQ(s.lossPercent, 0.0);
  std::cout << "[ measure ] ping -c 200 -i 0.002 through mknet-tapdrv: rtt min/avg/max = "
            << s.rttMinMs << "/" << s.rttAvgMs << "/" << s.rttMaxMs << " ms\n";
  RecordProperty("rtt_avg_us", static_cast<int>(s.rttAvgMs * 1000));

  FakeStackCounters c = stack_->counters();
  EXPECT_EQ(c.echoReplies, 200u);
  EXPECT_EQ(c.echoPayloadErrors, 0u);
  EXPECT_GE(c.arpReplies, 1u);
  EXPECT_EQ(c.accountingErrors, 0u);
  EXPECT_EQ(c.badDescriptors, 0u);
  EXPECT_EQ(c.badFrames, 0u);
  // Idle, the driver holds no more than its RX stash (a last frame may still
  // be on its way back when the ping ends: wait, bounded, for it).
  EXPECT_TRUE(stack_->waitUntil([](const FakeStackCounters& k) { return k.heldByDriver <= 64u; }, 2s))
      << "driver holds " << stack_->counters().heldByDriver << " buffers";

  // Stats reach the stack about once a second.
  EXPECT_TRUE(stack_->waitUntil(
      [](const FakeStackCounters& c) { return c.reportedRxFrames >= 200 && c.reportedTxFrames >= 200; },
      5s))
      << "reported rx " << stack_->counters().reportedRxFrames << " tx "
      << stack_->counters().reportedTxFrames;

  drivers_[d].signal(SIGTERM);
  auto status = drivers_[d].wait(3s);
  ASSERT_TRUE(status) << "driver did not exit on SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << describe(*status);
  // Its connection closed: the stack took every buffer back.
  ASSERT_TRUE(stack_->waitUntil([](const FakeStackCounters& c) { return c.reclaims == 1; }, 3s));
  c = stack_->counters();
  EXPECT_EQ(c.lastReclaimed, 256u);
  EXPECT_EQ(c.lentToDriver, 0u);
  EXPECT_EQ(c.accountingErrors, 0u);
}

// SIGKILL in the middle of a ping flood, then a new driver (same MAC, as a
// supervisor would start it): the stack reclaims all 256 buffers exactly once,
// resets the rings, the new driver registers, and every echo is answered again.
TEST_F(TapdrvTest, KilledDriverIsReplacedWithoutLosingBuffers) {
  startStack();
  const std::vector<std::string> macArgs = {"--mac", "02:00:5e:10:00:01"};
  size_t first = startDriver(macArgs);
  ASSERT_TRUE(stack_->waitUntil([](const FakeStackCounters& c) { return c.registrations == 1; }, 10s));
  ASSERT_TRUE(waitForCarrier());

  // Background traffic: 1000 requests every 2 ms, bounded by -w.
  std::string bgLog = dir_.file("ping-background.txt");
  pingLogs_.push_back(bgLog);
  ChildProcess background(pingArgs(1000, "0.002", 15), bgLog);
  ASSERT_TRUE(stack_->waitUntil([](const FakeStackCounters& c) { return c.echoReplies >= 100; }, 10s));

  drivers_[first].kill();  // SIGKILL by PID, reaped
  ASSERT_TRUE(stack_->waitUntil(
      [](const FakeStackCounters& c) { return c.sessionsLost >= 1 && c.reclaims >= 1; }, 5s))
      << "the stack did not notice the driver's death";
  FakeStackCounters c = stack_->counters();
  EXPECT_EQ(c.lastReclaimed, 256u) << "every buffer is lent to the driver, so all come back";
  EXPECT_EQ(c.lentToDriver, 0u);
  EXPECT_EQ(c.accountingErrors, 0u);
  uint64_t repliesBefore = c.echoReplies;

  size_t second = startDriver(macArgs);
  ASSERT_TRUE(stack_->waitUntil([](const FakeStackCounters& c) { return c.registrations == 2; }, 10s))
      << "the new driver did not register";
  EXPECT_EQ(stack_->lastDriver()->pid, static_cast<uint32_t>(drivers_[second].pid()));
  ASSERT_TRUE(waitForCarrier());
  // The flood resumes through the new driver.
  EXPECT_TRUE(stack_->waitUntil(
      [&](const FakeStackCounters& c) { return c.echoReplies >= repliesBefore + 50; }, 10s));
  auto bg = background.wait(20s);
  ASSERT_TRUE(bg) << "background ping did not finish";
  auto bgSummary = parsePing(readFile(bgLog));
  ASSERT_TRUE(bgSummary) << readFile(bgLog);
  std::cout << "[ measure ] background ping across the restart: " << bgSummary->received << "/"
            << bgSummary->transmitted << " answered\n";

  PingSummary s = ping(100);
  EXPECT_EQ(s.transmitted, 100);
  EXPECT_EQ(s.received, 100);
  EXPECT_EQ(s.lossPercent, 0.0);

  c = stack_->counters();
  EXPECT_EQ(c.echoPayloadErrors, 0u);
  EXPECT_EQ(c.accountingErrors, 0u);
  EXPECT_EQ(c.badDescriptors, 0u);
  EXPECT_EQ(c.reclaims, 1u);

  drivers_[second].signal(SIGTERM);
  auto status = drivers_[second].wait(3s);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << describe(*status);
  ASSERT_TRUE(stack_->waitUntil([](const FakeStackCounters& c) { return c.reclaims == 2; }, 3s));
  c = stack_->counters();
  EXPECT_EQ(c.lastReclaimed, 256u);
  EXPECT_EQ(c.accountingErrors, 0u);
}

// A stack that breaks the ring contract: the driver stops using the
// attachment, hangs up (so the stack reclaims its buffers) and registers
// again; traffic flows on the fresh rings.
TEST_F(TapdrvTest, CorruptRingMakesTheDriverRegisterAgain) {
  startStack();
  size_t d = startDriver();
  ASSERT_TRUE(stack_->waitUntil([](const FakeStackCounters& c) { return c.registrations == 1; }, 10s));
  ASSERT_TRUE(waitForCarrier());
  EXPECT_EQ(ping(20).received, 20);
  stack_->corruptTxActive();
  ASSERT_TRUE(stack_->waitUntil(
      [](const FakeStackCounters& c) { return c.registrations == 2 && c.reclaims == 1; }, 5s))
      << "the driver did not register again";
  EXPECT_TRUE(drivers_[d].running());
  EXPECT_EQ(stack_->lastDriver()->pid, static_cast<uint32_t>(drivers_[d].pid()));
  EXPECT_EQ(ping(50).received, 50);
  FakeStackCounters c = stack_->counters();
  EXPECT_EQ(c.accountingErrors, 0u);
  EXPECT_EQ(c.lastReclaimed, 256u);
  EXPECT_NE(readFile(logOf(d)).find("ring corrupt"), std::string::npos);
}

// The stack dies and comes back at the same socket: the driver, still
// running, registers with the new one and traffic flows again.
TEST_F(TapdrvTest, DriverRegistersAgainWhenTheStackRestarts) {
  startStack();
  size_t d = startDriver();
  ASSERT_TRUE(stack_->waitUntil([](const FakeStackCounters& c) { return c.registrations == 1; }, 10s));
  ASSERT_TRUE(waitForCarrier());
  EXPECT_EQ(ping(20).received, 20);

  stack_.reset();  // the stack "dies": its socket and connections close
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(drivers_[d].running()) << "the driver must outlive the stack";
  startStack();
  ASSERT_TRUE(stack_->waitUntil([](const FakeStackCounters& c) { return c.registrations == 1; }, 5s))
      << "the driver did not register with the new stack";
  PingSummary s = ping(50);
  EXPECT_EQ(s.received, 50);
  EXPECT_EQ(stack_->counters().accountingErrors, 0u);
  EXPECT_EQ(stack_->counters().echoPayloadErrors, 0u);

  drivers_[d].signal(SIGTERM);
  auto status = drivers_[d].wait(3s);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << describe(*status);
}

}  // namespace
}  // namespace mknet::drivers::test
