// TapDriver against a FakeNic, with the test acting as the stack: it owns the
// PoolRegion, feeds rxFree/txActive, drains rxActive/txFree and follows the
// doorbell protocol, so a lost wake-up in the driver shows up as a timeout.
#include "drivers/tap/tap_driver.h"

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "ipc/doorbell.h"
#include "ipc/pool_region.h"
#include "libnet/frame.h"
#include "tests/drivers/tap/fake_nic.h"
#include "tests/drivers/tap/tcp_frames.h"
#include "tests/ipc/pattern.h"

namespace mknet::drivers {
namespace {

using namespace std::chrono_literals;
using ipc::Descriptor;
using test::FakeNic;
using test::Frame;

constexpr uint32_t kBuffers = 256;

Frame patternFrame(size_t length, uint64_t seq) {
  Frame f(length);
  mknet::test::fillPattern(f, seq);
  return f;
}

size_t lengthFor(uint64_t seq) { return 60 + mknet::test::mix(seq) % (1514 - 60 + 1); }

// Where each pool buffer is, from the stack's point of view.
enum class Where { kStack, kRxFree, kTxActive };

class TapDriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = ipc::PoolRegion::create(ipc::PoolConfig{kBuffers, kBuffers});
    ASSERT_TRUE(r) << r.error().message();
    region_ = std::make_unique<ipc::PoolRegion>(std::move(r).value());
    toDriver_ = *ipc::Doorbell::create();
    toStack_ = *ipc::Doorbell::create();
    control_ = *ipc::Doorbell::create();
    rxFree_ = ipc::DescriptorProducer(region_->rxFree(), kBuffers);
    rxActive_ = ipc::DescriptorConsumer(region_->rxActive(), kBuffers);
    txActive_ = ipc::DescriptorProducer(region_->txActive(), kBuffers);
    txFree_ = ipc::DescriptorConsumer(region_->txFree(), kBuffers);
    where_.assign(kBuffers, Where::kStack);
  }

  void TearDown() override {
    stopDriver();
    if (driver_ && !HasFailure()) {
      // Leak check: every buffer the stack handed out is in a ring, in the
      // driver's hands, or came back; none came back twice.
      EXPECT_EQ(duplicates_, 0u);
      size_t out = 0;
      for (Where w : where_) out += w != Where::kStack;
      auto inRing = [](ipc::RingControl* c) { return c->head.load() - c->tail.load(); };
      EXPECT_EQ(out, driver_->heldBuffers() + inRing(region_->rxFree()) +
                         inRing(region_->txActive()) + inRing(region_->rxActive()) +
                         inRing(region_->txFree()));
    }
  }

