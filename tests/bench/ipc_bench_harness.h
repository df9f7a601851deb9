// The harness every measurement of mknet-bench-ipc shares (ipc_bench.cc
// says what the program measures and how): options and time budgets, CPU
// pinning, the watchdog, forked peer processes, the shared bench region and
// the start handshake, and the result types. One file per comparison uses
// it: ipc_bench_rings.cc (ring and pool throughput), ipc_bench_ring_rtt.cc
// (round trips through rings and doorbells), ipc_bench_baselines.cc (Unix
// socket and Cap'n Proto round trips); ipc_bench.cc reports.
#pragma once

#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include <kj/exception.h>

#include "ipc/doorbell.h"
#include "ipc/packet_pool.h"
#include "ipc/result.h"
#include "ipc/shm_region.h"
#include "ipc/spsc_ring.h"
#include "ipc/unique_fd.h"

namespace mknet::bench {

using namespace mknet::ipc;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr const char* kProg = "mknet-bench-ipc";
constexpr uint32_t kContentVersion = 1;
constexpr uint32_t kBurst = 32;  // descriptors per push/pop in the throughput runs

// How long a side waits for its peer before it calls the peer stalled. The
// measured operations take microseconds; seconds of silence is a bug.
constexpr auto kStallLimit = 3s;
// How long a peer waits for the next request before it gives up.
constexpr auto kPeerIdleLimit = 10s;
// Whole-run watchdog (SIGALRM): the last defence against a loop we got wrong.
constexpr unsigned kWatchdogSeconds = 120;

// ---------------------------------------------------------------------------
// Options and sizes

struct Options {
  bool quick = false;
  std::string jsonPath;
};

// Per-run bounds: counts and time budgets. A throughput run stops after its
// time or its count, a latency run after latencySamples or its time budget,
// whichever comes first; the counts reached are reported.
struct Budget {
  Clock::duration throughputTime;
  uint64_t throughputMaxCount;
  uint32_t latencySamples;
  uint32_t warmup;
  Clock::duration ringRttTime;      // polled and short-spin ring round trips
  Clock::duration doorbellRttTime;  // eventfd round trips (8-30 us each)
  Clock::duration socketRttTime;    // Unix socket round trips
  Clock::duration capnpRttTime;     // Cap'n Proto calls (~40-70 us each)
};

inline Budget budgetFor(const Options& o) {
  if (o.quick) return {300ms, 300'000'000, 100'000, 2'000, 700ms, 1200ms, 1200ms, 1500ms};
  return {1s, 1'000'000'000, 200'000, 5'000, 2s, 3500ms, 3500ms, 4500ms};
}

// The two CPUs the processes are pinned to: the parent on `a`, the peer on
// `b` for the across-CPU runs. `b` is empty when only one CPU is usable.
struct Cpus {
  int a = 0;
  std::optional<int> b;
  int usable = 1;
};

inline Cpus pickCpus() {
  Cpus c;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return c;
  std::vector<int> ids;
  for (int i = 0; i < CPU_SETSIZE; ++i)
    if (CPU_ISSET(i, &set)) ids.push_back(i);
  if (ids.empty()) return c;
  c.a = ids[0];
  if (ids.size() >= 2) c.b = ids[1];
  c.usable = static_cast<int>(ids.size());
  return c;
}

inline Result<void> pinTo(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0)
    return errnoError("sched_setaffinity(cpu " + std::to_string(cpu) + ")");
  return ok();
}

// ---------------------------------------------------------------------------
// Watchdog

inline volatile sig_atomic_t gPhaseIndex = 0;
inline const char* const kPhases[] = {"start-up",        "ring throughput", "pool throughput", "ring RTT",
                               "unix socket RTT", "capnp RTT",       "report"};
enum Phase { kStartup, kRingTp, kPoolTp, kRingRtt, kSocketRtt, kCapnpRtt, kReport };

inline void setPhase(Phase p) { gPhaseIndex = p; }

// The --json path, so the watchdog can remove a file it never completed.
// (Signal handlers can only reach globals.)
inline char gJsonPath[4096] = {};

inline void onWatchdog(int) {
  const char* phase = kPhases[gPhaseIndex];
  char msg[160];
  int n = snprintf(msg, sizeof msg, "%s: watchdog: no result after %u s (stuck in %s); aborting\n",
                   kProg, kWatchdogSeconds, phase);
  if (n > 0) {
    [[maybe_unused]] ssize_t w = write(STDERR_FILENO, msg, static_cast<size_t>(n));
  }
  if (gJsonPath[0] != '\0') unlink(gJsonPath);
  _exit(3);  // peers die with us (PR_SET_PDEATHSIG)
}

// ---------------------------------------------------------------------------
// Peer processes

// Prints the reason a peer gives up and returns the exit code for it.
inline int peerFail(const char* what, const std::string& why) {
  fprintf(stderr, "%s: %s peer: %s\n", kProg, what, why.c_str());
  return 1;
}

// A forked peer process. The child pins itself, arms PR_SET_PDEATHSIG, runs
// the body and _exit()s with its return value (no destructors, no stdio
// flush of the parent's buffers). Destroying a Peer that was not finish()ed
// kills and reaps it.
class Peer {
 public:
  static Result<Peer> start(const char* what, int cpu, const std::function<int()>& body) {
    fflush(nullptr);  // nothing buffered may be inherited and printed twice
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return errnoError(std::string("fork ") + what + " peer");
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(9);  // the parent died before prctl took effect
      int rc = 0;
      if (auto r = pinTo(cpu); !r) {
        rc = peerFail(what, r.error().message());
      } else {
        try {
          rc = body();
        } catch (const kj::Exception& e) {
          rc = peerFail(what, e.getDescription().cStr());
        } catch (const std::exception& e) {
          rc = peerFail(what, e.what());
        } catch (...) {
          rc = peerFail(what, "unknown exception");
        }
      }
      fflush(stderr);
      _exit(rc);
    }
    return Peer(what, pid);
  }

