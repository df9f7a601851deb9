#include "tests/integration/testbed.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>
#include <utility>

#include <gtest/gtest.h>

extern char** environ;

namespace mknet::itest {

namespace {

std::atomic<int> gNextId{0};

int decodeStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// argv[0] as an absolute path: PATH is searched here, before the fork, so the
// child only calls async-signal-safe functions (the parent has threads).
std::string resolve(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::string p = path != nullptr ? path : "/usr/sbin:/usr/bin:/sbin:/bin";
  std::stringstream ss(p);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    std::string full = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(full.c_str(), X_OK) == 0) return full;
  }
  return name;
}

// The test's environment with `extra` ("NAME=value") added or replacing.
std::vector<std::string> mergedEnv(const Env& extra) {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string s = *e;
    std::string name = s.substr(0, s.find('='));
    bool replaced = false;
    for (const auto& x : extra)
      if (x.substr(0, x.find('=')) == name) replaced = true;
    if (!replaced) env.push_back(std::move(s));
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

// fork + execve with stdout/stderr to `outFd` and stdin from /dev/null. The
// child dies with SIGKILL when the forking thread dies.
pid_t spawn(const Argv& argv, int outFd, const Env& extra) {
  if (argv.empty()) return -1;
  std::string exe = resolve(argv[0]);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> envStrings = mergedEnv(extra);
  std::vector<char*> envp;
  for (auto& e : envStrings) envp.push_back(e.data());
  envp.push_back(nullptr);
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0) return -1;
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
    if (::getppid() != parent) _exit(126);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::dup2(devnull, 0);
    ::dup2(outFd, 1);
    ::dup2(outFd, 2);
    ::syscall(SYS_close_range, 3u, ~0u, 0u);  // no test fd leaks into the child
    ::execve(exe.c_str(), args.data(), envp.data());
    _exit(127);
  }
  ::close(devnull);
  return pid;
}

}  // namespace

bool writeRandomFile(const std::string& path, size_t bytes) {
  std::ofstream out(path, std::ios::binary);
  std::vector<char> buf(1 << 20);
  while (bytes > 0) {
    size_t n = std::min(bytes, buf.size());
    for (size_t off = 0; off < n;) {
      ssize_t got = ::getrandom(buf.data() + off, n - off, 0);
      if (got <= 0) return false;
      off += static_cast<size_t>(got);
    }
    out.write(buf.data(), static_cast<std::streamsize>(n));
    bytes -= n;
  }
  return static_cast<bool>(out);
}

CommandResult runCommand(const Argv& argv, std::chrono::milliseconds timeout, const Env& env) {
  CommandResult r;
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return r;
  pid_t pid = spawn(argv, p[1], env);
  ::close(p[1]);
  if (pid < 0) {
    ::close(p[0]);
    return r;
  }
  ::fcntl(p[0], F_SETFL, O_NONBLOCK);
  auto drain = [&] {
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(p[0], buf, sizeof buf);
      if (n > 0) {
        r.output.append(buf, static_cast<size_t>(n));
        continue;
      }
      return n == 0;  // true: EOF
    }
  };
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    pollfd pfd{p[0], POLLIN, 0};
    ::poll(&pfd, 1, 10);
    drain();
    int status = 0;
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) {
      // Whatever is still in the pipe; a grandchild that kept it open is not
      // waited for.
      drain();
      r.status = decodeStatus(status);
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      drain();
      r.status = -2;
      r.output += "\n[killed after " + std::to_string(timeout.count()) + " ms]\n";
      break;
    }
  }
  ::close(p[0]);
  return r;
}

// ---------------------------------------------------------------- Process

Process::Process(const Argv& argv, std::string logFile, const Env& env) : log_(std::move(logFile)) {
  int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  pid_t pid = spawn(argv, fd, env);
  ::close(fd);
  if (pid > 0) {
    pid_ = pid;
    reaped_ = false;
  }
}

Process::~Process() { kill(); }

Process::Process(Process&& o) noexcept
    : pid_(std::exchange(o.pid_, 0)), reaped_(std::exchange(o.reaped_, true)), status_(o.status_),
      log_(std::move(o.log_)) {}