  void startDriver(TapDriverOptions options = {}) {
    driver_ = std::make_unique<TapDriver>(nic_, *region_, toDriver_, toStack_, control_, options);
    thread_ = std::thread([this] { stop_ = driver_->run(); });
  }
  TapDriverStop stopDriver() {
    if (thread_.joinable()) {
      driver_->requestStop();
      thread_.join();
    }
    return stop_;
  }
  // For tests where the driver stops by itself.
  bool waitForDriverExit(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (stop_ != TapDriverStop::kStopped) {
        thread_.join();
        return true;
      }
      std::this_thread::sleep_for(1ms);
    }
    return false;
  }

  // Stack side, producer: give buffers to the driver.
  void giveRx(std::vector<uint32_t> indices) {
    if (indices.empty()) return;
    std::vector<Descriptor> d;
    for (uint32_t i : indices) {
      if (i < kBuffers) {
        ASSERT_EQ(where_[i], Where::kStack) << "test bug: buffer " << i << " is not ours";
        where_[i] = Where::kRxFree;
      }
      d.push_back(Descriptor{i, 0, 0, 0});
    }
    ASSERT_EQ(*rxFree_.push(d), d.size());
    if (rxFree_.consumerNeedsWakeup()) toDriver_.ring();
  }
  // Queues `frames` on txActive in buffers `indices` (index/length may be bad on purpose).
  void giveTx(const std::vector<Descriptor>& descs, const std::vector<Frame>& frames) {
    if (descs.empty()) return;
    for (size_t k = 0; k < descs.size(); ++k) {
      const Descriptor& d = descs[k];
      if (d.index < kBuffers) {
        ASSERT_EQ(where_[d.index], Where::kStack);
        where_[d.index] = Where::kTxActive;
        if (k < frames.size() && !frames[k].empty()) {
          auto buf = *region_->pool().buffer(d.index);
          std::memcpy(buf.data(), frames[k].data(), frames[k].size());
        }
      }
    }
    ASSERT_EQ(*txActive_.push(descs), descs.size());
    if (txActive_.consumerNeedsWakeup()) toDriver_.ring();
  }

  // Frames that arrive while the driver has no buffer are dropped by design,
  // so tests that must not lose one wait until the driver has taken the
  // buffers they gave (into its stash) before they inject frames.
  void waitUntilRxFreeTaken() {
    ipc::RingControl* c = region_->rxFree();
    auto deadline = std::chrono::steady_clock::now() + 2s;
    while (c->head.load() != c->tail.load() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(20us);
    ASSERT_EQ(c->head.load(), c->tail.load()) << "the driver did not take its rxFree buffers";
  }

  // Stack side, consumer: pops everything from rxActive and txFree.
  void drain() {
    Descriptor d[64];
    for (;;) {
      auto n = rxActive_.pop(d);
      ASSERT_TRUE(n);
      for (uint32_t i = 0; i < *n; ++i) {
        ASSERT_LT(d[i].index, kBuffers);
        if (where_[d[i].index] != Where::kRxFree) ++duplicates_;
        where_[d[i].index] = Where::kStack;
        auto bytes = region_->pool().bytes(d[i]);
        ASSERT_TRUE(bytes);
        received_.emplace_back(bytes->begin(), bytes->end());
        receivedFlags_.push_back(d[i].flags);
        receivedIndex_.push_back(d[i].index);
      }
      if (*n == 0) break;
    }
    for (;;) {
      auto n = txFree_.pop(d);
      ASSERT_TRUE(n);
      for (uint32_t i = 0; i < *n; ++i) {
        ASSERT_LT(d[i].index, kBuffers);
        if (where_[d[i].index] != Where::kTxActive) ++duplicates_;
        where_[d[i].index] = Where::kStack;
        txReturned_.push_back(d[i].index);
      }
      if (*n == 0) break;
    }
  }

  // Drains until cond() holds, sleeping on toStack like the stack would.
  // False on timeout (including a wake-up the driver failed to send).
  template <typename Cond>
  bool waitFor(Cond cond, std::chrono::milliseconds timeout = 5s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      drain();
      if (cond()) return true;
      auto left = deadline - std::chrono::steady_clock::now();
      if (left <= 0s) return false;
      if (!rxActive_.prepareSleep()) continue;
      if (!txFree_.prepareSleep()) {
        rxActive_.cancelSleep();
        continue;
      }
      ipc::WaitResult r = toStack_.sleep(left);
      rxActive_.cancelSleep();
      txFree_.cancelSleep();
      // Not rung before the deadline: a lost wake-up (or no progress) is a
      // failure even if the records are there by now.
      if (r == ipc::WaitResult::kTimeout) return false;
    }
  }

  std::vector<uint32_t> ourBuffers(uint32_t from, uint32_t count) {
    std::vector<uint32_t> v;
    for (uint32_t i = from; i < from + count; ++i) v.push_back(i);
    return v;
  }

  FakeNic nic_;
  std::unique_ptr<ipc::PoolRegion> region_;
  ipc::Doorbell toDriver_, toStack_, control_;
  ipc::DescriptorProducer rxFree_, txActive_;
  ipc::DescriptorConsumer rxActive_, txFree_;
  std::unique_ptr<TapDriver> driver_;
  std::thread thread_;
  std::atomic<TapDriverStop> stop_{TapDriverStop::kStopped};

  std::vector<Where> where_;
  std::vector<Frame> received_;
  std::vector<uint32_t> receivedFlags_;  // the rxActive descriptor's flags, one per received_ frame
  std::vector<uint32_t> receivedIndex_;
  std::vector<uint32_t> txReturned_;
  uint64_t duplicates_ = 0;
};

