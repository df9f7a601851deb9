// Test helpers of the supervisor tests: a scratch runtime dir, an
// mknet-supervisor run as a child of the test (by PID, with PR_SET_PDEATHSIG),
// and its status read over supervisor.sock with the real Cap'n Proto client.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace mknet::supervisor::test {

using namespace std::chrono_literals;
using Argv = std::vector<std::string>;

struct StartSnap {
  uint64_t atMs = 0, delayMs = 0;
  pid_t pid = 0;
};

// One process of the supervisor's status() answer, copied out of the message.
struct ProcSnap {
  std::string name, role;
  pid_t pid = 0;
  bool running = false;
  uint32_t restarts = 0;
  std::string exitKind;  // none, exited, signaled, start_failed
  int exitCode = 0, exitSignal = 0;
  std::string exitText;
  uint64_t exitRanMs = 0, uptimeMs = 0, nextRestartMs = 0;
  Argv argv;
  std::vector<StartSnap> starts;
};

// status() over the socket at `path`; nullopt if the supervisor does not answer.
std::optional<std::vector<ProcSnap>> queryStatus(const std::string& path);

// Runs argv to completion (no shell); returns its status as 128+signal for a
// signal, -1 if it could not start, -2 after `timeout` (then it is killed).
// Output (stdout+stderr) goes to *output if given.
int runCommand(const Argv& argv, std::chrono::milliseconds timeout = 20s, std::string* output = nullptr);

std::string readFile(const std::string& path);
bool pidAlive(pid_t pid);  // exists and is not a zombie

// A fresh directory /tmp/PREFIX-<pid>-XXXXXX, removed with everything in it.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// mknet-supervisor --runtime-dir DIR <args>, its stderr in `logPath`
// (default DIR/supervisor.log).
// The destructor SIGKILLs it if it still runs (its children follow through
// PR_SET_PDEATHSIG), reaps it, and kills by PID any child it had reported.
// Start it from the test's main thread: the death signal follows the thread.
class SupervisorRun {
 public:
  SupervisorRun(const std::string& runtimeDir, const Argv& args, std::string logPath = "");
  ~SupervisorRun();
  SupervisorRun(const SupervisorRun&) = delete;
  SupervisorRun& operator=(const SupervisorRun&) = delete;

  pid_t pid() const { return pid_; }
  std::string socket() const { return dir_ + "/supervisor.sock"; }
  std::string log() const { return readFile(logPath_); }

  // Waits until the socket answers; false if it did not within `timeout`.
  bool waitReady(std::chrono::milliseconds timeout = 10s);
  std::optional<std::vector<ProcSnap>> status();
  std::optional<ProcSnap> process(const std::string& name);
  // Polls status() every 20 ms until `pred` holds for process `name`;
  // returns that snapshot, or nullopt on timeout.
  std::optional<ProcSnap> waitFor(const std::string& name, const std::function<bool(const ProcSnap&)>& pred,
                                  std::chrono::milliseconds timeout = 10s);
  // Waits for the supervisor to exit; its raw wait status, or nullopt.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  void signal(int sig);

 private:
  void remember(const std::vector<ProcSnap>& snaps);

  std::string dir_, logPath_;
  pid_t pid_ = 0;
  bool reaped_ = false;
  int status_ = 0;
  std::vector<pid_t> seen_;  // every child PID status() ever reported
};

}  // namespace mknet::supervisor::test
