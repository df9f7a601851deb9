// Test harness for the example apps: runs them as real processes, reads what
// they print, and cleans up only what it started.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace mknet::testing {

using namespace std::chrono_literals;

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/mknet-apps-XXXXXX";
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  bool valid() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Where a child's standard streams go; -1 inherits the test's own.
struct Redirect {
  int in = -1;
  int out = -1;
  int err = -1;
};

// One child process. The destructor kills it (SIGKILL, by PID) and reaps it
// if it is still running, so a failing test never leaks a server.
class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(ChildProcess&& o) noexcept
      : pid_(std::exchange(o.pid_, -1)), status_(o.status_), spawnError_(o.spawnError_) {}
  ChildProcess& operator=(ChildProcess&& o) noexcept {
    if (this != &o) {
      killAndReap();
      pid_ = std::exchange(o.pid_, -1);
      status_ = o.status_;
      spawnError_ = o.spawnError_;
    }
    return *this;
  }
  ChildProcess(const ChildProcess&) = delete;
  ~ChildProcess() { killAndReap(); }

  // Starts argv[0] (a path, or a name looked up in PATH); check started().
  static ChildProcess start(const std::vector<std::string>& argv, Redirect r = {}) {
    ChildProcess p;
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (r.in >= 0) posix_spawn_file_actions_adddup2(&actions, r.in, STDIN_FILENO);
    if (r.out >= 0) posix_spawn_file_actions_adddup2(&actions, r.out, STDOUT_FILENO);
    if (r.err >= 0) posix_spawn_file_actions_adddup2(&actions, r.err, STDERR_FILENO);
    pid_t pid = -1;
    p.spawnError_ = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (p.spawnError_ == 0) p.pid_ = pid;
    return p;
  }

  // Starts argv with stdout and stderr appended to files (never pipes: a
  // chatty child can then never block on a pipe nobody is reading).
  static ChildProcess startLogged(const std::vector<std::string>& argv, const std::string& outPath,
                                  const std::string& errPath) {
    const int out = ::open(outPath.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    const int err = ::open(errPath.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    ChildProcess p = start(argv, Redirect{-1, out, err});
    if (out >= 0) ::close(out);
    if (err >= 0) ::close(err);
    return p;
  }

  bool started() const { return pid_ > 0 || status_.has_value(); }
  int spawnError() const { return spawnError_; }
  pid_t pid() const { return pid_; }

  // Waits up to `timeout` for the child to exit; its wait status, or nullopt
  // if it is still running.
  std::optional<int> wait(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (pid_ > 0) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_ || (r < 0 && errno != EINTR)) {
        status_ = r == pid_ ? status : -1;
        pid_ = -1;
        break;
      }
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(5ms);
    }
    return status_;
  }

  // Sends `sig` to this child only (by PID), if it is still running.
  void signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }

  void killAndReap() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    status_ = status;
  }

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  int spawnError_ = 0;
};

// "exit 0", "exit 1", "signal 9": a wait status in words, for assertion messages.
inline std::string describeStatus(std::optional<int> status) {
  if (!status) return "still running";
  if (WIFEXITED(*status)) return "exit " + std::to_string(WEXITSTATUS(*status));
  if (WIFSIGNALED(*status)) return "signal " + std::to_string(WTERMSIG(*status));
  return "status " + std::to_string(*status);
}

inline std::optional<int> exitCode(std::optional<int> status) {
  if (!status || !WIFEXITED(*status)) return std::nullopt;
  return WEXITSTATUS(*status);
}

inline std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// The first complete line of the file at `path` starting with `prefix`,
// waiting up to `timeout` for it to be written.
inline std::optional<std::string> waitForLine(const std::string& path, const std::string& prefix,
                                              std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const std::string text = readFile(path);
    const size_t complete = text.rfind('\n');
    if (complete != std::string::npos) {
      for (const auto& line : lines(text.substr(0, complete + 1))) {
        if (line.rfind(prefix, 0) == 0) return line;
      }
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(5ms);
  }
}

// "a=1 b=two" -> {a: "1", b: "two"}.
inline std::map<std::string, std::string> parseKeyValues(const std::string& line) {
  std::map<std::string, std::string> kv;
  std::istringstream in(line);
  for (std::string word; in >> word;) {
    const size_t eq = word.find('=');
    if (eq != std::string::npos) kv[word.substr(0, eq)] = word.substr(eq + 1);
  }
  return kv;
}

// kv[key], or "<no KEY>" so a missing key fails an EXPECT_EQ readably.
inline std::string field(const std::map<std::string, std::string>& kv, const std::string& key) {
  const auto it = kv.find(key);
  return it == kv.end() ? "<no " + key + ">" : it->second;
}

// The port of a "listen=IP:PORT ..." line; 0 if there is none.
inline uint16_t listenPort(const std::string& line) {
  const auto kv = parseKeyValues(line);
  const auto it = kv.find("listen");
  if (it == kv.end()) return 0;
  const size_t colon = it->second.rfind(':');
  if (colon == std::string::npos) return 0;
  return static_cast<uint16_t>(std::stoul(it->second.substr(colon + 1)));
}

// A server app started with --port 0 on loopback: waits for its listen line.
struct RunningServer {
  ChildProcess process;
  uint16_t port = 0;
  std::string outPath;
  std::string errPath;
};

inline RunningServer startServer(const TempDir& dir, const std::string& name, std::vector<std::string> argv) {
  RunningServer s;
  s.outPath = dir.file(name + ".out");
  s.errPath = dir.file(name + ".err");
  s.process = ChildProcess::startLogged(argv, s.outPath, s.errPath);
  if (!s.process.started()) return s;
  if (const auto line = waitForLine(s.outPath, "listen=", 10s)) s.port = listenPort(*line);
  return s;
}

}  // namespace mknet::testing
