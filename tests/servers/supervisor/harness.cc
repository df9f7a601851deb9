#include "tests/servers/supervisor/harness.h"

#include <fcntl.h>
#include <kj/async-io.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "ipc/rpc_client.h"
#include "ipc/schema/supervisor.capnp.h"

#ifndef MKNET_SUPERVISOR_BIN
#error "MKNET_SUPERVISOR_BIN must be defined by the build"
#endif

namespace mknet::supervisor::test {

std::optional<std::vector<ProcSnap>> queryStatus(const std::string& path) {
  std::optional<std::vector<ProcSnap>> result;
  // One kj event loop per call, on the calling thread, gone before return.
  kj::runCatchingExceptions([&]() {
    auto io = kj::setupAsyncIo();
    auto client = ipc::RpcClient::connect(io, path);
    if (!client) return;
    auto sup = (*client)->bootstrap<schema::Supervisor>();
    auto resp = sup.statusRequest().send().wait(io.waitScope);
    std::vector<ProcSnap> out;
    for (auto p : resp.getProcesses()) {
      ProcSnap s;
      s.name = p.getName().cStr();
      s.role = p.getRole() == schema::ProcessRole::STACK ? "stack" : "driver";
      s.pid = static_cast<pid_t>(p.getPid());
      s.running = p.getRunning();
      s.restarts = p.getRestarts();
      auto e = p.getLastExit();
      switch (e.getKind()) {
        case schema::ExitInfo::Kind::NONE:
          s.exitKind = "none";
          break;
        case schema::ExitInfo::Kind::EXITED:
          s.exitKind = "exited";
          break;
        case schema::ExitInfo::Kind::SIGNALED:
          s.exitKind = "signaled";
          break;
        case schema::ExitInfo::Kind::START_FAILED:
          s.exitKind = "start_failed";
          break;
      }
      s.exitCode = e.getCode();
      s.exitSignal = e.getSignal();
      s.exitText = e.getText().cStr();
      s.exitRanMs = e.getRanMs();
      s.uptimeMs = p.getUptimeMs();
      s.nextRestartMs = p.getNextRestartMs();
      for (auto a : p.getArgv()) s.argv.emplace_back(a.cStr());
      for (auto st : p.getRecentStarts())
        s.starts.push_back({st.getAtMs(), st.getDelayMs(), static_cast<pid_t>(st.getPid())});
      out.push_back(std::move(s));
    }
    result = std::move(out);
  });
  return result;
}

int runCommand(const Argv& argv, std::chrono::milliseconds timeout, std::string* output) {
  char tmpl[] = "/tmp/mks-cmd-XXXXXX";
  int outFd = ::mkstemp(tmpl);
  if (outFd < 0) return -1;
  ::unlink(tmpl);
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(outFd);
    return -1;
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::dup2(outFd, 1);
    ::dup2(outFd, 2);
    std::vector<char*> cargv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    ::execvp(cargv[0], cargv.data());
    ::_exit(127);
  }
  int status = 0, rc = -2;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  if (output != nullptr) {
    output->clear();
    ::lseek(outFd, 0, SEEK_SET);
    char buf[4096];
    ssize_t n;
    while ((n = ::read(outFd, buf, sizeof buf)) > 0) output->append(buf, static_cast<size_t>(n));
  }
  ::close(outFd);
  return rc;
}

std::string readFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool pidAlive(pid_t pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  // A zombie has not been reaped yet, but it is dead.
  std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
  auto paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] != 'Z';
}

TempDir::TempDir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + "-" + std::to_string(::getpid()) + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) != nullptr) path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!path_.empty()) std::filesystem::remove_all(path_, ec);
}

SupervisorRun::SupervisorRun(const std::string& runtimeDir, const Argv& args, std::string logPath)
    : dir_(runtimeDir), logPath_(logPath.empty() ? runtimeDir + "/supervisor.log" : std::move(logPath)) {
  Argv argv = {MKNET_SUPERVISOR_BIN, "--runtime-dir", dir_};
  argv.insert(argv.end(), args.begin(), args.end());
  int logFd = ::open(logPath_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    if (logFd >= 0) {
      ::dup2(logFd, 1);
      ::dup2(logFd, 2);
    }
    std::vector<char*> cargv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    ::execv(cargv[0], cargv.data());
    ::_exit(127);
  }
  if (logFd >= 0) ::close(logFd);
  pid_ = pid > 0 ? pid : 0;
  reaped_ = pid_ == 0;
}

SupervisorRun::~SupervisorRun() {
  if (!reaped_) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status_, 0);
    reaped_ = true;
  }
  // Its children die with it (PR_SET_PDEATHSIG); in case one did not, by PID.
  // Only PIDs still showing the test child or a sleep are touched.
  for (pid_t p : seen_) {
    if (!pidAlive(p)) continue;
    std::string cmd = readFile("/proc/" + std::to_string(p) + "/cmdline");
    if (cmd.find("mknet-") != std::string::npos) ::kill(p, SIGKILL);
  }
}

void SupervisorRun::remember(const std::vector<ProcSnap>& snaps) {
  for (const auto& s : snaps) {
    if (s.pid != 0 && std::find(seen_.begin(), seen_.end(), s.pid) == seen_.end()) seen_.push_back(s.pid);
  }
}

bool SupervisorRun::waitReady(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (status()) return true;
    if (wait(0ms)) return false;  // it exited
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

std::optional<std::vector<ProcSnap>> SupervisorRun::status() {
  auto s = queryStatus(socket());
  if (s) remember(*s);
  return s;
}

std::optional<ProcSnap> SupervisorRun::process(const std::string& name) {
  auto s = status();
  if (!s) return std::nullopt;
  for (auto& p : *s)
    if (p.name == name) return p;
  return std::nullopt;
}

std::optional<ProcSnap> SupervisorRun::waitFor(const std::string& name,
                                               const std::function<bool(const ProcSnap&)>& pred,
                                               std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto p = process(name);
    if (p && pred(*p)) return p;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(20ms);
  }
}

std::optional<int> SupervisorRun::wait(std::chrono::milliseconds timeout) {
  if (reaped_) return status_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    pid_t r = ::waitpid(pid_, &status_, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      return status_;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(10ms);
  }
}

void SupervisorRun::signal(int sig) {
  if (!reaped_) ::kill(pid_, sig);
}

}  // namespace mknet::supervisor::test
