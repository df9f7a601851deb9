#include "servers/supervisor/supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "servers/supervisor/spawn.h"

namespace mknet::supervisor {
namespace {

constexpr size_t kRecentStarts = 32;

const char* roleName(Role r) { return r == Role::kStack ? "stack" : "driver"; }

std::string joinArgv(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) {
    if (!s.empty()) s += ' ';
    bool plain = !a.empty() && a.find_first_of(" \t\n'\"\\$`") == std::string::npos;
    s += plain ? a : "'" + a + "'";
  }
  return s;
}

}  // namespace

// One supervised process: its spec, its current instance (pid != 0 while it
// runs and has not been reaped), and its history.
struct Supervisor::Child {
  Child(ProcessSpec s, BackoffPolicy policy) : spec(std::move(s)), backoff(policy) {}

  ProcessSpec spec;
  Backoff backoff;
  pid_t pid = 0;  // ours until reaped: no PID-reuse race when we signal it
  Clock::time_point startedAt{};
  uint32_t starts = 0;  // attempts, including failed ones

  schema::ExitInfo::Kind exitKind = schema::ExitInfo::Kind::NONE;
  int exitCode = 0, exitSignal = 0;
  std::string exitText;
  uint64_t exitRanMs = 0, exitAtMs = 0;

  struct Start {
    uint64_t atMs, delayMs;
    pid_t pid;
  };
  std::deque<Start> recent;     // at most kRecentStarts
  uint64_t pendingDelayMs = 0;  // the delay the next start waits (for its record)

  bool restartPending = false;
  Clock::time_point restartAt{};
  uint64_t restartGeneration = 0;  // only the timer of the latest schedule may start it
};

sigset_t Supervisor::handledSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, s);
  return set;
}

Result<ipc::UniqueFd> Supervisor::openSignalFd() {
  sigset_t set = handledSignals();
  if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0) return errnoError("blocking signals");
  ipc::UniqueFd fd(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!fd) return errnoError("signalfd");
  return fd;
}

Supervisor::Supervisor(kj::AsyncIoContext& io, Options options, ipc::UniqueFd signalFd)
    : timer_(io.provider->getTimer()),
      options_(std::move(options)),
      signalFd_(std::move(signalFd)),
      signalObserver_(io.unixEventPort, signalFd_.get(),
                      kj::UnixEventPort::FdObserver::OBSERVE_READ),
      startedAt_(Clock::now()),
      restartTimers_(*this) {
  for (const auto& spec : options_.processes)
    children_.push_back(std::make_unique<Child>(spec, options_.backoff));
}

Supervisor::~Supervisor() {
  // Normally run() has stopped everything. If we are torn down early (an
  // exception), leave no child behind: SIGKILL by PID and reap.
  for (auto& c : children_) {
    if (c->pid == 0) continue;
    ::kill(c->pid, SIGKILL);
    int status;
    while (::waitpid(c->pid, &status, 0) < 0 && errno == EINTR) {
    }
    removePidFile(*c);
  }
}

uint64_t Supervisor::msSinceStart(Clock::time_point t) const {
  if (t < startedAt_) return 0;
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(t - startedAt_).count());
}

kj::Promise<void> Supervisor::run() {
  auto paf = kj::newPromiseAndFulfiller<void>();
  stopRequested_ = kj::mv(paf.fulfiller);
  // Anything that arrived before the loop ran (a SIGTERM right at start-up)
  // is handled on the first turn.
  drainSignals();
  signalTask_ = watchSignals().eagerlyEvaluate([](kj::Exception&& e) {
    spdlog::error("signal handling failed: {}", e.getDescription().cStr());
  });
  // Once a second: a runtime dir removed under us (a cleanup that did not know
  // about the supervisor) leaves nothing to supervise for: no logs, no PID
  // files, an unreachable socket. Stop rather than run on unseen.
  dirTask_ = watchRuntimeDir().eagerlyEvaluate(nullptr);
  // The stack first, then each driver (children_ is in that order). A driver
  // that finds no stack yet retries its registration (mknet-tapdrv: 10 s).
  for (auto& c : children_) {
    if (stopping_) break;
    start(*c);
  }
  return paf.promise
      .then([this]() {
        spdlog::info("stopping: drivers first");
        return stopRole(Role::kDriver);
      })
      .then([this]() {
        spdlog::info("stopping: the stack");
        return stopRole(Role::kStack);
      })
      .then([]() { spdlog::info("every child has stopped; exiting"); });
}

