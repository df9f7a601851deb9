// malicious_app: apps that break the rules lose only what is theirs.
//
// A well-behaved app, mknet-echo's server on mknet, stays up the whole time,
// and Linux-side mknet-echo-kernel clients keep it busy without a pause
// (a new client run starts whenever one ends; each must verify every byte).
// Meanwhile mknet-fault-rogue runs one misdeed after the other:
//   - in its OWN session memory (reached through libmknet's internals):
//     the notify ring's head beyond its capacity, notifications for slots
//     that don't exist, a TCP socket's tx ring head and tail set to garbage,
//     its rx ring tail set to garbage, UDP tx records with impossible
//     lengths, random bytes over every slot's status;
//   - on the stack's control socket: random bytes, a well-framed message of
//     garbage, a frame announcing a 4 GiB segment, a 56 MiB message.
// Each misdeed must be counted by the stack (session_corrupt_rings,
// session_bad_notify, bad_tx_records; for the control socket: the RPC
// server's peer errors), the rogue's session must be gone once it exits,
// the stack must stay up, and the echo traffic must stay byte-exact.
#include <gtest/gtest.h>

#include <functional>

#include "tests/fault/fault_util.h"

namespace mknet::ftest {
namespace {

using itest::Bin;
using itest::Process;

// The well-behaved side: the mknet echo server and a chain of Linux clients.
class GoodTraffic {
 public:
  explicit GoodTraffic(Testbed& tb) : tb_(tb) {
    server_ = tb.spawnApp({Bin::echo(), "server", "--port", "7300"}, "good-server.log");
    ok_ = server_.waitForLine("listen=", 10s).has_value();
    if (ok_) next();
  }
  bool ok() const { return ok_; }
  // Checks a client run that ended and starts the next one.
  void tick() {
    if (client_.running()) return;
    check();
    next();
  }
  // Waits for the running client, checks it; returns the runs so far.
  int finish() {
    client_.wait(60s);
    check();
    return runs_;
  }
  bool serverRunning() { return server_.running(); }
  Process& server() { return server_; }

 private:
  void next() {
    client_ = tb_.spawnInNs({Bin::echoKernel(), "client", "--connect", tb_.mknetIp() + ":7300", "--connections", "8",
                             "--bytes", "2M", "--seed", std::to_string(1000 + runs_), "--timeout", "30"},
                            "good-client-" + std::to_string(runs_) + ".log");
    ++runs_;
  }
  void check() {
    auto st = client_.wait(30s);
    const std::string out = client_.output();
    auto kv = itest::parseKeyValues(itest::lastLineWith(out, "mode=tcp"));
    EXPECT_EQ(st, std::optional<int>(0)) << "well-behaved echo run " << runs_ - 1 << ": " << out;
    EXPECT_EQ(kv["result"], "ok") << out;
    EXPECT_EQ(kv["mismatches"], "0") << out;
    EXPECT_EQ(kv["bytes_verified"], std::to_string(8ull * 2 * 1024 * 1024)) << out;
  }

  Testbed& tb_;
  Process server_, client_;
  bool ok_ = false;
  int runs_ = 0;
};

// The counters a misbehaving app can move: session_corrupt_rings,
// session_bad_notify, bad_tx_records, and whatever else the stack names
// "corrupt" or "bad" (no driver misbehaves here, so the driver port's
// corrupt_rings and bad_descriptors stay put).
uint64_t faultCount(const Status& s) {
  uint64_t n = 0;
  for (const auto& [k, v] : s)
    if (k.find("corrupt") != std::string::npos || k.find("bad") != std::string::npos) n += v;
  return n;
}

struct Misdeed {
  std::string mode;
  // What the stack must count for it: counter name -> increase (exact).
  // "any" means: some fault counter moves (faultCount() increases).
  std::map<std::string, uint64_t> counted;
  bool mustClose = false;  // the stack must close the session (header `closed`)
};

TEST(MaliciousApp, CorruptSessionMemoryCostsOnlyThatSession) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  StackWatch watch(tb.stackSocket());
  Process linuxEcho = tb.spawnInNs({Bin::echoKernel(), "server", "--port", "6300"}, "linux-echo.log");
  ASSERT_TRUE(linuxEcho.waitForLine("listen=", 10s)) << linuxEcho.output();
  GoodTraffic good(tb);
  ASSERT_TRUE(good.ok()) << good.server().output();
  auto base = watch.fresh();
  ASSERT_TRUE(base);

