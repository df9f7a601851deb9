// preload_api: mknet-preload-probe (a plain libc program) under the shim,
// against Linux-side peers in the test namespace: sockets, poll and select
// over mknet sockets and pipes, options, dup, sendfile, UDP, epoll (LT, ET,
// ONESHOT, RDHUP), several threads on one socket, EINTR as on Linux, exec,
// an epoll echo server on mknet whose every byte a Linux client checks, and
// a program that closes and exits at once.
#include <signal.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <thread>
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

// close() is posted to the stack, not asked (ipc::kCloseBit): a program that
// writes, closes and exits at once may be gone before the stack has read its
// close. The close must still be a close — every byte, then FIN — and not
// the reset an exit with the socket open gets. Python under the shim, ending
// with os._exit() right after close(); a Linux sink checks length and
// SHA-256. In the odd rounds the stack is stopped (SIGSTOP) from before the
// send until the program has exited, so it finds the close and the
// session's end together when it runs again.
TEST_F(PreloadApi, CloseRightBeforeExitDeliversEverything) {
  constexpr char kScript[] =
      "import hashlib, os, socket, sys, time\n"
      "data = bytes((i * 131 + (i >> 9)) & 255 for i in range(int(sys.argv[3])))\n"
      "s = socket.create_connection((sys.argv[1], int(sys.argv[2])))\n"
      "print('connected', flush=True)\n"
      "end = time.monotonic() + 10\n"
      "while sys.argv[4] != '-' and not os.path.exists(sys.argv[4]) and time.monotonic() < end:\n"
      "    time.sleep(0.001)\n"
      "s.sendall(data)\n"
      "s.close()\n"
      "print('sha256=' + hashlib.sha256(data).hexdigest(), flush=True)\n"
      "os._exit(0)\n";
  for (int round = 0; round < 6; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const bool stopStack = round % 2 == 1;
    const std::string port = std::to_string(7100 + round);
    // With the stack stopped the data must fit the socket's send ring.
    const std::string bytes = std::to_string(stopStack ? 100000 + round : 3 * 1024 * 1024 + round);
    const std::string go = stopStack ? tb_.file("go-" + port) : "-";
    Process sink = tb_.spawnInNs({Bin::bulkKernel(), "sink", "--port", port, "--once"}, "sink-" + port + ".log");
    ASSERT_TRUE(sink.waitForLine("listen=", 10s)) << sink.output();
    Process app = pe_.spawn({"python3", "-c", kScript, tb_.linuxIp(), port, bytes, go}, "close-exit-" + port + ".log");
    ASSERT_TRUE(app.waitForLine("connected", 20s)) << app.output();
    if (stopStack) {
      std::this_thread::sleep_for(50ms);  // the stack goes idle: it sleeps in its event loop
      tb_.stack().signal(SIGSTOP);
      std::FILE* f = std::fopen(go.c_str(), "w");  // the program's signal to send
      ASSERT_NE(f, nullptr);
      std::fclose(f);
    }
    auto appStatus = app.wait(20s);
    if (stopStack) tb_.stack().signal(SIGCONT);
    ASSERT_TRUE(appStatus) << app.output();
    ASSERT_EQ(*appStatus, 0) << app.output();
    auto st = sink.wait(10s);
    ASSERT_TRUE(st) << "the Linux sink never saw the stream end\n" << sink.output();
    EXPECT_EQ(*st, 0) << "the stream did not end cleanly: " << sink.output();
    auto kv = parseKeyValues(lastLineWith(sink.output(), "mode=sink"));
    EXPECT_EQ(kv["bytes"], bytes) << sink.output();
    EXPECT_EQ(kv["sha256"], parseKeyValues(lastLineWith(app.output(), "sha256="))["sha256"]) << app.output();
  }
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
