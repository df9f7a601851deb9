// Testbed: the whole mknet set as real processes, for integration tests.
//
// One Testbed = one network namespace `mki-<pid>-<n>` holding a persistent TAP
// (Linux side 198.18.<x>.1/24, IPv6 off so the stack sees no background
// chatter), an mknet-stack (198.18.<x>.2/24, its own runtime dir from mkdtemp)
// and an mknet-tapdrv inside the namespace, up until `link_up` is 1.
//
// Everything it starts is a child of the test process with PR_SET_PDEATHSIG,
// is stopped by PID (never by name), and the destructor removes the processes,
// the namespace and the runtime dir also after a failed assertion; on a
// failure it first prints the tails of the stack's and the driver's logs.
//
// Needs root. Spawn children from the test's main thread only: the death
// signal follows the *thread* that forked.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mknet::itest {

using namespace std::chrono_literals;
using Argv = std::vector<std::string>;
// Extra environment entries "NAME=value" added to the test's own.
using Env = std::vector<std::string>;

// The outcome of a command run to completion.
struct CommandResult {
  // Exit code; 128 + signal if killed by one; -1 if it could not be started;
  // -2 if it ran past its timeout (then it was killed).
  int status = -1;
  std::string output;  // stdout and stderr, interleaved
  bool ok() const { return status == 0; }
};

// A file of `bytes` random bytes (getrandom) at `path`; false on any error.
bool writeRandomFile(const std::string& path, size_t bytes);

// Runs argv (no shell; argv[0] searched in PATH) with `env` added, waits up
// to `timeout`, and returns its status and output.
CommandResult runCommand(const Argv& argv, std::chrono::milliseconds timeout = 20s, const Env& env = {});

// A background child process, by PID. stdout and stderr go to a log file.
// The destructor kills it (SIGKILL) and reaps it if still running.
class Process {
 public:
  Process() = default;
  // Starts argv with `env` added; pid() is 0 if it could not be started.
  Process(const Argv& argv, std::string logFile, const Env& env = {});
  ~Process();
  Process(Process&& o) noexcept;
  Process& operator=(Process&& o) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& logFile() const { return log_; }
  // Still running (reaps it if it has exited).
  bool running();
  // Sends a signal if still running.
  void signal(int sig);
  // Waits for the exit; its status (as CommandResult::status) or nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  // SIGTERM, up to `grace` to exit, then SIGKILL. Returns the exit status.
  int stop(std::chrono::milliseconds grace = 5s);
  // SIGKILL and reap.
  void kill();
  // Everything it wrote so far.
  std::string output() const;
  // Waits until a line starting with `prefix` appears in the output; returns
  // that line without the prefix, or nullopt on timeout or early exit.
  std::optional<std::string> waitForLine(const std::string& prefix, std::chrono::milliseconds timeout);

 private:
  pid_t pid_ = 0;
  bool reaped_ = true;
  int status_ = -1;
  std::string log_;
};

// `key=value key=value ...`: the result lines of the example apps.
std::map<std::string, std::string> parseKeyValues(const std::string& line);
// The last `chars` characters of `text` (for failure messages).
std::string tail(const std::string& text, size_t chars = 3000);
// The last line of `output` that contains `needle`, or "".
std::string lastLineWith(const std::string& output, const std::string& needle);
// The whole file, or "" if it cannot be read.
std::string readFile(const std::string& path);
// Hex SHA-256 of a file (sha256sum), or "" on failure.
std::string sha256File(const std::string& path);
// The binaries under test, from the build tree.
struct Bin {
  static const char* stack();
  static const char* tapdrv();
  static const char* ctl();
  static const char* echo();
  static const char* echoKernel();
  static const char* httpd();
  static const char* bulk();
  static const char* bulkKernel();
  static const char* sourceDir();
  static const char* buildDir();
};

struct TestbedOptions {
  bool startDriver = true;
  uint32_t poolBuffers = 0;   // 0: the stack's default
  std::string logLevel = "info";
};

class Testbed {
 public:
  explicit Testbed(TestbedOptions options = {});
  ~Testbed();
  Testbed(const Testbed&) = delete;
  Testbed& operator=(const Testbed&) = delete;

