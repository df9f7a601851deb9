// bulk: 1 GiB each way between mknet-bulk on mknet and mknet-bulk-kernel on
// the Linux side of the namespace:
//   out  mknet `send`          -> Linux `sink`   (mknet transmits, active open)
//   in   Linux `serve`         -> mknet `recv`   (mknet receives, active open)
// Both ends hash the stream (SHA-256) and count its bytes; they must agree.
// The gbps each end printed is recorded for the lead.
#include <gtest/gtest.h>

#include <chrono>

#include "tests/integration/testbed.h"

namespace mknet::itest {
namespace {

constexpr uint64_t kBytes = 1ull << 30;

struct Ends {
  std::map<std::string, std::string> sender, receiver;
};

void expectSameStream(const Ends& e, const char* what) {
  auto s = e.sender, r = e.receiver;
  EXPECT_EQ(s["bytes"], std::to_string(kBytes)) << what;
  EXPECT_EQ(r["bytes"], std::to_string(kBytes)) << what;
  EXPECT_EQ(s["sha256"].size(), 64u) << what;
  EXPECT_EQ(s["sha256"], r["sha256"]) << what;
}

TEST(Bulk, OneGiBEachWay) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  const std::string bytes = std::to_string(kBytes);

  {  // out: mknet -> Linux
    Process sink = tb.spawnInNs({Bin::bulkKernel(), "sink", "--port", "5001", "--once"}, "sink.log");
    ASSERT_TRUE(sink.waitForLine("listen=", 10s)) << sink.output();
    const auto start = std::chrono::steady_clock::now();
    auto send = tb.runApp({Bin::bulk(), "send", "--connect", tb.linuxIp() + ":5001", "--bytes", bytes,
                           "--seed", "101"},
                          35s);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_EQ(send.status, 0) << send.output << "\nsink: " << sink.output();
    auto st = sink.wait(10s);
    ASSERT_TRUE(st) << "sink did not finish: " << sink.output();
    EXPECT_EQ(*st, 0) << sink.output();
    Ends e{parseKeyValues(lastLineWith(send.output, "mode=send")),
           parseKeyValues(lastLineWith(sink.output(), "mode=sink"))};
    expectSameStream(e, "mknet send -> Linux sink");
    record("bulk_out_mknet_send_gbps", e.sender["gbps"]);
    record("bulk_out_linux_sink_gbps", e.receiver["gbps"]);
    record("bulk_out_wall_seconds", std::to_string(secs));
  }
  {  // in: Linux -> mknet
    Process serve = tb.spawnInNs({Bin::bulkKernel(), "serve", "--port", "5002", "--bytes", bytes, "--seed", "202",
                                  "--once"},
                                 "serve.log");
    ASSERT_TRUE(serve.waitForLine("listen=", 10s)) << serve.output();
    const auto start = std::chrono::steady_clock::now();
    auto recv = tb.runApp({Bin::bulk(), "recv", "--connect", tb.linuxIp() + ":5002"}, 35s);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_EQ(recv.status, 0) << recv.output << "\nserve: " << serve.output();
    auto st = serve.wait(10s);
    ASSERT_TRUE(st) << "serve did not finish: " << serve.output();
    EXPECT_EQ(*st, 0) << serve.output();
    Ends e{parseKeyValues(lastLineWith(serve.output(), "mode=serve")),
           parseKeyValues(lastLineWith(recv.output, "mode=recv"))};
    expectSameStream(e, "Linux serve -> mknet recv");
    record("bulk_in_linux_serve_gbps", e.sender["gbps"]);
    record("bulk_in_mknet_recv_gbps", e.receiver["gbps"]);
    record("bulk_in_wall_seconds", std::to_string(secs));
  }
  EXPECT_EQ(tb.peerFaults(), "") << "the stack counted faults of well-behaved peers";
  EXPECT_EQ(tb.leftovers(), "") << "leak check: what the stack still holds after every app has exited";
}

}  // namespace
}  // namespace mknet::itest
