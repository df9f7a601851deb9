// preload_nginx: Debian's nginx (nginx-light), unmodified, on mknet as one
// process (master_process off: epoll, accept4, sendfile, writev, TCP_CORK),
// serving static files to the Linux side: curl downloads a 32 MB file
// (SHA-256 checked) and the index page (compared byte for byte), then wrk
// runs 64 keep-alive connections for 5 s with a Lua check of every response
// body: no socket error, no non-200, no wrong body.
#include <gtest/gtest.h>

#include <csignal>
#include <thread>
#include <string>

#include "tests/integration/testbed.h"
#include "tests/preload/preload_env.h"
#include "tests/preload/programs.h"

namespace mknet::itest {
namespace {

constexpr size_t kBigBytes = 32u * 1000 * 1000;
constexpr int kPort = 8080;

// Waits until `url` answers 200 from the Linux side (bounded).
bool waitServing(const Testbed& tb, const std::string& url) {
  for (int i = 0; i < 50; ++i) {
    auto r = tb.runInNs({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", url}, 5s);
    if (r.output == "200") return true;
    std::this_thread::sleep_for(200ms);
  }
  return false;
}

TEST(PreloadNginx, ServesFilesToCurlAndWrkWithoutErrors) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  PreloadEnv pe(tb);
  ASSERT_TRUE(pe.ok()) << pe.error();
  const std::string site = tb.file("nginx");
  std::string index;
  ASSERT_EQ(writeNginxSite(site, kPort, /*master=*/false, 1, kBigBytes, &index), "");
  Process nginx = pe.spawn({"nginx", "-p", site, "-c", site + "/nginx.conf", "-e", "stderr"}, "nginx.log");
  const std::string base = "http://" + tb.mknetIp() + ":" + std::to_string(kPort);
  ASSERT_TRUE(waitServing(tb, base + "/index.html")) << tail(nginx.output());

  // curl: the index page byte for byte, the big file by SHA-256.
  const std::string page = tb.file("index.got");
  auto r = tb.runInNs({"curl", "-sS", "-f", "--max-time", "10", "-o", page, base + "/index.html"}, 15s);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(readFile(page), index);
  const std::string big = tb.file("big.got");
  r = tb.runInNs({"curl", "-sS", "-f", "--max-time", "60", "-o", big, "-w", "speed=%{speed_download}\n",
                  base + "/big.bin"},
                 70s);
  ASSERT_EQ(r.status, 0) << r.output << tail(nginx.output());
  EXPECT_EQ(sha256File(big), sha256File(site + "/www/big.bin"));
  // A missing file is nginx's 404, and nginx keeps serving.
  auto missing = tb.runInNs({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                             base + "/missing.html"},
                            10s);
  EXPECT_EQ(missing.output, "404");

  // wrk: 64 keep-alive connections, 5 s (the 30 s run is the benchmark's).
  auto w = tb.runInNs({"wrk", "-t", "2", "-c", "64", "-d", "5s", "--timeout", "5s", "-s", site + "/wrk-check.lua",
                       base + "/index.html"},
                      40s);
  ASSERT_EQ(w.status, 0) << w.output;
  auto kv = wrkResult(w.output);
  EXPECT_FALSE(kv["requests"].empty()) << w.output;
  EXPECT_GT(std::stod(kv["requests"].empty() ? "0" : kv["requests"]), 1000) << w.output;
  EXPECT_EQ(kv["socket_errors"], "0") << w.output;
  EXPECT_EQ(kv["non_2xx"], "0") << w.output;
  EXPECT_EQ(kv["bad_bodies"], "0") << w.output;
  record("nginx_wrk_c64_requests_per_sec", kv["requests_per_sec"]);

  EXPECT_TRUE(nginx.running()) << tail(nginx.output());
  nginx.signal(SIGQUIT);  // graceful shutdown
  auto st = nginx.wait(10s);
  EXPECT_TRUE(st && *st == 0) << tail(nginx.output());
  EXPECT_EQ(nginx.output().find("[alert]"), std::string::npos) << tail(nginx.output());
  EXPECT_EQ(nginx.output().find("[crit]"), std::string::npos) << tail(nginx.output());
  EXPECT_EQ(tb.peerFaults(), "");
  EXPECT_EQ(tb.leftovers(), "") << "leak check: what the stack still holds after nginx exited";
}

}  // namespace
}  // namespace mknet::itest