// 2000 frames each way with lengths 60..1514: every byte arrives intact and in
// order, every buffer comes back exactly once, and the counters add up.
TEST_F(TapDriverTest, FramesFlowBothWaysIntact) {
  constexpr uint64_t kFrames = 2000;
  constexpr uint32_t kRxBuffers = 128;  // buffers 0..127 for RX, 128..255 for TX
  giveRx(ourBuffers(0, kRxBuffers));  // before the start, so no frame finds it empty-handed
  startDriver();

  uint64_t rxBytes = 0, txBytes = 0, rxSeq = 0, txSeq = 0;
  std::vector<uint32_t> txIdle = ourBuffers(kRxBuffers, kBuffers - kRxBuffers);
  while (rxSeq < kFrames || txSeq < kFrames) {
    // A burst each way, as big as the free buffers allow.
    std::vector<Frame> in;
    for (int k = 0; k < 40 && rxSeq < kFrames; ++k, ++rxSeq) {
      in.push_back(patternFrame(lengthFor(rxSeq), rxSeq));
      rxBytes += in.back().size();
    }
    nic_.inject(std::move(in));
    std::vector<Descriptor> out;
    std::vector<Frame> outFrames;
    while (!txIdle.empty() && txSeq < kFrames && out.size() < 50) {
      uint64_t seq = 1'000'000 + txSeq++;
      outFrames.push_back(patternFrame(lengthFor(seq), seq));
      out.push_back(Descriptor{txIdle.back(), static_cast<uint32_t>(outFrames.back().size()), 0, 0});
      txBytes += outFrames.back().size();
      txIdle.pop_back();
    }
    std::vector<uint32_t> sentOrder;
    for (const Descriptor& d : out) sentOrder.push_back(d.index);
    giveTx(out, outFrames);
    ASSERT_TRUE(waitFor([&] {
      return received_.size() == rxSeq && nic_.writtenCount() == txSeq &&
             txReturned_.size() + txIdle.size() == kBuffers - kRxBuffers;
    })) << "rx " << received_.size() << "/" << rxSeq << " tx " << nic_.writtenCount() << "/" << txSeq;
    ASSERT_EQ(txReturned_, sentOrder) << "txFree must hand buffers back in txActive order";
    // Recycle: received buffers back to rxFree, sent ones back to the TX pool.
    giveRx(receivedIndex_);
    receivedIndex_.clear();
    txIdle.insert(txIdle.end(), txReturned_.begin(), txReturned_.end());
    txReturned_.clear();
  }

  ASSERT_EQ(received_.size(), kFrames);
  for (uint64_t s = 0; s < kFrames; ++s) {
    ASSERT_EQ(received_[s].size(), lengthFor(s)) << "rx frame " << s;
    ASSERT_TRUE(mknet::test::checkPattern(received_[s], s)) << "rx frame " << s;
    // Frames without offload metadata: the stack must check their checksums.
    ASSERT_EQ(receivedFlags_[s], ipc::kDescFlagNone) << "rx frame " << s;
  }
  auto written = nic_.written();
  ASSERT_EQ(written.size(), kFrames);
  for (uint64_t s = 0; s < kFrames; ++s) {
    ASSERT_EQ(written[s].size(), lengthFor(1'000'000 + s)) << "tx frame " << s;
    ASSERT_TRUE(mknet::test::checkPattern(written[s], 1'000'000 + s)) << "tx frame " << s;
  }
  TapDriverStats st = driver_->stats();
  EXPECT_EQ(st.rxFrames, kFrames);
  EXPECT_EQ(st.rxBytes, rxBytes);
  EXPECT_EQ(st.rxDropped, 0u);
  EXPECT_EQ(st.txFrames, kFrames);
  EXPECT_EQ(st.txBytes, txBytes);
  EXPECT_EQ(st.txErrors, 0u);
  EXPECT_EQ(st.badDescriptors, 0u);
  EXPECT_EQ(stopDriver(), TapDriverStop::kStopped);
}

// Descriptors with an index beyond the pool or a length beyond a buffer are
// counted and dropped; the good ones around them are sent in order, a bad
// length with a valid index still returns its buffer, and the driver goes on.
// One round with a frame each way writes before it reads: the stack's frame
// goes out without waiting behind a read (on a quiet link, one that finds
// nothing), since its answer cannot be on the device before it is sent.
TEST_F(TapDriverTest, ARoundTransmitsBeforeItReceives) {
  driver_ = std::make_unique<TapDriver>(nic_, *region_, toDriver_, toStack_, control_, TapDriverOptions{});
  giveRx(ourBuffers(0, 8));
  Frame out = patternFrame(100, 1), in = patternFrame(200, 2);
  giveTx({Descriptor{8, 100, 0, 0}}, {out});
  nic_.inject(in);
  auto work = driver_->pollOnce();
  ASSERT_TRUE(work) << work.error().message();
  EXPECT_GT(*work, 0u);
  const std::string calls = nic_.calls();
  ASSERT_GE(calls.size(), 2u);
  EXPECT_EQ(calls.substr(0, 2), "wr") << calls;
  drain();
  ASSERT_EQ(nic_.written().size(), 1u);
  EXPECT_EQ(nic_.written()[0], out);
  ASSERT_EQ(received_.size(), 1u);
  EXPECT_EQ(received_[0], in);
  EXPECT_EQ(txReturned_, std::vector<uint32_t>{8});
}

