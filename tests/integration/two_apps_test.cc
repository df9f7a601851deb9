// two_apps: two mknet apps at once, each streaming its own seed to its own
// Linux-side sink. Each sink's SHA-256 must be that of its own seed's stream
// (`mknet-bulk dump --bytes N --seed S | sha256sum`), so neither app's data
// reached the other's connection.
#include <gtest/gtest.h>

#include <algorithm>
#include <thread>

#include "tests/integration/testbed.h"

namespace mknet::itest {
namespace {

constexpr const char* kBytes = "268435456";  // 256 MiB each

std::string expectedSha(const std::string& seed) {
  auto r = runCommand({"sh", "-c",
                       std::string("'") + Bin::bulk() + "' dump --bytes " + kBytes + " --seed " + seed + " | sha256sum"},
                      20s);
  if (!r.ok() || r.output.size() < 64) return "";
  return r.output.substr(0, 64);
}

TEST(TwoApps, ConcurrentStreamsStaySeparate) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  Process sinkA = tb.spawnInNs({Bin::bulkKernel(), "sink", "--port", "5101", "--once"}, "sink-a.log");
  Process sinkB = tb.spawnInNs({Bin::bulkKernel(), "sink", "--port", "5102", "--once"}, "sink-b.log");
  ASSERT_TRUE(sinkA.waitForLine("listen=", 10s)) << sinkA.output();
  ASSERT_TRUE(sinkB.waitForLine("listen=", 10s)) << sinkB.output();

  Process appA = tb.spawnApp({Bin::bulk(), "send", "--connect", tb.linuxIp() + ":5101", "--bytes", kBytes,
                              "--seed", "1111"},
                             "app-a.log");
  Process appB = tb.spawnApp({Bin::bulk(), "send", "--connect", tb.linuxIp() + ":5102", "--bytes", kBytes,
                              "--seed", "2222"},
                             "app-b.log");
  ASSERT_NE(appA.pid(), 0);
  ASSERT_NE(appB.pid(), 0);
  // While both stream, the stack serves two sessions at once.
  uint64_t maxSessions = 0;
  for (auto until = std::chrono::steady_clock::now() + 10s;
       maxSessions < 2 && (appA.running() || appB.running()) && std::chrono::steady_clock::now() < until;
       std::this_thread::sleep_for(10ms))
    maxSessions = std::max(maxSessions, tb.counter("sessions").value_or(0));
  EXPECT_EQ(maxSessions, 2u) << "the two apps never had a session at the same time";

  // Meanwhile, what the streams must hash to.
  const std::string wantA = expectedSha("1111"), wantB = expectedSha("2222");
  ASSERT_EQ(wantA.size(), 64u);
  ASSERT_EQ(wantB.size(), 64u);
  ASSERT_NE(wantA, wantB);

  auto stA = appA.wait(30s), stB = appB.wait(10s);
  ASSERT_TRUE(stA && stB) << "a: " << appA.output() << "\nb: " << appB.output();
  EXPECT_EQ(*stA, 0) << appA.output();
  EXPECT_EQ(*stB, 0) << appB.output();
  ASSERT_TRUE(sinkA.wait(10s)) << sinkA.output();
  ASSERT_TRUE(sinkB.wait(10s)) << sinkB.output();

  auto a = parseKeyValues(lastLineWith(sinkA.output(), "mode=sink"));
  auto b = parseKeyValues(lastLineWith(sinkB.output(), "mode=sink"));
  EXPECT_EQ(a["bytes"], kBytes);
  EXPECT_EQ(b["bytes"], kBytes);
  EXPECT_EQ(a["sha256"], wantA) << "sink A got something other than seed 1111's stream";
  EXPECT_EQ(b["sha256"], wantB) << "sink B got something other than seed 2222's stream";
  EXPECT_EQ(parseKeyValues(lastLineWith(appA.output(), "mode=send"))["sha256"], wantA);
  EXPECT_EQ(parseKeyValues(lastLineWith(appB.output(), "mode=send"))["sha256"], wantB);
  record("two_apps_gbps", a["gbps"] + " " + b["gbps"]);
  EXPECT_EQ(tb.leftovers(), "") << "leak check: what the stack still holds after every app has exited";
}

}  // namespace
}  // namespace mknet::itest
