// mknet-tapdrv start-up and shutdown: clear one-line errors and non-zero
// exits for what cannot work, patience for a stack that is not up yet, and a
// prompt exit 0 on SIGTERM in every state.
#include <signal.h>

#include <algorithm>

#include <gtest/gtest.h>

#include "tests/drivers/tap/tapdrv_fixture.h"

namespace mknet::drivers::test {
namespace {

size_t lineCount(const std::string& s) { return std::count(s.begin(), s.end(), '\n'); }

TEST_F(TapdrvTest, MissingTapFailsWithOneLineNamingIt) {
  startStack();
  size_t d = startDriver({}, "nosuch0");
  auto status = drivers_[d].wait(5s);
  ASSERT_TRUE(status) << "driver kept running without its TAP";
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_NE(WEXITSTATUS(*status), 0);
  std::string err = readFile(logOf(d));
  EXPECT_EQ(lineCount(err), 1u) << err;
  EXPECT_NE(err.find("nosuch0"), std::string::npos) << err;
  EXPECT_NE(err.find("does not exist"), std::string::npos) << err;
  EXPECT_EQ(stack_->counters().registrations, 0u);
}

TEST_F(TapdrvTest, BusyTapFailsWithOneLine) {
  startStack();
  size_t first = startDriver();
  ASSERT_TRUE(stack_->waitUntil([](const FakeStackCounters& c) { return c.registrations == 1; }, 10s));
  size_t second = startDriver();
  auto status = drivers_[second].wait(5s);
  ASSERT_TRUE(status);
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_NE(WEXITSTATUS(*status), 0);
  std::string err = readFile(logOf(second));
  EXPECT_NE(err.find("busy"), std::string::npos) << err;
  EXPECT_NE(err.find(ns_->tap()), std::string::npos) << err;
  EXPECT_TRUE(drivers_[first].running());
}

TEST_F(TapdrvTest, BadFlagFailsWithUsageHint) {
  size_t d = startDriver({"--mac", "not-a-mac"});
  auto status = drivers_[d].wait(5s);
  ASSERT_TRUE(status);
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 2);
  std::string err = readFile(logOf(d));
  EXPECT_EQ(lineCount(err), 1u) << err;
  EXPECT_NE(err.find("--mac"), std::string::npos) << err;
}

// No stack at all: after --connect-timeout one line naming the socket, exit 1.
TEST_F(TapdrvTest, NoStackGivesUpAfterConnectTimeout) {
  auto t0 = std::chrono::steady_clock::now();
  size_t d = startDriver({"--connect-timeout", "400ms", "--log-level", "warn"});
  auto status = drivers_[d].wait(5s);
  ASSERT_TRUE(status);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 400ms);
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 1);
  std::string err = readFile(logOf(d));
  EXPECT_EQ(lineCount(err), 1u) << err;
  EXPECT_NE(err.find(socket_), std::string::npos) << err;
}

// The driver starts first and waits; the stack comes up later.
TEST_F(TapdrvTest, WaitsForAStackThatIsNotUpYet) {
  size_t d = startDriver();
  std::this_thread::sleep_for(700ms);
  ASSERT_TRUE(drivers_[d].running()) << readFile(logOf(d));
  startStack();
  ASSERT_TRUE(stack_->waitUntil([](const FakeStackCounters& c) { return c.registrations == 1; }, 3s))
      << "the driver did not register after the stack came up";
  ASSERT_TRUE(waitForCarrier());
  EXPECT_EQ(ping(10).received, 10);
  drivers_[d].signal(SIGTERM);
  auto status = drivers_[d].wait(3s);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << describe(*status);
}

// The TAP deleted under a running driver: the device fails, and the driver
// says so and exits non-zero (its supervisor decides what comes next).
TEST_F(TapdrvTest, DeletedTapEndsTheDriverWithAnError) {
  startStack();
  size_t d = startDriver();
  ASSERT_TRUE(stack_->waitUntil([](const FakeStackCounters& c) { return c.registrations == 1; }, 10s));
  ASSERT_EQ(runCommand({"ip", "-n", ns_->name(), "link", "del", ns_->tap()}), 0);
  auto status = drivers_[d].wait(5s);
  ASSERT_TRUE(status) << "driver kept running without its TAP";
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 1);
  std::string log = readFile(logOf(d));
  EXPECT_NE(log.find("mknet-tapdrv: device " + ns_->tap() + " failed"), std::string::npos) << log;
  EXPECT_TRUE(stack_->waitUntil([](const FakeStackCounters& c) { return c.reclaims == 1; }, 3s));
  EXPECT_EQ(stack_->counters().accountingErrors, 0u);
}

// SIGTERM and SIGINT while still waiting for the stack: exit 0 at once.
TEST_F(TapdrvTest, SignalsWhileWaitingForTheStackExitZero) {
  for (int sig : {SIGTERM, SIGINT}) {
    size_t d = startDriver();
    std::this_thread::sleep_for(200ms);
    ASSERT_TRUE(drivers_[d].running()) << readFile(logOf(d));
    auto t0 = std::chrono::steady_clock::now();
    drivers_[d].signal(sig);
    auto status = drivers_[d].wait(3s);
    ASSERT_TRUE(status);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << describe(*status);
  }
}

}  // namespace
}  // namespace mknet::drivers::test
