// preload_api: mknet-preload-probe (a plain libc program) under the shim,
// against Linux-side peers in the test namespace: sockets, poll and select
// over mknet sockets and pipes, options, dup, sendfile, UDP, epoll (LT, ET,
// ONESHOT, RDHUP), several threads on one socket, EINTR as on Linux, exec,
// and an epoll echo server on mknet whose every byte a Linux client checks.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/integration/testbed.h"
#include "tests/preload/preload_env.h"

namespace mknet::itest {
namespace {

class PreloadApi : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(tb_.ok()) << tb_.error();
    ASSERT_TRUE(pe_.ok()) << pe_.error();
    echo_ = tb_.spawnInNs({Bin::echoKernel(), "server", "--port", "7"}, "echo.log");
    ASSERT_TRUE(echo_.waitForLine("listen=", 10s)) << echo_.output();
    udpEcho_ = tb_.spawnInNs({Bin::echoKernel(), "server", "--port", "7", "--udp"}, "echo-udp.log");
    ASSERT_TRUE(udpEcho_.waitForLine("listen=", 10s)) << udpEcho_.output();
  }
  void TearDown() override {
    EXPECT_EQ(tb_.peerFaults(), "");
    echo_.stop();
    udpEcho_.stop();
    // Only after traffic: when the driver stops within a few ms of
    // attaching, the stack may still hold its first frame (pool_free one
    // short) although no program ever ran on it.
    if (leakCheck_) {
      EXPECT_EQ(tb_.leftovers(), "") << "leak check: what the stack still holds after the programs exited";
    }
  }

  std::string peer() const { return tb_.linuxIp() + ":7"; }
  CommandResult probe(const Argv& args, const Env& env = {}) const {
    Argv a = {PreloadBin::probe()};
    a.insert(a.end(), args.begin(), args.end());
    return pe_.run(a, 60s, env);
  }
  // Every named check ran and passed, and none failed.
  static void expectPassed(const CommandResult& r, const std::vector<std::string>& names) {
    EXPECT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(r.output.find("FAIL"), std::string::npos) << r.output;
    for (const auto& n : names) EXPECT_NE(r.output.find("PASS " + n + "\n"), std::string::npos) << n << "\n" << r.output;
  }

  Testbed tb_;
  PreloadEnv pe_{tb_};
  bool leakCheck_ = true;
  Process echo_, udpEcho_;
};

TEST_F(PreloadApi, SocketsPollSelectOptionsDupSendfile) {
  auto r = probe({"client", peer()});
  expectPassed(r, {"fd-below-fd-setsize", "unix-socket-is-kernel", "inet6-socket-is-kernel", "udp-socket-is-mknet",
                   "fd-numbers-unique", "socketpair-kernel", "connect", "getsockname", "getpeername",
                   "write-read-echo", "poll-echo-1MiB", "poll-reports-pipe-too", "select-echo-1MiB",
                   "select-reports-pipe-too", "writev-readv", "sendmsg-recvmsg", "ioctl-FIONREAD", "recv-MSG_PEEK",
                   "recv-after-peek", "fcntl-F_GETFL-blocking", "fcntl-F_SETFL-nonblock", "nonblock-recv-EAGAIN",
                   "ioctl-FIONBIO-off", "ioctl-FIONBIO-on", "fcntl-F_GETFD-default", "fcntl-F_SETFD-cloexec",
                   "TCP_NODELAY", "TCP_CORK-set-read-back", "TCP_CORK-off", "TCP_MAXSEG", "TCP_CONGESTION", "TCP_INFO",
                   "SO_TYPE", "SO_ERROR", "SO_REUSEADDR", "dup", "dup-shares-socket", "fcntl-F_DUPFD", "dup2",
                   "dup3-cloexec", "dups-share-O_NONBLOCK", "close-original", "dup-works-after-close",
                   "dup2-kernel-over-mknet", "still-works-via-dup", "sendfile-offset", "sendfile-file-position",
                   "shutdown-SHUT_WR", "read-EOF-after-peer-close", "close", "closed-fd-EBADF"});
}

TEST_F(PreloadApi, Udp) {
  auto r = probe({"udp", peer()});
  expectPassed(r, {"udp-sendto-0", "udp-recvfrom-0", "udp-FIONREAD-2", "udp-recvfrom-2", "udp-connect",
                   "udp-send-connected", "udp-recvmsg-MSG_TRUNC"});
}

