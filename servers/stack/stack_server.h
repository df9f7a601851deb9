// StackServer: the stack's parts wired together — the engine, the driver
// port, the app sessions, the control socket — and its loop.
//
// Two arrangements share it. Multi-process (mknet-stack): it serves the
// Cap'n Proto control socket on a kj event loop; drivers and apps are other
// processes. Single-process (servers/inprocess): no event loop and no
// Cap'n Proto at all; the wiring attaches the driver itself and apps open
// sessions with openLocalSession(), from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <kj/async-io.h>
#include <kj/async-unix.h>

#include "ipc/doorbell.h"
#include "ipc/pool_region.h"
#include "ipc/result.h"
#include "ipc/rpc_server.h"
#include "ipc/session_region.h"
#include "servers/stack/app_session.h"
#include "servers/stack/driver_port.h"
#include "servers/stack/engine.h"

namespace mknet::stack {

struct StackConfig {
  EngineConfig engine;
  ipc::PoolConfig pool;
  ipc::SessionConfig session;
  std::string socketPath = "/run/mknet/stack.sock";
  std::chrono::microseconds spin{50};  // busy-poll this long after the last work before sleeping
  uint32_t burst = 64;                  // frames per driver poll
};

class StackServer {
 public:
  // Builds every part; environment errors (socket path, memfd) come back
  // here. With `io`, it serves the control socket config.socketPath on that
  // event loop (run() must then be called on io's thread); without, it has
  // no control socket.
  static Result<std::unique_ptr<StackServer>> create(const StackConfig& config, kj::AsyncIoContext* io);
  ~StackServer();

  // Runs until stop() (async-signal-safe) is called.
  void run();
  void stop();

  // A new app session: the AppSession in the registry and the offer for the
  // app. Loop thread only.
  Result<std::pair<AppSession*, ipc::SessionOffer>> newSession(uint32_t pid, const std::string& name);
  // Thread-safe: a session for an app in this process, made on the loop
  // thread (which must be running). It lives until the process ends.
  Result<ipc::SessionOffer> openLocalSession(uint32_t pid, const std::string& name);
  // Thread-safe: runs `task` on the loop thread soon, between two rounds.
  void post(std::function<void()> task);

  // For the control-plane objects.
  Engine& engine() { return *engine_; }
  DriverPort& port() { return *port_; }
  SessionRegistry& sessions() { return sessions_; }
  const StackConfig& config() const { return config_; }
  const ipc::Doorbell& bell() const { return bell_; }
  std::chrono::steady_clock::time_point started() const { return started_; }
  // The control socket's connection counters (nullptr before it listens).
  const ipc::RpcServerStats* rpcStats() const { return rpc_ ? &rpc_->stats() : nullptr; }
  // Which driver registration is current (drivers hold theirs; a stale
  // one's hang-up must not detach its successor).
  uint64_t driverEpoch = 0;

 private:
  StackServer(const StackConfig& config, kj::AsyncIoContext* io, ipc::Doorbell bell);
  void runPosted();
  // Sleeps until the doorbell rings, `ms` pass, or (with an event loop) a
  // control message arrives.
  void sleep(int64_t ms);

  StackConfig config_;
  kj::AsyncIoContext* io_;  // nullptr in the single-process arrangement
  kj::Own<kj::UnixEventPort::FdObserver> bellObserver_;
  ipc::Doorbell bell_;  // every peer rings this one eventfd
  std::unique_ptr<DriverPort> port_;
  std::unique_ptr<Engine> engine_;
  SessionRegistry sessions_;
  kj::Own<ipc::RpcServer> rpc_;
  std::chrono::steady_clock::time_point started_;
  volatile int stopping_ = 0;
  std::mutex postedMu_;
  std::vector<std::function<void()>> posted_;  // under postedMu_
  std::atomic<bool> hasPosted_{false};
};

}  // namespace mknet::stack
