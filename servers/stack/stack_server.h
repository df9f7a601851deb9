// StackServer: the mknet-stack process's parts wired together — the engine,
// the driver port, the app sessions, the control socket — and its loop.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <kj/async-io.h>

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
  // Builds every part; environment errors (socket path, memfd) come back here.
  static Result<std::unique_ptr<StackServer>> create(const StackConfig& config, kj::AsyncIoContext& io);
  ~StackServer();

  // Runs until stop() (async-signal-safe) is called.
  void run();
  void stop();

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
  StackServer(const StackConfig& config, kj::AsyncIoContext& io, ipc::Doorbell bell);

  StackConfig config_;
  kj::AsyncIoContext& io_;
  ipc::Doorbell bell_;  // every peer rings this one eventfd
  std::unique_ptr<DriverPort> port_;
  std::unique_ptr<Engine> engine_;
  SessionRegistry sessions_;
  kj::Own<ipc::RpcServer> rpc_;
  std::chrono::steady_clock::time_point started_;
  volatile int stopping_ = 0;
};

}  // namespace mknet::stack
