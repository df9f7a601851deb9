// launcher: deploy/mknet up / status / down with a namespace, TAP and runtime
// dir of the test's own, on this build tree (MKNET_BUILD_DIR points at a
// directory whose `release` is a symlink to it; --no-build). `up` must pass
// its self-check (ping + HTTP), `status` must exit 0 with every process
// running, and `down` must remove the namespace and end the processes it
// started. A guard runs `down` and kills the recorded PIDs if the test fails
// half-way, so nothing outlives it.
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>
#include <thread>
#include <vector>

#include "tests/integration/testbed.h"

namespace mknet::itest {
namespace {

std::string makeTempDir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + "-" + std::to_string(::getpid()) + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  return ::mkdtemp(buf.data()) != nullptr ? std::string(buf.data()) : std::string();
}

bool alive(pid_t pid) { return pid > 0 && ::kill(pid, 0) == 0; }

pid_t readPid(const std::string& path) {
  std::string s = readFile(path);
  return s.empty() ? 0 : static_cast<pid_t>(std::atoi(s.c_str()));
}

bool nsListed(const std::string& ns) {
  auto r = runCommand({"ip", "netns", "list"});
  std::stringstream ss(r.output);
  std::string line;
  while (std::getline(ss, line))
    if (line.substr(0, line.find(' ')) == ns) return true;
  return false;
}

class Launcher {
 public:
  Launcher() {
    removeStaleTestState();
    const int pid = static_cast<int>(::getpid());
    ns_ = "mkl-" + std::to_string(pid);
    tap_ = "mkl" + std::to_string(pid % 10000000);
    subnet_ = 1 + (pid + 101) % 250;
    runtimeDir_ = makeTempDir("mkl");
    buildRoot_ = makeTempDir("mkl-build");
    if (!buildRoot_.empty())
      std::filesystem::create_directory_symlink(Bin::buildDir(), buildRoot_ + "/release");
  }
  ~Launcher() {
    if (::testing::Test::HasFailure()) {
      for (const char* log : {"supervisor.log", "stack.log", "tapdrv.log", "httpd.log"})
        std::printf("---- %s ----\n%s\n", log, readFile(runtimeDir_ + "/" + log).c_str());
    }
    // Whatever happened above: down, then anything still recorded by PID.
    std::vector<pid_t> pids;
    for (const char* f : {"httpd.pid", "tapdrv.pid", "stack.pid"}) pids.push_back(readPid(runtimeDir_ + "/" + f));
    if (!runtimeDir_.empty()) run({"down"});
    for (pid_t p : pids)
      if (alive(p)) ::kill(p, SIGKILL);
    if (nsListed(ns_)) runCommand({"ip", "netns", "del", ns_});
    std::error_code ec;
    if (!runtimeDir_.empty()) std::filesystem::remove_all(runtimeDir_, ec);
    if (!buildRoot_.empty()) std::filesystem::remove_all(buildRoot_, ec);  // the symlink, not its target
  }

  bool ok() const { return !runtimeDir_.empty() && !buildRoot_.empty(); }
  // deploy/mknet COMMAND with this launcher's namespace, TAP, addresses and runtime dir.
  CommandResult run(const Argv& command, std::chrono::milliseconds timeout = 60s) const {
    Argv argv = {std::string(Bin::sourceDir()) + "/deploy/mknet"};
    argv.insert(argv.end(), command.begin(), command.end());
    Argv common = {"--ns", ns_, "--tap", tap_, "--runtime-dir", runtimeDir_, "--ip", mknetIp() + "/24",
                   "--linux-ip", linuxIp() + "/24"};
    if (command[0] == "down") common = {"--ns", ns_, "--runtime-dir", runtimeDir_};
    if (command[0] == "status") common = {"--runtime-dir", runtimeDir_};
    argv.insert(argv.end(), common.begin(), common.end());
    return runCommand(argv, timeout, {"MKNET_BUILD_DIR=" + buildRoot_});
  }

  std::string mknetIp() const { return "198.18." + std::to_string(subnet_) + ".2"; }
  std::string linuxIp() const { return "198.18." + std::to_string(subnet_) + ".1"; }
  const std::string& ns() const { return ns_; }
  const std::string& runtimeDir() const { return runtimeDir_; }

 private:
  std::string ns_, tap_, runtimeDir_, buildRoot_;
  int subnet_ = 0;
};

TEST(Launcher, UpStatusDown) {
  Launcher l;
  ASSERT_TRUE(l.ok());
  ASSERT_FALSE(nsListed(l.ns())) << "namespace " << l.ns() << " exists already";

  auto up = l.run({"up", "--no-build"}, 90s);
  ASSERT_EQ(up.status, 0) << up.output;
  EXPECT_NE(up.output.find("self-check: ping " + l.mknetIp() + " from namespace " + l.ns() + ": ok"),
            std::string::npos)
      << up.output;
  EXPECT_NE(up.output.find("self-check: HTTP GET http://" + l.mknetIp() + "/ from namespace " + l.ns() + ": ok"),
            std::string::npos)
      << up.output;
  EXPECT_NE(up.output.find("mknet is up."), std::string::npos) << up.output;
  EXPECT_TRUE(nsListed(l.ns()));

  const pid_t stack = readPid(l.runtimeDir() + "/stack.pid");
  const pid_t driver = readPid(l.runtimeDir() + "/tapdrv.pid");
  const pid_t httpd = readPid(l.runtimeDir() + "/httpd.pid");
  EXPECT_TRUE(alive(stack)) << stack;
  EXPECT_TRUE(alive(driver)) << driver;
  EXPECT_TRUE(alive(httpd)) << httpd;

  // What up set up serves: the demo page from the namespace.
  auto page = runCommand({"ip", "netns", "exec", l.ns(), "curl", "-sf", "--max-time", "10",
                          "http://" + l.mknetIp() + "/"});
  EXPECT_EQ(page.status, 0) << page.output;
  EXPECT_EQ(page.output.rfind("hello from mknet", 0), 0u) << page.output;

  auto status = l.run({"status"});
  EXPECT_EQ(status.status, 0) << status.output;
  EXPECT_NE(status.output.find("stack: running (pid " + std::to_string(stack) + ")"), std::string::npos)
      << status.output;
  EXPECT_NE(status.output.find("tapdrv: running (pid " + std::to_string(driver) + ")"), std::string::npos)
      << status.output;
  EXPECT_NE(status.output.find("link up"), std::string::npos) << status.output;

  auto down = l.run({"down"});
  EXPECT_EQ(down.status, 0) << down.output;
  EXPECT_FALSE(nsListed(l.ns())) << "down left the namespace";
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while ((alive(stack) || alive(driver) || alive(httpd)) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(alive(stack)) << "mknet-stack " << stack << " survived down";
  EXPECT_FALSE(alive(driver)) << "mknet-tapdrv " << driver << " survived down";
  EXPECT_FALSE(alive(httpd)) << "mknet-httpd " << httpd << " survived down";
  EXPECT_NE(::access((l.runtimeDir() + "/stack.sock").c_str(), F_OK), 0) << "stack.sock left behind";

  // After down, status reports the processes dead or gone and fails.
  auto after = l.run({"status"});
  EXPECT_NE(after.status, 0) << after.output;
}

}  // namespace
}  // namespace mknet::itest
