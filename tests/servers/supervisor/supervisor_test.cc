// mknet-supervisor with stand-in children (the test child, sh): restarts by
// PID after SIGKILL, backoff of a crash loop read from status(), no spinning
// on a missing binary, ordered stop on SIGTERM, SIGKILL of the supervisor
// taking its children along, and the status CLI. No namespace needed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <sstream>
#include <thread>

#include "tests/servers/supervisor/harness.h"

namespace mknet::supervisor::test {
namespace {

const std::string kChild = MKNET_TEST_CHILD_BIN;

std::string childCmd(const std::string& name, const std::string& extra = "") {
  return name + "=" + kChild + " --name " + name + " " + extra;
}

// The record file of the test children: per name and event, the times (ns).
struct Event {
  std::string name, event;
  long long ns = 0;
  pid_t pid = 0;
};
std::vector<Event> readRecord(const std::string& path) {
  std::vector<Event> out;
  std::stringstream ss(readFile(path));
  Event e;
  while (ss >> e.name >> e.event >> e.ns >> e.pid) out.push_back(e);
  return out;
}
std::optional<Event> find(const std::vector<Event>& events, const std::string& name,
                          const std::string& event) {
  for (const auto& e : events)
    if (e.name == name && e.event == event) return e;
  return std::nullopt;
}

class SupervisorTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && run_) std::printf("---- supervisor.log ----\n%s\n", run_->log().c_str());
    run_.reset();
  }
  SupervisorRun& start(const Argv& args) {
    run_ = std::make_unique<SupervisorRun>(dir_.path(), args);
    return *run_;
  }
  TempDir dir_{"mks"};
  std::unique_ptr<SupervisorRun> run_;
};

TEST_F(SupervisorTest, KilledChildIsRestartedAtOnce) {
  ASSERT_FALSE(dir_.path().empty());
  auto& s = start({"--stack", childCmd("stack"), "--driver", childCmd("drv")});
  ASSERT_TRUE(s.waitReady());
  auto drv = s.waitFor("drv", [](const ProcSnap& p) { return p.running; });
  ASSERT_TRUE(drv);
  EXPECT_EQ(drv->role, "driver");
  EXPECT_EQ(drv->restarts, 0u);
  EXPECT_EQ(drv->exitKind, "none");
  EXPECT_EQ(readFile(dir_.file("drv.pid")), std::to_string(drv->pid) + "\n");
  auto stack = s.process("stack");
  ASSERT_TRUE(stack && stack->running);
  EXPECT_EQ(stack->role, "stack");

  const pid_t old = drv->pid;
  ASSERT_EQ(::kill(old, SIGKILL), 0);
  auto back = s.waitFor("drv", [old](const ProcSnap& p) { return p.running && p.pid != old; });
  ASSERT_TRUE(back) << "no new driver";
  EXPECT_EQ(back->restarts, 1u);
  EXPECT_EQ(back->exitKind, "signaled");
  EXPECT_EQ(back->exitSignal, 9);
  EXPECT_EQ(back->exitCode, 0);
  EXPECT_NE(back->exitText.find("signal 9"), std::string::npos) << back->exitText;
  ASSERT_EQ(back->starts.size(), 2u);
  EXPECT_EQ(back->starts[1].delayMs, 0u) << "the first restart is at once";
  EXPECT_EQ(back->starts[1].pid, back->pid);
  EXPECT_EQ(readFile(dir_.file("drv.pid")), std::to_string(back->pid) + "\n");
  EXPECT_FALSE(pidAlive(old));
  // The stack was not touched.
  auto stack2 = s.process("stack");
  ASSERT_TRUE(stack2);
  EXPECT_EQ(stack2->pid, stack->pid);
  EXPECT_EQ(stack2->restarts, 0u);
  // And the death is in the log, with the signal.
  EXPECT_NE(s.log().find("drv (driver, pid " + std::to_string(old) + ") died: signal 9"), std::string::npos)
      << s.log();
}

