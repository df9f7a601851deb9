// mknet-bench-ipc, comparison 3: round trips of one descriptor through a
// "ping" and a "pong" ring with a doorbell each way (see ipc_bench_harness.h).
#include "tests/bench/ipc_bench_harness.h"

namespace mknet::bench {

namespace {

// ---------------------------------------------------------------------------
// 3. Round trips of one descriptor: "ping" ring parent -> peer, "pong" ring
// peer -> parent, with a doorbell each way.

constexpr uint32_t kRttRingCap = 16;
constexpr uint32_t kFlagPing = 1, kFlagPong = 2, kFlagStop = 3;

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

}  // namespace

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

}  // namespace mknet::bench
