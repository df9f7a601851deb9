// preload_fork: listening sockets inherited across fork(). A pre-forked
// server (mknet-preload-probe fork-server: 3 children accept on the
// listener they inherited, then the parent accepts on it too) and nginx as
// master + 2 workers, each serving Linux-side clients that check every byte.
// These need libmknet's fork support (the child gets its own session and the
// inherited sockets work in it; listeners shared between processes).
#include <gtest/gtest.h>

#include <signal.h>

#include <algorithm>
#include <csignal>
#include <sstream>
#include <vector>
#include <string>
#include <thread>

#include "tests/integration/testbed.h"
#include "tests/preload/preload_env.h"
#include "tests/preload/programs.h"

namespace mknet::itest {
namespace {

// The children a process forked (nginx's workers, the probe's children):
// killed by PID at the end of a test, since only the parent is ours to stop
// and a child can outlive it.
class ChildReaper {
 public:
  explicit ChildReaper(Process& parent) : parent_(parent) {}
  ~ChildReaper() {
    for (pid_t c : children()) ::kill(c, SIGKILL);
  }
  std::vector<pid_t> children() {
    // Recorded while the parent runs; after it died its children are no
    // longer listed under it, so remember every one ever seen.
    std::string list = readFile("/proc/" + std::to_string(parent_.pid()) + "/task/" +
                                std::to_string(parent_.pid()) + "/children");
    std::stringstream ss(list);
    pid_t p;
    while (ss >> p)
      if (std::find(seen_.begin(), seen_.end(), p) == seen_.end()) seen_.push_back(p);
    return seen_;
  }

 private:
  Process& parent_;
  std::vector<pid_t> seen_;
};

TEST(PreloadFork, ListenerInheritedByForkedChildrenThatAllAccept) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  PreloadEnv pe(tb);
  ASSERT_TRUE(pe.ok()) << pe.error();
  // 3 children x 2 connections each, then one for the parent.
  Process server = pe.spawn({PreloadBin::probe(), "fork-server", "7010", "3", "2"}, "fork-server.log");
  ChildReaper reaper(server);
  ASSERT_TRUE(server.waitForLine("listen=", 10s)) << server.output();
  (void)reaper.children();
  auto c = tb.runInNs({Bin::echoKernel(), "client", "--connect", tb.mknetIp() + ":7010", "--connections", "6",
                       "--bytes", "1M", "--timeout", "20"},
                      30s);
  EXPECT_EQ(c.status, 0) << c.output << "\nserver: " << server.output();
  auto kv = parseKeyValues(lastLineWith(c.output, "mode=tcp"));
  EXPECT_EQ(kv["ok"], "6") << c.output;
  EXPECT_EQ(kv["mismatches"], "0") << c.output;
  ASSERT_TRUE(server.waitForLine("parent-accepting", 10s)) << server.output();
  auto p = tb.runInNs({Bin::echoKernel(), "client", "--connect", tb.mknetIp() + ":7010", "--connections", "1",
                       "--bytes", "1M", "--timeout", "10"},
                      20s);
  EXPECT_EQ(p.status, 0) << p.output << "\nserver: " << server.output();
  auto st = server.wait(10s);
  ASSERT_TRUE(st) << server.output();
  EXPECT_EQ(*st, 0) << server.output();
  EXPECT_NE(server.output().find("PASS children-served-their-connections"), std::string::npos) << server.output();
  EXPECT_NE(server.output().find("PASS parent-accepts-after-children"), std::string::npos) << server.output();
  EXPECT_EQ(tb.leftovers(), "");
}

TEST(PreloadFork, NginxMasterAndTwoWorkers) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  PreloadEnv pe(tb);
  ASSERT_TRUE(pe.ok()) << pe.error();
  const std::string site = tb.file("nginx");
  std::string index;
  ASSERT_EQ(writeNginxSite(site, 8080, /*master=*/true, 2, 8u * 1000 * 1000, &index), "");
  Process nginx = pe.spawn({"nginx", "-p", site, "-c", site + "/nginx.conf", "-e", "stderr"}, "nginx.log");
  ChildReaper reaper(nginx);
  const std::string base = "http://" + tb.mknetIp() + ":8080";
  bool serving = false;
  for (int i = 0; i < 10 && !serving; ++i) {
    auto r = tb.runInNs({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "1", base + "/index.html"}, 5s);
    serving = r.output == "200";
    (void)reaper.children();
    if (!serving) std::this_thread::sleep_for(200ms);
  }
  ASSERT_TRUE(serving) << tail(nginx.output());
  const std::string big = tb.file("big.got");
  auto r = tb.runInNs({"curl", "-sS", "-f", "--max-time", "30", "-o", big, base + "/big.bin"}, 40s);
  ASSERT_EQ(r.status, 0) << r.output << tail(nginx.output());
  EXPECT_EQ(sha256File(big), sha256File(site + "/www/big.bin"));
  auto w = tb.runInNs({"wrk", "-t", "2", "-c", "64", "-d", "5s", "--timeout", "5s", "-s", site + "/wrk-check.lua",
                       base + "/index.html"},
                      40s);
  ASSERT_EQ(w.status, 0) << w.output;
  auto kv = wrkResult(w.output);
  EXPECT_EQ(kv["socket_errors"], "0") << w.output;
  EXPECT_EQ(kv["non_2xx"], "0") << w.output;
  EXPECT_EQ(kv["bad_bodies"], "0") << w.output;
  EXPECT_GT(std::stod(kv["requests"].empty() ? "0" : kv["requests"]), 1000) << w.output;
  record("nginx_2_workers_wrk_c64_requests_per_sec", kv["requests_per_sec"]);
  nginx.signal(SIGQUIT);
  auto st = nginx.wait(10s);
  EXPECT_TRUE(st && *st == 0) << tail(nginx.output());
  EXPECT_EQ(tb.leftovers(), "");
}

}  // namespace
}  // namespace mknet::itest