TEST_F(SupervisorTest, CrashLoopBacksOffDoublingCappedAtTwoSeconds) {
  ASSERT_FALSE(dir_.path().empty());
  auto& s = start({"--driver", "loop=sh -c 'exit 3'"});
  ASSERT_TRUE(s.waitReady());
  // 0 + 100 + 200 + 400 + 800 + 1600 + 2000 ms: 5.1 s to the 7th restart.
  auto p = s.waitFor(
      "loop", [](const ProcSnap& p) { return p.restarts >= 7; }, 20s);
  ASSERT_TRUE(p) << "fewer than 7 restarts in 20 s";
  EXPECT_EQ(p->exitKind, "exited");
  EXPECT_EQ(p->exitCode, 3);
  EXPECT_EQ(p->exitText, "exit code 3");
  ASSERT_GE(p->starts.size(), 8u);
  const std::vector<uint64_t> want = {0, 0, 100, 200, 400, 800, 1600, 2000};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(p->starts[i].delayMs, want[i]) << "start " << i;
    // The recorded start times honour the delays (the instance itself lives
    // a few ms, so the gap is at least the delay).
    if (i > 0) {
      EXPECT_GE(p->starts[i].atMs - p->starts[i - 1].atMs, want[i]) << "start " << i;
    }
  }
  // Between deaths it waits, and says how long.
  auto waiting = s.waitFor(
      "loop", [](const ProcSnap& p) { return !p.running && p.nextRestartMs > 0; }, 5s);
  ASSERT_TRUE(waiting);
  EXPECT_LE(waiting->nextRestartMs, 2000u);
  EXPECT_EQ(waiting->pid, 0);
}

TEST_F(SupervisorTest, HealthyRunResetsTheBackoff) {
  ASSERT_FALSE(dir_.path().empty());
  // Each instance runs 300 ms, longer than --healthy-ms: every restart is at once.
  auto& s = start({"--healthy-ms", "200", "--driver", childCmd("d", "--exit-after-ms 300 --exit-code 1")});
  ASSERT_TRUE(s.waitReady());
  auto p = s.waitFor(
      "d", [](const ProcSnap& p) { return p.restarts >= 3; }, 10s);
  ASSERT_TRUE(p);
  for (const auto& st : p->starts) EXPECT_EQ(st.delayMs, 0u);
  EXPECT_EQ(p->exitCode, 1);
  EXPECT_GE(p->exitRanMs, 300u);
}

TEST_F(SupervisorTest, MissingBinaryDoesNotSpin) {
  ASSERT_FALSE(dir_.path().empty());
  auto& s = start({"--stack", childCmd("stack"), "--driver", "ghost=/nonexistent/mknet-ghost --x"});
  ASSERT_TRUE(s.waitReady());
  auto p = s.waitFor(
      "ghost", [](const ProcSnap& p) { return p.restarts >= 4; }, 10s);
  ASSERT_TRUE(p);
  EXPECT_FALSE(p->running);
  EXPECT_EQ(p->exitKind, "start_failed");
  EXPECT_EQ(p->exitCode, ENOENT);
  EXPECT_NE(p->exitText.find("exec /nonexistent/mknet-ghost: No such file or directory"), std::string::npos)
      << p->exitText;
  // The same backoff as for a process that dies: it cannot spin.
  const std::vector<uint64_t> want = {0, 0, 100, 200, 400};
  for (size_t i = 0; i < want.size() && i < p->starts.size(); ++i) {
    EXPECT_EQ(p->starts[i].delayMs, want[i]) << "start " << i;
    EXPECT_EQ(p->starts[i].pid, 0);
  }
  EXPECT_NE(
      s.log().find("ghost (driver): cannot start: exec /nonexistent/mknet-ghost: No such file or directory"),
      std::string::npos)
      << s.log();
  // Meanwhile the stack runs on.
  auto stack = s.process("stack");
  ASSERT_TRUE(stack);
  EXPECT_TRUE(stack->running);
  EXPECT_EQ(stack->restarts, 0u);
}

