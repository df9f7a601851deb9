// SpscRing and PacketPool between real processes: a forked producer, the
// parent as consumer, all memory shared through a sealed memfd region.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <random>

#include <gtest/gtest.h>

#include "ipc/doorbell.h"
#include "ipc/packet_pool.h"
#include "ipc/shm_region.h"
#include "ipc/spsc_ring.h"
#include "tests/ipc/pattern.h"

namespace mknet::ipc {
namespace {

using namespace std::chrono_literals;

constexpr uint32_t kContent = 1;

uint32_t lengthFor(uint64_t seq) { return 1 + static_cast<uint32_t>(test::mix(seq) % 255); }

// A region holding a pool and two rings, like the stack's packet region.
struct Shared {
  Shared(uint32_t buffers, uint32_t activeCap, uint32_t freeCap)
      : buffers(buffers), activeCap(activeCap), freeCap(freeCap) {
    auto r = ShmRegion::create("proc-test",
                               PacketPool::bytesFor(buffers) +
                                   SpscRingMemory<Descriptor>::bytesFor(activeCap) +
                                   SpscRingMemory<Descriptor>::bytesFor(freeCap) + 4 * kCacheLine,
                               RegionKind::kTest, kContent);
    EXPECT_TRUE(r) << r.error().message();
    region.emplace(std::move(r).value());
    EXPECT_TRUE(region->allocate("pool", PacketPool::bytesFor(buffers)));
    EXPECT_TRUE(SpscRingMemory<Descriptor>::init(
        *region->allocate("active", SpscRingMemory<Descriptor>::bytesFor(activeCap)), activeCap));
    EXPECT_TRUE(SpscRingMemory<Descriptor>::init(
        *region->allocate("free", SpscRingMemory<Descriptor>::bytesFor(freeCap)), freeCap));
  }

  // What each side does after attaching (the child attaches by fd, as a real
  // peer process would).
  struct View {
    PacketPool pool;
    RingControl* active;
    RingControl* free;
  };
  static Result<View> open(const ShmRegion& r, uint32_t buffers, uint32_t activeCap, uint32_t freeCap) {
    auto pool = r.find("pool", PacketPool::bytesFor(buffers));
    if (!pool) return pool.error();
    auto a = r.find("active", 0);
    if (!a) return a.error();
    auto f = r.find("free", 0);
    if (!f) return f.error();
    auto ac = SpscRingMemory<Descriptor>::open(*a, activeCap, "active");
    if (!ac) return ac.error();
    auto fc = SpscRingMemory<Descriptor>::open(*f, freeCap, "free");
    if (!fc) return fc.error();
    return View{PacketPool(*pool, buffers), *ac, *fc};
  }

