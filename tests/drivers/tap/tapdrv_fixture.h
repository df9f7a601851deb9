// The fixture of the mknet-tapdrv process tests: a namespace with a TAP, a
// scratch directory for the stack socket and logs, a FakeStack in this
// process, and helpers to start the real driver binary and ping through it.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/drivers/tap/fake_stack.h"
#include "tests/drivers/tap/netns.h"

#ifndef MKNET_TAPDRV_PATH
#error "MKNET_TAPDRV_PATH must name the mknet-tapdrv binary"
#endif

namespace mknet::drivers::test {

using namespace std::chrono_literals;

// ping -p: the fake stack checks every echo payload against it.
inline constexpr const char* kPingPattern = "a5c30f1e5a3cf0e1";
inline const std::vector<uint8_t> kPingPatternBytes = {0xa5, 0xc3, 0x0f, 0x1e,
                                                       0x5a, 0x3c, 0xf0, 0xe1};

class TapdrvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, TAP devices)";
    ns_ = std::make_unique<TestNetns>();
    ASSERT_TRUE(ns_->ok()) << "could not set up namespace " << ns_->name();
    ASSERT_FALSE(dir_.path().empty());
    socket_ = dir_.file("stack.sock");
  }

  void TearDown() override {
    for (auto& d : drivers_) d.kill();
    if (HasFailure()) {
      for (size_t i = 0; i < drivers_.size(); ++i)
        std::cerr << "---- driver " << i << " log ----\n" << readFile(logOf(i));
      for (const auto& f : pingLogs_) std::cerr << "---- " << f << " ----\n" << readFile(f);
    }
    drivers_.clear();
    stack_.reset();
    ns_.reset();
  }

  void startStack() {
    FakeStackOptions o;
    o.socketPath = socket_;
    o.ip = *net::Ipv4Address::parse(ns_->peerIp());
    o.buffers = 256;
    o.echoPattern = kPingPatternBytes;
    stack_ = std::make_unique<FakeStack>(o);
    ASSERT_EQ(stack_->startError(), "");
  }

  std::string logOf(size_t i) const { return dir_.file("driver-" + std::to_string(i) + ".log"); }

  // Starts mknet-tapdrv inside the namespace; returns its index in drivers_.
  size_t startDriver(std::vector<std::string> extra = {}, std::string tap = "") {
    std::vector<std::string> argv = {MKNET_TAPDRV_PATH, "--tap", tap.empty() ? ns_->tap() : tap,
                                     "--stack-socket", socket_, "--log-level", "debug"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    size_t i = drivers_.size();
    drivers_.emplace_back(ns_->exec(argv), logOf(i));
    EXPECT_GT(drivers_.back().pid(), 0);
    return i;
  }

  // The kernel turns the TAP's carrier on asynchronously (linkwatch, up to a
  // second) after a driver opens it, and drops what it sends before that.
  bool waitForCarrier(std::chrono::milliseconds timeout = 5s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string out = dir_.file("link.txt");
    while (std::chrono::steady_clock::now() < deadline) {
      runCommand({"ip", "-n", ns_->name(), "-o", "link", "show", ns_->tap()}, 5s, out);
      if (readFile(out).find("LOWER_UP") != std::string::npos) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  std::vector<std::string> pingArgs(int count, const std::string& interval, int deadlineS) {
    return ns_->exec({"ping", "-q", "-n", "-c", std::to_string(count), "-i", interval, "-W", "1",
                      "-w", std::to_string(deadlineS), "-p", kPingPattern, ns_->peerIp()});
  }

  // Runs ping to the fake stack's address and parses its summary.
  PingSummary ping(int count, const std::string& interval = "0.002", int deadlineS = 20) {
    std::string out = dir_.file("ping-" + std::to_string(pingLogs_.size()) + ".txt");
    pingLogs_.push_back(out);
    int rc = runCommand(pingArgs(count, interval, deadlineS), std::chrono::seconds(deadlineS + 5), out);
    auto s = parsePing(readFile(out));
    EXPECT_TRUE(s) << "ping exited " << rc << ":\n" << readFile(out);
    return s.value_or(PingSummary{});
  }

  static std::string describe(int status) {
    if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
    return "status " + std::to_string(status);
  }

  std::unique_ptr<TestNetns> ns_;
  ScratchDir dir_;
  std::string socket_;
  std::unique_ptr<FakeStack> stack_;
  std::vector<ChildProcess> drivers_;
  std::vector<std::string> pingLogs_;
};

}  // namespace mknet::drivers::test