void Supervisor::stop() {
  if (stopping_) return;
  stopping_ = true;
  for (auto& c : children_) {
    c->restartPending = false;  // a scheduled restart's timer now does nothing
    ++c->restartGeneration;
  }
  if (stopRequested_) stopRequested_->fulfill();
}

void Supervisor::start(Child& c) {
  c.restartPending = false;
  // A runtime dir that was removed under us (a `down` of an older launcher, a
  // test's cleanup) leaves nothing to supervise for: no logs, no PID files,
  // an unreachable socket. Stop instead of restarting into it forever.
  if (runtimeDirGone()) return;
  const uint64_t delayMs = c.pendingDelayMs;
  c.pendingDelayMs = 0;
  ++c.starts;
  const auto now = Clock::now();

  ipc::UniqueFd log;
  std::string logPath = options_.runtimeDir + "/" + c.spec.name + ".log";
  Result<pid_t> pid = makeError(0, "");
  if (options_.childLogs) {
    log.reset(::open(logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (!log) pid = errnoError("open " + logPath);
  }
  if (!options_.childLogs || log) pid = spawnProcess(c.spec.argv, log ? log.get() : -1);

  c.recent.push_back({msSinceStart(now), delayMs, pid ? *pid : 0});
  if (c.recent.size() > kRecentStarts) c.recent.pop_front();

  if (!pid) {
    c.exitKind = schema::ExitInfo::Kind::START_FAILED;
    c.exitCode = pid.error().code;
    c.exitSignal = 0;
    c.exitText = pid.error().message();
    c.exitRanMs = 0;
    c.exitAtMs = msSinceStart(now);
    auto delay = c.backoff.next(std::chrono::milliseconds(0));
    spdlog::error("{} ({}): cannot start: {}; next attempt in {} ms", c.spec.name,
                  roleName(c.spec.role), c.exitText, delay.count());
    scheduleRestart(c, delay);
    return;
  }
  c.pid = *pid;
  c.startedAt = now;
  writePidFile(c);
  if (c.starts == 1) {
    spdlog::info("started {} ({}, pid {}): {}", c.spec.name, roleName(c.spec.role), c.pid,
                 joinArgv(c.spec.argv));
  } else {
    spdlog::info("restarted {} ({}, pid {}), restart {}", c.spec.name, roleName(c.spec.role), c.pid,
                 c.starts - 1);
  }
}

void Supervisor::scheduleRestart(Child& c, std::chrono::milliseconds delay) {
  if (stopping_) return;
  c.restartPending = true;
  c.pendingDelayMs = static_cast<uint64_t>(delay.count());
  c.restartAt = Clock::now() + delay;
  // Through the loop even when the delay is 0: start() never recurses into
  // itself, and a stop signal already queued is seen first. A timer is
  // cancelled by bumping the generation (stop(), or a newer schedule), not by
  // dropping its promise, which may be the one running.
  const uint64_t generation = ++c.restartGeneration;
  restartTimers_.add(
      timer_.afterDelay(delay.count() * kj::MILLISECONDS).then([this, &c, generation]() {
        if (stopping_ || !c.restartPending || generation != c.restartGeneration) return;
        start(c);
      }));
}

void Supervisor::onExit(Child& c, int status) {
  const auto now = Clock::now();
  const auto ran = std::chrono::duration_cast<std::chrono::milliseconds>(now - c.startedAt);
  const pid_t pid = c.pid;
  c.pid = 0;
  removePidFile(c);
  if (WIFSIGNALED(status)) {
    c.exitKind = schema::ExitInfo::Kind::SIGNALED;
    c.exitCode = 0;
    c.exitSignal = WTERMSIG(status);
  } else {
    c.exitKind = schema::ExitInfo::Kind::EXITED;
    c.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    c.exitSignal = 0;
  }
  c.exitText = describeWaitStatus(status);
  c.exitRanMs = static_cast<uint64_t>(ran.count());
  c.exitAtMs = msSinceStart(now);

  if (stopping_) {
    spdlog::info("{} ({}, pid {}) stopped: {}", c.spec.name, roleName(c.spec.role), pid,
                 c.exitText);
    if (phaseDone_ && c.spec.role == stoppingRole_ && !anyRunning(stoppingRole_)) {
      auto done = kj::mv(phaseDone_);
      done->fulfill();
    }
    return;
  }
  auto delay = c.backoff.next(ran);
  spdlog::warn(
      "{} ({}, pid {}) died: {} after {} ms; restarting {}", c.spec.name, roleName(c.spec.role),
      pid, c.exitText, ran.count(),
      delay.count() == 0 ? std::string("at once") : "in " + std::to_string(delay.count()) + " ms");
  scheduleRestart(c, delay);
}

bool Supervisor::runtimeDirGone() {
  struct stat st {};
  if (::stat(options_.runtimeDir.c_str(), &st) == 0 || errno != ENOENT) return false;
  if (!stopping_) {
    spdlog::error("runtime dir {} is gone: stopping everything", options_.runtimeDir);
    stop();
  }
  return true;
}

kj::Promise<void> Supervisor::watchRuntimeDir() {
  return timer_.afterDelay(1 * kj::SECONDS).then([this]() -> kj::Promise<void> {
    if (runtimeDirGone()) return kj::READY_NOW;
    return watchRuntimeDir();
  });
}

void Supervisor::taskFailed(kj::Exception&& exception) {
  spdlog::error("restart timer failed: {}", exception.getDescription().cStr());
}

kj::Promise<void> Supervisor::watchSignals() {
  return signalObserver_.whenBecomesReadable().then([this]() {
    drainSignals();
    return watchSignals();
  });
}

void Supervisor::drainSignals() {
  bool stopAsked = false;
  for (;;) {
    signalfd_siginfo info[8];
    ssize_t n = ::read(signalFd_.get(), info, sizeof info);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EAGAIN: drained (edge-triggered observer: read until here)
    for (size_t i = 0; i < static_cast<size_t>(n) / sizeof info[0]; ++i) {
      int sig = static_cast<int>(info[i].ssi_signo);
      if (sig == SIGCHLD) continue;  // reaped below, whoever it was for
      if (stopping_) {
        spdlog::info("signal {} ({}): already stopping", sig, ::strsignal(sig));
      } else {
        spdlog::info("signal {} ({}) from pid {}: stopping everything", sig, ::strsignal(sig),
                     info[i].ssi_pid);
      }
      stopAsked = true;
    }
  }
  // SIGCHLDs coalesce: always reap everything that has exited.
  reapChildren();
  if (stopAsked) stop();
}

void Supervisor::reapChildren() {
  for (;;) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid < 0 && errno == EINTR) continue;
    if (pid <= 0) return;  // 0: none exited; ECHILD: no children
    bool known = false;
    for (auto& c : children_) {
      if (c->pid == pid) {
        onExit(*c, status);
        known = true;
        break;
      }
    }
    if (!known) spdlog::debug("reaped unknown child {} ({})", pid, describeWaitStatus(status));
  }
}

