// Tools of the fault-injection tests (tests/fault) and of mknet-bench-faults:
// watching the stack's counters closely, watching TCP progress on the Linux
// side, and killing/restarting the driver by PID while traffic runs.
//
// Everything here sits on top of the integration fixture (Testbed): one
// namespace with a TAP, an mknet-stack and an mknet-tapdrv, all children of
// the test process. Kill and spawn from the test's main thread only (the
// children's death signal follows the thread that forked them); the watchers
// run on threads of their own.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/testbed.h"

namespace mknet::ftest {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Status = std::map<std::string, uint64_t>;
using itest::Testbed;

double msBetween(Clock::time_point a, Clock::time_point b);

// StackWatch: polls the stack's admin interface over one persistent Cap'n
// Proto connection (reconnecting when the stack goes away) on its own thread,
// every `period`. A poll costs ~0.1 ms instead of the ~10 ms of running
// mknet-ctl, so "kill -> registered again" can be timed to the millisecond.
// Keys are the ones Testbed::status() gives: sessions, sockets, pool_free,
// pool_buffers, link_up, driver_pid, registrations, and every counter.
class StackWatch {
 public:
  explicit StackWatch(std::string socketPath, std::chrono::microseconds period = 1ms);
  ~StackWatch();
  StackWatch(const StackWatch&) = delete;
  StackWatch& operator=(const StackWatch&) = delete;

  // A snapshot taken after this call (waits for the next poll), or nullopt if
  // the stack did not answer within `timeout`.
  std::optional<Status> fresh(std::chrono::milliseconds timeout = 3s);
  // Waits until pred(snapshot) holds for a snapshot taken after this call;
  // returns when it was first seen, or nullopt on timeout.
  std::optional<Clock::time_point> waitFor(const std::function<bool(const Status&)>& pred,
                                           std::chrono::milliseconds timeout);
  // The first time registrations >= n was seen (also before this call).
  std::optional<Clock::time_point> registeredAt(uint64_t n, std::chrono::milliseconds timeout);

 private:
  void run();

  const std::string path_;
  const std::chrono::microseconds period_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t polls_ = 0;  // successful polls so far
  Status last_;
  std::map<uint64_t, Clock::time_point> registrations_;  // value -> first seen
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// One TCP socket on the Linux side, from sock_diag.
struct TcpConn {
  uint16_t localPort = 0, remotePort = 0;
  uint8_t state = 0;  // TCP_ESTABLISHED, ...
  uint64_t bytesAcked = 0, bytesReceived = 0;
};

// TcpDiag: a NETLINK_SOCK_DIAG socket inside the testbed's namespace, for
// the kernel's own view of the Linux end of each connection.
class TcpDiag {
 public:
  explicit TcpDiag(const Testbed& tb);
  ~TcpDiag();
  TcpDiag(const TcpDiag&) = delete;
  TcpDiag& operator=(const TcpDiag&) = delete;
  bool ok() const { return fd_ >= 0; }
  // Every IPv4 TCP socket in the namespace; nullopt on a netlink error.
  std::optional<std::vector<TcpConn>> dump();

 private:
  int fd_ = -1;
  uint32_t seq_ = 0;
};

// ProgressWatch: samples, every `period`, how many bytes have crossed the
// TAP on the Linux side's TCP connections that use `port` (local or remote):
// bytes received by Linux plus bytes Linux sent that were acknowledged. That
// is the receiver's progress whichever way the data flows. Connections that
// close keep counting with their last value.
class ProgressWatch {
 public:
  ProgressWatch(const Testbed& tb, uint16_t port, std::chrono::microseconds period = 1ms);
  ~ProgressWatch();
  ProgressWatch(const ProgressWatch&) = delete;
  ProgressWatch& operator=(const ProgressWatch&) = delete;

  bool ok() const { return diag_.ok(); }
  uint64_t bytes() const;
  // Established connections on the port at the last sample.
  size_t established() const;
  // Waits until `n` connections on the port are established.
  bool waitEstablished(size_t n, std::chrono::milliseconds timeout);
  // The first sample after `t` with more bytes than at `t`; nullopt if none yet.
  std::optional<Clock::time_point> progressAfter(Clock::time_point t) const;
  // When the last progress was seen (epoch if never).
  Clock::time_point lastProgress() const;
  // The longest time without progress between `from` and `to` (ms).
  double longestGapMs(Clock::time_point from, Clock::time_point to) const;