TEST_F(TapDriverTest, BadTxDescriptorsAreCountedAndDropped) {
  startDriver();
  std::vector<Frame> frames = {patternFrame(100, 1), {}, patternFrame(200, 2), {},
                               patternFrame(300, 3), {}};
  std::vector<Descriptor> descs = {
      {0, 100, 0, 0},
      {kBuffers, 100, 0, 0},               // index one past the pool
      {1, 200, 0, 0},
      {2, ipc::kBufferSize + 1, 0, 0},     // length beyond a buffer
      {3, 300, 0, 0},
      {0xffffffffu, 0xffffffffu, 0, 0},    // both
  };
  giveTx(descs, frames);
  ASSERT_TRUE(waitFor([&] { return txReturned_.size() == 4; }));
  auto written = nic_.written();
  ASSERT_EQ(written.size(), 3u);
  EXPECT_TRUE(mknet::test::checkPattern(written[0], 1));
  EXPECT_TRUE(mknet::test::checkPattern(written[1], 2));
  EXPECT_TRUE(mknet::test::checkPattern(written[2], 3));
  // Handed back in txActive order (the stack checks completions in order),
  // the refused buffer 2 in its place.
  EXPECT_EQ(txReturned_, (std::vector<uint32_t>{0, 1, 2, 3}));
  EXPECT_EQ(driver_->stats().badDescriptors, 3u);
  EXPECT_EQ(driver_->stats().txFrames, 3u);

  // A bad index on rxFree is counted too and never received into.
  giveRx({kBuffers + 7, 10});
  waitUntilRxFreeTaken();
  nic_.inject(patternFrame(64, 9));
  ASSERT_TRUE(waitFor([&] { return received_.size() == 1; }));
  EXPECT_EQ(receivedIndex_[0], 10u);
  EXPECT_TRUE(mknet::test::checkPattern(received_[0], 9));
  EXPECT_EQ(driver_->stats().badDescriptors, 4u);

  // Still working.
  giveTx({{5, 80, 0, 0}}, {patternFrame(80, 4)});
  ASSERT_TRUE(waitFor([&] { return nic_.writtenCount() == 4; }));
  EXPECT_TRUE(mknet::test::checkPattern(nic_.written()[3], 4));
  EXPECT_EQ(stopDriver(), TapDriverStop::kStopped);
}

// With 4 buffers on rxFree and 20 frames waiting, 4 are received and 16 are
// read and dropped as "no buffer"; once buffers come back, reception resumes.
TEST_F(TapDriverTest, RxFreeRunningDryCountsDrops) {
  std::vector<Frame> frames;
  for (uint64_t s = 0; s < 20; ++s) frames.push_back(patternFrame(100 + s, s));
  nic_.inject(std::move(frames));
  giveRx(ourBuffers(0, 4));
  startDriver();
  ASSERT_TRUE(waitFor([&] { return received_.size() == 4 && nic_.pendingRx() == 0; }));
  EXPECT_EQ(driver_->stats().rxDroppedNoBuffer, 16u);
  EXPECT_EQ(driver_->stats().rxDropped, 16u);
  EXPECT_EQ(driver_->stats().rxFrames, 4u);
  for (uint64_t s = 0; s < 4; ++s) EXPECT_TRUE(mknet::test::checkPattern(received_[s], s));

  giveRx(receivedIndex_);
  receivedIndex_.clear();
  waitUntilRxFreeTaken();
  std::vector<Frame> more;
  for (uint64_t s = 100; s < 103; ++s) more.push_back(patternFrame(500, s));
  nic_.inject(std::move(more));
  ASSERT_TRUE(waitFor([&] { return received_.size() == 7; }));
  for (uint64_t s = 0; s < 3; ++s) EXPECT_TRUE(mknet::test::checkPattern(received_[4 + s], 100 + s));
  EXPECT_EQ(driver_->stats().rxDropped, 16u);
  EXPECT_EQ(stopDriver(), TapDriverStop::kStopped);
}

// A frame longer than a pool buffer is dropped and counted; the buffer is
// kept and the next frame lands in it.
TEST_F(TapDriverTest, OversizedFrameIsDroppedAndBufferKept) {
  giveRx({42});
  startDriver();
  waitUntilRxFreeTaken();
  nic_.inject(patternFrame(ipc::kBufferSize + 1, 1));
  nic_.inject(patternFrame(ipc::kBufferSize, 2));  // exactly a buffer: fine
  ASSERT_TRUE(waitFor([&] { return received_.size() == 1; }));
  EXPECT_EQ(receivedIndex_[0], 42u);
  EXPECT_EQ(received_[0].size(), ipc::kBufferSize);
  EXPECT_TRUE(mknet::test::checkPattern(received_[0], 2));
  EXPECT_EQ(driver_->stats().rxDroppedOversize, 1u);
  EXPECT_EQ(driver_->stats().rxDropped, 1u);
  EXPECT_EQ(stopDriver(), TapDriverStop::kStopped);
}

