// errno_table: the same socket cases (errno_cases.cc) on Linux's sockets and
// on libmknet must give the same return values and errno, call by call.
//
// The kernel build runs inside the test's namespace (ip netns exec); the
// mknet build runs against the test's stack. Both talk to one
// mknet-itest-peer on the Linux side, which accepts and holds, accepts and
// resets, or accepts and closes, depending on the port.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <sstream>

#include "tests/integration/testbed.h"

namespace mknet::itest {
namespace {

constexpr const char* kHold = "7001";
constexpr const char* kRst = "7002";
constexpr const char* kFin = "7003";
constexpr const char* kClosed = "7009";  // nobody listens here

// "name\tresult" lines up to "done"; a missing "done" shows as a case.
std::map<std::string, std::string> parseCases(const CommandResult& r, bool* complete) {
  std::map<std::string, std::string> m;
  std::stringstream ss(r.output);
  std::string line;
  *complete = false;
  while (std::getline(ss, line)) {
    if (line == "done") *complete = true;
    auto tab = line.find('\t');
    if (tab != std::string::npos) m[line.substr(0, tab)] = line.substr(tab + 1);
  }
  return m;
}

TEST(ErrnoTable, MknetMatchesLinux) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  Process peer = tb.spawnInNs({MKNET_ITEST_PEER_BIN, "--hold", kHold, "--rst", kRst, "--fin", kFin}, "peer.log");
  ASSERT_TRUE(peer.waitForLine("ready", 10s)) << peer.output();

  const Argv args = {"--peer", tb.linuxIp(), "--hold", kHold, "--rst", kRst, "--fin", kFin, "--closed", kClosed};
  Argv kernelArgv = {MKNET_ITEST_ERRNO_KERNEL_BIN};
  kernelArgv.insert(kernelArgv.end(), args.begin(), args.end());
  Argv mknetArgv = {MKNET_ITEST_ERRNO_BIN};
  mknetArgv.insert(mknetArgv.end(), args.begin(), args.end());

  auto kernel = tb.runInNs(kernelArgv, 40s);
  ASSERT_EQ(kernel.status, 0) << kernel.output;
  auto mknet = tb.runApp(mknetArgv, 40s);
  EXPECT_EQ(mknet.status, 0) << mknet.output;

  bool kernelDone = false, mknetDone = false;
  auto k = parseCases(kernel, &kernelDone);
  auto m = parseCases(mknet, &mknetDone);
  ASSERT_TRUE(kernelDone) << kernel.output;
  EXPECT_TRUE(mknetDone) << "the mknet run stopped early:\n" << mknet.output;
  ASSERT_FALSE(k.empty());

  // The table, one block per case; a '*' marks a difference.
  std::string table = "errno table: case / Linux / mknet\n";
  int differences = 0;
  for (const auto& [name, kr] : k) {
    auto it = m.find(name);
    const std::string mr = it == m.end() ? "(no result)" : it->second;
    const bool same = kr == mr;
    if (!same) ++differences;
    table += std::string(same ? "  " : "* ") + name + "\n      linux: " + kr + "\n      mknet: " + mr + "\n";
  }
  std::printf("%s", table.c_str());
  std::fflush(stdout);
  for (const auto& [name, kr] : k) {
    auto it = m.find(name);
    EXPECT_TRUE(it != m.end() && it->second == kr)
        << "case " << name << "\n  linux: " << kr << "\n  mknet: " << (it == m.end() ? "(no result)" : it->second);
  }
  record("errno_table_cases", std::to_string(k.size()));
  record("errno_table_differences", std::to_string(differences));

  EXPECT_TRUE(peer.running());
  peer.stop();
  EXPECT_EQ(tb.leftovers(), "") << "leak check: what the stack still holds after every app has exited";
}

}  // namespace
}  // namespace mknet::itest
