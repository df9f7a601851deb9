// mknet-echo-kernel as real processes on loopback: the client must verify
// every echoed byte, and must notice when the server corrupts one.
#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "app_harness.h"
#include "mknet/socket.hpp"

namespace mknet::testing {
namespace {

const std::string kEcho = MKNET_ECHO_KERNEL;

class EchoAppTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.valid()); }

  // Runs the client to completion; its exit code (nullopt if it hung or
  // died) and its summary line's key=value pairs.
  struct ClientRun {
    std::optional<int> exit;
    std::string status;
    std::map<std::string, std::string> summary;
    std::string err;
  };
  ClientRun runClient(std::vector<std::string> args) {
    static int runs = 0;
    const std::string out = dir_.file("client" + std::to_string(++runs) + ".out");
    const std::string err = dir_.file("client" + std::to_string(runs) + ".err");
    args.insert(args.begin(), {kEcho, "client"});
    ChildProcess client = ChildProcess::startLogged(args, out, err);
    EXPECT_TRUE(client.started()) << std::strerror(client.spawnError());
    const auto status = client.wait(25s);
    ClientRun run{exitCode(status), describeStatus(status), {}, readFile(err)};
    const auto outLines = lines(readFile(out));
    if (!outLines.empty()) run.summary = parseKeyValues(outLines.back());
    return run;
  }

  TempDir dir_;
};

TEST_F(EchoAppTest, TcpFiftyConnectionsAreEchoedAndVerified) {
  RunningServer server = startServer(dir_, "server", {kEcho, "server", "--port", "0", "--bind", "127.0.0.1"});
  ASSERT_NE(server.port, 0) << readFile(server.errPath);

  const ClientRun run = runClient({"--connect", "127.0.0.1:" + std::to_string(server.port), "--connections", "50",
                                   "--bytes", "256K", "--seed", "7", "--timeout", "20"});
  ASSERT_EQ(run.exit, 0) << run.status << "\n" << run.err;
  EXPECT_EQ(field(run.summary, "mode"), "tcp");
  EXPECT_EQ(field(run.summary, "connections"), "50");
  EXPECT_EQ(field(run.summary, "ok"), "50");
  EXPECT_EQ(field(run.summary, "failed"), "0");
  EXPECT_EQ(field(run.summary, "mismatches"), "0");
  EXPECT_EQ(field(run.summary, "bytes_sent"), std::to_string(50 * 256 * 1024));
  EXPECT_EQ(field(run.summary, "bytes_verified"), std::to_string(50 * 256 * 1024));
  EXPECT_EQ(field(run.summary, "result"), "ok");

  // The server survives its clients and serves the next one.
  const ClientRun again = runClient({"--connect", "127.0.0.1:" + std::to_string(server.port), "--bytes", "1M"});
  EXPECT_EQ(again.exit, 0) << again.status << "\n" << again.err;
  EXPECT_EQ(field(again.summary, "bytes_verified"), std::to_string(1 << 20));
  EXPECT_FALSE(server.process.wait(0ms).has_value()) << "server exited: " << readFile(server.errPath);
}

TEST_F(EchoAppTest, UdpTwoThousandDatagramsAreEchoedAndVerified) {
  RunningServer server =
      startServer(dir_, "server", {kEcho, "server", "--udp", "--port", "0", "--bind", "127.0.0.1"});
  ASSERT_NE(server.port, 0) << readFile(server.errPath);

  const ClientRun run = runClient({"--connect", "127.0.0.1:" + std::to_string(server.port), "--udp",
                                   "--datagrams", "2000", "--seed", "3", "--timeout", "20"});
  ASSERT_EQ(run.exit, 0) << run.status << "\n" << run.err;
  EXPECT_EQ(field(run.summary, "mode"), "udp");
  EXPECT_EQ(field(run.summary, "datagrams"), "2000");
  EXPECT_EQ(field(run.summary, "verified"), "2000");
  EXPECT_EQ(field(run.summary, "mismatches"), "0");
  EXPECT_EQ(field(run.summary, "lost"), "0");
  EXPECT_EQ(field(run.summary, "result"), "ok");
  // Sizes are random in 8..1472, so 2000 of them average ~740 bytes.
  const uint64_t bytes = std::stoull(field(run.summary, "bytes_verified"));
  EXPECT_GT(bytes, 2000u * 500);
  EXPECT_LT(bytes, 2000u * 1000);
}

// A TCP echo server, in this test process, that flips one bit of byte
// `corruptAt` of the stream on the way back.
void corruptingTcpEcho(Listener& listener, uint64_t corruptAt) {
  pollfd pfd{listener.fd(), POLLIN, 0};
  if (mknet_poll(&pfd, 1, 20000) != 1) return;
  auto accepted = listener.accept();
  if (!accepted) return;
  std::vector<std::byte> buf(64 * 1024);
  uint64_t offset = 0;
  while (true) {
    auto n = accepted->socket.recv(buf);
    if (!n || *n == 0) return;
    if (corruptAt >= offset && corruptAt < offset + *n) buf[corruptAt - offset] ^= std::byte{0x01};
    offset += *n;
    if (!sendAll(accepted->socket, std::span(buf.data(), *n))) return;
  }
}