  Peer(Peer&& o) noexcept : what_(o.what_), pid_(std::exchange(o.pid_, -1)) {}
  Peer& operator=(Peer&&) = delete;
  ~Peer() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      reap(true);
    }
  }

  // Non-blocking: an error if the peer has already exited (it never should
  // before it is told to stop). Used while waiting for it.
  Result<void> checkAlive() {
    if (pid_ <= 0) return makeError(0, std::string(what_) + " peer is gone");
    if (auto st = reap(false)) return statusError(*st);
    return ok();
  }

  // Waits up to `limit` for the peer to exit after it was told to stop.
  // Errors: it failed (its own message is on stderr) or it did not exit.
  Result<void> finish(Clock::duration limit) {
    auto end = Clock::now() + limit;
    while (pid_ > 0) {
      if (auto st = reap(false)) {
        if (WIFEXITED(*st) && WEXITSTATUS(*st) == 0) return ok();
        return statusError(*st);
      }
      if (Clock::now() >= end) {
        kill(pid_, SIGKILL);
        reap(true);
        return makeError(0, std::string(what_) + " peer did not exit when told to stop");
      }
      usleep(200);
    }
    return ok();
  }

 private:
  Peer(const char* what, pid_t pid) : what_(what), pid_(pid) {}

  // Reaps the child if it has exited (or waits for it when `block`); returns
  // its status then, nullopt while it runs.
  std::optional<int> reap(bool block) {
    int status = 0;
    for (;;) {
      pid_t r = waitpid(pid_, &status, block ? 0 : WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        return status;
      }
      if (r == 0) return std::nullopt;
      if (errno == EINTR) continue;
      pid_ = -1;  // ECHILD: somebody else reaped it; nothing left to do
      return 0;
    }
  }

  Error statusError(int st) const {
    std::string s = std::string(what_) + " peer ";
    if (WIFSIGNALED(st))
      return makeError(0, s + "killed by signal " + std::to_string(WTERMSIG(st)));
    return makeError(0, s + "failed with exit status " + std::to_string(WEXITSTATUS(st)) +
                            " (its message is above)");
  }

  const char* what_;
  pid_t pid_;
};

