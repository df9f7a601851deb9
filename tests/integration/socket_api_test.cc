// socket_api: libmknet's API surface from inside the test process itself:
// socket options set and read back, poll() over an mknet socket and a pipe
// together, receive timeouts, O_NONBLOCK, and the C++ API — against a Linux
// echo server in the test's namespace.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "mknet/mknet.h"
#include "mknet/socket.hpp"
#include "tests/integration/testbed.h"

namespace mknet::itest {
namespace {

using Clock = std::chrono::steady_clock;

class SocketApi : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(tb_.ok()) << tb_.error();
    // The library reads this once, when the process opens its session.
    setenv("MKNET_STACK_SOCKET", tb_.stackSocket().c_str(), 1);
    echo_ = tb_.spawnInNs({Bin::echoKernel(), "server", "--port", "7"}, "echo.log");
    ASSERT_TRUE(echo_.waitForLine("listen=", 10s)) << echo_.output();
    peer_ = sockaddr_in{};
    peer_.sin_family = AF_INET;
    peer_.sin_port = htons(7);
    inet_pton(AF_INET, tb_.linuxIp().c_str(), &peer_.sin_addr);
  }

  int connected() {
    int fd = mknet_socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_GE(fd, 0) << strerror(errno);
    EXPECT_EQ(mknet_connect(fd, reinterpret_cast<sockaddr*>(&peer_), sizeof peer_), 0) << strerror(errno);
    return fd;
  }

  Testbed tb_;
  Process echo_;
  sockaddr_in peer_{};
};

TEST_F(SocketApi, OptionsReadBackWhatWasSet) {
  int fd = connected();
  struct IntOption {
    int level, name, value;
    const char* what;
  } cases[] = {
      {SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR"}, {SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE"},
      {IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY"},  {IPPROTO_TCP, TCP_KEEPIDLE, 30, "TCP_KEEPIDLE"},
      {IPPROTO_TCP, TCP_KEEPINTVL, 5, "TCP_KEEPINTVL"}, {IPPROTO_TCP, TCP_KEEPCNT, 4, "TCP_KEEPCNT"},
      {IPPROTO_TCP, TCP_NODELAY, 0, "TCP_NODELAY off"}, {SOL_SOCKET, SO_KEEPALIVE, 0, "SO_KEEPALIVE off"},
  };
  for (const auto& c : cases) {
    ASSERT_EQ(mknet_setsockopt(fd, c.level, c.name, &c.value, sizeof c.value), 0) << c.what << ": " << strerror(errno);
    int got = -1;
    socklen_t len = sizeof got;
    ASSERT_EQ(mknet_getsockopt(fd, c.level, c.name, &got, &len), 0) << c.what;
    EXPECT_EQ(len, sizeof got) << c.what;
    EXPECT_EQ(got != 0, c.value != 0) << c.what;
    if (c.name == TCP_KEEPIDLE || c.name == TCP_KEEPINTVL || c.name == TCP_KEEPCNT) {
      EXPECT_EQ(got, c.value) << c.what;
    }
  }
  linger l{1, 5}, lg{};
  socklen_t len = sizeof lg;
  ASSERT_EQ(mknet_setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l), 0);
  ASSERT_EQ(mknet_getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &len), 0);
  EXPECT_EQ(lg.l_onoff, 1);
  EXPECT_EQ(lg.l_linger, 5);
  timeval tv{1, 500000}, tg{};
  len = sizeof tg;
  ASSERT_EQ(mknet_setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv), 0);
  ASSERT_EQ(mknet_getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tg, &len), 0);
  EXPECT_EQ(tg.tv_sec, 1);
  EXPECT_EQ(tg.tv_usec, 500000);
  int v = -1;
  len = sizeof v;
  ASSERT_EQ(mknet_getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len), 0);
  EXPECT_EQ(v, SOCK_STREAM);
  ASSERT_EQ(mknet_getsockopt(fd, SOL_SOCKET, SO_ERROR, &v, &len), 0);
  EXPECT_EQ(v, 0);
  ASSERT_EQ(mknet_getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, &len), 0);
  EXPECT_GT(v, 0);
  // What Linux refuses, refused the same way.
  int zero = 0;
  EXPECT_EQ(mknet_setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &zero, sizeof zero), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(mknet_setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &zero, 2), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(mknet_setsockopt(fd, IPPROTO_TCP, 9999, &zero, sizeof zero), -1);
  EXPECT_EQ(errno, ENOPROTOOPT);
  EXPECT_EQ(mknet_close(fd), 0);
}

// Socket calls from many threads at once go through several control
// mailboxes (ipc::kControlMailboxes; more threads than mailboxes here, so
// some wait for one): every thread must get the answers to its own
// requests. Each sets TCP_KEEPIDLE to a value of its own on a fresh socket,
// reads it back, binds to a port of its own and reads the name back.
TEST_F(SocketApi, ConcurrentCallsGetTheirOwnAnswers) {
  constexpr int kThreads = 12, kRounds = 150;
  std::atomic<int> wrong{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r) {
        int fd = mknet_socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) {
          ++failed;
          continue;
        }
        const int idle = 1 + t * 1000 + r;
        int got = 0;
        socklen_t len = sizeof got;
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<uint16_t>(20000 + t * kRounds + r));
        sockaddr_in b{};
        socklen_t blen = sizeof b;
        if (mknet_setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) != 0 ||
            mknet_getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &got, &len) != 0 ||
            mknet_bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
            mknet_getsockname(fd, reinterpret_cast<sockaddr*>(&b), &blen) != 0) {
          ++failed;
        } else if (got != idle || b.sin_port != a.sin_port) {
          ++wrong;
        }
        mknet_close(fd);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0) << "answers went to the wrong caller";
  // Every socket was closed (posted closes): none is left in the stack.
  EXPECT_TRUE(tb_.waitCounter("sockets", 0, 5s)) << "sockets=" << tb_.counter("sockets").value_or(~0ull);
}

