// mknet-bench-ipc: what the data plane's building blocks cost on this host.
//
// Every figure is measured between two real processes: the parent creates a
// shared-memory region (it plays the stack, the owner), forks a peer that
// attaches the region by fd like a driver or an app would, and both pin
// themselves to CPUs with sched_setaffinity. Every transfer is checked
// (sequence numbers, descriptor fields, the first and last bytes of every
// payload), so a broken ring shows up as an error, not as a fast number.
//
// Usage: mknet-bench-ipc [--json PATH] [--quick] [--help]
//
// Robustness: peers die with the parent (PR_SET_PDEATHSIG) and are reaped;
// every loop is bounded in count and in time; a stalled or failed peer ends
// the run with one clear line and a non-zero exit. A global watchdog alarm is
// the last line of defence.
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <new>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/exception.h>

#include "ipc/doorbell.h"
#include "ipc/packet_pool.h"
#include "ipc/result.h"
#include "ipc/shm_region.h"
#include "ipc/spsc_ring.h"
#include "ipc/unique_fd.h"
#include "tests/bench/bench.capnp.h"

namespace mknet::bench {
namespace {

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

Budget budgetFor(const Options& o) {
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

Cpus pickCpus() {
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

Result<void> pinTo(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0)
    return errnoError("sched_setaffinity(cpu " + std::to_string(cpu) + ")");
  return ok();
}

// ---------------------------------------------------------------------------
// Watchdog

volatile sig_atomic_t gPhaseIndex = 0;
const char* const kPhases[] = {"start-up",        "ring throughput", "pool throughput", "ring RTT",
                               "unix socket RTT", "capnp RTT",       "report"};
enum Phase { kStartup, kRingTp, kPoolTp, kRingRtt, kSocketRtt, kCapnpRtt, kReport };

void setPhase(Phase p) { gPhaseIndex = p; }

// The --json path, so the watchdog can remove a file it never completed.
// (Signal handlers can only reach globals.)
char gJsonPath[4096] = {};

void onWatchdog(int) {
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
int peerFail(const char* what, const std::string& why) {
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
Result<void> peerAwaitGo(BenchControl* c) {
  c->peerReady.store(1, std::memory_order_release);
  BoundedSpin spin(kStallLimit);
  while (c->go.load(std::memory_order_acquire) == 0) {
    if (!spin.keepGoing()) return makeError(0, "parent never said go");
    Doorbell::cpuRelax();
  }
  return ok();
}

// Parent side: wait (bounded) until the peer has attached.
Result<void> awaitPeerReady(BenchControl* c, Peer& peer) {
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

Latency summarize(std::vector<int64_t>& ns) {
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

int64_t nsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count();
}

// ---------------------------------------------------------------------------
// 1. Descriptors through one ring, both sides polling in bursts of 32.

constexpr uint32_t kTpRingCap = 1024;

Descriptor tpDescriptor(uint64_t seq) {
  auto s = static_cast<uint32_t>(seq);
  return Descriptor{s & (kTpRingCap - 1), 64 + (s & 1023), 0, s};
}

int ringTpPeer(UniqueFd fd, Clock::duration runLimit) {
  const char* what = "ring throughput";
  const Layout l{0, kTpRingCap, 0};
  auto b = BenchRegion::attach(std::move(fd), l);
  if (!b) return peerFail(what, b.error().message());
  DescriptorProducer out(b->toOwner, kTpRingCap);
  if (auto r = peerAwaitGo(b->control); !r) return peerFail(what, r.error().message());

  std::array<Descriptor, kBurst> burst;
  uint32_t at = kBurst;  // next unpushed entry of `burst`
  uint64_t seq = 0;
  const auto end = Clock::now() + runLimit;
  for (uint64_t iter = 1;; ++iter) {
    if (at == kBurst) {
      for (uint32_t i = 0; i < kBurst; ++i) burst[i] = tpDescriptor(seq + i);
      seq += kBurst;
      at = 0;
    }
    auto n = out.push(std::span<const Descriptor>(burst.data() + at, kBurst - at));
    if (!n) return peerFail(what, n.error().message());
    at += *n;
    if (*n == 0) Doorbell::cpuRelax();
    if ((iter & 255) == 0) {
      if (b->control->stop.load(std::memory_order_relaxed) != 0) return 0;
      if (Clock::now() >= end) return peerFail(what, "never told to stop");
    }
  }
}

Result<Throughput> ringThroughput(const Cpus& cpus, const Budget& bud) {
  const Layout l{0, kTpRingCap, 0};
  auto b = BenchRegion::create(l);
  if (!b) return b.error();
  auto fd = b->region.dupFd();
  if (!fd) return fd.error();
  if (auto r = pinTo(cpus.a); !r) return r.error();
  const auto peerLimit = bud.throughputTime + 2 * kStallLimit + 5s;
  auto peer = Peer::start("ring throughput", *cpus.b,
                          [&] { return ringTpPeer(UniqueFd(fd->release()), peerLimit); });
  if (!peer) return peer.error();
  fd->reset();
  if (auto r = awaitPeerReady(b->control, *peer); !r) return r.error();

  DescriptorConsumer in(b->toOwner, kTpRingCap);
  std::array<Descriptor, kBurst> burst;
  uint64_t got = 0, bad = 0, lastGot = 0;
  const auto t0 = Clock::now();
  b->control->go.store(1, std::memory_order_release);
  const auto end = t0 + bud.throughputTime;
  auto lastProgress = t0;
  RateWindows windows(t0, bud.throughputTime);
  Clock::time_point t1;
  for (uint64_t iter = 1;; ++iter) {
    auto n = in.pop(burst);
    if (!n) return n.error();
    for (uint32_t i = 0; i < *n; ++i) {
      const Descriptor want = tpDescriptor(got + i), &d = burst[i];
      bad += (d.cookie != want.cookie) | (d.index != want.index) | (d.length != want.length) |
             (d.flags != 0);
    }
    got += *n;
    if (*n == 0) Doorbell::cpuRelax();
    if ((iter & 255) == 0) {
      t1 = Clock::now();
      windows.update(t1, got);
      if (t1 >= end) break;
      if (got >= bud.throughputMaxCount) {
        windows.finish(t1, got);
        break;
      }
      if (got != lastGot) {
        lastGot = got;
        lastProgress = t1;
      } else if (t1 - lastProgress > kStallLimit) {
        if (auto r = peer->checkAlive(); !r) return r.error();
        return makeError(
            0, "ring throughput: producer stalled after " + std::to_string(got) + " descriptors");
      }
    }
  }
  b->control->stop.store(1, std::memory_order_release);
  if (auto r = peer->finish(kStallLimit); !r) return r.error();
  if (bad != 0)
    return makeError(0, "ring throughput: " + std::to_string(bad) + " of " + std::to_string(got) +
                            " descriptors wrong or out of order");
  double s = std::chrono::duration<double>(t1 - t0).count();
  Throughput tp{static_cast<double>(got) / s, got, s};
  windows.fill(tp);
  return tp;
}

// ---------------------------------------------------------------------------
// 2. 1500-byte payloads through the pool: free ring -> copy in -> active
// ring -> validate, copy out -> free ring.

constexpr uint32_t kPoolBuffers = 1024, kActiveCap = 1024, kFreeCap = 1024;
constexpr uint32_t kPayload = 1500;
constexpr size_t kSocketRingBytes = 256 * 1024;  // stands in for a socket's receive ring
constexpr uint64_t kTailMark = 0x5a5a5a5a5a5a5a5aull;
static_assert(kFreeCap >= kPoolBuffers && kActiveCap >= kPoolBuffers);

int poolTpPeer(UniqueFd fd, Clock::duration runLimit) {
  const char* what = "pool throughput";
  const Layout l{kPoolBuffers, kActiveCap, kFreeCap};
  auto b = BenchRegion::attach(std::move(fd), l);
  if (!b) return peerFail(what, b.error().message());
  DescriptorProducer active(b->toOwner, kActiveCap);
  DescriptorConsumer freeIn(b->toPeer, kFreeCap);
  // The "frame" the driver would have read: warm in this CPU's cache, like
  // data fresh from a read() would be. Its first and last 8 bytes carry the
  // sequence number.
  std::array<std::byte, kPayload> frame;
  for (uint32_t i = 0; i < kPayload; ++i) frame[i] = static_cast<std::byte>(i * 7 + 1);
  if (auto r = peerAwaitGo(b->control); !r) return peerFail(what, r.error().message());

  std::array<Descriptor, kBurst> burst;
  uint64_t seq = 0;
  const auto end = Clock::now() + runLimit;
  for (uint64_t iter = 1;; ++iter) {
    auto n = freeIn.pop(burst);
    if (!n) return peerFail(what, n.error().message());
    for (uint32_t i = 0; i < *n; ++i, ++seq) {
      Descriptor& d = burst[i];
      auto buf = b->pool.buffer(d.index);  // the index came from the other side: check it
      if (!buf) return peerFail(what, "free ring gave buffer index " + std::to_string(d.index));
      uint64_t tail = seq ^ kTailMark;
      std::memcpy(frame.data(), &seq, sizeof seq);
      std::memcpy(frame.data() + kPayload - sizeof tail, &tail, sizeof tail);
      std::memcpy(buf->data(), frame.data(), kPayload);
      d.length = kPayload;
      d.flags = 0;
      d.cookie = static_cast<uint32_t>(seq);
    }
    // The active ring holds every buffer, so this fits at once unless the
    // consumer broke the protocol; bounded anyway.
    uint32_t pushed = 0;
    BoundedSpin spin(kStallLimit);
    while (pushed < *n) {
      auto k = active.push(std::span<const Descriptor>(burst.data() + pushed, *n - pushed));
      if (!k) return peerFail(what, k.error().message());
      pushed += *k;
      if (*k == 0 && !spin.keepGoing()) return peerFail(what, "active ring stayed full");
    }
    if (*n == 0) Doorbell::cpuRelax();
    if ((iter & 255) == 0) {
      if (b->control->stop.load(std::memory_order_relaxed) != 0) return 0;
      if (Clock::now() >= end) return peerFail(what, "never told to stop");
    }
  }
}

struct PoolResult {
  Throughput tp;
  double gbps = 0;
};

Result<PoolResult> poolThroughput(const Cpus& cpus, const Budget& bud) {
  const Layout l{kPoolBuffers, kActiveCap, kFreeCap};
  auto b = BenchRegion::create(l);
  if (!b) return b.error();
  // The owner hands every buffer to the producer, as the stack fills rxFree.
  DescriptorProducer freeOut(b->toPeer, kFreeCap);
  for (uint32_t i = 0; i < kPoolBuffers; ++i) {
    auto k = freeOut.push(Descriptor{i, 0, 0, 0});
    if (!k || *k != 1) return makeError(0, "pool throughput: cannot fill the free ring");
  }
  auto fd = b->region.dupFd();
  if (!fd) return fd.error();
  if (auto r = pinTo(cpus.a); !r) return r.error();
  const auto peerLimit = bud.throughputTime + 2 * kStallLimit + 5s;
  auto peer = Peer::start("pool throughput", *cpus.b,
                          [&] { return poolTpPeer(UniqueFd(fd->release()), peerLimit); });
  if (!peer) return peer.error();
  fd->reset();
  if (auto r = awaitPeerReady(b->control, *peer); !r) return r.error();

  DescriptorConsumer active(b->toOwner, kActiveCap);
  std::vector<std::byte> socketRing(kSocketRingBytes, std::byte{0});
  size_t ringAt = 0;
  std::array<Descriptor, kBurst> burst;
  uint64_t got = 0, badDesc = 0, badBytes = 0, lastGot = 0;
  const auto t0 = Clock::now();
  b->control->go.store(1, std::memory_order_release);
  const auto end = t0 + bud.throughputTime;
  auto lastProgress = t0;
  RateWindows windows(t0, bud.throughputTime);
  Clock::time_point t1;
  for (uint64_t iter = 1;; ++iter) {
    auto n = active.pop(burst);
    if (!n) return n.error();
    for (uint32_t i = 0; i < *n; ++i) {
      const Descriptor& d = burst[i];  // already a private copy (pop copies out)
      const uint64_t seq = got + i;
      auto bytes = b->pool.bytes(d);
      if (!bytes || d.length != kPayload || d.cookie != static_cast<uint32_t>(seq)) {
        ++badDesc;
        continue;
      }
      if (ringAt + kPayload > socketRing.size()) ringAt = 0;
      std::byte* dst = socketRing.data() + ringAt;
      std::memcpy(dst, bytes->data(), kPayload);
      ringAt += kPayload;
      // Check the copy, not the shared buffer: the peer could change it.
      uint64_t head, tail;
      std::memcpy(&head, dst, sizeof head);
      std::memcpy(&tail, dst + kPayload - sizeof tail, sizeof tail);
      badBytes += (head != seq) | (tail != (seq ^ kTailMark));
    }
    got += *n;
    if (*n != 0) {
      auto k = freeOut.push(std::span<const Descriptor>(burst.data(), *n));
      if (!k) return k.error();
      if (*k != *n)
        return makeError(0, "pool throughput: free ring full (a buffer was returned twice)");
    } else {
      Doorbell::cpuRelax();
    }
    if ((iter & 255) == 0) {
      t1 = Clock::now();
      windows.update(t1, got);
      if (t1 >= end) break;
      if (got >= bud.throughputMaxCount) {
        windows.finish(t1, got);
        break;
      }
      if (got != lastGot) {
        lastGot = got;
        lastProgress = t1;
      } else if (t1 - lastProgress > kStallLimit) {
        if (auto r = peer->checkAlive(); !r) return r.error();
        return makeError(
            0, "pool throughput: producer stalled after " + std::to_string(got) + " payloads");
      }
    }
  }
  b->control->stop.store(1, std::memory_order_release);
  if (auto r = peer->finish(kStallLimit); !r) return r.error();
  if (badDesc + badBytes != 0)
    return makeError(0, "pool throughput: " + std::to_string(badDesc) + " bad descriptors, " +
                            std::to_string(badBytes) + " corrupt payloads of " +
                            std::to_string(got));
  double s = std::chrono::duration<double>(t1 - t0).count();
  PoolResult res;
  res.tp = Throughput{static_cast<double>(got) / s, got, s};
  windows.fill(res.tp);
  res.gbps = res.tp.perSecond * kPayload * 8 / 1e9;
  return res;
}

// ---------------------------------------------------------------------------
// 3. Round trips of one descriptor: "ping" ring parent -> peer, "pong" ring
// peer -> parent, with a doorbell each way.

constexpr uint32_t kRttRingCap = 16;
constexpr uint32_t kFlagPing = 1, kFlagPong = 2, kFlagStop = 3;

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

// Waits until `in` holds a record; false on timeout or a broken doorbell.
bool awaitRecord(DescriptorConsumer& in, const Doorbell& bell, WaitPolicy p,
                 Clock::duration limit) {
  if (!in.empty()) return true;
  switch (p.mode) {
    case WaitMode::kPoll: {
      BoundedSpin spin(limit);
      while (in.empty()) {
        if (!spin.keepGoing()) return false;
        Doorbell::cpuRelax();
      }
      return true;
    }
    case WaitMode::kSleep: {
      const auto end = Clock::now() + limit;
      for (;;) {
        if (in.prepareSleep()) {  // announced, and the ring is still empty: sleep
          auto left = end - Clock::now();
          if (left <= Clock::duration::zero()) {
            in.cancelSleep();
            return !in.empty();
          }
          WaitResult r = bell.sleep(left);
          in.cancelSleep();
          if (r == WaitResult::kError) return false;
        }
        if (!in.empty()) return true;
        if (Clock::now() >= end) return false;
      }
    }
    case WaitMode::kSpinSleep:
      return bell.wait([&] { return !in.empty(); }, [&] { return in.prepareSleep(); },
                       [&] { in.cancelSleep(); }, p.spin, limit) == WaitResult::kReady;
  }
  return false;
}

int rttPeer(UniqueFd fd, UniqueFd pingFd, UniqueFd pongFd, WaitPolicy policy) {
  const char* what = "ring RTT";
  const Layout l{0, kRttRingCap, kRttRingCap};
  auto b = BenchRegion::attach(std::move(fd), l);
  if (!b) return peerFail(what, b.error().message());
  DescriptorConsumer ping(b->toPeer, kRttRingCap);
  DescriptorProducer pong(b->toOwner, kRttRingCap);
  Doorbell pingBell(std::move(pingFd)), pongBell(std::move(pongFd));
  b->control->peerReady.store(1, std::memory_order_release);
  for (uint32_t expect = 0;; ++expect) {
    if (!awaitRecord(ping, pingBell, policy, kPeerIdleLimit))
      return peerFail(what, "no ping for 10 s after " + std::to_string(expect));
    Descriptor d;
    auto n = ping.pop({&d, 1});
    if (!n || *n != 1) return peerFail(what, n ? "ping vanished" : n.error().message());
    if (d.flags == kFlagStop) return 0;
    if (d.flags != kFlagPing || d.cookie != expect)
      return peerFail(what, "ping " + std::to_string(expect) + " arrived as " +
                                std::to_string(d.cookie) + "/" + std::to_string(d.flags));
    d.flags = kFlagPong;
    auto k = pong.push(d);
    if (!k || *k != 1) return peerFail(what, k ? "pong ring full" : k.error().message());
    if (pong.consumerNeedsWakeup()) pongBell.ring();
  }
}

Result<Latency> ringRtt(int parentCpu, int peerCpu, WaitPolicy policy, const Budget& bud,
                        Clock::duration timeBudget) {
  const Layout l{0, kRttRingCap, kRttRingCap};
  auto b = BenchRegion::create(l);
  if (!b) return b.error();
  auto pingBell = Doorbell::create();
  if (!pingBell) return pingBell.error();
  auto pongBell = Doorbell::create();
  if (!pongBell) return pongBell.error();
  auto fd = b->region.dupFd();
  auto pingFd = pingBell->dupFd();
  auto pongFd = pongBell->dupFd();
  if (!fd) return fd.error();
  if (!pingFd) return pingFd.error();
  if (!pongFd) return pongFd.error();
  if (auto r = pinTo(parentCpu); !r) return r.error();
  auto peer = Peer::start("ring RTT", peerCpu, [&] {
    return rttPeer(UniqueFd(fd->release()), UniqueFd(pingFd->release()),
                   UniqueFd(pongFd->release()), policy);
  });
  if (!peer) return peer.error();
  fd->reset();
  pingFd->reset();
  pongFd->reset();
  if (auto r = awaitPeerReady(b->control, *peer); !r) return r.error();

  DescriptorProducer ping(b->toPeer, kRttRingCap);
  DescriptorConsumer pong(b->toOwner, kRttRingCap);
  const uint32_t total = bud.warmup + bud.latencySamples;
  std::vector<int64_t> ns(bud.latencySamples, 0);  // touched now, not while measuring
  size_t kept = 0;
  Clock::time_point measureEnd{};
  for (uint32_t i = 0; i < total; ++i) {
    const Descriptor d{i & (kRttRingCap - 1), 0, kFlagPing, i};
    const auto t0 = Clock::now();
    auto k = ping.push(d);
    if (!k || *k != 1) return k ? makeError(0, "ping ring full") : k.error();
    if (ping.consumerNeedsWakeup()) pingBell->ring();
    if (!awaitRecord(pong, *pongBell, policy, kStallLimit)) {
      if (auto r = peer->checkAlive(); !r) return r.error();
      return makeError(0, "ring RTT: no pong within 3 s for ping " + std::to_string(i));
    }
    Descriptor r;
    auto n = pong.pop({&r, 1});
    const auto t1 = Clock::now();
    if (!n || *n != 1) return n ? makeError(0, "pong vanished") : n.error();
    if (r.cookie != i || r.flags != kFlagPong || r.index != d.index)
      return makeError(
          0, "ring RTT: pong " + std::to_string(r.cookie) + " for ping " + std::to_string(i));
    if (i == bud.warmup) measureEnd = t0 + timeBudget;
    if (i >= bud.warmup) {
      ns[kept++] = nsBetween(t0, t1);
      if (t1 >= measureEnd) break;
    }
  }
  auto k = ping.push(Descriptor{0, 0, kFlagStop, 0});
  if (!k || *k != 1) return k ? makeError(0, "ping ring full at stop") : k.error();
  if (ping.consumerNeedsWakeup()) pingBell->ring();
  if (auto r = peer->finish(kStallLimit); !r) return r.error();
  ns.resize(kept);
  return summarize(ns);
}

// ---------------------------------------------------------------------------
// 4a. A 1-byte ping-pong over socketpair(AF_UNIX, SOCK_STREAM).

Result<void> setRecvTimeout(int fd, Clock::duration d) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  struct timeval tv {
    static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)
  };
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0)
    return errnoError("setsockopt(SO_RCVTIMEO)");
  return ok();
}

// Reads exactly one byte; false on EOF (errno ECONNRESET), timeout (EAGAIN)
// or error.
bool readByte(int fd, uint8_t* c) {
  for (;;) {
    ssize_t n = ::read(fd, c, 1);
    if (n == 1) return true;
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) errno = ECONNRESET;
    return false;
  }
}
bool writeByte(int fd, uint8_t c) {
  for (;;) {
    ssize_t n = ::send(fd, &c, 1, MSG_NOSIGNAL);
    if (n == 1) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
}

int socketPeer(UniqueFd s) {
  const char* what = "unix socket RTT";
  if (auto r = setRecvTimeout(s.get(), kPeerIdleLimit); !r)
    return peerFail(what, r.error().message());
  for (uint8_t expect = 0;; ++expect) {
    uint8_t c;
    ssize_t n;
    do n = ::read(s.get(), &c, 1);
    while (n < 0 && errno == EINTR);
    if (n == 0) return 0;  // the parent closed its end: done
    if (n < 0) return peerFail(what, std::string("read: ") + strerror(errno));
    if (c != expect) return peerFail(what, "byte out of sequence");
    if (!writeByte(s.get(), static_cast<uint8_t>(c + 1)))
      return peerFail(what, std::string("send: ") + strerror(errno));
  }
}

Result<Latency> unixSocketRtt(const Cpus& cpus, const Budget& bud) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return errnoError("socketpair");
  UniqueFd mine(sv[0]), theirs(sv[1]);
  if (auto r = setRecvTimeout(mine.get(), kStallLimit); !r) return r.error();
  if (auto r = pinTo(cpus.a); !r) return r.error();
  auto peer = Peer::start("unix socket RTT", *cpus.b, [&] {
    mine.reset();
    return socketPeer(std::move(theirs));
  });
  if (!peer) return peer.error();
  theirs.reset();

  const uint32_t total = bud.warmup + bud.latencySamples;
  std::vector<int64_t> ns(bud.latencySamples, 0);
  size_t kept = 0;
  Clock::time_point measureEnd{};
  for (uint32_t i = 0; i < total; ++i) {
    const auto c = static_cast<uint8_t>(i);
    uint8_t r = 0;
    const auto t0 = Clock::now();
    if (!writeByte(mine.get(), c)) return errnoError("unix socket RTT: send");
    if (!readByte(mine.get(), &r)) {
      int e = errno;
      if (auto a = peer->checkAlive(); !a) return a.error();
      if (e == EAGAIN || e == EWOULDBLOCK)
        return makeError(0, "unix socket RTT: no reply within 3 s for byte " + std::to_string(i));
      return makeError(e, "unix socket RTT: no reply for byte " + std::to_string(i));
    }
    const auto t1 = Clock::now();
    if (r != static_cast<uint8_t>(c + 1))
      return makeError(0, "unix socket RTT: wrong reply for byte " + std::to_string(i));
    if (i == bud.warmup) measureEnd = t0 + bud.socketRttTime;
    if (i >= bud.warmup) {
      ns[kept++] = nsBetween(t0, t1);
      if (t1 >= measureEnd) break;
    }
  }
  mine.reset();  // EOF tells the peer to exit
  if (auto r = peer->finish(kStallLimit); !r) return r.error();
  ns.resize(kept);
  return summarize(ns);
}

// ---------------------------------------------------------------------------
// 4b. Serial Cap'n Proto calls over a Unix socket (TwoPartyVatNetwork).

using schema::Echo;

class EchoImpl final : public Echo::Server {
 protected:
  kj::Promise<void> echo(EchoContext context) override {
    context.getResults().setV(context.getParams().getV());
    return kj::READY_NOW;
  }
};

// Tight limits: the only messages are a few words long.
capnp::ReaderOptions rpcReaderOptions() {
  capnp::ReaderOptions o;
  o.traversalLimitInWords = 64 * 1024;
  o.nestingLimit = 16;
  return o;
}

int capnpPeer(UniqueFd s) {
  auto io = kj::setupAsyncIo();
  auto stream =
      io.lowLevelProvider->wrapSocketFd(s.release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  capnp::TwoPartyVatNetwork network(*stream, capnp::rpc::twoparty::Side::SERVER,
                                    rpcReaderOptions());
  auto rpc = capnp::makeRpcServer(network, kj::heap<EchoImpl>());
  // Serve until the client hangs up; bounded in case it never does.
  io.provider->getTimer().timeoutAfter(60 * kj::SECONDS, network.onDisconnect()).wait(io.waitScope);
  return 0;
}

struct CapnpResult {
  Latency rtt;
  double callsPerSecond = 0;
};

Result<CapnpResult> capnpRtt(const Cpus& cpus, const Budget& bud) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return errnoError("socketpair");
  UniqueFd mine(sv[0]), theirs(sv[1]);
  if (auto r = pinTo(cpus.a); !r) return r.error();
  // Fork before this process creates its own event loop.
  auto peer = Peer::start("capnp RTT", *cpus.b, [&] {
    mine.reset();
    return capnpPeer(std::move(theirs));
  });
  if (!peer) return peer.error();
  theirs.reset();

  const uint32_t total = bud.warmup + bud.latencySamples;
  std::vector<int64_t> ns(bud.latencySamples, 0);
  size_t kept = 0;
  double measuredSeconds = 0;
  try {
    auto io = kj::setupAsyncIo();
    auto& timer = io.provider->getTimer();
    auto stream = io.lowLevelProvider->wrapSocketFd(mine.release(),
                                                    kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    capnp::TwoPartyVatNetwork network(*stream, capnp::rpc::twoparty::Side::CLIENT,
                                      rpcReaderOptions());
    auto rpc = capnp::makeRpcClient(network);
    capnp::MallocMessageBuilder vatIdMessage;
    auto vatId = vatIdMessage.initRoot<capnp::rpc::twoparty::VatId>();
    vatId.setSide(capnp::rpc::twoparty::Side::SERVER);
    Echo::Client echo = rpc.bootstrap(vatId).castAs<Echo>();

    Clock::time_point measureStart{}, measureEnd{}, last{};
    for (uint32_t i = 0; i < total; ++i) {
      const auto t0 = Clock::now();
      auto req = echo.echoRequest();
      req.setV(0x1234567800000000ull + i);
      // Bounded: a silent server turns into a kj exception after 3 s.
      auto resp = timer
                      .timeoutAfter(3 * kj::SECONDS,
                                    kj::Promise<capnp::Response<Echo::EchoResults>>(req.send()))
                      .wait(io.waitScope);
      const auto t1 = Clock::now();
      if (resp.getV() != 0x1234567800000000ull + i)
        return makeError(0, "capnp RTT: wrong echo for call " + std::to_string(i));
      if (i == bud.warmup) {
        measureStart = t0;
        measureEnd = t0 + bud.capnpRttTime;
      }
      if (i >= bud.warmup) {
        ns[kept++] = nsBetween(t0, t1);
        last = t1;
        if (t1 >= measureEnd) break;
      }
    }
    measuredSeconds = std::chrono::duration<double>(last - measureStart).count();
    // Leaving the scope drops the capability, the RPC system and the socket:
    // the server sees the hang-up and exits.
  } catch (const kj::Exception& e) {
    if (auto r = peer->checkAlive(); !r) return r.error();
    return makeError(0, std::string("capnp RTT: ") + e.getDescription().cStr());
  }
  if (auto r = peer->finish(kStallLimit); !r) return r.error();
  ns.resize(kept);
  CapnpResult res;
  res.rtt = summarize(ns);
  res.callsPerSecond = measuredSeconds > 0 ? static_cast<double>(kept) / measuredSeconds : 0;
  return res;
}

// ---------------------------------------------------------------------------
// Machine description, table and JSON.

std::string cpuModel() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) {
        auto v = line.substr(colon + 1);
        v.erase(0, v.find_first_not_of(" \t"));
        return v;
      }
    }
  }
  return "unknown";
}