// Polls with a bound: keepGoing() is false once `limit` has passed. The clock
// is read every 256 calls only, so the poll loop itself stays tight.
class BoundedSpin {
 public:
  explicit BoundedSpin(Clock::duration limit) : end_(Clock::now() + limit) {}
  bool keepGoing() {
    if ((++n_ & 255) != 0) return true;
    return Clock::now() < end_;
  }

 private:
  Clock::time_point end_;
  uint32_t n_ = 0;
};

// ---------------------------------------------------------------------------
// The shared region: a control block, an optional pool and two rings.

// Start/stop handshake of one run. Shared memory, so every field says who
// writes it; the parent trusts its own peer here (this is a benchmark).
struct alignas(kCacheLine) BenchControl {
  std::atomic<uint32_t> peerReady;                 // peer: 1 once attached and set up
  alignas(kCacheLine) std::atomic<uint32_t> go;    // parent: 1 to start
  alignas(kCacheLine) std::atomic<uint32_t> stop;  // parent: 1 to end the run
};
static_assert(sizeof(BenchControl) == 3 * kCacheLine);

// A throughput peer's look at the clock and the stop flag, every 256th round
// of its loop: its exit code once the parent said stop (0) or `end` passed
// without that (1), nothing while it should go on.
inline std::optional<int> peerShouldEnd(const BenchControl& c, uint64_t iter, Clock::time_point end,
                                        const char* what) {
  if ((iter & 255) != 0) return std::nullopt;
  if (c.stop.load(std::memory_order_relaxed) != 0) return 0;
  if (Clock::now() >= end) return peerFail(what, "never told to stop");
  return std::nullopt;
}

// Sizes of one run's region; both sides use the same compiled constants, so
// each validates the region against its own configuration.
struct Layout {
  uint32_t buffers;     // pool buffers; 0: no pool
  uint32_t toOwnerCap;  // ring peer -> parent ("active" / "pong")
  uint32_t toPeerCap;   // ring parent -> peer ("free" / "ping"); 0: none
};

struct BenchRegion {
  explicit BenchRegion(ShmRegion r) : region(std::move(r)) {}

  ShmRegion region;
  BenchControl* control = nullptr;
  PacketPool pool;
  RingControl* toOwner = nullptr;
  RingControl* toPeer = nullptr;

  static size_t bytesFor(const Layout& l) {
    return sizeof(BenchControl) + PacketPool::bytesFor(l.buffers) +
           SpscRingMemory<Descriptor>::bytesFor(l.toOwnerCap) +
           SpscRingMemory<Descriptor>::bytesFor(l.toPeerCap) + 64 * 1024;  // directory, alignment
  }

  // Parent: creates and lays out the region.
  static Result<BenchRegion> create(const Layout& l) {
    auto r = ShmRegion::create("mknet-bench", bytesFor(l), RegionKind::kTest, kContentVersion);
    if (!r) return r.error();
    BenchRegion b(std::move(*r));
    auto c = b.region.allocate("control", sizeof(BenchControl));
    if (!c) return c.error();
    b.control = new (c->data()) BenchControl{};
    if (l.buffers != 0) {
      auto p = b.region.allocate("pool", PacketPool::bytesFor(l.buffers));
      if (!p) return p.error();
      b.pool = PacketPool(*p, l.buffers);
    }
    auto a = b.region.allocate("toOwner", SpscRingMemory<Descriptor>::bytesFor(l.toOwnerCap));
    if (!a) return a.error();
    auto ac = SpscRingMemory<Descriptor>::init(*a, l.toOwnerCap);
    if (!ac) return ac.error();
    b.toOwner = *ac;
    if (l.toPeerCap != 0) {
      auto f = b.region.allocate("toPeer", SpscRingMemory<Descriptor>::bytesFor(l.toPeerCap));
      if (!f) return f.error();
      auto fc = SpscRingMemory<Descriptor>::init(*f, l.toPeerCap);
      if (!fc) return fc.error();
      b.toPeer = *fc;
    }
    return b;
  }