TEST_F(PreloadApi, EpollLevelEdgeOneshotRdhup) {
  auto r = probe({"epoll", peer()});
  expectPassed(r, {"epoll_create1", "ctl-add-twice-EEXIST", "ctl-mod-absent-ENOENT", "ctl-del-absent-ENOENT",
                   "ctl-on-non-epoll-EINVAL", "lt-idle-no-event", "lt-reported", "lt-reported-again-unread",
                   "lt-quiet-after-drain", "pipe-in-same-set", "et-reported", "et-not-reported-again",
                   "et-drain-to-EAGAIN", "et-reported-after-new-data", "oneshot-reported", "oneshot-disarmed",
                   "oneshot-rearm", "oneshot-reported-after-rearm", "epollout-connected", "epollrdhup",
                   "closed-socket-left-set", "epoll_pwait-timeout", "epoll_wait-maxevents-0-EINVAL"});
}

TEST_F(PreloadApi, ThreadsShareSockets) {
  auto r = probe({"threads", peer()});
  expectPassed(r, {"threads-writer", "threads-reader-got-8MiB-echo", "threads-epoll-sleeper-woken"});
}

TEST_F(PreloadApi, SignalsGiveEintrAsOnLinux) {
  auto r = probe({"eintr", peer()});
  expectPassed(r, {"recv-EINTR-without-SA_RESTART", "recv-restarted-with-SA_RESTART", "poll-EINTR-even-with-SA_RESTART",
                   "epoll_wait-EINTR-even-with-SA_RESTART", "select-EINTR-even-with-SA_RESTART",
                   "recv-with-SO_RCVTIMEO-EINTR", "epoll_wait-EINTR-wherever-the-signal-lands",
                   "poll-EINTR-wherever-the-signal-lands"});
}

TEST_F(PreloadApi, ExecClosesMknetSocketsKeepsKernelFds) {
  auto r = probe({"exec", peer()});
  expectPassed(r, {"exec-mknet-socket-closed", "exec-kernel-fd-survives", "exec-new-socket-works"});
}

TEST_F(PreloadApi, EpollEchoServerServesLinuxClients) {
  Process server = pe_.spawn({PreloadBin::probe(), "echo-server", "7007", "8"}, "probe-server.log");
  ASSERT_TRUE(server.waitForLine("listen=", 10s)) << server.output();
  auto c = tb_.runInNs({Bin::echoKernel(), "client", "--connect", tb_.mknetIp() + ":7007", "--connections", "8",
                        "--bytes", "4M", "--timeout", "40"},
                       50s);
  EXPECT_EQ(c.status, 0) << c.output;
  auto kv = parseKeyValues(lastLineWith(c.output, "mode=tcp"));
  EXPECT_EQ(kv["ok"], "8") << c.output;
  EXPECT_EQ(kv["mismatches"], "0") << c.output;
  auto st = server.wait(20s);
  ASSERT_TRUE(st) << server.output();
  EXPECT_EQ(*st, 0) << server.output();
  EXPECT_NE(server.output().find("accepted=8 closed=8 bytes=" + std::to_string(8u * 4 * 1024 * 1024)),
            std::string::npos)
      << server.output();
}

TEST_F(PreloadApi, BadSocketSelectionIsACleanError) {
  leakCheck_ = false;  // no socket reaches the stack
  auto r = probe({"client", peer()}, {"MKNET_PRELOAD_SOCKETS=tcp,sctp"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("mknet-preload: MKNET_PRELOAD_SOCKETS='tcp,sctp' is not tcp, udp, tcp,udp or none"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("FAIL socket(AF_INET) (errno 22"), std::string::npos) << r.output;
}

TEST_F(PreloadApi, NoStackIsACleanError) {
  leakCheck_ = false;  // no socket reaches the stack
  auto r = probe({"client", peer()}, {"MKNET_STACK_SOCKET=" + tb_.file("nothing-here.sock")});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("mknet-preload: socket(): cannot reach the mknet stack at " + tb_.file("nothing-here.sock")),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("FAIL socket(AF_INET) (errno 100"), std::string::npos) << r.output;  // ENETDOWN
}

TEST_F(PreloadApi, SocketsSelectedAwayStayWithTheKernel) {
  leakCheck_ = false;  // no socket reaches the stack
  // MKNET_PRELOAD_SOCKETS=udp: TCP sockets are the kernel's; the probe sees
  // it (not an mknet socket) and refuses to connect.
  auto r = probe({"client", peer()}, {"MKNET_PRELOAD_SOCKETS=udp"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("is not an mknet socket (socket:["), std::string::npos) << r.output;
}

}  // namespace
}  // namespace mknet::itest