Process& Process::operator=(Process&& o) noexcept {
  if (this != &o) {
    kill();
    pid_ = std::exchange(o.pid_, 0);
    reaped_ = std::exchange(o.reaped_, true);
    status_ = o.status_;
    log_ = std::move(o.log_);
  }
  return *this;
}

bool Process::running() {
  if (reaped_) return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    reaped_ = true;
    status_ = decodeStatus(status);
    return false;
  }
  return true;
}

void Process::signal(int sig) {
  if (running()) ::kill(pid_, sig);
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout) {
  if (pid_ == 0) return std::nullopt;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
    std::this_thread::sleep_for(2ms);
  }
  return status_;
}

int Process::stop(std::chrono::milliseconds grace) {
  if (pid_ == 0) return -1;
  signal(SIGTERM);
  if (auto s = wait(grace)) return *s;
  kill();
  return status_;
}

void Process::kill() {
  if (reaped_) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
  status_ = decodeStatus(status);
}

std::string Process::output() const { return readFile(log_); }

std::optional<std::string> Process::waitForLine(const std::string& prefix, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::stringstream ss(output());
    std::string line;
    while (std::getline(ss, line))
      if (line.rfind(prefix, 0) == 0) return line.substr(prefix.size());
    if (!running() || std::chrono::steady_clock::now() > deadline) return std::nullopt;
    std::this_thread::sleep_for(5ms);
  }
}

// ---------------------------------------------------------------- helpers

std::map<std::string, std::string> parseKeyValues(const std::string& line) {
  std::map<std::string, std::string> kv;
  std::stringstream ss(line);
  std::string tok;
  while (ss >> tok) {
    auto eq = tok.find('=');
    if (eq != std::string::npos) kv[tok.substr(0, eq)] = tok.substr(eq + 1);
  }
  return kv;
}

std::string tail(const std::string& text, size_t chars) {
  if (text.size() <= chars) return text;
  return "[..." + std::to_string(text.size() - chars) + " bytes cut...]" + text.substr(text.size() - chars);
}

std::string lastLineWith(const std::string& output, const std::string& needle) {
  std::stringstream ss(output);
  std::string line, found;
  while (std::getline(ss, line))
    if (line.find(needle) != std::string::npos) found = line;
  return found;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string sha256File(const std::string& path) {
  auto r = runCommand({"sha256sum", path}, 60s);
  if (!r.ok() || r.output.size() < 64) return "";
  return r.output.substr(0, 64);
}

const char* Bin::stack() { return MKNET_STACK_BIN; }
const char* Bin::tapdrv() { return MKNET_TAPDRV_BIN; }
const char* Bin::ctl() { return MKNET_CTL_BIN; }
const char* Bin::echo() { return MKNET_ECHO_BIN; }
const char* Bin::echoKernel() { return MKNET_ECHO_KERNEL_BIN; }
const char* Bin::httpd() { return MKNET_HTTPD_BIN; }
const char* Bin::bulk() { return MKNET_BULK_BIN; }
const char* Bin::bulkKernel() { return MKNET_BULK_KERNEL_BIN; }
const char* Bin::sourceDir() { return MKNET_SOURCE_DIR; }
const char* Bin::buildDir() { return MKNET_BUILD_DIR; }

void record(const std::string& key, const std::string& value) {
  std::printf("[ RECORD   ] %s = %s\n", key.c_str(), value.c_str());
  std::fflush(stdout);
  ::testing::Test::RecordProperty(key, value);
}

// ---------------------------------------------------------------- stale state

namespace {

// True if what `pid` made is stale: no such process any more, or our own pid
// (a killed earlier process with the same pid; this runs before we make any).
bool pidGone(long pid) {
  if (pid == ::getpid()) return true;
  return pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

}  // namespace

void removeStaleTestState() {
  static const std::regex nsName(R"(^(mki-(\d+)-\d+|mkl-(\d+))$)");
  auto list = runCommand({"ip", "netns", "list"});
  std::stringstream ss(list.output);
  std::string line;
  std::vector<std::string> staleNs;
  while (std::getline(ss, line)) {
    std::string name = line.substr(0, line.find(' '));
    std::smatch m;
    if (!std::regex_match(name, m, nsName)) continue;
    long pid = std::stol(m[2].matched ? m[2].str() : m[3].str());
    if (pidGone(pid)) staleNs.push_back(name);
  }
  static const std::regex dirName(R"(^(mki|mkl|mkl-build)-(\d+)-[A-Za-z0-9]{6}$)");
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/tmp", ec)) {
    std::string name = entry.path().filename().string();
    std::smatch m;
    if (!std::regex_match(name, m, dirName) || !pidGone(std::stol(m[2].str()))) continue;
    if (m[1].str() == "mkl") {
      // What `deploy/mknet up` started runs detached (setsid): end it by PID.
      for (const char* f : {"supervisor.pid", "httpd.pid", "tapdrv.pid", "stack.pid"}) {
        std::string pidText = readFile(entry.path().string() + "/" + f);
        long pid = pidText.empty() ? 0 : std::atol(pidText.c_str());
        if (pid > 0 && readFile("/proc/" + std::to_string(pid) + "/cmdline").find("mknet-") != std::string::npos)
          ::kill(static_cast<pid_t>(pid), SIGKILL);
      }
    }
    std::filesystem::remove_all(entry.path(), ec);  // does not follow the build-dir symlink
  }
  for (const auto& ns : staleNs) runCommand({"ip", "netns", "del", ns});
}

// ---------------------------------------------------------------- Testbed

Testbed::Testbed(TestbedOptions options) : options_(std::move(options)) {
  static std::once_flag once;
  std::call_once(once, removeStaleTestState);
  const int id = gNextId.fetch_add(1);
  const int pid = static_cast<int>(::getpid());
  ns_ = "mki-" + std::to_string(pid) + "-" + std::to_string(id);
  tap_ = "mki" + std::to_string(pid % 10000000) + "." + std::to_string(id % 100);  // <= 15 chars
  subnet_ = 1 + (pid + 37 * id) % 250;

  std::string tmpl = "/tmp/mki-" + std::to_string(pid) + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) {
    error_ = std::string("mkdtemp: ") + std::strerror(errno);
    return;
  }
  runtimeDir_ = buf.data();
  ::chmod(runtimeDir_.c_str(), 0755);

  if (!setUpNamespace()) return;
  if (!startStack()) return;
  if (options_.startDriver && !startDriver()) return;
}