  const std::vector<Misdeed> misdeeds = {
      {"notify-head", {{"session_corrupt_rings", 1}}, true},
      {"notify-bogus", {{"session_bad_notify", 5}}, false},
      {"tx-head", {{"any", 1}}, false},
      {"tx-tail", {}, false},  // the stack keeps its own copy of that index: nothing to see
      {"rx-tail", {{"any", 1}}, false},
      {"udp-length", {{"bad_tx_records", 1}}, true},  // the first bogus record closes the session
      {"status-noise", {}, false},  // memory the stack writes and never trusts
      {"control-bogus", {{"session_bad_control", 1}}, false},
  };
  for (const auto& m : misdeeds) {
    SCOPED_TRACE(m.mode);
    good.tick();
    auto pre = watch.fresh();
    ASSERT_TRUE(pre) << "the stack does not answer";
    auto r = tb.runApp({MKNET_FAULT_ROGUE_BIN, m.mode, "--peer", tb.linuxIp() + ":6300", "--wait-ms", "1500"}, 20s);
    itest::record("rogue_" + m.mode, itest::lastLineWith(r.output, "mode="));
    EXPECT_EQ(r.status, 0) << "the rogue itself failed or crashed (status " << r.status << "): " << r.output;
    auto kv = itest::parseKeyValues(itest::lastLineWith(r.output, "mode="));
    if (m.mustClose) {
      EXPECT_EQ(kv["closed"], "1") << "the stack did not close the session: " << r.output;
    }
    if (m.mode == "control-bogus") {
      EXPECT_EQ(kv["detail"], "errs=" + std::to_string(EINVAL) + "/" + std::to_string(EBADF)) << r.output;
    }
    // The rogue has exited: its session and sockets must be gone. The good
    // server's own count moves as its clients' runs end and start (a
    // listener, the 8 connections of the run, and the previous run's 8 while
    // they drain), so the sockets are bounded by that rather than equal to
    // the count at the start (a run can end between the two looks).
    constexpr uint64_t kGoodServerSocketsMax = 1 + 2 * 8;
    auto gone = watch.waitFor(
        [&](const Status& s) {
          return s.at("sessions") == base->at("sessions") && s.at("sockets") <= kGoodServerSocketsMax;
        },
        5s);
    auto post = watch.fresh();
    ASSERT_TRUE(post) << "the stack does not answer after " << m.mode << ":\n" << tb.logTails();
    EXPECT_TRUE(gone) << "sessions=" << (*post)["sessions"] << " sockets=" << (*post)["sockets"] << " (baseline "
                      << base->at("sessions") << ", " << base->at("sockets") << ")";
    for (const auto& [name, delta] : m.counted) {
      if (name == "any") {
        EXPECT_GE(faultCount(*post), faultCount(*pre) + delta)
            << "no fault counter moved (session_corrupt_rings, session_bad_notify, bad_tx_records, ...); rogue: "
            << r.output;
      } else {
        EXPECT_EQ((*post)[name], (*pre)[name] + delta) << name << "; rogue: " << r.output;
      }
    }
    if (m.counted.empty()) {
      EXPECT_EQ(faultCount(*post), faultCount(*pre)) << "counted what was not a fault";
    }
    ASSERT_TRUE(tb.stack().running()) << tb.logTails();
    ASSERT_TRUE(good.serverRunning()) << good.server().output();
    good.tick();
  }
  const int runs = good.finish();
  itest::record("good_echo_runs", std::to_string(runs));
  EXPECT_TRUE(good.serverRunning()) << good.server().output();
  good.server().stop();
  EXPECT_EQ(tb.leftovers(), "") << "leak check: what the stack still holds after every app has exited";
}

TEST(MaliciousApp, MalformedControlMessagesCostOnlyThatConnection) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  StackWatch watch(tb.stackSocket());
  GoodTraffic good(tb);
  ASSERT_TRUE(good.ok()) << good.server().output();
  auto base = watch.fresh();
  ASSERT_TRUE(base);

  const std::vector<std::string> modes = {"rpc-garbage", "rpc-segment", "rpc-huge", "rpc-big"};
  for (const auto& mode : modes) {
    SCOPED_TRACE(mode);
    good.tick();
    auto r = tb.runApp({MKNET_FAULT_ROGUE_BIN, mode, "--socket", tb.stackSocket()}, 30s);
    itest::record("rogue_" + mode, itest::lastLineWith(r.output, "mode="));
    EXPECT_EQ(r.status, 0) << r.output;
    auto kv = itest::parseKeyValues(itest::lastLineWith(r.output, "mode="));
    EXPECT_EQ(kv["server_closed"], "1") << "the stack kept a connection that broke the protocol: " << r.output;
    ASSERT_TRUE(tb.stack().running()) << tb.logTails();
    ASSERT_TRUE(watch.fresh()) << "the stack does not answer after " << mode;
    ASSERT_TRUE(good.serverRunning()) << good.server().output();
    good.tick();
  }
  const int runs = good.finish();
  itest::record("good_echo_runs", std::to_string(runs));

  // Counted: the stack's log names each dropped client (rate-limited to a
  // line a second, the rest summed up in the next line) ...
  const std::string log = itest::readFile(tb.file("stack.log"));
  EXPECT_NE(log.find("broke the protocol"), std::string::npos) << tb.logTails();
  // ... and the count must be readable where every other fault counter is:
  // the admin status (RpcServer::stats().peerErrors).
  auto st = watch.fresh();
  ASSERT_TRUE(st);
  std::string names;
  uint64_t peerErrors = 0;
  for (const auto& [k, v] : *st) {
    if (k.find("peer_error") != std::string::npos || k.find("rpc") != std::string::npos) {
      names += k + "=" + std::to_string(v) + " ";
      peerErrors += v;
    }
  }
  EXPECT_GE(peerErrors, modes.size())
      << "the RPC server's peer errors are not in the stack's status (found: '" << names << "')";
  EXPECT_EQ((*st)["sessions"], base->at("sessions"));
  good.server().stop();
  EXPECT_EQ(tb.leftovers(), "") << "leak check: what the stack still holds after every app has exited";
}

}  // namespace
}  // namespace mknet::ftest
