// The benchmark workload programs (mknet-rtt, mknet-connrate, mknet-udp) as
// real processes on loopback, their -kernel builds against each other: each
// must finish, verify what it got, and report its key=value line with counts
// that add up. Figures are not checked (timings belong in benchmarks); the
// runs are short so the whole file stays under ten seconds.
#include <gtest/gtest.h>

#include "app_harness.h"

namespace mknet::testing {
namespace {

const std::string kRtt = MKNET_RTT_KERNEL;
const std::string kConnrate = MKNET_CONNRATE_KERNEL;
const std::string kUdp = MKNET_UDP_KERNEL;

class BenchAppsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.valid()); }

  // Runs argv to completion (exit 0 expected); the key=value pairs of its last line.
  std::map<std::string, std::string> runClient(const std::string& name, const std::vector<std::string>& argv) {
    const std::string out = dir_.file(name + ".out"), err = dir_.file(name + ".err");
    ChildProcess p = ChildProcess::startLogged(argv, out, err);
    const auto status = p.wait(20s);
    EXPECT_EQ(exitCode(status), 0) << name << ": " << describeStatus(status) << "\n" << readFile(err);
    const auto ls = lines(readFile(out));
    return ls.empty() ? std::map<std::string, std::string>{} : parseKeyValues(ls.back());
  }

  static std::string at(uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

  TempDir dir_;
};

TEST_F(BenchAppsTest, RttLatencyAndTransactionsOverManyConnections) {
  RunningServer srv = startServer(dir_, "rtt-server", {kRtt, "server", "--port", "0", "--bind", "127.0.0.1"});
  ASSERT_NE(srv.port, 0) << readFile(srv.errPath);

  const auto lat = runClient("rtt-lat", {kRtt, "client", "--connect", at(srv.port), "--count", "2000", "--warmup",
                                         "10", "--size", "1"});
  EXPECT_EQ(field(lat, "count"), "2000");
  EXPECT_LE(std::stod(field(lat, "p50_us")), std::stod(field(lat, "p999_us")));

  // The same server takes both the latency client and then 16 connections at once.
  const auto tps = runClient("rtt-tps", {kRtt, "client", "--connect", at(srv.port), "--conns", "16", "--seconds",
                                         "0.5", "--size", "64"});
  EXPECT_EQ(field(tps, "mode"), "tps");
  EXPECT_EQ(field(tps, "conns"), "16");
  EXPECT_GT(std::stoull(field(tps, "transactions")), 16u);

  // --count bounds the transactions exactly.
  const auto bounded = runClient("rtt-bounded", {kRtt, "client", "--connect", at(srv.port), "--conns", "4",
                                                 "--count", "1000", "--seconds", "20"});
  EXPECT_EQ(field(bounded, "transactions"), "1000");
}

TEST_F(BenchAppsTest, ConnrateCompletesEveryConnectionWithItsEcho) {
  RunningServer srv =
      startServer(dir_, "conn-server", {kConnrate, "server", "--port", "0", "--bind", "127.0.0.1", "--size", "100"});
  ASSERT_NE(srv.port, 0) << readFile(srv.errPath);
  const auto r = runClient("conn", {kConnrate, "client", "--connect", at(srv.port), "--size", "100", "--conns", "3",
                                    "--count", "600", "--seconds", "15"});
  EXPECT_EQ(field(r, "mode"), "connrate");
  EXPECT_EQ(field(r, "connections"), "600");
  EXPECT_EQ(field(r, "failed"), "0");
  EXPECT_GT(std::stod(field(r, "conn_per_s")), 0.0);
}

