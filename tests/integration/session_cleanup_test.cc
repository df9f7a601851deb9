// session_cleanup: minimal reproductions for the leak check the other tests
// end with. When an app has closed its sockets and exited, the stack must
// hold nothing of it: no session, no socket, no lwIP pcb (Linux frees a closed
// socket at once; at most a TIME_WAIT remnant stays, which is not the app's).
#include <gtest/gtest.h>

#include <thread>

#include "tests/integration/testbed.h"

namespace mknet::itest {
namespace {

// Waits up to 5 s for sessions == sockets == engine_sockets == 0; returns
// what is left ("" when clean).
std::string heldAfterExit(const Testbed& tb) {
  std::string held;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  do {
    held.clear();
    auto st = tb.status();
    if (!st) return "the stack does not answer";
    for (const char* k : {"sessions", "sockets", "engine_sockets"})
      if ((*st)[k] != 0) held += std::string(k) + "=" + std::to_string((*st)[k]) + " ";
    if (held.empty()) return held;
    std::this_thread::sleep_for(50ms);
  } while (std::chrono::steady_clock::now() < deadline);
  return held;
}

// An app that ends its stream with shutdown(SHUT_WR), reads the peer's FIN,
// then close()s and exits (what mknet-bulk send and mknet-echo client do).
TEST(SessionCleanup, CloseAfterShutdownWrReleasesTheSocket) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  Process sink = tb.spawnInNs({Bin::bulkKernel(), "sink", "--port", "5301", "--once"}, "sink.log");
  ASSERT_TRUE(sink.waitForLine("listen=", 10s)) << sink.output();
  auto send = tb.runApp({Bin::bulk(), "send", "--connect", tb.linuxIp() + ":5301", "--bytes", "64K"}, 20s);
  ASSERT_EQ(send.status, 0) << send.output;
  ASSERT_TRUE(sink.wait(10s));
  EXPECT_EQ(heldAfterExit(tb), "") << "shutdown(SHUT_WR) + close() + exit left the socket in the stack";
}

// An app that creates a TCP socket, binds it, never connects, and closes it.
TEST(SessionCleanup, CloseOfNeverConnectedSocketReleasesIt) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  auto r = tb.runApp({MKNET_ITEST_ERRNO_BIN, "--peer", tb.linuxIp(), "--hold", "1", "--rst", "1", "--fin", "1",
                      "--closed", "1", "--only", "bind_twice"},
                     20s);
  ASSERT_EQ(r.status, 0) << r.output;
  ASSERT_NE(r.output.find("bind_twice\tbind=0; bind_again=-1 EINVAL"), std::string::npos) << r.output;
  EXPECT_EQ(heldAfterExit(tb), "") << "socket() + bind() + close() + exit left the socket in the stack";
}

// Apps that close everything they opened on a normal connection: the
// baseline the two cases above differ from.
TEST(SessionCleanup, CloseOfConnectedSocketReleasesIt) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  Process serve = tb.spawnInNs({Bin::bulkKernel(), "serve", "--port", "5302", "--bytes", "64K", "--once"},
                               "serve.log");
  ASSERT_TRUE(serve.waitForLine("listen=", 10s)) << serve.output();
  auto recv = tb.runApp({Bin::bulk(), "recv", "--connect", tb.linuxIp() + ":5302"}, 20s);
  ASSERT_EQ(recv.status, 0) << recv.output;
  EXPECT_EQ(heldAfterExit(tb), "");
  EXPECT_EQ(tb.leftovers(), "") << "leak check: what the stack still holds after every app has exited";
}

}  // namespace
}  // namespace mknet::itest