bool Supervisor::anyRunning(Role role) const {
  for (const auto& c : children_)
    if (c->spec.role == role && c->pid != 0) return true;
  return false;
}

kj::Promise<void> Supervisor::stopRole(Role role) {
  if (!anyRunning(role)) return kj::READY_NOW;
  for (auto& c : children_) {
    if (c->spec.role != role || c->pid == 0) continue;
    spdlog::info("stopping {} ({}, pid {}): SIGTERM", c->spec.name, roleName(role), c->pid);
    if (::kill(c->pid, SIGTERM) != 0)
      spdlog::warn("kill({}, SIGTERM): {}", c->pid, std::strerror(errno));
  }
  auto paf = kj::newPromiseAndFulfiller<void>();
  phaseDone_ = kj::mv(paf.fulfiller);
  stoppingRole_ = role;
  auto timeout = options_.stopTimeout;
  auto killer = timer_.afterDelay(timeout.count() * kj::MILLISECONDS)
                    .then([this, role, timeout]() -> kj::Promise<void> {
                      for (auto& c : children_) {
                        if (c->spec.role != role || c->pid == 0) continue;
                        spdlog::warn("{} ({}, pid {}) did not stop within {} ms: SIGKILL",
                                     c->spec.name, roleName(role), c->pid, timeout.count());
                        ::kill(c->pid, SIGKILL);
                      }
                      return kj::NEVER_DONE;  // the reaping ends the phase
                    });
  return paf.promise.exclusiveJoin(kj::mv(killer));
}