std::string kernelRelease() {
  struct utsname u {};
  if (uname(&u) != 0) return "unknown";
  return u.release;
}

std::string hostName() {
  char h[256] = {};
  if (gethostname(h, sizeof h - 1) != 0) return "unknown";
  return h;
}

std::string isoDate() {
  time_t now = time(nullptr);
  struct tm tm {};
  gmtime_r(&now, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// First line of a sysfs/procfs file, or "" if it can't be read.
std::string readLine(const char* path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

// The guest's idle driver decides what a cross-CPU wake-up costs: with
// haltpoll and guest_halt_poll_ns=0 every idle CPU halts (a VM exit), and the
// eventfd wake-up needs the host to reschedule the vCPU.
std::string cpuidleDriver() { return readLine("/sys/devices/system/cpu/cpuidle/current_driver"); }
std::string guestHaltPollNs() {
  return readLine("/sys/module/haltpoll/parameters/guest_halt_poll_ns");
}

double loadAverage1m() {
  double l = -1;
  if (FILE* f = fopen("/proc/loadavg", "r")) {
    if (fscanf(f, "%lf", &l) != 1) l = -1;
    fclose(f);
  }
  return l;
}

// How many other tasks want a CPU right now: /proc/stat's procs_running
// (which counts this process too), averaged over ~200 ms. Anything well
// above 0 means the figures below share the CPUs with someone else.
double otherRunnable() {
  double sum = 0;
  int n = 0;
  for (int i = 0; i < 20; ++i) {
    std::ifstream f("/proc/stat");
    std::string key;
    long v = 0;
    while (f >> key) {
      if (key == "procs_running" && (f >> v)) {
        sum += static_cast<double>(v - 1);
        ++n;
        break;
      }
      f.ignore(1 << 20, '\n');
    }
    usleep(10'000);
  }
  return n == 0 ? -1 : sum / n;
}

std::string jsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char b[8];
      snprintf(b, sizeof b, "\\u%04x", c);
      out += b;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string jsonNumber(std::optional<double> v) {
  if (!v) return "null";
  char b[64];
  snprintf(b, sizeof b, "%.6g", *v);
  return b;
}

std::string fmt(const char* f, double a) {
  char b[64];
  snprintf(b, sizeof b, f, a);
  return b;
}
std::string fmt2(const char* f, double a, double c) {
  char b[96];
  snprintf(b, sizeof b, f, a, c);
  return b;
}

struct Report {
  std::vector<std::pair<std::string, std::optional<double>>> metrics;
  std::vector<std::pair<std::string, std::optional<Latency>>> latency;

  static void row(const std::string& metric, const std::string& value, const std::string& target,
                  const std::string& detail) {
    printf("%-38s %-20s %-22s %s\n", metric.c_str(), value.c_str(), target.c_str(), detail.c_str());
    fflush(stdout);
  }
  static std::string verdict(bool ok) { return ok ? "  ok" : "  MISS"; }
  static std::string latencyValue(const Latency& l) {
    return l.p50 < 10 && l.p99 < 10 ? fmt2("%.2f/%.2f us", l.p50, l.p99)
                                    : fmt2("%.1f/%.1f us", l.p50, l.p99);
  }
  static std::string latencyDetail(const Latency& l) {
    char b[128];
    snprintf(b, sizeof b, "mean %.2f, p99.9 %.1f, max %.0f us, n=%zu", l.mean, l.p999, l.max,
             l.samples);
    return b;
  }
  void addLatency(const std::string& key, const std::string& label, const std::optional<Latency>& l,
                  const std::string& target, std::optional<double> p50Limit,
                  const std::string& skipReason = "") {
    latency.emplace_back(key, l);
    if (!l) {
      row(label, "n/a", target, skipReason);
      return;
    }
    std::string t = target;
    if (p50Limit) t += verdict(l->p50 <= *p50Limit);
    row(label, latencyValue(*l), t, latencyDetail(*l));
  }

  // Machine load seen before and after the run (see otherRunnable()).
  double loadBefore = -1, othersBefore = -1, othersAfter = -1;

  std::string json(const Cpus& cpus, bool quick) const {
    std::ostringstream o;
    o << "{\n  \"machine\": {\"cpus\": " << sysconf(_SC_NPROCESSORS_ONLN)
      << ", \"cpus_usable\": " << cpus.usable << ", \"kernel\": " << jsonString(kernelRelease())
      << ", \"cpu_model\": " << jsonString(cpuModel()) << ", \"host\": " << jsonString(hostName())
      << ", \"cpuidle_driver\": " << jsonString(cpuidleDriver())
      << ", \"guest_halt_poll_ns\": " << jsonString(guestHaltPollNs())
      << ", \"loadavg_1m\": " << jsonNumber(loadBefore)
      << ", \"other_runnable_before\": " << jsonNumber(othersBefore)
      << ", \"other_runnable_after\": " << jsonNumber(othersAfter) << "},\n";
    o << "  \"date\": " << jsonString(isoDate()) << ",\n";
    o << "  \"quick\": " << (quick ? "true" : "false") << ",\n";
    o << "  \"pinning\": {\"parent_cpu\": " << cpus.a
      << ", \"peer_cpu\": " << (cpus.b ? std::to_string(*cpus.b) : "null") << "},\n";
    o << "  \"metrics\": {";
    for (size_t i = 0; i < metrics.size(); ++i)
      o << (i ? ",\n" : "\n") << "    " << jsonString(metrics[i].first) << ": "
        << jsonNumber(metrics[i].second);
    o << "\n  },\n  \"latency\": {";
    for (size_t i = 0; i < latency.size(); ++i) {
      o << (i ? ",\n" : "\n") << "    " << jsonString(latency[i].first) << ": ";
      const auto& l = latency[i].second;
      if (!l) {
        o << "null";
        continue;
      }
      o << "{\"p50\": " << jsonNumber(l->p50) << ", \"p99\": " << jsonNumber(l->p99)
        << ", \"p999\": " << jsonNumber(l->p999) << ", \"mean\": " << jsonNumber(l->mean)
        << ", \"min\": " << jsonNumber(l->min) << ", \"max\": " << jsonNumber(l->max)
        << ", \"samples\": " << l->samples << "}";
    }
    o << "\n  }\n}\n";
    return o.str();
  }
};

// The --json output: opened at start-up, written once at the end, removed if
// the run fails in between.
class JsonFile {
 public:
  JsonFile() = default;
  JsonFile(const JsonFile&) = delete;
  JsonFile& operator=(const JsonFile&) = delete;
  ~JsonFile() {
    if (f_ != nullptr) {
      fclose(f_);
      unlink(path_.c_str());
    }
  }
  Result<void> open(const std::string& path) {
    f_ = fopen(path.c_str(), "w");
    if (f_ == nullptr) return errnoError(path);
    path_ = path;
    if (path.size() < sizeof gJsonPath) memcpy(gJsonPath, path.c_str(), path.size() + 1);
    return ok();
  }
  bool isOpen() const { return f_ != nullptr; }
  Result<void> commit(const std::string& text) {
    bool ok = fwrite(text.data(), 1, text.size(), f_) == text.size();
    ok = (fclose(std::exchange(f_, nullptr)) == 0) && ok;
    gJsonPath[0] = '\0';
    if (!ok) return errnoError(path_);
    return mknet::ok();
  }

 private:
  FILE* f_ = nullptr;
  std::string path_;
};

// ---------------------------------------------------------------------------

void usage(FILE* f) {
  fprintf(f,
          "usage: %s [--json PATH] [--quick] [--help]\n"
          "Measures mknet's IPC building blocks between two forked processes pinned to CPUs:\n"
          "ring descriptors/s (polled), 1500 B payloads through pool+rings, ring round trips\n"
          "(polled, eventfd doorbell across CPUs and on one CPU, doorbell after a 20 us spin),\n"
          "and for comparison a Unix socket and a Cap'n Proto call round trip.\n"
          "  --json PATH  also write the figures as JSON to PATH\n"
          "  --quick      shorter runs (100k samples, < 10 s in all)\n"
          "Build it Release (-O2); run it on an otherwise idle machine.\n",
          kProg);
}

// Prints the one line main() ends with; `what` is left out when the message
// already starts with it.
int fail(const char* what, const Error& e) {
  std::string m = e.message();
  if (m.rfind(what, 0) == 0)
    fprintf(stderr, "%s: %s\n", kProg, m.c_str());
  else
    fprintf(stderr, "%s: %s: %s\n", kProg, what, m.c_str());
  return 1;
}

int run(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      usage(stdout);
      return 0;
    } else if (a == "--quick") {
      opt.quick = true;
    } else if (a == "--json" && i + 1 < argc) {
      opt.jsonPath = argv[++i];
    } else if (a.rfind("--json=", 0) == 0) {
      opt.jsonPath = a.substr(7);
    } else {
      fprintf(stderr, "%s: unknown or incomplete argument '%s'\n", kProg, a.c_str());
      usage(stderr);
      return 2;
    }
  }
  // Open the JSON file first, so a bad path fails before the 20 s of runs;
  // a run that fails later removes it rather than leave an empty file.
  JsonFile json;
  if (!opt.jsonPath.empty()) {
    if (auto r = json.open(opt.jsonPath); !r) return fail("write JSON", r.error());
  }
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = onWatchdog;
  sigaction(SIGALRM, &sa, nullptr);
  alarm(kWatchdogSeconds);
  setPhase(kStartup);

  const Budget bud = budgetFor(opt);
  const Cpus cpus = pickCpus();
  const std::string noSecondCpu = "skipped: needs 2 usable CPUs";
  const std::string cross =
      cpus.b ? "CPU " + std::to_string(cpus.a) + " <-> " + std::to_string(*cpus.b) : "";
  Report rep;

  printf("mknet bench ipc  (%s, %ld CPUs, %s)%s\n", hostName().c_str(),
         sysconf(_SC_NPROCESSORS_ONLN), isoDate().c_str(), opt.quick ? "  --quick" : "");
  const std::string idle = cpuidleDriver(), haltPoll = guestHaltPollNs();
  printf("%s, kernel %s, cpuidle %s%s; parent on CPU %d, peer on CPU %s\n", cpuModel().c_str(),
         kernelRelease().c_str(), idle.empty() ? "?" : idle.c_str(),
         haltPoll.empty() ? "" : (" (guest_halt_poll_ns " + haltPoll + ")").c_str(), cpus.a,
         cpus.b ? std::to_string(*cpus.b).c_str() : "-");
  rep.loadBefore = loadAverage1m();
  rep.othersBefore = otherRunnable();
  if (rep.othersBefore > 0.2)
    printf(
        "WARNING: %.1f other tasks runnable on average (load %.2f): the figures below share\n"
        "         the CPUs with them and will be noisy; run on an idle machine.\n",
        rep.othersBefore, rep.loadBefore);
  Report::row("metric", "value", "target / reference", "detail");

  // 1. ring throughput
  setPhase(kRingTp);
  if (cpus.b) {
    auto r = ringThroughput(cpus, bud);
    if (!r) return fail("ring throughput", r.error());
    rep.metrics.emplace_back("ring_desc_per_s_polled", r->perSecond);
    rep.metrics.emplace_back("ring_desc_per_s_polled_window_min", r->windowMin);
    rep.metrics.emplace_back("ring_desc_per_s_polled_window_max", r->windowMax);
    Report::row(
        "ring descriptors/s (polled)", fmt("%.1f M/s", r->perSecond / 1e6),
        ">= 4 M/s" + Report::verdict(r->perSecond >= 4e6),
        fmt2("windows %.0f-%.0f M/s; ", r->windowMin / 1e6, r->windowMax / 1e6) +
            fmt2("%.0f M checked in %.2f s", static_cast<double>(r->count) / 1e6, r->seconds));
  } else {
    rep.metrics.emplace_back("ring_desc_per_s_polled", std::nullopt);
    Report::row("ring descriptors/s (polled)", "n/a", ">= 4 M/s", noSecondCpu);
  }

  // 2. pool + rings, 1500-byte payloads
  setPhase(kPoolTp);
  if (cpus.b) {
    auto r = poolThroughput(cpus, bud);
    if (!r) return fail("pool throughput", r.error());
    rep.metrics.emplace_back("pool_ring_gbps_1500", r->gbps);
    rep.metrics.emplace_back("pool_ring_mdesc_per_s_1500", r->tp.perSecond / 1e6);
    rep.metrics.emplace_back("pool_ring_mdesc_per_s_1500_window_min", r->tp.windowMin / 1e6);
    rep.metrics.emplace_back("pool_ring_mdesc_per_s_1500_window_max", r->tp.windowMax / 1e6);
    Report::row("pool+ring 1500 B payload", fmt("%.1f Gbit/s", r->gbps), "ref 3.6-4.7 M/s",
                fmt("%.2f M desc/s ", r->tp.perSecond / 1e6) +
                    fmt2("(windows %.2f-%.2f); ", r->tp.windowMin / 1e6, r->tp.windowMax / 1e6) +
                    fmt("%.1f M checked", static_cast<double>(r->tp.count) / 1e6));
  } else {
    rep.metrics.emplace_back("pool_ring_gbps_1500", std::nullopt);
    rep.metrics.emplace_back("pool_ring_mdesc_per_s_1500", std::nullopt);
    Report::row("pool+ring 1500 B payload", "n/a", "", noSecondCpu);
  }

  // 3. ring round trips
  setPhase(kRingRtt);
  struct RttCase {
    const char* key;
    const char* label;
    bool crossCpu;
    WaitPolicy policy;
    Clock::duration budget;
    const char* target;
    std::optional<double> p50Limit;
  };
  const RttCase cases[] = {
      {"rtt_polled_us",
       "RTT polled, across CPUs     p50/p99",
       true,
       {WaitMode::kPoll},
       bud.ringRttTime,
       "<= 2 us p50",
       2.0},
      {"rtt_doorbell_cross_cpu_us",
       "RTT doorbell, across CPUs   p50/p99",
       true,
       {WaitMode::kSleep},
       bud.doorbellRttTime,
       "ref ~16 us",
       std::nullopt},
      {"rtt_doorbell_same_cpu_us",
       "RTT doorbell, same CPU      p50/p99",
       false,
       {WaitMode::kSleep},
       bud.doorbellRttTime,
       "ref ~4 us",
       std::nullopt},
      {"rtt_doorbell_spin20us_cross_cpu_us",
       "RTT 20us spin+doorbell, across p50/p99",
       true,
       {WaitMode::kSpinSleep, 20us},
       bud.ringRttTime,
       "~ polled",
       std::nullopt},
  };
  for (const RttCase& c : cases) {
    if (c.crossCpu && !cpus.b) {
      rep.addLatency(c.key, c.label, std::nullopt, c.target, std::nullopt, noSecondCpu);
      continue;
    }
    auto r = ringRtt(cpus.a, c.crossCpu ? *cpus.b : cpus.a, c.policy, bud, c.budget);
    if (!r) return fail(c.key, r.error());
    rep.addLatency(c.key, c.label, *r, c.target, c.p50Limit);
  }

  // 4. comparison: Unix socket and Cap'n Proto
  setPhase(kSocketRtt);
  if (cpus.b) {
    auto r = unixSocketRtt(cpus, bud);
    if (!r) return fail("unix socket RTT", r.error());
    rep.addLatency("unix_socket_rtt_us", "unix socket 1 B, across CPUs p50/p99", *r, "-",
                   std::nullopt);
  } else {
    rep.addLatency("unix_socket_rtt_us", "unix socket 1 B, across CPUs p50/p99", std::nullopt, "-",
                   std::nullopt, noSecondCpu);
  }
  setPhase(kCapnpRtt);
  if (cpus.b) {
    auto r = capnpRtt(cpus, bud);
    if (!r) return fail("capnp RTT", r.error());
    rep.addLatency("capnp_call_rtt_us", "capnp call, across CPUs     p50/p99", r->rtt,
                   "ref 40-70 us", std::nullopt);
    rep.metrics.emplace_back("capnp_calls_per_s", r->callsPerSecond);
    Report::row("capnp calls/s (serial)", fmt("%.1f k/s", r->callsPerSecond / 1e3), "ref 13-23 k/s",
                "one call in flight, TwoPartyVatNetwork over socketpair");
  } else {
    rep.addLatency("capnp_call_rtt_us", "capnp call, across CPUs     p50/p99", std::nullopt,
                   "ref 40-70 us", std::nullopt, noSecondCpu);
    rep.metrics.emplace_back("capnp_calls_per_s", std::nullopt);
  }

  setPhase(kReport);
  rep.othersAfter = otherRunnable();
  if (rep.othersAfter > 0.2 && rep.othersBefore <= 0.2)
    printf("WARNING: %.1f other tasks became runnable during the run: figures may be noisy.\n",
           rep.othersAfter);
  if (json.isOpen()) {
    if (auto r = json.commit(rep.json(cpus, opt.quick)); !r) return fail("write JSON", r.error());
    printf("JSON written to %s\n", opt.jsonPath.c_str());
  }
  alarm(0);
  return 0;
}

}  // namespace
}  // namespace mknet::bench

int main(int argc, char** argv) { return mknet::bench::run(argc, argv); }