TEST_F(EchoAppTest, TcpClientDetectsACorruptedByte) {
  auto listener = Listener::listen(Ipv4Endpoint{0x7f000001, 0});
  ASSERT_TRUE(listener) << listener.error().message();
  const auto local = listener->localEndpoint();
  ASSERT_TRUE(local);
  std::thread server(corruptingTcpEcho, std::ref(*listener), 100000);

  const ClientRun run = runClient({"--connect", local->toString(), "--bytes", "256K", "--timeout", "20"});
  server.join();
  EXPECT_EQ(run.exit, 1) << run.status << "\n" << run.err;
  EXPECT_EQ(field(run.summary, "result"), "fail");
  EXPECT_EQ(field(run.summary, "mismatches"), "1");
  EXPECT_EQ(field(run.summary, "failed"), "1");
  EXPECT_NE(run.err.find("at byte 100000"), std::string::npos) << run.err;
}

TEST_F(EchoAppTest, UdpClientDetectsACorruptedDatagram) {
  auto socket = Socket::udp();
  ASSERT_TRUE(socket);
  ASSERT_TRUE(socket->bind(Ipv4Endpoint{0x7f000001, 0}));
  const auto local = socket->localEndpoint();
  ASSERT_TRUE(local);
  std::atomic<bool> stop{false};
  // Echoes every datagram, flipping the last byte of the sixth one.
  std::thread server([&] {
    std::vector<std::byte> buf(2048);
    int count = 0;
    while (!stop) {
      pollfd pfd{socket->fd(), POLLIN, 0};
      if (mknet_poll(&pfd, 1, 50) != 1) continue;
      auto d = socket->recvFrom(buf);
      if (!d || d->size == 0) continue;
      if (++count == 6) buf[d->size - 1] ^= std::byte{0x80};
      (void)socket->sendTo(std::span(buf.data(), d->size), d->from);
    }
  });

  const ClientRun run = runClient({"--connect", local->toString(), "--udp", "--datagrams", "50", "--timeout", "20"});
  stop = true;
  server.join();
  EXPECT_EQ(run.exit, 1) << run.status << "\n" << run.err;
  EXPECT_EQ(field(run.summary, "result"), "fail");
  EXPECT_EQ(field(run.summary, "mismatches"), "1");
  EXPECT_EQ(field(run.summary, "verified"), "49");
}

TEST_F(EchoAppTest, TcpClientFailsWhenNothingListens) {
  // Bind a port and close it again: nothing listens there afterwards.
  uint16_t port = 0;
  {
    auto listener = Listener::listen(Ipv4Endpoint{0x7f000001, 0});
    ASSERT_TRUE(listener);
    port = listener->localEndpoint()->port;
  }
  const ClientRun run = runClient({"--connect", "127.0.0.1:" + std::to_string(port), "--timeout", "5"});
  EXPECT_EQ(run.exit, 1) << run.status;
  EXPECT_NE(run.err.find("Connection refused"), std::string::npos) << run.err;
}

TEST_F(EchoAppTest, BadCommandLinesExitWithUsageStatus) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const Case cases[] = {
      {{}, "missing mode"},
      {{"bounce"}, "unknown mode 'bounce'"},
      {{"client"}, "needs --connect"},
      {{"client", "--connect", "127.0.0.1"}, "bad --connect"},
      {{"client", "--connect", "127.0.0.1:7", "--connections", "0"}, "bad --connections"},
      {{"client", "--connect", "127.0.0.1:7", "--bogus"}, "unknown flag --bogus"},
      {{"client", "--connect", "127.0.0.1:7", "--udp", "--bytes", "10"}, "--bytes are for TCP"},
      {{"server", "--port", "70000"}, "bad --port"},
      {{"server", "--port", "1", "--connections", "3"}, "--connections does not apply"},
  };
  int i = 0;
  for (const Case& c : cases) {
    std::vector<std::string> argv{kEcho};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    const std::string err = dir_.file("usage" + std::to_string(++i) + ".err");
    ChildProcess p = ChildProcess::startLogged(argv, dir_.file("usage.out"), err);
    const auto status = p.wait(10s);
    EXPECT_EQ(exitCode(status), 2) << c.message << ": " << describeStatus(status);
    EXPECT_NE(readFile(err).find(c.message), std::string::npos) << readFile(err);
  }

  ChildProcess help = ChildProcess::startLogged({kEcho, "--help"}, dir_.file("help.out"), dir_.file("help.err"));
  EXPECT_EQ(exitCode(help.wait(10s)), 0);
  EXPECT_EQ(readFile(dir_.file("help.out")).rfind("usage: mknet-echo server", 0), 0u);
}

}  // namespace
}  // namespace mknet::testing
