// preload_iperf3: Debian's iperf3, unmodified, on mknet with the Linux
// kernel's iperf3 as the peer: server on mknet (client on Linux, both
// directions with -R), then client on mknet (server on Linux, both
// directions), TCP and UDP. Each run checks the byte counts both ends report
// (iperf3 exchanges them at the end), not just the exit code.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "tests/integration/testbed.h"
#include "tests/preload/preload_env.h"
#include "tests/preload/programs.h"

namespace mknet::itest {
namespace {

class PreloadIperf3 : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(tb_.ok()) << tb_.error();
    ASSERT_TRUE(pe_.ok()) << pe_.error();
  }

  // One iperf3 run: the server on `serverOnMknet ? mknet : Linux`, the client
  // on the other side with `clientArgs`. Returns the client's JSON figures.
  std::map<std::string, std::string> runPair(bool serverOnMknet, const Argv& clientArgs, const std::string& tag) {
    const std::string port = "5201";
    Argv server = {"iperf3", "-s", "-1", "-4", "-p", port, "--forceflush"};
    Process srv = serverOnMknet ? pe_.spawn(server, "iperf3-server-" + tag + ".log")
                                : tb_.spawnInNs(server, "iperf3-server-" + tag + ".log");
    EXPECT_TRUE(srv.waitForLine("Server listening", 10s)) << srv.output();
    const std::string json = tb_.file("iperf3-" + tag + ".json");
    Argv client = {"iperf3", "-c", serverOnMknet ? tb_.mknetIp() : tb_.linuxIp(), "-p", port, "-4", "-t", "3",
                   "--json", "--logfile", json};
    client.insert(client.end(), clientArgs.begin(), clientArgs.end());
    auto r = serverOnMknet ? tb_.runInNs(client, 40s) : pe_.run(client, 40s);
    EXPECT_EQ(r.status, 0) << tag << ": " << r.output << readFile(json) << "\nserver: " << srv.output();
    auto st = srv.wait(10s);
    EXPECT_TRUE(st && *st == 0) << tag << " server: " << srv.output();
    auto kv = iperf3Result(json);
    EXPECT_EQ(kv.count("error"), 0u) << tag << ": " << readFile(json);
    char gbps[32];
    std::snprintf(gbps, sizeof gbps, "%.3f", std::stod(kv["received_bps"].empty() ? "0" : kv["received_bps"]) / 1e9);
    record("iperf3_" + tag + "_gbps", gbps);
    return kv;
  }

  // TCP: what the receiver counted is what the sender counted, give or take
  // what was still in flight when iperf3 stopped the clock (<= 5 %).
  static void expectTcpBytes(std::map<std::string, std::string> kv, const std::string& tag) {
    ASSERT_FALSE(kv["sent_bytes"].empty()) << tag;
    double sent = std::stod(kv["sent_bytes"]), got = std::stod(kv["received_bytes"]);
    EXPECT_GT(sent, 1e6) << tag;
    EXPECT_LE(got, sent) << tag;
    EXPECT_GE(got, 0.95 * sent) << tag << ": sent " << sent << " received " << got;
  }
  // UDP: the receiver's bytes match its packet count, and little was lost.
  static void expectUdpBytes(std::map<std::string, std::string> kv, const std::string& tag) {
    ASSERT_FALSE(kv["packets"].empty()) << tag;
    double packets = std::stod(kv["packets"]), lost = std::stod(kv["lost_packets"]);
    double got = std::stod(kv["received_bytes"]);
    EXPECT_GT(packets, 1000) << tag;
    EXPECT_NEAR(got, (packets - lost) * 1400, 1400 * 2) << tag << ": " << packets << " packets, " << lost << " lost";
    EXPECT_LT(lost, 0.05 * packets) << tag << ": lost " << lost << " of " << packets;
  }

  Testbed tb_;
  PreloadEnv pe_{tb_};
};

TEST_F(PreloadIperf3, TcpServerOnMknet) {
  expectTcpBytes(runPair(true, {}, "tcp_linux_to_mknet"), "linux->mknet");
  expectTcpBytes(runPair(true, {"-R"}, "tcp_mknet_to_linux"), "mknet->linux (-R)");
  EXPECT_EQ(tb_.peerFaults(), "");
  EXPECT_EQ(tb_.leftovers(), "");
}

TEST_F(PreloadIperf3, TcpClientOnMknet) {
  expectTcpBytes(runPair(false, {}, "tcp_client_mknet_to_linux"), "mknet->linux");
  expectTcpBytes(runPair(false, {"-R"}, "tcp_client_linux_to_mknet"), "linux->mknet (-R)");
  EXPECT_EQ(tb_.peerFaults(), "");
  EXPECT_EQ(tb_.leftovers(), "");
}

TEST_F(PreloadIperf3, UdpBothWays) {
  const Argv udp = {"-u", "-b", "200M", "-l", "1400"};
  Argv rev = udp;
  rev.push_back("-R");
  expectUdpBytes(runPair(true, udp, "udp_linux_to_mknet"), "udp linux->mknet");
  expectUdpBytes(runPair(true, rev, "udp_mknet_to_linux"), "udp mknet->linux (-R)");
  expectUdpBytes(runPair(false, udp, "udp_client_mknet_to_linux"), "udp client mknet->linux");
  EXPECT_EQ(tb_.peerFaults(), "");
  EXPECT_EQ(tb_.leftovers(), "");
}

}  // namespace
}  // namespace mknet::itest