Testbed::~Testbed() {
  if (::testing::Test::HasFailure() && !runtimeDir_.empty()) {
    std::string state;
    if (stack_.pid() != 0 && !stack_.running())
      state += "mknet-stack (pid " + std::to_string(stack_.pid()) + ") had exited with status " +
               std::to_string(stack_.wait(0ms).value_or(-1)) + " (128 + signal)\n";
    std::printf("---- logs of %s (%s) ----\n%s%s\n", ns_.c_str(), runtimeDir_.c_str(), state.c_str(),
                logTails(40).c_str());
  }
  // Both must end cleanly on SIGTERM (exit status 0), the driver first as
  // `deploy/mknet down` does; a process the test killed itself is not asked.
  const bool driverRan = driver_.pid() != 0 && driver_.running();
  const bool stackRan = stack_.pid() != 0 && stack_.running();
  int driverStatus = driver_.stop(3s);
  int stackStatus = stack_.stop(5s);
  if (driverRan) EXPECT_EQ(driverStatus, 0) << "mknet-tapdrv did not exit cleanly on SIGTERM";
  if (stackRan) EXPECT_EQ(stackStatus, 0) << "mknet-stack did not exit cleanly on SIGTERM";
  if (nsCreated_) {
    // The TAP first: a persistent TAP must not outlive its namespace.
    runCommand({"ip", "-n", ns_, "link", "del", tap_});
    runCommand({"ip", "netns", "del", ns_});
  }
  if (!runtimeDir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(runtimeDir_, ec);
  }
}

bool Testbed::setUpNamespace() {
  auto step = [this](const Argv& argv) {
    auto r = runCommand(argv);
    if (!r.ok()) {
      std::string cmd;
      for (const auto& a : argv) cmd += a + " ";
      error_ = "'" + cmd + "' failed (" + std::to_string(r.status) + "): " + r.output;
    }
    return r.ok();
  };
  if (!step({"ip", "netns", "add", ns_})) return false;
  nsCreated_ = true;
  // No IPv6 in the namespace: no router solicitations or MLD reports, so the
  // only frames the stack sees are the ones the tests cause.
  return step(inNs({"sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1"})) &&
         step({"ip", "-n", ns_, "link", "set", "lo", "up"}) &&
         step({"ip", "-n", ns_, "tuntap", "add", "mode", "tap", "name", tap_}) &&
         step({"ip", "-n", ns_, "link", "set", tap_, "up"}) &&
         step({"ip", "-n", ns_, "addr", "add", linuxIp() + "/24", "dev", tap_});
}

