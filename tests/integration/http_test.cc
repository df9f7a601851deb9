// http: mknet-httpd on mknet serves a 100 MB random file; curl on the Linux
// side downloads it; the SHA-256 of what arrived equals the file's.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <vector>

#include "tests/integration/testbed.h"

namespace mknet::itest {
namespace {

constexpr size_t kFileBytes = 100u * 1000 * 1000;

TEST(Http, CurlDownloads100MBFromMknetHttpd) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  const std::string www = tb.file("www");
  ASSERT_EQ(::mkdir(www.c_str(), 0755), 0);
  ASSERT_TRUE(writeRandomFile(www + "/big.bin", kFileBytes));
  const std::string want = sha256File(www + "/big.bin");
  ASSERT_EQ(want.size(), 64u);

  Process httpd = tb.spawnApp({Bin::httpd(), "--port", "80", "--root", www}, "httpd.log");
  auto listen = httpd.waitForLine("listen=", 10s);
  ASSERT_TRUE(listen) << httpd.output();

  const std::string out = tb.file("download.bin");
  auto r = tb.runInNs({"curl", "-sS", "-f", "--max-time", "45", "-o", out, "-w",
                       "code=%{http_code} size=%{size_download} speed=%{speed_download}\n",
                       "http://" + tb.mknetIp() + "/big.bin"},
                      50s);
  ASSERT_EQ(r.status, 0) << r.output << "\nhttpd: " << httpd.output();
  auto kv = parseKeyValues(lastLineWith(r.output, "code="));
  EXPECT_EQ(kv["code"], "200");
  EXPECT_EQ(kv["size"], std::to_string(kFileBytes));
  struct stat st {};
  ASSERT_EQ(::stat(out.c_str(), &st), 0);
  EXPECT_EQ(static_cast<size_t>(st.st_size), kFileBytes);
  EXPECT_EQ(sha256File(out), want);
  if (!kv["speed"].empty()) {
    char gbps[32];
    std::snprintf(gbps, sizeof gbps, "%.3f", std::stod(kv["speed"]) * 8 / 1e9);
    record("http_download_gbps", gbps);
  }
  std::remove(out.c_str());

  // A missing file is a 404, and the server is still serving.
  auto missing = tb.runInNs({"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                             "http://" + tb.mknetIp() + "/missing.bin"},
                            15s);
  EXPECT_EQ(missing.output, "404") << missing.output;

  EXPECT_TRUE(httpd.running()) << httpd.output();
  EXPECT_EQ(tb.peerFaults(), "") << "the stack counted faults of well-behaved peers";
  httpd.stop();
  EXPECT_EQ(tb.leftovers(), "") << "leak check: what the stack still holds after every app has exited";
}

}  // namespace
}  // namespace mknet::itest
