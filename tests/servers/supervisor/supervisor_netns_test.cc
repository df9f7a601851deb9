// mknet-supervisor running the real mknet-stack and mknet-tapdrv (inside a
// network namespace this test creates, through `ip netns exec`): SIGKILL of
// the driver by PID brings a new driver that registers again (registrations
// 2, link up, ping answers); SIGKILL of the stack brings a new stack the
// surviving driver registers with; SIGTERM stops it all and exits 0. Root.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <regex>
#include <sstream>
#include <thread>

#include "tests/servers/supervisor/harness.h"

namespace mknet::supervisor::test {
namespace {

bool nsListed(const std::string& ns) {
  std::string out;
  runCommand({"ip", "netns", "list"}, 10s, &out);
  std::stringstream ss(out);
  std::string line;
  while (std::getline(ss, line))
    if (line.substr(0, line.find(' ')) == ns) return true;
  return false;
}

// Namespaces mks-<pid> of earlier runs that were killed (a ctest timeout is a
// SIGKILL: no destructor ran), where <pid> no longer exists. Their processes
// died with their supervisor (PR_SET_PDEATHSIG).
void removeStaleNamespaces() {
  static const std::regex re(R"(^mks-(\d+)$)");
  std::string out;
  runCommand({"ip", "netns", "list"}, 10s, &out);
  std::stringstream ss(out);
  std::string line;
  while (std::getline(ss, line)) {
    std::string name = line.substr(0, line.find(' '));
    std::smatch m;
    if (!std::regex_match(name, m, re)) continue;
    pid_t pid = static_cast<pid_t>(std::stol(m[1].str()));
    if (pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
    runCommand({"ip", "netns", "del", name});
  }
}

// A namespace with a persistent TAP, Linux side 198.18.<subnet>.1/24.
class Netns {
 public:
  Netns() {
    removeStaleNamespaces();
    const int pid = static_cast<int>(::getpid());
    name_ = "mks-" + std::to_string(pid);
    tap_ = "mks" + std::to_string(pid % 10000000);
    subnet_ = 1 + (pid + 173) % 250;
    if (nsListed(name_)) return;
    ok_ = step({"ip", "netns", "add", name_});
    created_ = ok_;
    ok_ = ok_ && step({"ip", "-n", name_, "link", "set", "lo", "up"}) &&
          step({"ip", "-n", name_, "tuntap", "add", "mode", "tap", "name", tap_}) &&
          step({"ip", "-n", name_, "link", "set", tap_, "up"}) &&
          step({"ip", "-n", name_, "addr", "add", linuxIp() + "/24", "dev", tap_});
  }
  ~Netns() {
    if (!created_) return;
    // The TAP first: a persistent TAP must not outlive its namespace.
    runCommand({"ip", "-n", name_, "link", "del", tap_});
    runCommand({"ip", "netns", "del", name_});
  }
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  const std::string& name() const { return name_; }
  const std::string& tap() const { return tap_; }
  std::string linuxIp() const { return "198.18." + std::to_string(subnet_) + ".1"; }
  std::string mknetIp() const { return "198.18." + std::to_string(subnet_) + ".2"; }
  bool ping(int count = 3) const {
    return runCommand({"ip", "netns", "exec", name_, "ping", "-c", std::to_string(count), "-i", "0.2", "-W",
                       "2", mknetIp()},
                      20s) == 0;
  }

 private:
  bool step(const Argv& argv) {
    std::string out;
    if (runCommand(argv, 10s, &out) == 0) return true;
    for (const auto& a : argv) error_ += a + " ";
    error_ += "failed: " + out;
    return false;
  }
  std::string name_, tap_, error_;
  int subnet_ = 0;
  bool ok_ = false, created_ = false;
};

// mknet-ctl --socket DIR/stack.sock status --counter NAME
std::optional<uint64_t> stackCounter(const std::string& dir, const std::string& name) {
  std::string out;
  if (runCommand({MKNET_CTL_BIN, "--socket", dir + "/stack.sock", "status", "--counter", name}, 10s, &out) !=
      0)
    return std::nullopt;
  try {
    return std::stoull(out);
  } catch (...) {
    return std::nullopt;
  }
}

bool waitCounter(const std::string& dir, const std::string& name, uint64_t value,
                 std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (stackCounter(dir, name) == value) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

TEST(SupervisorNetns, RestartsTheRealDriverAndStack) {
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  TempDir dir("mks-rt");
  ASSERT_FALSE(dir.path().empty());
  ::chmod(dir.path().c_str(), 0755);
  const std::string mac = "02:6d:6b:00:00:02";

  SupervisorRun s(dir.path(), {"--stack",  "stack",          "--arg", MKNET_STACK_BIN,
                               "--arg",    "--ip",           "--arg", ns.mknetIp() + "/24",
                               "--arg",    "--mac",          "--arg", mac,
                               "--arg",    "--runtime-dir",  "--arg", dir.path(),
                               "--driver", "tapdrv",         "--arg", "ip",
                               "--arg",    "netns",          "--arg", "exec",
                               "--arg",    ns.name(),        "--arg", MKNET_TAPDRV_BIN,
                               "--arg",    "--tap",          "--arg", ns.tap(),
                               "--arg",    "--mac",          "--arg", mac,
                               "--arg",    "--stack-socket", "--arg", dir.path() + "/stack.sock"});
  auto logs = [&]() {
    return "---- supervisor.log ----\n" + s.log() + "---- stack.log ----\n" +
           readFile(dir.file("stack.log")) + "---- tapdrv.log ----\n" + readFile(dir.file("tapdrv.log"));
  };
  ASSERT_TRUE(s.waitReady()) << logs();
  ASSERT_TRUE(waitCounter(dir.path(), "link_up", 1, 15s)) << logs();
  EXPECT_EQ(stackCounter(dir.path(), "registrations"), 1u);
  ASSERT_TRUE(ns.ping()) << "no ping before the fault\n" << logs();

  // The supervised PID is the driver's own (ip netns exec execs it).
  auto drv = s.process("tapdrv");
  ASSERT_TRUE(drv && drv->running) << logs();
  EXPECT_EQ(stackCounter(dir.path(), "driver_pid"), static_cast<uint64_t>(drv->pid));
  auto stack = s.process("stack");
  ASSERT_TRUE(stack && stack->running);

  // Driver fault: SIGKILL by PID.
  ASSERT_EQ(::kill(drv->pid, SIGKILL), 0);
  const pid_t oldDrv = drv->pid;
  auto newDrv = s.waitFor("tapdrv", [oldDrv](const ProcSnap& p) { return p.running && p.pid != oldDrv; });
  ASSERT_TRUE(newDrv) << logs();
  EXPECT_EQ(newDrv->restarts, 1u);
  EXPECT_EQ(newDrv->exitKind, "signaled");
  EXPECT_EQ(newDrv->exitSignal, SIGKILL);
  EXPECT_TRUE(waitCounter(dir.path(), "registrations", 2, 15s)) << logs();
  EXPECT_TRUE(waitCounter(dir.path(), "link_up", 1, 15s)) << logs();
  EXPECT_EQ(stackCounter(dir.path(), "driver_pid"), static_cast<uint64_t>(newDrv->pid));
  EXPECT_TRUE(ns.ping()) << "no ping after the driver restart\n" << logs();
  auto stackNow = s.process("stack");
  ASSERT_TRUE(stackNow);
  EXPECT_EQ(stackNow->pid, stack->pid) << "the stack must not have been touched";

  // Stack fault: a new stack, and the surviving driver registers with it.
  ASSERT_EQ(::kill(stack->pid, SIGKILL), 0);
  const pid_t oldStack = stack->pid;
  auto newStack =
      s.waitFor("stack", [oldStack](const ProcSnap& p) { return p.running && p.pid != oldStack; });
  ASSERT_TRUE(newStack) << logs();
  EXPECT_EQ(newStack->restarts, 1u);
  EXPECT_TRUE(waitCounter(dir.path(), "link_up", 1, 15s)) << logs();
  EXPECT_TRUE(ns.ping()) << "no ping after the stack restart\n" << logs();
  auto drvNow = s.process("tapdrv");
  ASSERT_TRUE(drvNow);
  EXPECT_EQ(drvNow->pid, newDrv->pid) << "the driver re-registers by itself, it is not restarted";

  // Orderly stop: exit 0, nothing left.
  s.signal(SIGTERM);
  auto st = s.wait(15s);
  ASSERT_TRUE(st) << logs();
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << "wait status " << *st << "\n" << logs();
  EXPECT_FALSE(pidAlive(newStack->pid));
  EXPECT_FALSE(pidAlive(newDrv->pid));
  EXPECT_NE(::access(dir.file("stack.sock").c_str(), F_OK), 0) << "stack.sock left behind";
  EXPECT_NE(::access(dir.file("supervisor.sock").c_str(), F_OK), 0) << "supervisor.sock left behind";
  if (HasFailure()) std::printf("%s\n", logs().c_str());
}

}  // namespace
}  // namespace mknet::supervisor::test