bool Testbed::startStack() {
  Argv argv = {Bin::stack(), "--ip", mknetIp() + "/24", "--mac", mac(), "--runtime-dir", runtimeDir_,
               "--log-level", options_.logLevel};
  if (options_.poolBuffers != 0) {
    argv.push_back("--pool-buffers");
    argv.push_back(std::to_string(options_.poolBuffers));
  }
  stack_ = Process(argv, file("stack.log"));
  if (stack_.pid() == 0) {
    error_ = "cannot start mknet-stack";
    return false;
  }
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!stack_.running()) {
      error_ = "mknet-stack exited at start-up:\n" + logTails();
      return false;
    }
    if (::access(stackSocket().c_str(), F_OK) == 0 && status()) return true;
    std::this_thread::sleep_for(20ms);
  }
  error_ = "mknet-stack did not answer on " + stackSocket() + " within 10 s:\n" + logTails();
  return false;
}

bool Testbed::startDriver() {
  driver_ = Process(inNs({Bin::tapdrv(), "--tap", tap_, "--stack-socket", stackSocket(), "--mac", mac()}),
                    file("tapdrv.log"));
  if (driver_.pid() == 0) {
    error_ = "cannot start mknet-tapdrv";
    return false;
  }
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!driver_.running()) {
      error_ = "mknet-tapdrv exited:\n" + logTails();
      return false;
    }
    auto st = status();
    if (st && (*st)["link_up"] == 1 && (*st)["driver_pid"] == static_cast<uint64_t>(driver_.pid())) return true;
    std::this_thread::sleep_for(20ms);
  }
  error_ = "link not up within 10 s:\n" + logTails();
  return false;
}

bool Testbed::stopDriver() {
  driver_.signal(SIGTERM);
  if (!driver_.wait(5s)) {
    driver_.kill();
    return false;
  }
  return waitCounter("link_up", 0, 5s);
}

Argv Testbed::inNs(const Argv& argv) const {
  Argv v = {"ip", "netns", "exec", ns_};
  v.insert(v.end(), argv.begin(), argv.end());
  return v;
}

CommandResult Testbed::runInNs(const Argv& argv, std::chrono::milliseconds timeout) const {
  return runCommand(inNs(argv), timeout);
}

CommandResult Testbed::runApp(const Argv& argv, std::chrono::milliseconds timeout) const {
  return runCommand(argv, timeout, appEnv());
}

Process Testbed::spawnInNs(const Argv& argv, const std::string& logName) const {
  return Process(inNs(argv), file(logName));
}

Process Testbed::spawnApp(const Argv& argv, const std::string& logName) const {
  return Process(argv, file(logName), appEnv());
}

int Testbed::socketInNs(int domain, int type, int protocol) const {
  int fd = -1, err = 0;
  // setns() moves only the calling thread, so a short-lived thread does it;
  // the socket stays in the namespace it was created in.
  std::thread t([&] {
    int nsFd = ::open(("/run/netns/" + ns_).c_str(), O_RDONLY | O_CLOEXEC);
    if (nsFd < 0 || ::setns(nsFd, CLONE_NEWNET) != 0) {
      err = errno;
      if (nsFd >= 0) ::close(nsFd);
      return;
    }
    ::close(nsFd);
    fd = ::socket(domain, type | SOCK_CLOEXEC, protocol);
    err = errno;
  });
  t.join();
  if (fd < 0) errno = err;
  return fd;
}