  // Peer: attaches by fd and finds everything, checked against `l`.
  static Result<BenchRegion> attach(UniqueFd fd, const Layout& l) {
    auto r = ShmRegion::attach(std::move(fd), RegionKind::kTest, kContentVersion);
    if (!r) return r.error();
    BenchRegion b(std::move(*r));
    auto c = b.region.find("control", sizeof(BenchControl));
    if (!c) return c.error();
    b.control = reinterpret_cast<BenchControl*>(c->data());
    if (l.buffers != 0) {
      auto p = b.region.find("pool", PacketPool::bytesFor(l.buffers));
      if (!p) return p.error();
      b.pool = PacketPool(*p, l.buffers);
    }
    auto a = b.region.find("toOwner", 0);
    if (!a) return a.error();
    auto ac = SpscRingMemory<Descriptor>::open(*a, l.toOwnerCap, "toOwner");
    if (!ac) return ac.error();
    b.toOwner = *ac;
    if (l.toPeerCap != 0) {
      auto f = b.region.find("toPeer", 0);
      if (!f) return f.error();
      auto fc = SpscRingMemory<Descriptor>::open(*f, l.toPeerCap, "toPeer");
      if (!fc) return fc.error();
      b.toPeer = *fc;
    }
    return b;
  }
};

// Peer side of the handshake: announce, then wait (bounded) for go.
inline Result<void> peerAwaitGo(BenchControl* c) {
  c->peerReady.store(1, std::memory_order_release);
  BoundedSpin spin(kStallLimit);
  while (c->go.load(std::memory_order_acquire) == 0) {
    if (!spin.keepGoing()) return makeError(0, "parent never said go");
    Doorbell::cpuRelax();
  }
  return ok();
}

// Parent side: wait (bounded) until the peer has attached.
inline Result<void> awaitPeerReady(BenchControl* c, Peer& peer) {
  auto end = Clock::now() + kStallLimit;
  while (c->peerReady.load(std::memory_order_acquire) == 0) {
    if (auto r = peer.checkAlive(); !r) return r.error();
    if (Clock::now() >= end) return makeError(0, "peer did not attach within 3 s");
    usleep(50);
  }
  return ok();
}

// ---------------------------------------------------------------------------
// Results

struct Latency {
  double p50 = 0, p99 = 0, p999 = 0, mean = 0, min = 0, max = 0;  // microseconds
  size_t samples = 0;
};

inline Latency summarize(std::vector<int64_t>& ns) {
  Latency l;
  l.samples = ns.size();
  if (ns.empty()) return l;
  std::sort(ns.begin(), ns.end());
  auto rank = [&](double q) {  // nearest-rank percentile
    size_t i = static_cast<size_t>(q * static_cast<double>(ns.size()) + 0.999999);
    return static_cast<double>(ns[std::min(ns.size() - 1, i == 0 ? 0 : i - 1)]) / 1000.0;
  };
  l.p50 = rank(0.50);
  l.p99 = rank(0.99);
  l.p999 = rank(0.999);
  double sum = 0;
  for (int64_t v : ns) sum += static_cast<double>(v);
  l.mean = sum / static_cast<double>(ns.size()) / 1000.0;
  l.min = static_cast<double>(ns.front()) / 1000.0;
  l.max = static_cast<double>(ns.back()) / 1000.0;
  return l;
}

struct Throughput {
  double perSecond = 0;  // descriptors, over the whole run
  uint64_t count = 0;
  double seconds = 0;
  double windowMin = 0, windowMax = 0;  // slowest and fastest of RateWindows
};

// Splits a throughput run into equal windows and keeps each one's rate, so a
// run whose speed changed half-way (on a VM the host may move a vCPU next to
// or away from its peer's core) shows as a wide min..max rather than hiding
// in the average.
class RateWindows {
 public:
  static constexpr int kWindows = 5;
  RateWindows(Clock::time_point t0, Clock::duration total)
      : start_(t0), len_(total / kWindows), next_(t0 + len_) {}
  // Called with the running count whenever the caller reads the clock. The
  // window ends are fixed (t0 + k * total / kWindows), so the last one ends
  // when the run does.
  void update(Clock::time_point now, uint64_t count) {
    if (now < next_) return;
    close(now, count);
    while (next_ <= now) next_ += len_;
  }
  // After the run: keeps a last partial window if it is long enough to mean
  // something (the run may have stopped on its count instead of its time).
  void finish(Clock::time_point now, uint64_t count) {
    if (now - start_ >= len_ / 4) close(now, count);
  }
  void fill(Throughput& t) const {
    if (rates_.empty()) {
      t.windowMin = t.windowMax = t.perSecond;
      return;
    }
    auto [lo, hi] = std::minmax_element(rates_.begin(), rates_.end());
    t.windowMin = *lo;
    t.windowMax = *hi;
  }