TEST_F(SupervisorTest, SigtermStopsDriversThenStackAndExitsZero) {
  ASSERT_FALSE(dir_.path().empty());
  const std::string rec = dir_.file("record");
  // Slow to stop, so an unordered stop would show: the stack takes 100 ms,
  // the drivers 300 ms.
  auto& s = start({"--stack", childCmd("stack", "--term-delay-ms 100 --record " + rec), "--driver",
                   childCmd("d1", "--term-delay-ms 300 --record " + rec), "--driver",
                   childCmd("d2", "--term-delay-ms 300 --record " + rec)});
  ASSERT_TRUE(s.waitReady());
  std::map<std::string, pid_t> pids;
  for (const char* n : {"stack", "d1", "d2"}) {
    auto p = s.waitFor(n, [](const ProcSnap& p) { return p.running; });
    ASSERT_TRUE(p) << n;
    pids[n] = p->pid;
  }
  // Every child has recorded its start (so its SIGTERM handler is in place).
  for (int i = 0; i < 500 && readRecord(rec).size() < 3; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(readRecord(rec).size(), 3u);

  s.signal(SIGTERM);
  auto st = s.wait(15s);
  ASSERT_TRUE(st) << "the supervisor did not exit";
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << "wait status " << *st;

  auto ev = readRecord(rec);
  auto stackTerm = find(ev, "stack", "term");
  ASSERT_TRUE(stackTerm) << readFile(rec);
  for (const char* d : {"d1", "d2"}) {
    auto term = find(ev, d, "term"), exit = find(ev, d, "exit");
    ASSERT_TRUE(term && exit) << d << "\n" << readFile(rec);
    EXPECT_LT(exit->ns, stackTerm->ns) << d << " was still running when the stack was told to stop";
  }
  EXPECT_TRUE(find(ev, "stack", "exit"));
  for (auto& [name, pid] : pids) EXPECT_FALSE(pidAlive(pid)) << name << " " << pid << " survived";
  for (const char* f : {"stack.pid", "d1.pid", "d2.pid", "supervisor.sock"})
    EXPECT_NE(::access(dir_.file(f).c_str(), F_OK), 0) << f << " left behind";
  EXPECT_NE(s.log().find("every child has stopped"), std::string::npos) << s.log();
}

TEST_F(SupervisorTest, StopEscalatesToSigkillAfterTheTimeout) {
  ASSERT_FALSE(dir_.path().empty());
  const std::string rec = dir_.file("record");
  auto& s = start({"--stop-timeout-ms", "500", "--stack", childCmd("stack", "--record " + rec), "--driver",
                   childCmd("stubborn", "--ignore-term --record " + rec)});
  ASSERT_TRUE(s.waitReady());
  auto drv = s.waitFor("stubborn", [](const ProcSnap& p) { return p.running; });
  ASSERT_TRUE(drv);
  for (int i = 0; i < 500 && readRecord(rec).size() < 2; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(readRecord(rec).size(), 2u);
  s.signal(SIGINT);  // SIGINT stops like SIGTERM
  auto st = s.wait(10s);
  ASSERT_TRUE(st);
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << "wait status " << *st;
  EXPECT_FALSE(pidAlive(drv->pid));
  auto ev = readRecord(rec);
  EXPECT_FALSE(find(ev, "stubborn", "term")) << "SIGTERM was ignored, so nothing was recorded";
  EXPECT_TRUE(find(ev, "stack", "exit")) << readFile(rec);
  EXPECT_NE(s.log().find("stubborn (driver, pid " + std::to_string(drv->pid) +
                         ") did not stop within 500 ms: SIGKILL"),
            std::string::npos)
      << s.log();
  EXPECT_NE(s.log().find("stopped: signal 9"), std::string::npos) << s.log();
}

TEST_F(SupervisorTest, SigkillOfTheSupervisorTakesItsChildren) {
  ASSERT_FALSE(dir_.path().empty());
  // Orphans come to us instead of init, so we can see how they ended.
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  struct Unsubreaper {
    ~Unsubreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 0); }
  } unsubreaper;
  auto& s = start({"--stack", childCmd("stack"), "--driver", childCmd("d1"), "--driver", childCmd("d2")});
  ASSERT_TRUE(s.waitReady());
  std::vector<pid_t> pids;
  for (const char* n : {"stack", "d1", "d2"}) {
    auto p = s.waitFor(n, [](const ProcSnap& p) { return p.running; });
    ASSERT_TRUE(p) << n;
    pids.push_back(p->pid);
  }
  s.signal(SIGKILL);
  ASSERT_TRUE(s.wait(5s));
  for (pid_t pid : pids) {
    int status = 0;
    pid_t r = 0;
    for (int i = 0; i < 500 && r == 0; ++i) {
      r = ::waitpid(pid, &status, WNOHANG);
      if (r == 0) std::this_thread::sleep_for(10ms);
    }
    ASSERT_EQ(r, pid) << "child " << pid << " was not reparented to us or did not die";
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "child " << pid << " status " << status;
  }
}