TEST_F(SocketApi, PollMixesMknetSocketsAndKernelFds) {
  int fd = connected();
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  pollfd fds[2] = {{fd, POLLIN, 0}, {p[0], POLLIN, 0}};
  EXPECT_EQ(mknet_poll(fds, 2, 0), 0);  // nothing yet

  ASSERT_EQ(write(p[1], "x", 1), 1);
  ASSERT_EQ(mknet_poll(fds, 2, 1000), 1);
  EXPECT_EQ(fds[0].revents, 0);
  EXPECT_EQ(fds[1].revents, POLLIN);
  char c;
  ASSERT_EQ(read(p[0], &c, 1), 1);

  const char msg[] = "ping through mknet";
  ASSERT_EQ(mknet_send(fd, msg, sizeof msg, 0), static_cast<ssize_t>(sizeof msg));
  ASSERT_EQ(mknet_poll(fds, 2, 5000), 1);  // the echo arrives
  EXPECT_TRUE(fds[0].revents & POLLIN);
  EXPECT_EQ(fds[1].revents, 0);
  char buf[64];
  size_t got = 0;
  while (got < sizeof msg) {
    ssize_t n = mknet_recv(fd, buf + got, sizeof buf - got, 0);
    ASSERT_GT(n, 0);
    got += static_cast<size_t>(n);
  }
  EXPECT_EQ(std::memcmp(buf, msg, sizeof msg), 0);

  // A poll blocked on both wakes up for the kernel fd.
  std::thread writer([&] {
    std::this_thread::sleep_for(100ms);
    (void)!write(p[1], "y", 1);
  });
  ASSERT_EQ(mknet_poll(fds, 2, 10000), 1);
  writer.join();
  EXPECT_EQ(fds[0].revents, 0);
  EXPECT_EQ(fds[1].revents, POLLIN);
  close(p[0]);
  close(p[1]);
  mknet_close(fd);
}

TEST_F(SocketApi, ReceiveTimeoutAndNonBlocking) {
  int fd = connected();
  timeval tv{0, 300000};
  ASSERT_EQ(mknet_setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
  char b;
  auto t0 = Clock::now();
  EXPECT_EQ(mknet_recv(fd, &b, 1, 0), -1);
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_GE(Clock::now() - t0, 290ms);  // it did wait for the timeout, not return at once

  int fl = mknet_fcntl(fd, F_GETFL);
  ASSERT_GE(fl, 0);
  EXPECT_EQ(fl & O_NONBLOCK, 0);
  ASSERT_EQ(mknet_fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
  EXPECT_EQ(mknet_fcntl(fd, F_GETFL) & O_NONBLOCK, O_NONBLOCK);
  EXPECT_EQ(mknet_recv(fd, &b, 1, 0), -1);
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_EQ(mknet_recv(fd, &b, 1, MSG_DONTWAIT), -1);
  EXPECT_EQ(errno, EAGAIN);
  // The fd is a real one: FD_CLOEXEC lives on it.
  ASSERT_EQ(mknet_fcntl(fd, F_SETFD, FD_CLOEXEC), 0);
  EXPECT_EQ(mknet_fcntl(fd, F_GETFD), FD_CLOEXEC);
  EXPECT_EQ(mknet_is_socket(fd), 1);
  EXPECT_EQ(mknet_is_socket(0), 0);
  mknet_close(fd);
  EXPECT_EQ(mknet_is_socket(fd), 0);
}

TEST_F(SocketApi, CppApiRoundTrip) {
  auto s = Socket::tcp();
  ASSERT_TRUE(s.hasValue()) << s.error().message();
  auto ep = Ipv4Endpoint::parse(tb_.linuxIp() + ":7");
  ASSERT_TRUE(ep);
  ASSERT_TRUE(s->connect(*ep).hasValue());
  ASSERT_TRUE(s->setNoDelay(true).hasValue());
  std::vector<std::byte> out(100000), in(100000);
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::byte>(i * 131 + 7);
  ASSERT_TRUE(sendAll(*s, out).hasValue());
  auto got = recvExactly(*s, in);
  ASSERT_TRUE(got.hasValue());
  EXPECT_EQ(*got, in.size());
  EXPECT_EQ(in, out);
  auto peer = s->peerEndpoint();
  ASSERT_TRUE(peer.hasValue());
  EXPECT_EQ(peer->toString(), tb_.linuxIp() + ":7");
  auto local = s->localEndpoint();
  ASSERT_TRUE(local.hasValue());
  EXPECT_EQ(local->toString().rfind(tb_.mknetIp() + ":", 0), 0u) << local->toString();
}

}  // namespace
}  // namespace mknet::itest