void Supervisor::writePidFile(const Child& c) {
  std::string path = options_.runtimeDir + "/" + c.spec.name + ".pid";
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "we");
  if (f == nullptr) {
    spdlog::warn("cannot write {}: {}", tmp, std::strerror(errno));
    return;
  }
  std::fprintf(f, "%d\n", static_cast<int>(c.pid));
  bool ok = std::fclose(f) == 0;
  // rename: a reader sees the old PID or the new one, never half a file.
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    spdlog::warn("cannot write {}: {}", path, std::strerror(errno));
    ::unlink(tmp.c_str());
  }
}

void Supervisor::removePidFile(const Child& c) {
  std::string path = options_.runtimeDir + "/" + c.spec.name + ".pid";
  ::unlink(path.c_str());
}

void Supervisor::fillStatus(capnp::List<schema::ProcessStatus>::Builder out) const {
  const auto now = Clock::now();
  for (size_t i = 0; i < children_.size() && i < out.size(); ++i) {
    const Child& c = *children_[i];
    auto p = out[static_cast<unsigned>(i)];
    p.setName(c.spec.name);
    p.setRole(c.spec.role == Role::kStack ? schema::ProcessRole::STACK
                                          : schema::ProcessRole::DRIVER);
    p.setPid(static_cast<uint32_t>(c.pid));
    p.setRunning(c.pid != 0);
    p.setRestarts(c.starts > 0 ? c.starts - 1 : 0);
    auto e = p.initLastExit();
    e.setKind(c.exitKind);
    e.setCode(c.exitCode);
    e.setSignal(c.exitSignal);
    e.setText(c.exitKind == schema::ExitInfo::Kind::NONE ? "" : c.exitText);
    e.setRanMs(c.exitRanMs);
    e.setAtMs(c.exitAtMs);
    if (c.pid != 0) {
      p.setUptimeMs(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::milliseconds>(now - c.startedAt).count()));
    }
    if (c.restartPending && !stopping_ && c.restartAt > now) {
      p.setNextRestartMs(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::milliseconds>(c.restartAt - now).count()));
    }
    auto argv = p.initArgv(static_cast<unsigned>(c.spec.argv.size()));
    for (size_t j = 0; j < c.spec.argv.size(); ++j)
      argv.set(static_cast<unsigned>(j), c.spec.argv[j]);
    auto starts = p.initRecentStarts(static_cast<unsigned>(c.recent.size()));
    for (size_t j = 0; j < c.recent.size(); ++j) {
      auto s = starts[static_cast<unsigned>(j)];
      s.setAtMs(c.recent[j].atMs);
      s.setDelayMs(c.recent[j].delayMs);
      s.setPid(static_cast<uint32_t>(c.recent[j].pid));
    }
  }
}

kj::Promise<void> SupervisorService::status(StatusContext context) {
  auto out = context.getResults().initProcesses(static_cast<unsigned>(supervisor_.processCount()));
  supervisor_.fillStatus(out);
  return kj::READY_NOW;
}

}  // namespace mknet::supervisor
