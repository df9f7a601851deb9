// mknet-bench-ipc, comparisons 1 and 2: descriptors through one ring, and
// 1500-byte payloads through the pool (see ipc_bench_harness.h).
#include "tests/bench/ipc_bench_harness.h"

namespace mknet::bench {

namespace {

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
    if (auto rc = peerShouldEnd(*b->control, iter, end, what)) return *rc;
  }
}

// Pins this thread to cpus.a, starts a throughput peer on cpus.b over the
// region (it gets its own fd of the memory and the run's time limit), and
// waits until the peer says it is ready.
Result<Peer> startThroughputPeer(const char* what, BenchRegion& b, const Cpus& cpus, const Budget& bud,
                                 int (*body)(UniqueFd, Clock::duration)) {
  auto fd = b.region.dupFd();
  if (!fd) return fd.error();
  if (auto r = pinTo(cpus.a); !r) return r.error();
  const auto peerLimit = bud.throughputTime + 2 * kStallLimit + 5s;
  auto peer = Peer::start(what, *cpus.b, [&] { return body(UniqueFd(fd->release()), peerLimit); });
  if (!peer) return peer.error();
  fd->reset();
  if (auto r = awaitPeerReady(b.control, *peer); !r) return r.error();
  return std::move(*peer);
}

}  // namespace

Result<Throughput> ringThroughput(const Cpus& cpus, const Budget& bud) {
  const Layout l{0, kTpRingCap, 0};
  auto b = BenchRegion::create(l);
  if (!b) return b.error();
  auto peer = startThroughputPeer("ring throughput", *b, cpus, bud, ringTpPeer);
  if (!peer) return peer.error();

  DescriptorConsumer in(b->toOwner, kTpRingCap);
  std::array<Descriptor, kBurst> burst;
  uint64_t got = 0, bad = 0;
  const auto t0 = Clock::now();
  b->control->go.store(1, std::memory_order_release);
  ThroughputPace pace(t0, bud);
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
      const auto step = pace.check(got);
      if (step == ThroughputPace::Step::kDone) break;
      if (step == ThroughputPace::Step::kStalled)
        return pace.stalled(*peer, "ring throughput: producer stalled after " + std::to_string(got) + " descriptors");
    }
  }
  b->control->stop.store(1, std::memory_order_release);
  if (auto r = peer->finish(kStallLimit); !r) return r.error();
  if (bad != 0)
    return makeError(0, "ring throughput: " + std::to_string(bad) + " of " + std::to_string(got) +
                            " descriptors wrong or out of order");
  return pace.result(got);
}

namespace {

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
    if (auto rc = peerShouldEnd(*b->control, iter, end, what)) return *rc;
  }
}

}  // namespace

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
  auto peer = startThroughputPeer("pool throughput", *b, cpus, bud, poolTpPeer);
  if (!peer) return peer.error();

  DescriptorConsumer active(b->toOwner, kActiveCap);
  std::vector<std::byte> socketRing(kSocketRingBytes, std::byte{0});
  size_t ringAt = 0;
  std::array<Descriptor, kBurst> burst;
  uint64_t got = 0, badDesc = 0, badBytes = 0;
  const auto t0 = Clock::now();
  b->control->go.store(1, std::memory_order_release);
  ThroughputPace pace(t0, bud);
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
      const auto step = pace.check(got);
      if (step == ThroughputPace::Step::kDone) break;
      if (step == ThroughputPace::Step::kStalled)
        return pace.stalled(*peer, "pool throughput: producer stalled after " + std::to_string(got) + " payloads");
    }
  }
  b->control->stop.store(1, std::memory_order_release);
  if (auto r = peer->finish(kStallLimit); !r) return r.error();
  if (badDesc + badBytes != 0)
    return makeError(0, "pool throughput: " + std::to_string(badDesc) + " bad descriptors, " +
                            std::to_string(badBytes) + " corrupt payloads of " +
                            std::to_string(got));
  PoolResult res;
  res.tp = pace.result(got);
  res.gbps = res.tp.perSecond * kPayload * 8 / 1e9;
  return res;
}

}  // namespace mknet::bench