TEST_F(BenchAppsTest, ConnrateCountsRefusedConnectionsAsFailures) {
  // Nobody listens on a port we just had and released: every connect is refused.
  RunningServer srv = startServer(dir_, "gone", {kConnrate, "server", "--port", "0", "--bind", "127.0.0.1"});
  ASSERT_NE(srv.port, 0);
  srv.process.killAndReap();
  const std::string out = dir_.file("refused.out"), err = dir_.file("refused.err");
  ChildProcess p = ChildProcess::startLogged(
      {kConnrate, "client", "--connect", at(srv.port), "--count", "1000", "--seconds", "10"}, out, err);
  EXPECT_EQ(exitCode(p.wait(15s)), 1);
  const auto r = parseKeyValues(lines(readFile(out)).back());
  EXPECT_EQ(field(r, "connections"), "0");
  EXPECT_EQ(field(r, "failed"), "100");  // gives up after 100 in a row
  EXPECT_NE(readFile(err).find("refused"), std::string::npos) << readFile(err);
}

TEST_F(BenchAppsTest, UdpReceiverVerifiesAndCountsWhatTheSenderSent) {
  for (const char* size : {"64", "1472"}) {
    RunningServer rcv = startServer(dir_, std::string("udp-recv-") + size,
                                    {kUdp, "recv", "--port", "0", "--bind", "127.0.0.1", "--idle-timeout", "2"});
    ASSERT_NE(rcv.port, 0) << readFile(rcv.errPath);
    // A bounded count, so loopback's receive queue never overflows... mostly:
    // the check below allows loss but not corruption or invention.
    const auto s = runClient(std::string("udp-send-") + size,
                             {kUdp, "send", "--connect", at(rcv.port), "--size", size, "--count", "20000"});
    EXPECT_EQ(field(s, "sent"), "20000");
    const auto status = rcv.process.wait(10s);
    ASSERT_EQ(exitCode(status), 0) << describeStatus(status) << readFile(rcv.errPath);
    const auto r = parseKeyValues(lines(readFile(rcv.outPath)).back());
    EXPECT_EQ(field(r, "mode"), "recv");
    EXPECT_EQ(field(r, "size"), size);
    EXPECT_EQ(field(r, "sent"), "20000");
    EXPECT_EQ(field(r, "bad"), "0");
    const uint64_t received = std::stoull(field(r, "received"));
    EXPECT_GT(received, 0u);
    EXPECT_LE(received, 20000u);
    EXPECT_EQ(std::stoull(field(r, "lost")), 20000u - received);
  }
}

TEST_F(BenchAppsTest, UdpReceiverRejectsForeignDatagrams) {
  // mknet-echo's UDP client sends datagrams of its own format: not ours.
  RunningServer rcv =
      startServer(dir_, "udp-recv", {kUdp, "recv", "--port", "0", "--bind", "127.0.0.1", "--idle-timeout", "0.5"});
  ASSERT_NE(rcv.port, 0);
  const std::string out = dir_.file("echo.out"), err = dir_.file("echo.err");
  ChildProcess echo = ChildProcess::startLogged({MKNET_ECHO_KERNEL, "client", "--udp", "--connect", at(rcv.port),
                                                 "--datagrams", "5", "--window", "5", "--timeout", "1"},
                                                out, err);
  echo.wait(5s);
  const auto status = rcv.process.wait(10s);
  EXPECT_EQ(exitCode(status), 1) << describeStatus(status);
  const auto r = parseKeyValues(lines(readFile(rcv.outPath)).back());
  EXPECT_NE(field(r, "bad"), "0");
  EXPECT_EQ(field(r, "sent"), "-1");
}

TEST_F(BenchAppsTest, HelpAndBadCommandLines) {
  for (const std::string& app : {kRtt, kConnrate, kUdp}) {
    const std::string out = dir_.file("help.out");
    ChildProcess help = ChildProcess::startLogged({app, "--help"}, out, dir_.file("help.err"));
    EXPECT_EQ(exitCode(help.wait(5s)), 0) << app;
    EXPECT_NE(readFile(out).find("usage:"), std::string::npos) << app;
    ChildProcess bad = ChildProcess::startLogged({app, "client", "--bogus"}, out, dir_.file("bad.err"));
    EXPECT_EQ(exitCode(bad.wait(5s)), 2) << app;
  }
}

}  // namespace
}  // namespace mknet::testing
