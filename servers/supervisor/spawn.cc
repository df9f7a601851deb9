#include "servers/supervisor/spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "ipc/unique_fd.h"

namespace mknet::supervisor {
namespace {

// What the child reports through the error pipe when it cannot exec.
struct ChildFailure {
  int stage;  // index into kStages
  int error;  // errno
};
constexpr const char* kStages[] = {"redirect stdio for", "set the parent-death signal of", "exec"};

// From here to exec only async-signal-safe calls: the supervisor is
// single-threaded, but the rule keeps this correct if that ever changes.
[[noreturn]] void childAfterFork(char* const* argv, int outFd, int errFd, pid_t parent) {
  auto fail = [&](int stage) {
    ChildFailure f{stage, errno};
    ssize_t n = ::write(errFd, &f, sizeof f);
    (void)n;
    ::_exit(127);
  };
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; ++s) ::sigaction(s, &dfl, nullptr);  // SIGKILL/SIGSTOP refuse: fine
  ::setpgid(0, 0);

  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(1);
  // The supervisor may have died between fork() and prctl(): then no signal
  // will ever come, so leave now.
  if (::getppid() != parent) ::_exit(1);

  int devNull = ::open("/dev/null", O_RDONLY);
  if (devNull < 0 || ::dup2(devNull, 0) < 0) fail(0);
  if (outFd >= 0 && (::dup2(outFd, 1) < 0 || ::dup2(outFd, 2) < 0)) fail(0);
  // Nothing of the supervisor's leaks into the child, whatever flags the
  // fds were opened with (the error pipe is close-on-exec already).
  ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
  ::execvp(argv[0], argv);
  fail(2);
  ::_exit(127);
}

}  // namespace

Result<pid_t> spawnProcess(const std::vector<std::string>& argv, int outFd) {
  if (argv.empty() || argv[0].empty()) return makeError(EINVAL, "spawn: empty command");
  std::vector<char*> cargv;
  cargv.reserve(argv.size() + 1);
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);

  int pipeFds[2];
  if (::pipe2(pipeFds, O_CLOEXEC) != 0) return errnoError("pipe for spawning " + argv[0]);
  ipc::UniqueFd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);

  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return errnoError("fork for " + argv[0]);
  if (pid == 0) childAfterFork(cargv.data(), outFd, writeEnd.get(), parent);

  writeEnd.reset();
  // Either exec closes the pipe (success: read returns 0) or the child
  // writes why it failed and exits. Both happen within microseconds.
  ChildFailure f{};
  ssize_t n;
  do {
    n = ::read(readEnd.get(), &f, sizeof f);
  } while (n < 0 && errno == EINTR);
  if (n == 0) return pid;

  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (n != static_cast<ssize_t>(sizeof f) || f.stage < 0 || f.stage > 2)
    return makeError(EIO, "spawn " + argv[0] + ": the child failed before exec (" +
                              describeWaitStatus(status) + ")");
  return makeError(f.error, std::string(kStages[f.stage]) + " " + argv[0]);
}

std::string describeWaitStatus(int status) {
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char* what = ::strsignal(sig);
    return "signal " + std::to_string(sig) + " (" + (what != nullptr ? what : "?") + ")" +
           (WCOREDUMP(status) ? ", core dumped" : "");
  }
  return "wait status " + std::to_string(status);
}

}  // namespace mknet::supervisor
