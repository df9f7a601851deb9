#include "tests/drivers/tap/netns.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>
#include <utility>

namespace mknet::drivers::test {

namespace {

std::atomic<int> gNextId{0};

// fork + exec with stdout/stderr to `out` (opened before the fork: only
// async-signal-safe calls between fork and exec, as the parent has threads).
pid_t spawn(const std::vector<std::string>& argv, const std::string& out, bool append) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC);
  int fd = out.empty() ? ::open("/dev/null", O_WRONLY | O_CLOEXEC) : ::open(out.c_str(), flags, 0644);
  if (fd < 0) return -1;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::execvp(args[0], args.data());
    _exit(127);
  }
  ::close(fd);
  return pid;
}

int decode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

int runCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
               const std::string& outFile) {
  pid_t pid = spawn(argv, outFile, false);
  if (pid < 0) return -1;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return decode(status);
    if (r < 0 && errno != EINTR) return -1;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -2;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

ChildProcess::ChildProcess(const std::vector<std::string>& argv, const std::string& logFile) {
  pid_t pid = spawn(argv, logFile, true);
  if (pid > 0) {
    pid_ = pid;
    reaped_ = false;
  }
}

ChildProcess::~ChildProcess() { kill(); }

ChildProcess::ChildProcess(ChildProcess&& o) noexcept
    : pid_(std::exchange(o.pid_, 0)), reaped_(std::exchange(o.reaped_, true)), status_(o.status_) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& o) noexcept {
  if (this != &o) {
    kill();
    pid_ = std::exchange(o.pid_, 0);
    reaped_ = std::exchange(o.reaped_, true);
    status_ = o.status_;
  }
  return *this;
}

bool ChildProcess::running() {
  if (reaped_) return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    reaped_ = true;
    status_ = status;
    return false;
  }
  return true;
}

void ChildProcess::signal(int sig) {
  if (running()) ::kill(pid_, sig);
}

std::optional<int> ChildProcess::wait(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return status_;
}

void ChildProcess::kill() {
  if (reaped_) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
  status_ = status;
}

TestNetns::TestNetns() {
  int id = gNextId.fetch_add(1);
  name_ = "mkt-" + std::to_string(::getpid()) + "-" + std::to_string(id);
  subnet_ = 1 + (::getpid() + id) % 250;
  ok_ = runCommand({"ip", "netns", "add", name_}) == 0 &&
        runCommand({"ip", "-n", name_, "tuntap", "add", "mode", "tap", "name", tap_}) == 0 &&
        runCommand({"ip", "-n", name_, "link", "set", tap_, "up"}) == 0 &&
        runCommand({"ip", "-n", name_, "addr", "add", hostIp() + "/24", "dev", tap_}) == 0;
}

TestNetns::~TestNetns() {
  // The TAP first: a persistent TAP must not outlive its namespace anywhere.
  runCommand({"ip", "-n", name_, "link", "del", tap_});
  runCommand({"ip", "netns", "del", name_});
}

std::vector<std::string> TestNetns::exec(std::vector<std::string> argv) const {
  std::vector<std::string> v = {"ip", "netns", "exec", name_};
  v.insert(v.end(), argv.begin(), argv.end());
  return v;
}

ScratchDir::ScratchDir() {
  std::string tmpl = "/tmp/mkt-" + std::to_string(::getpid()) + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) != nullptr) path_ = buf.data();
}

ScratchDir::~ScratchDir() {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::optional<PingSummary> parsePing(const std::string& output) {
  PingSummary s;
  std::smatch m;
  static const std::regex counts(
      R"((\d+) packets transmitted, (\d+) received,.*?([\d.]+)% packet loss)");
  if (!std::regex_search(output, m, counts)) return std::nullopt;
  s.transmitted = std::stoi(m[1]);
  s.received = std::stoi(m[2]);
  s.lossPercent = std::stod(m[3]);
  static const std::regex rtt(R"(rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/)");
  if (std::regex_search(output, m, rtt)) {
    s.rttMinMs = std::stod(m[1]);
    s.rttAvgMs = std::stod(m[2]);
    s.rttMaxMs = std::stod(m[3]);
  }
  return s;
}

}  // namespace mknet::drivers::test