TEST_F(SupervisorTest, RemovedRuntimeDirStopsEverything) {
  // Its own dir, removed under the supervisor's feet below.
  TempDir gone("mks-gone");
  ASSERT_FALSE(gone.path().empty());
  run_ = std::make_unique<SupervisorRun>(gone.path(),
                                         Argv{"--stack", childCmd("stack"), "--driver", childCmd("d")},
                                         dir_.file("supervisor.log"));
  auto& s = *run_;
  ASSERT_TRUE(s.waitReady());
  auto stack = s.waitFor("stack", [](const ProcSnap& p) { return p.running; });
  ASSERT_TRUE(stack);
  std::error_code ec;
  std::filesystem::remove_all(gone.path(), ec);
  ASSERT_FALSE(ec) << ec.message();
  // Noticed within a second: everything stops, exit 0.
  auto st = s.wait(10s);
  ASSERT_TRUE(st) << "the supervisor kept running without its runtime dir";
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << "wait status " << *st;
  EXPECT_FALSE(pidAlive(stack->pid));
  EXPECT_NE(s.log().find("runtime dir " + gone.path() + " is gone: stopping everything"), std::string::npos)
      << s.log();
}

TEST_F(SupervisorTest, SecondSupervisorOnTheSameDirRefusesToStart) {
  ASSERT_FALSE(dir_.path().empty());
  const std::string rec = dir_.file("record");
  auto& s = start({"--stack", childCmd("stack", "--record " + rec)});
  ASSERT_TRUE(s.waitReady());
  std::string out;
  int rc = runCommand(
      {MKNET_SUPERVISOR_BIN, "--runtime-dir", dir_.path(), "--stack", childCmd("stack2", "--record " + rec)},
      10s, &out);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("already listening"), std::string::npos) << out;
  // Only the first supervisor's stack ever started.
  auto ev = readRecord(rec);
  EXPECT_FALSE(find(ev, "stack2", "start")) << readFile(rec);
  auto p = s.process("stack");
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->running);
}

TEST_F(SupervisorTest, SupervisorctlPrintsTheTable) {
  ASSERT_FALSE(dir_.path().empty());
  auto& s = start({"--stack", childCmd("stack"), "--driver", "flaky=sh -c 'exit 7'"});
  ASSERT_TRUE(s.waitReady());
  auto stack = s.waitFor("stack", [](const ProcSnap& p) { return p.running; });
  ASSERT_TRUE(stack);
  ASSERT_TRUE(s.waitFor("flaky", [](const ProcSnap& p) { return p.restarts >= 2; }));
  const std::string ctl = MKNET_SUPERVISORCTL_BIN;
  std::string out;
  int rc = runCommand({ctl, "--socket", s.socket(), "status"}, 10s, &out);
  EXPECT_EQ(rc, 3) << "a process is not running: exit 3\n" << out;
  EXPECT_NE(out.find("stack: running (pid " + std::to_string(stack->pid) + ")"), std::string::npos) << out;
  EXPECT_NE(out.find("flaky: "), std::string::npos) << out;
  EXPECT_NE(out.find("last exit: exit code 7"), std::string::npos) << out;

  rc = runCommand({ctl, "--socket", s.socket(), "status", "--json"}, 10s, &out);
  EXPECT_EQ(rc, 3) << out;
  EXPECT_NE(out.find("{\"name\":\"stack\",\"role\":\"stack\",\"pid\":" + std::to_string(stack->pid) +
                     ",\"running\":true"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("\"kind\":\"exited\",\"code\":7"), std::string::npos) << out;
  EXPECT_NE(out.find("\"recent_starts\":[{\"at_ms\":"), std::string::npos) << out;

  rc = runCommand({ctl, "--socket", s.socket(), "status", "--pid", "stack"}, 10s, &out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, std::to_string(stack->pid) + "\n");

  // MKNET_RUNTIME_DIR is the default place; a missing supervisor is exit 1.
  rc = runCommand({ctl, "--socket", dir_.file("nobody.sock"), "status"}, 10s, &out);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("no such socket"), std::string::npos) << out;
}

}  // namespace
}  // namespace mknet::supervisor::test