// Writes that report EAGAIN are retried later without reordering; a write
// that fails is counted and its buffer still returned.
TEST_F(TapDriverTest, TxEagainKeepsOrderAndErrorsReturnBuffers) {
  nic_.eagainOnAttempts({2, 3, 4, 9});
  nic_.failOnAttempts({6});
  startDriver();
  std::vector<Descriptor> descs;
  std::vector<Frame> frames;
  for (uint32_t i = 0; i < 10; ++i) {
    frames.push_back(patternFrame(64 + i, i));
    descs.push_back(Descriptor{i, 64 + i, 0, 0});
  }
  giveTx(descs, frames);
  ASSERT_TRUE(waitFor([&] { return txReturned_.size() == 10; }));
  // Attempts: 0 ok(f0) 1 ok(f1) 2-4 EAGAIN(f2) 5 ok(f2) 6 fail(f3) 7 ok(f4) 8 ok(f5) 9 EAGAIN(f6) ...
  auto written = nic_.written();
  std::vector<uint64_t> expected = {0, 1, 2, 4, 5, 6, 7, 8, 9};
  ASSERT_EQ(written.size(), expected.size());
  for (size_t k = 0; k < expected.size(); ++k)
    EXPECT_TRUE(mknet::test::checkPattern(written[k], expected[k])) << "position " << k;
  EXPECT_EQ(driver_->stats().txErrors, 1u);
  EXPECT_EQ(driver_->stats().txFrames, 9u);
  EXPECT_EQ(txReturned_, ourBuffers(0, 10));  // in order
  EXPECT_EQ(stopDriver(), TapDriverStop::kStopped);
}

// A txActive head that claims more records than the ring holds stops the
// driver with kRingCorrupt instead of reading garbage.
TEST_F(TapDriverTest, CorruptRingStopsTheDriver) {
  startDriver();
  giveTx({{0, 64, 0, 0}}, {patternFrame(64, 0)});
  ASSERT_TRUE(waitFor([&] { return txReturned_.size() == 1; }));
  region_->txActive()->head.store(region_->txActive()->tail.load() + kBuffers + 1);
  toDriver_.ring();
  ASSERT_TRUE(waitForDriverExit(5s));
  EXPECT_EQ(stop_.load(), TapDriverStop::kRingCorrupt);
  driver_.reset();  // the attachment is abandoned: no leak accounting
}

// A device whose reads fail stops the driver with kDeviceError.
TEST_F(TapDriverTest, DeviceFailureStopsTheDriver) {
  giveRx(ourBuffers(0, 8));
  startDriver();
  nic_.failReads();
  ASSERT_TRUE(waitForDriverExit(5s));
  EXPECT_EQ(stop_.load(), TapDriverStop::kDeviceError);
  driver_.reset();
}