 private:
  void close(Clock::time_point now, uint64_t count) {
    double s = std::chrono::duration<double>(now - start_).count();
    rates_.push_back(static_cast<double>(count - startCount_) / s);
    start_ = now;
    startCount_ = count;
  }

  Clock::time_point start_;
  Clock::duration len_;
  Clock::time_point next_;
  uint64_t startCount_ = 0;
  std::vector<double> rates_;
};

// The consumer side of a throughput run, looked at every few hundred rounds:
// reads the clock, feeds the rate windows, and says whether the run is over
// (its time or its count is up) or the producer has stalled (no progress for
// kStallLimit).
class ThroughputPace {
 public:
  enum class Step : uint8_t { kGoOn, kDone, kStalled };
  ThroughputPace(Clock::time_point t0, const Budget& bud)
      : start_(t0), end_(t0 + bud.throughputTime), maxCount_(bud.throughputMaxCount), lastProgress_(t0), now_(t0),
        windows_(t0, bud.throughputTime) {}
  // got: items consumed so far.
  Step check(uint64_t got) {
    now_ = Clock::now();
    windows_.update(now_, got);
    if (now_ >= end_) return Step::kDone;
    if (got >= maxCount_) {
      windows_.finish(now_, got);
      return Step::kDone;
    }
    if (got != lastGot_) {
      lastGot_ = got;
      lastProgress_ = now_;
    } else if (now_ - lastProgress_ > kStallLimit) {
      return Step::kStalled;
    }
    return Step::kGoOn;
  }
  // After kStalled: the peer's own error if it died, else `what` (a stall).
  Error stalled(Peer& peer, std::string what) const {
    if (auto r = peer.checkAlive(); !r) return r.error();
    return makeError(0, std::move(what));
  }
  // After kDone: `got` items over the run, with its window rates.
  Throughput result(uint64_t got) const {
    const double s = std::chrono::duration<double>(now_ - start_).count();
    Throughput tp{static_cast<double>(got) / s, got, s};
    windows_.fill(tp);
    return tp;
  }

 private:
  Clock::time_point start_, end_;
  uint64_t maxCount_;
  uint64_t lastGot_ = 0;
  Clock::time_point lastProgress_, now_;
  RateWindows windows_;
};

inline int64_t nsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count();
}

// ---------------------------------------------------------------------------
// The comparisons (one file each) and what they return.

struct PoolResult {
  Throughput tp;
  double gbps = 0;
};

// Descriptors through one ring, both sides polling in bursts (ipc_bench_rings.cc).
Result<Throughput> ringThroughput(const Cpus& cpus, const Budget& bud);
// 1500-byte payloads through the pool (ipc_bench_rings.cc).
Result<PoolResult> poolThroughput(const Cpus& cpus, const Budget& bud);

// How a side waits for the next record.
enum class WaitMode : uint8_t {
  kPoll,       // spin on the ring, never sleep
  kSleep,      // zero spin: announce the sleep and block on the eventfd every time
  kSpinSleep,  // Doorbell::wait(): spin `spin`, then sleep
};
struct WaitPolicy {
  WaitMode mode;
  std::chrono::nanoseconds spin{0};
};

// Round trips of one descriptor through a ring and a doorbell each way (ipc_bench_ring_rtt.cc).
Result<Latency> ringRtt(int parentCpu, int peerCpu, WaitPolicy policy, const Budget& bud,
                        Clock::duration timeBudget);

// One byte each way over a Unix socket (ipc_bench_baselines.cc).
Result<Latency> unixSocketRtt(const Cpus& cpus, const Budget& bud);

struct CapnpResult {
  Latency rtt;
  double callsPerSecond = 0;
};

// Cap'n Proto calls over a Unix socket (ipc_bench_baselines.cc).
Result<CapnpResult> capnpRtt(const Cpus& cpus, const Budget& bud);

}  // namespace mknet::bench