std::optional<std::map<std::string, uint64_t>> Testbed::status() const {
  auto r = runCommand({Bin::ctl(), "--socket", stackSocket(), "status", "--json"}, 5s);
  if (!r.ok()) return std::nullopt;
  const std::string& j = r.output;
  // The driver object is the only nested one; its keys get a driver_ prefix.
  size_t dBegin = j.find("\"driver\":{"), dEnd = std::string::npos;
  if (dBegin != std::string::npos) dEnd = j.find('}', dBegin);
  std::map<std::string, uint64_t> m;
  static const std::regex kv(R"re("([A-Za-z0-9_]+)":(\d+|true|false))re");
  for (auto it = std::sregex_iterator(j.begin(), j.end(), kv); it != std::sregex_iterator(); ++it) {
    const auto& match = *it;
    size_t pos = static_cast<size_t>(match.position(0));
    std::string key = match[1];
    if (dBegin != std::string::npos && pos > dBegin && pos < dEnd) key = "driver_" + key;
    std::string v = match[2];
    m[key] = v == "true" ? 1 : v == "false" ? 0 : std::stoull(v);
  }
  if (m.count("driver_link_up")) m["link_up"] = m["driver_link_up"];
  if (m.count("driver_registrations")) m["registrations"] = m["driver_registrations"];
  if (m.empty()) return std::nullopt;
  return m;
}

std::optional<uint64_t> Testbed::counter(const std::string& name) const {
  auto st = status();
  if (!st) return std::nullopt;
  auto it = st->find(name);
  if (it == st->end()) return std::nullopt;
  return it->second;
}

bool Testbed::waitCounter(const std::string& name, uint64_t value, std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto v = counter(name);
    if (v && *v == value) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
}

bool Testbed::pingOk(int count) const {
  auto r = runInNs({"ping", "-c", std::to_string(count), "-i", "0.2", "-W", "2", "-q", mknetIp()}, 30s);
  return r.ok() &&
         r.output.find(std::to_string(count) + " packets transmitted, " + std::to_string(count) + " received") !=
             std::string::npos;
}

std::string Testbed::leftovers(std::chrono::milliseconds timeout) {
  if (!stack_.running()) return "mknet-stack died (exit status " + std::to_string(stack_.wait(0ms).value_or(-1)) + ")";
  // First every app is gone: no session, no socket in the sessions or in lwIP.
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string what;
  for (;;) {
    auto st = status();
    what.clear();
    if (!st) {
      what = "the stack does not answer";
    } else {
      for (const char* k : {"sessions", "sockets", "engine_sockets"})
        if ((*st)[k] != 0) what += std::string(k) + "=" + std::to_string((*st)[k]) + " ";
    }
    if (what.empty()) break;
    if (std::chrono::steady_clock::now() > deadline) return what;
    std::this_thread::sleep_for(50ms);
  }
  // Then the driver goes, so the stack takes back what it lent on rxFree:
  // every buffer must be free again (none stuck in lwIP or a lost path).
  if (driver_.running() && !stopDriver()) return "the driver did not stop";
  deadline = std::chrono::steady_clock::now() + 5s;
  for (;;) {
    auto st = status();
    if (!st) return "the stack does not answer";
    if ((*st)["pool_free"] == (*st)["pool_buffers"]) return "";
    if (std::chrono::steady_clock::now() > deadline)
      return "pool_free=" + std::to_string((*st)["pool_free"]) + " of " + std::to_string((*st)["pool_buffers"]) +
             " with no driver attached";
    std::this_thread::sleep_for(50ms);
  }
}

std::string Testbed::peerFaults() const {
  auto st = status();
  if (!st) return "the stack does not answer";
  std::string faults;
  for (const auto& [name, value] : *st) {
    const bool fault = name.rfind("rx_drop_", 0) == 0 || name == "bad_descriptors" || name == "corrupt_rings" ||
                       name == "session_bad_notify" || name == "session_corrupt_rings" || name == "bad_tx_records";
    if (fault && value != 0) faults += name + "=" + std::to_string(value) + " ";
  }
  return faults;
}

std::string Testbed::logTails(size_t lines) const {
  auto tail = [lines](const std::string& path) {
    std::stringstream ss(readFile(path));
    std::deque<std::string> last;
    std::string line;
    while (std::getline(ss, line)) {
      last.push_back(line);
      if (last.size() > lines) last.pop_front();
    }
    std::string out;
    for (auto& l : last) out += "  " + l + "\n";
    return out;
  };
  return "stack.log:\n" + tail(file("stack.log")) + "tapdrv.log:\n" + tail(file("tapdrv.log"));
}

}  // namespace mknet::itest
