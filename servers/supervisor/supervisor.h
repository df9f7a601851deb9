// Supervisor: starts the stack and the drivers as its own children, restarts
// whatever dies after a Backoff delay, and stops everything in order (drivers
// first, then the stack) when asked to. MINIX 3's reincarnation server is the
// model: the stack keeps the TCP state, so a driver can simply be started
// again and re-attaches by itself.
//
// Threads: one. Everything (the signalfd carrying SIGCHLD/SIGTERM/SIGINT/
// SIGHUP, the restart timers, the admin RpcServer) runs in the kj event loop
// of the thread that constructs it, which must also be the thread that lives
// as long as the process: the children's PR_SET_PDEATHSIG follows it.
#pragma once

#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "ipc/result.h"
#include "ipc/schema/supervisor.capnp.h"
#include "ipc/unique_fd.h"
#include "servers/supervisor/backoff.h"
#include "servers/supervisor/options.h"

namespace mknet::supervisor {

class Supervisor final : private kj::TaskSet::ErrorHandler {
 public:
  // The signals the supervisor handles through its signalfd. Block them in
  // every thread (before any thread is created) and pass the fd made by
  // openSignalFd() to the constructor.
  static sigset_t handledSignals();
  // Blocks handledSignals() in the calling thread and returns a non-blocking,
  // close-on-exec signalfd for them.
  static Result<ipc::UniqueFd> openSignalFd();

  Supervisor(kj::AsyncIoContext& io, Options options, ipc::UniqueFd signalFd);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Starts every process (the stack first) and supervises them until
  // SIGTERM, SIGINT or SIGHUP (or stop()); then stops the drivers, then the
  // stack, and resolves once every child has been reaped.
  kj::Promise<void> run();

  // Same as receiving SIGTERM.
  void stop();

  // Fills the admin interface's answer.
  void fillStatus(capnp::List<schema::ProcessStatus>::Builder out) const;
  size_t processCount() const { return children_.size(); }

 private:
  using Clock = std::chrono::steady_clock;
  struct Child;

  void start(Child& c);
  void scheduleRestart(Child& c, std::chrono::milliseconds delay);
  void onExit(Child& c, int status);
  kj::Promise<void> watchSignals();
  void drainSignals();
  void reapChildren();
  kj::Promise<void> stopRole(Role role);
  bool anyRunning(Role role) const;
  void writePidFile(const Child& c);
  void removePidFile(const Child& c);
  uint64_t msSinceStart(Clock::time_point t) const;
  void taskFailed(kj::Exception&& exception) override;
  // True (and stop() called) if the runtime dir no longer exists.
  bool runtimeDirGone();
  kj::Promise<void> watchRuntimeDir();

  kj::Timer& timer_;
  Options options_;
  ipc::UniqueFd signalFd_;
  kj::UnixEventPort::FdObserver signalObserver_;
  Clock::time_point startedAt_;
  std::vector<std::unique_ptr<Child>> children_;

  bool stopping_ = false;
  kj::Own<kj::PromiseFulfiller<void>> stopRequested_;
  // While a stop phase waits for its children: the role it stops and who to
  // tell when the last of them has been reaped.
  Role stoppingRole_ = Role::kDriver;
  kj::Own<kj::PromiseFulfiller<void>> phaseDone_;
  kj::Promise<void> signalTask_ = nullptr;
  kj::Promise<void> dirTask_ = nullptr;
  kj::TaskSet restartTimers_;  // declared last: destroyed first, before what they use
};

// The bootstrap capability of supervisor.sock: answers status() from the
// Supervisor it is given (which must outlive it).
class SupervisorService final : public schema::Supervisor::Server {
 public:
  explicit SupervisorService(const Supervisor& supervisor) : supervisor_(supervisor) {}

 protected:
  kj::Promise<void> status(StatusContext context) override;

 private:
  const Supervisor& supervisor_;
};

}  // namespace mknet::supervisor
