// preload_curl: Debian's curl, unmodified, on mknet through the launcher
// (deploy/mknet run), downloads a 64 MB random file from a Linux-side HTTP
// server (python3 http.server) and uploads one back; SHA-256 checked.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <cstdio>

#include "tests/integration/testbed.h"
#include "tests/preload/preload_env.h"
#include "tests/preload/programs.h"

namespace mknet::itest {
namespace {

constexpr size_t kFileBytes = 64u * 1000 * 1000;

TEST(PreloadCurl, DownloadsFromLinuxHttpServerSha256Checked) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  PreloadEnv pe(tb);
  ASSERT_TRUE(pe.ok()) << pe.error();
  const std::string www = tb.file("www");
  ASSERT_EQ(::mkdir(www.c_str(), 0755), 0);
  ASSERT_TRUE(writeRandomFile(www + "/big.bin", kFileBytes));
  const std::string want = sha256File(www + "/big.bin");
  ASSERT_EQ(want.size(), 64u);

  Process server = tb.spawnInNs({"python3", "-u", "-m", "http.server", "8080", "--bind", tb.linuxIp(), "--directory", www},
                                "http-server.log");
  ASSERT_TRUE(server.waitForLine("Serving HTTP", 10s)) << server.output();

  const std::string out = tb.file("download.bin");
  auto r = runCommand(pe.viaLauncher({"curl", "-sS", "-f", "--max-time", "60", "-o", out, "-w",
                                      "code=%{http_code} size=%{size_download} speed=%{speed_download}\n",
                                      "http://" + tb.linuxIp() + ":8080/big.bin"}),
                      70s);
  ASSERT_EQ(r.status, 0) << r.output << "\nserver: " << server.output();
  auto kv = parseKeyValues(lastLineWith(r.output, "code="));
  EXPECT_EQ(kv["code"], "200");
  EXPECT_EQ(kv["size"], std::to_string(kFileBytes));
  EXPECT_EQ(sha256File(out), want);
  if (!kv["speed"].empty()) {
    char gbps[32];
    std::snprintf(gbps, sizeof gbps, "%.3f", std::stod(kv["speed"]) * 8 / 1e9);
    record("curl_download_gbps", gbps);
  }
  std::remove(out.c_str());

  // A missing file: curl on mknet sees the 404 the Linux server sent.
  auto missing = runCommand(pe.viaLauncher({"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                                            "http://" + tb.linuxIp() + ":8080/missing.bin"}),
                            20s);
  EXPECT_EQ(missing.output, "404") << missing.output;

  server.stop();
  EXPECT_EQ(tb.peerFaults(), "");
  EXPECT_EQ(tb.leftovers(), "") << "leak check: what the stack still holds after curl exited";
}

}  // namespace
}  // namespace mknet::itest