 private:
  void run();
  uint16_t port_;
  std::chrono::microseconds period_;
  TcpDiag diag_;
  mutable std::mutex mu_;
  std::map<std::string, uint64_t> perConn_;  // "localPort:remotePort" -> max bytes seen
  uint64_t total_ = 0;
  size_t established_ = 0;
  std::vector<std::pair<Clock::time_point, uint64_t>> changes_;  // (sample time, new total)
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// One driver kill.
struct KillRecord {
  Clock::time_point killedAt;
  double restartMs = -1;  // kill -> the stack counted the new driver's registration
  // The longest time the receiver made no progress, from the kill to the
  // next one (the last kill: up to 1 s later); -1: no progress after it.
  double stallMs = -1;
};

// DriverKiller: SIGKILLs the testbed's driver by PID and starts a new one at
// once (no waiting for link up); the registration is timed through a
// StackWatch. Call from the test's main thread.
class DriverKiller {
 public:
  DriverKiller(Testbed& tb, StackWatch& watch, uint32_t seed, int minMs = 200, int maxMs = 500);
  // The pause before the next kill, uniformly in [minMs, maxMs].
  std::chrono::milliseconds nextInterval();
  // Kill + restart; false (and why in *err) if the new driver did not
  // register within 10 s.
  bool killAndRestart(KillRecord* out, std::string* err);
  uint64_t kills() const { return kills_; }

 private:
  Testbed& tb_;
  StackWatch& watch_;
  std::mt19937 rng_;
  std::uniform_int_distribution<int> interval_;
  uint64_t registrations_ = 0;
  uint64_t kills_ = 0;
};

// Starts mknet-tapdrv for the testbed (its log appended to tapdrv.log) and
// returns the process without waiting for it to register.
itest::Process spawnDriver(const Testbed& tb);

// HoldServer: a TCP listener on the Linux side of the testbed (a socket
// created in its namespace, served by a thread of the test process). It
// accepts everything and keeps it open. With `read`, it reads and discards
// what arrives and notes how each connection ended: a reset (ECONNRESET)
// or an orderly EOF. Without, it never reads (so senders block).
class HoldServer {
 public:
  HoldServer(const Testbed& tb, uint16_t port, bool read);
  ~HoldServer();
  HoldServer(const HoldServer&) = delete;
  HoldServer& operator=(const HoldServer&) = delete;
  bool ok() const { return listenFd_ >= 0; }
  const std::string& error() const { return error_; }

  struct Counts {
    uint64_t accepted = 0, open = 0, resets = 0, eofs = 0, otherErrors = 0;
  };
  Counts counts() const;
  bool waitFor(const std::function<bool(const Counts&)>& pred, std::chrono::milliseconds timeout) const;
  std::string describe() const;

 private:
  void run();
  const bool read_;
  int listenFd_ = -1;
  int wakeFd_ = -1;
  std::string error_;
  mutable std::mutex mu_;
  Counts counts_;
  std::vector<int> conns_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// p-th percentile (0..100) of `v`, nearest rank; -1 if empty.
double percentile(std::vector<double> v, double p);
// "a,b,c" of values with one decimal.
std::string joinMs(const std::vector<double>& v);

// Runs `app` (already started) to its end while killing the driver every
// 200-500 ms (DriverKiller's intervals). Stops killing once `app` has exited
// or `maxKills` were done, after `limit`, or when `keepGoing` (if given)
// returns false; stall times come from `progress` (may be null). Returns the
// kills; on a failed restart sets *err and stops.
std::vector<KillRecord> killWhileRunning(DriverKiller& killer, itest::Process& app, ProgressWatch* progress,
                                         uint64_t maxKills, std::chrono::milliseconds limit, std::string* err,
                                         const std::function<bool()>& keepGoing = {});

}  // namespace mknet::ftest