  uint32_t buffers, activeCap, freeCap;
  std::optional<ShmRegion> region;
};

int waitChild(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

// 10 million descriptors from a forked producer through pool buffers and two
// rings (active and free), doorbells in both directions. The consumer checks
// order, length and the content of every buffer; nothing lost or duplicated.
TEST(SpscRingProcessTest, TenMillionDescriptorsAcrossProcesses) {
  const uint64_t total = static_cast<uint64_t>(10'000'000 * test::testScale());
  constexpr uint32_t kBuffers = 1024, kActive = 256, kFree = 1024;
  Shared s(kBuffers, kActive, kFree);
  Doorbell toConsumer = *Doorbell::create(), toProducer = *Doorbell::create();
  UniqueFd childFd = *s.region->dupFd();

  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a failed test
    auto region = ShmRegion::attach(std::move(childFd), RegionKind::kTest, kContent);
    if (!region) _exit(10);
    auto v = Shared::open(*region, kBuffers, kActive, kFree);
    if (!v) _exit(11);
    DescriptorProducer out(v->active, kActive);
    DescriptorConsumer freeIn(v->free, kFree);
    std::array<Descriptor, 32> burst;
    uint64_t seq = 0;
    while (seq < total) {
      auto got = freeIn.pop(burst);
      if (!got) _exit(12);
      if (*got == 0) {
        toProducer.wait([&] { return !freeIn.empty(); }, [&] { return freeIn.prepareSleep(); },
                        [&] { freeIn.cancelSleep(); }, 20us, -1ns);
        continue;
      }
      uint32_t n = *got;
      if (n > total - seq) n = static_cast<uint32_t>(total - seq);
      for (uint32_t i = 0; i < n; ++i) {
        Descriptor& d = burst[i];
        auto buf = v->pool.buffer(d.index);
        if (!buf) _exit(13);
        d.length = lengthFor(seq);
        d.cookie = static_cast<uint32_t>(seq);
        test::fillPattern(buf->first(d.length), seq);
        ++seq;
      }
      // The active ring has room for all: there are only kBuffers buffers and
      // this burst came off the free ring... but the active ring is smaller,
      // so push what fits and wait for the rest.
      uint32_t pushed = 0;
      while (pushed < n) {
        auto k = out.push(std::span<const Descriptor>(burst.data() + pushed, n - pushed));
        if (!k) _exit(14);
        pushed += *k;
        if (out.consumerNeedsWakeup()) toConsumer.ring();
        if (*k == 0) Doorbell::cpuRelax();
      }
    }
    _exit(0);
  }

  auto v = Shared::open(*s.region, kBuffers, kActive, kFree);
  ASSERT_TRUE(v) << v.error().message();
  DescriptorConsumer in(v->active, kActive);
  DescriptorProducer freeOut(v->free, kFree);
  for (uint32_t i = 0; i < kBuffers; ++i) ASSERT_EQ(*freeOut.push(Descriptor{i, 0, 0, 0}), 1u);
  if (freeOut.consumerNeedsWakeup()) toProducer.ring();

  uint64_t seq = 0, badContent = 0, badOrder = 0, badDesc = 0;
  std::array<Descriptor, 64> burst;
  while (seq < total) {
    auto got = in.pop(burst);
    ASSERT_TRUE(got) << got.error().message();
    if (*got == 0) {
      auto r = toConsumer.wait([&] { return !in.empty(); }, [&] { return in.prepareSleep(); },
                               [&] { in.cancelSleep(); }, 20us, 10s);
      ASSERT_EQ(r, WaitResult::kReady) << "producer stalled at " << seq;
      continue;
    }
    for (uint32_t i = 0; i < *got; ++i, ++seq) {
      const Descriptor& d = burst[i];
      auto bytes = v->pool.bytes(d);
      if (!bytes) {
        ++badDesc;
        continue;
      }
      badOrder += d.cookie != static_cast<uint32_t>(seq) || d.length != lengthFor(seq);
      badContent += !test::checkPattern(*bytes, seq);
    }
    ASSERT_EQ(*freeOut.push(std::span<const Descriptor>(burst.data(), *got)), *got);
    if (freeOut.consumerNeedsWakeup()) toProducer.ring();
  }
  int status = waitChild(pid);
  ASSERT_TRUE(WIFEXITED(status)) << "producer died: " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(seq, total);
  EXPECT_EQ(badDesc, 0u);
  EXPECT_EQ(badOrder, 0u);
  EXPECT_EQ(badContent, 0u);
  EXPECT_TRUE(in.empty());  // nothing duplicated past the end
}

// A producer SIGKILLed at a random instant, 1000 times. After each kill the
// consumer drains the ring and must see only whole, valid descriptors whose
// buffers hold their sequence's pattern; a fresh producer then attaches and
// continues the sequence where the published head says it stopped.
TEST(SpscRingProcessTest, ProducerKilledAtRandomPoints) {
  const int kills = static_cast<int>(1000 * std::min(1.0, test::testScale() * 3));
  constexpr uint32_t kCap = 256, kBuffers = 2 * kCap;  // see the child's reuse rule
  Shared s(kBuffers, kCap, 2);
  auto v = Shared::open(*s.region, kBuffers, kCap, 2);
  ASSERT_TRUE(v);
  DescriptorConsumer in(v->active, kCap);
  std::mt19937 rng(12345);
  uint64_t seq = 0, bad = 0, killedBySignal = 0, progressed = 0;

  auto drain = [&] {
    std::array<Descriptor, 64> burst;
    for (;;) {
      auto got = in.pop(burst);
      if (!got) {
        ++bad;
        return;
      }
      if (*got == 0) return;
      for (uint32_t i = 0; i < *got; ++i, ++seq) {
        const Descriptor& d = burst[i];
        auto bytes = v->pool.bytes(d);
        bad += !bytes || d.cookie != static_cast<uint32_t>(seq) ||
               d.index != seq % kBuffers || d.length != lengthFor(seq) ||
               !test::checkPattern(*bytes, seq);
      }
    }
  };

  for (int k = 0; k < kills; ++k) {
    UniqueFd fd = *s.region->dupFd();
    uint64_t before = seq;
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      auto region = ShmRegion::attach(std::move(fd), RegionKind::kTest, kContent);
      if (!region) _exit(10);
      auto cv = Shared::open(*region, kBuffers, kCap, 2);
      if (!cv) _exit(11);
      DescriptorProducer out(cv->active, kCap);  // resumes at the published head
      uint32_t next = cv->active->head.load();
      for (;;) {
        auto room = out.freeSlots();
        if (!room) _exit(12);
        if (*room == 0) continue;
        // Fill only when the ring has room: then buffer next % (2*kCap) is
        // not one the consumer may still be reading.
        Descriptor d{next % kBuffers, lengthFor(next), 0, next};
        test::fillPattern((*cv->pool.buffer(d.index)).first(d.length), next);
        if (!out.push(d)) _exit(13);
        ++next;
      }
    }
    fd.reset();
    // Kill at a random instant of the producer's run: first wait (bounded)
    // until it has started publishing, so a slow fork on a loaded machine
    // doesn't turn every kill into a kill during start-up.
    auto started = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (seq == before && std::chrono::steady_clock::now() < started) drain();
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::microseconds(std::uniform_int_distribution<int>(0, 2000)(rng));
    while (std::chrono::steady_clock::now() < deadline) drain();
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int status = waitChild(pid);
    killedBySignal += WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    drain();
    ASSERT_EQ(bad, 0u) << "after kill " << k;
    ASSERT_EQ(static_cast<uint32_t>(seq), v->active->head.load()) << "not fully drained";
    progressed += seq > before;
  }
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(killedBySignal, static_cast<uint64_t>(kills));
  // Every producer got to publish before it died (bar the rare one that
  // needed more than 5 s to start on an overloaded machine).
  EXPECT_GE(progressed * 100, static_cast<uint64_t>(kills) * 95);
  EXPECT_GT(seq, static_cast<uint64_t>(kills) * 10);
}

}  // namespace
}  // namespace mknet::ipc
