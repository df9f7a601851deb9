// Test helpers for driver integration tests: a throw-away network namespace
// holding a persistent TAP, child processes managed by PID, and a scratch
// directory. Everything is removed in the destructors, also after a failed
// assertion. Needs root.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace mknet::drivers::test {

// Runs argv (no shell), waits up to `timeout`; returns the exit status (or -1
// if it could not be started, 128+signal if killed, or -2 on timeout, after
// which the child is killed). Output goes to `outFile` if given, else /dev/null.
int runCommand(const std::vector<std::string>& argv,
               std::chrono::milliseconds timeout = std::chrono::seconds(20),
               const std::string& outFile = "");

// A child process: started with fork/exec, stdout and stderr appended to a
// log file, killed with SIGKILL when the parent dies. Killed by PID (never by
// name) and reaped in the destructor if still running.
class ChildProcess {
 public:
  ChildProcess() = default;
  // Starts argv; `logFile` receives stdout and stderr. pid() is 0 on failure.
  ChildProcess(const std::vector<std::string>& argv, const std::string& logFile);
  ~ChildProcess();
  ChildProcess(ChildProcess&& o) noexcept;
  ChildProcess& operator=(ChildProcess&& o) noexcept;

  pid_t pid() const { return pid_; }
  bool running();
  // Sends a signal (if still running).
  void signal(int sig);
  // Waits for the exit; returns the raw wait status, or nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  // SIGKILL and reap.
  void kill();

 private:
  pid_t pid_ = 0;
  bool reaped_ = true;
  std::optional<int> status_;
};

// `ip netns add mkt-<pid>-<n>` with a persistent TAP `tap` in it, up, with
// address 198.18.<subnet>.1/24. Removes the TAP and the namespace when done.
class TestNetns {
 public:
  TestNetns();
  ~TestNetns();
  TestNetns(const TestNetns&) = delete;
  TestNetns& operator=(const TestNetns&) = delete;

  bool ok() const { return ok_; }
  const std::string& name() const { return name_; }
  const std::string& tap() const { return tap_; }
  int subnet() const { return subnet_; }
  std::string hostIp() const { return "198.18." + std::to_string(subnet_) + ".1"; }
  std::string peerIp() const { return "198.18." + std::to_string(subnet_) + ".2"; }
  // argv prefixed with `ip netns exec <name>`.
  std::vector<std::string> exec(std::vector<std::string> argv) const;

 private:
  std::string name_;
  std::string tap_ = "mkt0";
  int subnet_ = 0;
  bool ok_ = false;
};

// A fresh directory under /tmp, removed (with its files) at the end.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string readFile(const std::string& path);

// The summary of `ping`: packets sent and received, and the rtt line.
struct PingSummary {
  int transmitted = -1;
  int received = -1;
  double lossPercent = -1;
  double rttMinMs = -1, rttAvgMs = -1, rttMaxMs = -1;
};
std::optional<PingSummary> parsePing(const std::string& output);

}  // namespace mknet::drivers::test