  // False if set-up failed; error() says why (use ASSERT_TRUE(tb.ok()) << tb.error()).
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  const std::string& ns() const { return ns_; }
  const std::string& tap() const { return tap_; }
  int subnet() const { return subnet_; }
  std::string linuxIp() const { return "198.18." + std::to_string(subnet_) + ".1"; }
  std::string mknetIp() const { return "198.18." + std::to_string(subnet_) + ".2"; }
  std::string mac() const { return "02:6d:6b:00:00:02"; }
  const std::string& runtimeDir() const { return runtimeDir_; }
  std::string stackSocket() const { return runtimeDir_ + "/stack.sock"; }
  // A path inside the runtime dir (removed with it).
  std::string file(const std::string& name) const { return runtimeDir_ + "/" + name; }
  // The environment an mknet app needs to find this stack.
  Env appEnv() const { return {"MKNET_RUNTIME_DIR=" + runtimeDir_, "MKNET_STACK_SOCKET=" + stackSocket()}; }

  // argv prefixed with `ip netns exec <ns>`.
  Argv inNs(const Argv& argv) const;
  // Runs a command inside the namespace / as an mknet app, to completion.
  CommandResult runInNs(const Argv& argv, std::chrono::milliseconds timeout = 20s) const;
  CommandResult runApp(const Argv& argv, std::chrono::milliseconds timeout = 20s) const;
  // Starts a background process inside the namespace / as an mknet app; its
  // output goes to file(logName).
  Process spawnInNs(const Argv& argv, const std::string& logName) const;
  Process spawnApp(const Argv& argv, const std::string& logName) const;

  // A socket created inside the namespace (socket(2) on a thread that
  // setns()'d there); -1 with errno on failure. The caller closes it.
  int socketInNs(int domain, int type, int protocol) const;

  // Counters of the stack (mknet-ctl status --json): counters plus sessions,
  // sockets, pool_free, pool_buffers, link_up, driver_pid, registrations.
  std::optional<std::map<std::string, uint64_t>> status() const;
  std::optional<uint64_t> counter(const std::string& name) const;
  // Polls until counter(name) == value; false on timeout.
  bool waitCounter(const std::string& name, uint64_t value, std::chrono::milliseconds timeout = 10s) const;

  Process& stack() { return stack_; }
  Process& driver() { return driver_; }
  // Starts mknet-tapdrv inside the namespace and waits for link_up == 1.
  bool startDriver();
  // SIGTERM to the driver by PID; waits for its exit and link_up == 0.
  bool stopDriver();

  // Pings the stack from the Linux side; true if all `count` answered.
  bool pingOk(int count = 3) const;

  // The conventions' leak check, for the end of a test: waits until no
  // session and no socket is left, then stops the driver and waits until
  // every pool buffer is free again. Returns "" or what is left over.
  std::string leftovers(std::chrono::milliseconds timeout = 5s);

  // The counters of peer faults the stack has seen (malformed frames from the
  // wire, bad descriptors, corrupt rings, bad notifications or tx records
  // from apps) that are not zero, as "name=value ..."; "" if none. With only
  // Linux and well-behaved apps as peers it must stay "". Session counters
  // cover live sessions only: call it while the apps are still connected.
  std::string peerFaults() const;

  // Tails of the stack and driver logs, for failure messages.
  std::string logTails(size_t lines = 30) const;

 private:
  bool setUpNamespace();
  bool startStack();

  TestbedOptions options_;
  std::string error_;
  std::string ns_, tap_;
  int subnet_ = 0;
  bool nsCreated_ = false;
  std::string runtimeDir_;
  Process stack_, driver_;
};

// Removes what earlier runs of these tests left behind when they were killed
// (a ctest timeout is a SIGKILL: no destructor runs): namespaces mki-<pid>-<n>
// and mkl-<pid>, and /tmp/mki-<pid>-*, /tmp/mkl-<pid>-*, /tmp/mkl-build-<pid>-*,
// but only where <pid> is a process that no longer exists; processes the
// launcher recorded in such a runtime dir are killed by PID. Names with this
// process's own pid count as stale too (pid reuse), so call it only before
// this process made any: the first Testbed and the launcher fixture do.
void removeStaleTestState();

// Prints "[ RECORD   ] key = value" to the test's output (ctest -V and
// --output-on-failure show it), so figures such as throughput can be quoted;
// also recorded as a gtest property (in --gtest_output=xml).
void record(const std::string& key, const std::string& value);

}  // namespace mknet::itest
