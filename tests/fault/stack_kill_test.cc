// stack_kill: apps blocked in recv, send, accept and connect when the stack
// is SIGKILLed. Each blocked call must return an error within 1 s of the
// kill (ECONNRESET from recv, EPIPE or ECONNRESET from send, EINVAL or
// ECONNABORTED from accept, a connection error from connect), and no app
// may hang, crash or die of a signal (SIGBUS on its session memory,
// SIGPIPE). Then the test starts a new stack and a new driver, and the SAME
// processes open new sockets and run a verified echo transfer again, without
// being restarted.
//
// Five apps (mknet-fault-app `blocked`): one per call, and one with a thread
// blocked in each of the four calls at once. Linux side: a HoldServer that
// accepts and neither sends nor reads (recv and send block on it), nothing
// at all for connect (an address on the subnet that doesn't exist), and
// mknet-echo-kernel's server for the second phase.
#include <gtest/gtest.h>

#include <csignal>
#include <set>

#include "tests/fault/fault_util.h"

namespace mknet::ftest {
namespace {

using itest::Bin;
using itest::Process;

uint64_t nowNs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count());
}

const std::map<std::string, std::set<std::string>> kExpected = {
    {"recv", {"ECONNRESET"}},
    {"send", {"EPIPE", "ECONNRESET"}},
    // EINVAL: libmknet reports the listener as no longer listening (what
    // Linux gives for accept() on a socket that does not listen), a lasting
    // error a server loop does not retry the way it retries ECONNABORTED.
    {"accept", {"EINVAL", "ECONNABORTED"}},
    {"connect", {"ECONNRESET", "ECONNABORTED", "ECONNREFUSED", "ENETDOWN", "ENETUNREACH", "EHOSTUNREACH"}},
};

TEST(StackKill, BlockedCallsFailPromptlyAndTheSameAppsWorkAgain) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  HoldServer hold(tb, 6100, /*read=*/false);
  ASSERT_TRUE(hold.ok()) << hold.error();
  Process echo = tb.spawnInNs({Bin::echoKernel(), "server", "--port", "6200"}, "linux-echo.log");
  ASSERT_TRUE(echo.waitForLine("listen=", 10s)) << echo.output();

  struct App {
    std::string op;
    Process proc;
    std::vector<std::string> ops;
  };
  std::vector<App> apps;
  int port = 7100;
  for (const std::string op : {"recv", "send", "accept", "connect", "all"}) {
    App a;
    a.op = op;
    a.ops = op == "all" ? std::vector<std::string>{"recv", "send", "accept", "connect"} : std::vector{op};
    a.proc = tb.spawnApp({MKNET_FAULT_APP_BIN, "blocked", "--op", op, "--peer", tb.linuxIp() + ":6100",
                          "--listen-port", std::to_string(port++), "--unreachable",
                          "198.18." + std::to_string(tb.subnet()) + ".99:9", "--echo", tb.linuxIp() + ":6200",
                          "--bytes", "1048576"},
                         "app-" + op + ".log");
    apps.push_back(std::move(a));
  }
  for (auto& a : apps)
    for (const auto& op : a.ops)
      ASSERT_TRUE(a.proc.waitForLine("ready op=" + op, 10s)) << a.op << ": " << a.proc.output();
  // Long enough for send() to fill the peer's window, lwIP's buffer and the
  // ring and block, and for connect's SYN to be on its way nowhere.
  std::this_thread::sleep_for(1s);
  for (auto& a : apps) {
    ASSERT_TRUE(a.proc.running()) << a.op << ": " << a.proc.output();
    ASSERT_EQ(itest::lastLineWith(a.proc.output(), "result "), "") << a.op << " did not block";
  }

  const uint64_t killedNs = nowNs();
  tb.stack().kill();

  for (auto& a : apps) {
    for (const auto& op : a.ops) {
      SCOPED_TRACE(a.op + "/" + op);
      auto line = a.proc.waitForLine("result op=" + op + " ", 5s);
      ASSERT_TRUE(line) << "still blocked 5 s after the stack died: " << a.proc.output();
      auto kv = itest::parseKeyValues(*line);
      const double ms = (static_cast<double>(std::stoull(kv["t_ns"])) - static_cast<double>(killedNs)) / 1e6;
      itest::record("returned_ms_" + a.op + "_" + op, std::to_string(ms) + " (" + kv["errno"] + ")");
      EXPECT_LT(ms, 1000) << "returned " << ms << " ms after the kill";
      EXPECT_EQ(kv["ret"], "-1");
      EXPECT_TRUE(kExpected.at(op).count(kv["errno"])) << op << " failed with " << kv["errno"];
    }
  }
  // The driver lost its stack; it exits or is stopped here, by PID.
  tb.driver().kill();
  for (auto& a : apps) EXPECT_TRUE(a.proc.running()) << a.op << " did not survive: " << a.proc.output();

  // A new stack on the same runtime dir (same socket path), then a driver.
  tb.stack() = Process({Bin::stack(), "--ip", tb.mknetIp() + "/24", "--mac", tb.mac(), "--runtime-dir",
                        tb.runtimeDir(), "--log-level", "info"},
                       tb.file("stack.log"));
  ASSERT_NE(tb.stack().pid(), 0);
  ASSERT_TRUE(tb.waitCounter("link_up", 0, 10s)) << "the new stack does not answer:\n" << tb.logTails();
  ASSERT_TRUE(tb.startDriver()) << tb.error();

  for (auto& a : apps) {
    SCOPED_TRACE(a.op);
    auto st = a.proc.wait(40s);
    const std::string out = a.proc.output();
    ASSERT_TRUE(st) << "hung after the new stack came up: " << out;
    EXPECT_EQ(*st, 0) << "exit status (128 + signal if killed by one): " << out;
    for (const auto& op : a.ops)
      EXPECT_NE(itest::lastLineWith(out, "phase2 op=" + op + " ok"), "") << out;
  }
  EXPECT_EQ(tb.peerFaults(), "");
  EXPECT_EQ(tb.leftovers(), "") << "leak check on the new stack";
}

}  // namespace
}  // namespace mknet::ftest