// Out of buffers and asleep (no spin), the driver does not watch the device;
// the stack refilling rxFree must wake it, and then it receives what waited.
TEST_F(TapDriverTest, OutOfBuffersWakesForRxFree) {
  TapDriverOptions o;
  o.spin = 0us;
  startDriver(o);
  for (uint64_t s = 0; s < 20; ++s) {
    // Asleep with an empty stash: it announced that it waits for rxFree.
    auto deadline = std::chrono::steady_clock::now() + 2s;
    while (region_->rxFree()->consumerSleeping.load() == 0 &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(50us);
    ASSERT_EQ(region_->rxFree()->consumerSleeping.load(), 1u) << "round " << s;
    nic_.inject(patternFrame(90, s));  // not watched: no buffer to put it in
    giveRx({static_cast<uint32_t>(s)});
    ASSERT_TRUE(waitFor([&] { return received_.size() == s + 1; }, 2s)) << "round " << s;
    EXPECT_TRUE(mknet::test::checkPattern(received_.back(), s));
  }
  EXPECT_EQ(driver_->stats().rxDropped, 0u);
  EXPECT_EQ(stopDriver(), TapDriverStop::kStopped);
}

// A sleeping driver (no spin) wakes for requestStop() and for each doorbell.
TEST_F(TapDriverTest, SleepsAndWakesOnDoorbells) {
  TapDriverOptions o;
  o.spin = 0us;
  giveRx(ourBuffers(0, 1));
  startDriver(o);
  for (uint64_t s = 0; s < 50; ++s) {
    std::this_thread::sleep_for(200us);  // let it fall asleep
    giveTx({{100, 64, 0, 0}}, {patternFrame(64, s)});
    ASSERT_TRUE(waitFor([&] { return txReturned_.size() == 1; })) << "round " << s;
    txReturned_.clear();
    waitUntilRxFreeTaken();
    std::this_thread::sleep_for(200us);  // asleep again (it yields after sending)
    nic_.inject(patternFrame(70, s + 1000));
    ASSERT_TRUE(waitFor([&] { return received_.size() == s + 1; })) << "round " << s;
    giveRx(receivedIndex_);
    receivedIndex_.clear();
  }
  EXPECT_GT(driver_->stats().wakeups, 50u);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(stopDriver(), TapDriverStop::kStopped);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
}

// ---- offload (a device with virtio-net headers) ----

using test::Bytes;
using test::TcpFlow;

// Descriptors for `frames` in buffers from..from+n, in order.
std::vector<Descriptor> descsFor(const std::vector<Bytes>& frames, uint32_t from) {
  std::vector<Descriptor> d;
  for (size_t k = 0; k < frames.size(); ++k)
    d.push_back(Descriptor{from + static_cast<uint32_t>(k), static_cast<uint32_t>(frames[k].size()),
                           0, 0});
  return d;
}

// Cuts a written super-frame back into frames with the kernel's rules, as a
// reference: libnet's views and checksums, not the driver's segmenter.
std::vector<Bytes> cutLikeTheKernel(const Bytes& super, const FrameOffload& o) {
  std::vector<Bytes> out;
  const size_t hdr = o.hdrLen;
  auto b = test::u8(super);
  const size_t payload = super.size() - hdr;
  for (size_t at = 0, k = 0; at < payload; at += o.gsoSize, ++k) {
    size_t len = std::min<size_t>(o.gsoSize, payload - at);
    Bytes f(super.begin(), super.begin() + static_cast<ptrdiff_t>(hdr));
    f.insert(f.end(), super.begin() + static_cast<ptrdiff_t>(hdr + at),
             super.begin() + static_cast<ptrdiff_t>(hdr + at + len));
    auto m = net::MutableBytes(reinterpret_cast<uint8_t*>(f.data()), f.size());
    net::storeBe16(m, 16, static_cast<uint16_t>(f.size() - 14));
    net::storeBe16(m, 18, static_cast<uint16_t>(net::loadBe16(b, 18) + k));
    net::storeBe16(m, 24, 0);
    net::storeBe16(m, 24, net::internetChecksum(m.subspan(14, 20)));
    net::storeBe32(m, 38, net::loadBe32(b, 38) + static_cast<uint32_t>(at));
    if (at + len < payload) m[47] &= static_cast<uint8_t>(~(net::kTcpFlagPsh | net::kTcpFlagFin));
    net::storeBe16(m, 50, 0);
    net::storeBe16(m, 50, net::ipv4L4Checksum(net::loadBe32(m, 26), net::loadBe32(m, 30), 6,
                                              m.subspan(34)));
    out.push_back(std::move(f));
  }
  return out;
}

// A mixed burst, all on txActive before the driver looks: runs of one flow
// become super-frames, everything else goes out alone with no metadata, and
// txFree returns every buffer once, in txActive order (the refused one in its
// place). Cut up again, the super-frames are the original frames byte for byte.
TEST_F(TapDriverTest, OffloadCoalescesRunsAndKeepsTxFreeOrder) {
  nic_.setOffload(true);
  TcpFlow a, b;
  b.srcPort = 40001;
  const size_t mss = 1448;
  std::vector<Bytes> frames;
  std::vector<size_t> expectWrites;  // frames per write, in order
  auto add = [&](std::vector<Bytes> v) { frames.insert(frames.end(), v.begin(), v.end()); };
  add({patternFrame(300, 1)});  // not TCP
  expectWrites.push_back(1);
  add(a.segments(0, 0, 5, mss, 10));  // a run of 5
  expectWrites.push_back(5);
  add({a.frame(5 * mss, net::kTcpFlagAck, 15, {})});  // a pure ACK between
  expectWrites.push_back(1);
  add(a.segments(0, 5 * mss, 3, mss, 16, 700, true));  // 3, the last short with PSH
  expectWrites.push_back(3);
  const size_t refusedAt = frames.size();
  add({patternFrame(100, 2)});  // will get a bad length: refused, not written
  add(b.segments(0, 77, 4, mss, 50));  // the other flow
  expectWrites.push_back(4);
  add(a.segments(0, 7 * mss + 700, 1, mss, 19));  // one alone
  expectWrites.push_back(1);
  auto descs = descsFor(frames, 0);
  descs[refusedAt].length = ipc::kBufferSize + 1;
  giveTx(descs, frames);
  startDriver();
  ASSERT_TRUE(waitFor([&] { return txReturned_.size() == frames.size(); }));
  EXPECT_EQ(txReturned_, ourBuffers(0, static_cast<uint32_t>(frames.size())));

  auto written = nic_.written();
  auto meta = nic_.writtenOffload();
  ASSERT_EQ(written.size(), expectWrites.size());
  size_t next = 0;
  for (size_t w = 0; w < written.size(); ++w) {
    SCOPED_TRACE("write " + std::to_string(w));
    if (next == refusedAt) ++next;
    if (expectWrites[w] == 1) {
      EXPECT_EQ(meta[w], FrameOffload{});
      EXPECT_EQ(written[w], frames[next]);
      ++next;
      continue;
    }
    EXPECT_EQ(meta[w].gso, FrameOffload::Gso::kTcpV4);
    EXPECT_TRUE(meta[w].needsCsum);
    EXPECT_EQ(meta[w].gsoSize, mss);
    EXPECT_EQ(meta[w].hdrLen, 54);
    EXPECT_EQ(meta[w].csumStart, 34);
    EXPECT_EQ(meta[w].csumOffset, 16);
    auto cut = cutLikeTheKernel(written[w], meta[w]);
    ASSERT_EQ(cut.size(), expectWrites[w]);
    for (size_t k = 0; k < cut.size(); ++k) {
      EXPECT_TRUE(net::parseFrame(test::u8(cut[k]))) << "checksums of segment " << k;
      EXPECT_EQ(cut[k], frames[next + k]) << "segment " << k;
    }
    next += cut.size();
  }
  TapDriverStats st = driver_->stats();
  EXPECT_EQ(st.txGsoFrames, 3u);
  EXPECT_EQ(st.txCoalescedFrames, 12u);
  EXPECT_EQ(st.txFrames, frames.size() - 1);
  EXPECT_EQ(st.badDescriptors, 1u);
  EXPECT_EQ(st.txErrors, 0u);
  EXPECT_EQ(stopDriver(), TapDriverStop::kStopped);
}

// Without offload on the device, the same TCP frames go out one by one.
TEST_F(TapDriverTest, NoOffloadWritesEveryFrameAlone) {
  TcpFlow a;
  auto frames = a.segments(0, 0, 10, 1448, 1);
  giveTx(descsFor(frames, 0), std::vector<Frame>(frames.begin(), frames.end()));
  startDriver();
  ASSERT_TRUE(waitFor([&] { return txReturned_.size() == frames.size(); }));
  EXPECT_EQ(nic_.written(), frames);
  EXPECT_EQ(driver_->stats().txGsoFrames, 0u);
  EXPECT_EQ(stopDriver(), TapDriverStop::kStopped);
}

// A run of bare ACKs of one connection: only the last of each run of
// increasing ACKs is written; a duplicate ACK and an ACK of another
// connection break the run. Every buffer still comes back, in order.
TEST_F(TapDriverTest, OffloadSkipsAcksTheNextOneSupersedes) {
  nic_.setOffload(true);
  auto bare = [](uint16_t port, uint32_t ackNo) {
    TcpFlow f;
    f.srcPort = port;
    f.ack = ackNo;
    return f.frame(7, net::kTcpFlagAck, 1, {});
  };
  std::vector<Frame> frames = {bare(40000, 100), bare(40000, 200), bare(40000, 300),  // -> 300
                               bare(40000, 300),                                      // dup: written
                               bare(40001, 50),                                       // other connection
                               bare(40000, 400), bare(40000, 500)};                   // -> 500
  giveTx(descsFor(frames, 0), frames);
  startDriver();
  ASSERT_TRUE(waitFor([&] { return txReturned_.size() == frames.size(); }));
  EXPECT_EQ(txReturned_, ourBuffers(0, frames.size()));
  std::vector<Frame> want = {frames[2], frames[3], frames[4], frames[6]};
  EXPECT_EQ(nic_.written(), want);
  EXPECT_EQ(driver_->stats().txAcksThinned, 3u);
  EXPECT_EQ(stopDriver(), TapDriverStop::kStopped);
}

// EAGAIN on a super-frame: nothing is returned until the retry went out, and
// then all of it, in order. A device that refuses super-frames gets the
// frames one at a time instead: nothing lost, nothing counted as an error.
TEST_F(TapDriverTest, OffloadEagainAndRefusedSuperFrames) {
  nic_.setOffload(true);
  nic_.eagainOnAttempts({0, 1});
  TcpFlow a;
  auto frames = a.segments(0, 0, 8, 1448, 1);
  giveTx(descsFor(frames, 0), std::vector<Frame>(frames.begin(), frames.end()));
  startDriver();
  ASSERT_TRUE(waitFor([&] { return txReturned_.size() == 8; }));
  EXPECT_EQ(txReturned_, ourBuffers(0, 8));
  ASSERT_EQ(nic_.writtenCount(), 1u);
  EXPECT_EQ(cutLikeTheKernel(nic_.written()[0], nic_.writtenOffload()[0]), frames);

  nic_.failSuperFrames();
  txReturned_.clear();
  auto more = a.segments(0, 8 * 1448, 6, 1448, 9);
  giveTx(descsFor(more, 8), std::vector<Frame>(more.begin(), more.end()));
  ASSERT_TRUE(waitFor([&] { return txReturned_.size() == 6; }));
  EXPECT_EQ(txReturned_, ourBuffers(8, 6));
  auto written = nic_.written();
  ASSERT_EQ(written.size(), 7u);
  for (size_t k = 0; k < 6; ++k) EXPECT_EQ(written[1 + k], more[k]) << k;
  EXPECT_GE(driver_->stats().txGsoFallbacks, 1u);
  EXPECT_EQ(driver_->stats().txErrors, 0u);
  EXPECT_EQ(driver_->stats().txFrames, 14u);
  EXPECT_EQ(stopDriver(), TapDriverStop::kStopped);
}

// A kernel super-frame becomes MSS-sized frames in pool buffers, in order,
// each with valid IP and TCP checksums (libnet's parser checks both), the
// stream intact; a partial checksum on a plain frame is completed; an unknown
// GSO type is dropped and counted, its buffer kept.
TEST_F(TapDriverTest, OffloadSegmentsSuperFramesOnReceive) {
  nic_.setOffload(true);
  giveRx(ourBuffers(0, 100));  // more than the stash: segments also come straight off rxFree
  startDriver();
  TcpFlow k;  // kernel -> stack
  const size_t payload = 30 * 1448 + 17;
  FrameOffload o;
  Bytes super = test::kernelSuperFrame(k, 5000, net::kTcpFlagAck | net::kTcpFlagPsh, 300,
                                       test::streamBytes(0, payload), 1448, &o);
  nic_.injectOffload(super, o);
  FrameOffload other = o;
  other.gso = FrameOffload::Gso::kOther;
  nic_.injectOffload(super, other);
  Bytes good = k.frame(5000 + static_cast<uint32_t>(payload), net::kTcpFlagAck, 400,
                       test::streamBytes(payload, 333));
  Bytes partial = good;
  auto pseudo = net::ipv4PseudoHeaderChecksum(k.srcIp.value(), k.dstIp.value(), 6,
                                              static_cast<uint16_t>(good.size() - 34));
  net::storeBe16(net::MutableBytes(reinterpret_cast<uint8_t*>(partial.data()), partial.size()), 50,
                 pseudo.sum());
  FrameOffload csum;
  csum.needsCsum = true;
  csum.csumStart = 34;
  csum.csumOffset = 16;
  nic_.injectOffload(partial, csum);

  ASSERT_TRUE(waitFor([&] { return received_.size() == 32 && nic_.pendingRx() == 0; }));
  size_t at = 0;
  for (size_t s = 0; s < 31; ++s) {
    auto p = net::parseFrame(test::u8(received_[s]));
    ASSERT_TRUE(p) << "segment " << s;
    ASSERT_TRUE(p->tcp);
    EXPECT_EQ(p->tcp->seqNumber(), 5000 + at) << s;
    EXPECT_EQ(p->tcp->psh(), s == 30) << s;
    auto pl = p->tcp->payload();
    for (size_t i = 0; i < pl.size(); ++i)
      ASSERT_EQ(static_cast<std::byte>(pl[i]), test::streamByte(at + i)) << s;
    at += pl.size();
  }
  EXPECT_EQ(at, payload);
  EXPECT_EQ(received_[31], good);
  // The driver wrote every one of these checksums itself and says so, so
  // that the stack does not sum the frames again.
  ASSERT_EQ(receivedFlags_.size(), 32u);
  for (size_t s = 0; s < 32; ++s) EXPECT_EQ(receivedFlags_[s], ipc::kDescFlagL4ChecksumByDriver) << s;
  TapDriverStats st = driver_->stats();
  EXPECT_EQ(st.rxGsoFrames, 1u);
  EXPECT_EQ(st.rxFrames, 32u);
  EXPECT_EQ(st.rxChecksumsCompleted, 1u);
  EXPECT_EQ(st.rxDroppedBadOffload, 1u);
  EXPECT_EQ(st.rxDropped, 1u);
  EXPECT_EQ(stopDriver(), TapDriverStop::kStopped);
}

// Fewer buffers than segments: the first ones arrive (in order, intact), the
// rest are dropped and counted as frames without a buffer.
TEST_F(TapDriverTest, OffloadSuperFrameWithTooFewBuffers) {
  nic_.setOffload(true);
  giveRx(ourBuffers(0, 5));
  startDriver();
  waitUntilRxFreeTaken();
  TcpFlow k;
  FrameOffload o;
  Bytes super = test::kernelSuperFrame(k, 1, net::kTcpFlagAck, 1, test::streamBytes(0, 20 * 1000),
                                       1000, &o);
  nic_.injectOffload(super, o);
  ASSERT_TRUE(waitFor([&] { return received_.size() == 5 && nic_.pendingRx() == 0; }));
  for (size_t s = 0; s < 5; ++s) {
    auto p = net::parseFrame(test::u8(received_[s]));
    ASSERT_TRUE(p) << s;
    EXPECT_EQ(p->tcp->seqNumber(), 1 + 1000 * s);
    EXPECT_EQ(Bytes(reinterpret_cast<const std::byte*>(p->tcp->payload().data()),
                    reinterpret_cast<const std::byte*>(p->tcp->payload().data()) + 1000),
              test::streamBytes(1000 * s, 1000));
  }
  EXPECT_EQ(driver_->stats().rxDroppedNoBuffer, 15u);
  EXPECT_EQ(driver_->stats().rxFrames, 5u);
  EXPECT_EQ(stopDriver(), TapDriverStop::kStopped);
}

}  // namespace
}  // namespace mknet::drivers
