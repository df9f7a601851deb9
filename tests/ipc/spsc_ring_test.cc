#include "ipc/spsc_ring.h"

#include <array>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/ipc/pattern.h"

namespace mknet::ipc {
namespace {

// Ring memory in ordinary process memory: the ring code does not care.
struct LocalRing {
  explicit LocalRing(uint32_t capacity)
      : mem(SpscRingMemory<Descriptor>::bytesFor(capacity) + kCacheLine) {
    auto* aligned = reinterpret_cast<std::byte*>(
        (reinterpret_cast<uintptr_t>(mem.data()) + kCacheLine - 1) & ~(kCacheLine - 1));
    span = std::span<std::byte>(aligned, SpscRingMemory<Descriptor>::bytesFor(capacity));
    auto c = SpscRingMemory<Descriptor>::init(span, capacity);
    EXPECT_TRUE(c);
    control = *c;
  }
  std::vector<std::byte> mem;
  std::span<std::byte> span;
  RingControl* control;
};

Descriptor desc(uint32_t i) { return Descriptor{i, i * 3, i & 1, ~i}; }

TEST(SpscRingTest, PushPopInOrder) {
  LocalRing r(8);
  DescriptorProducer p(r.control, 8);
  DescriptorConsumer c(r.control, 8);
  for (uint32_t i = 0; i < 5; ++i) ASSERT_EQ(*p.push(desc(i)), 1u);
  EXPECT_EQ(*c.available(), 5u);
  std::array<Descriptor, 8> out{};
  ASSERT_EQ(*c.pop(out), 5u);
  for (uint32_t i = 0; i < 5; ++i) {
    EXPECT_EQ(out[i].index, i);
    EXPECT_EQ(out[i].length, i * 3);
    EXPECT_EQ(out[i].cookie, ~i);
  }
  EXPECT_TRUE(c.empty());
  EXPECT_EQ(*c.pop(out), 0u);
}

TEST(SpscRingTest, FullRingTakesNoMore) {
  LocalRing r(4);
  DescriptorProducer p(r.control, 4);
  DescriptorConsumer c(r.control, 4);
  std::array<Descriptor, 6> in{desc(0), desc(1), desc(2), desc(3), desc(4), desc(5)};
  ASSERT_EQ(*p.push(in), 4u);  // partial burst
  EXPECT_EQ(*p.push(desc(9)), 0u);
  EXPECT_EQ(*p.freeSlots(), 0u);
  std::array<Descriptor, 1> one{};
  ASSERT_EQ(*c.pop(one), 1u);
  EXPECT_EQ(one[0].index, 0u);
  EXPECT_EQ(*p.freeSlots(), 1u);
  ASSERT_EQ(*p.push(desc(4)), 1u);
  std::array<Descriptor, 8> out{};
  ASSERT_EQ(*c.pop(out), 4u);
  EXPECT_EQ(out[0].index, 1u);
  EXPECT_EQ(out[3].index, 4u);
}

TEST(SpscRingTest, WrapsAroundArrayAndIndexSpace) {
  LocalRing r(8);
  // Start both indices just below 2^32 so the free-running counters wrap.
  r.control->head.store(0xfffffffau);
  r.control->tail.store(0xfffffffau);
  DescriptorProducer p(r.control, 8);
  DescriptorConsumer c(r.control, 8);
  uint32_t next = 0, expect = 0;
  for (int round = 0; round < 50; ++round) {
    std::array<Descriptor, 5> in;
    for (auto& d : in) d = desc(next++);
    ASSERT_EQ(*p.push(in), 5u);
    std::array<Descriptor, 5> out{};
    ASSERT_EQ(*c.pop(out), 5u);
    for (auto& d : out) EXPECT_EQ(d.index, expect++);
  }
  EXPECT_LT(r.control->head.load(), 0x1000u);  // it did wrap
}

TEST(SpscRingTest, PeekAndConsume) {
  LocalRing r(8);
  DescriptorProducer p(r.control, 8);
  DescriptorConsumer c(r.control, 8);
  for (uint32_t i = 0; i < 6; ++i) ASSERT_EQ(*p.push(desc(i)), 1u);
  std::array<Descriptor, 2> out{};
  ASSERT_EQ(*c.peek(out, 3), 2u);
  EXPECT_EQ(out[0].index, 3u);
  EXPECT_EQ(*c.available(), 6u);  // nothing consumed
  ASSERT_TRUE(c.consume(4));
  EXPECT_EQ(*c.available(), 2u);
  auto tooMany = c.consume(3);
  ASSERT_FALSE(tooMany);
  EXPECT_EQ(tooMany.error().code, EINVAL);
  EXPECT_EQ(*c.peek(out, 5), 0u);
}

TEST(SpscRingTest, CorruptProducerIndexIsReported) {
  LocalRing r(8);
  DescriptorConsumer c(r.control, 8);
  r.control->head.store(100);  // a misbehaving producer claims 100 records
  auto got = c.available();
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, EPROTO);
  std::array<Descriptor, 4> out{};
  auto popped = c.pop(out);
  ASSERT_FALSE(popped);
  EXPECT_EQ(popped.error().code, EPROTO);
  EXPECT_FALSE(c.peek(out));
}

TEST(SpscRingTest, CorruptConsumerIndexIsReported) {
  LocalRing r(8);
  DescriptorProducer p(r.control, 8);
  for (uint32_t i = 0; i < 8; ++i) ASSERT_EQ(*p.push(desc(i)), 1u);
  r.control->tail.store(50);  // a misbehaving consumer
  auto pushed = p.push(desc(9));
  ASSERT_FALSE(pushed);
  EXPECT_EQ(pushed.error().code, EPROTO);
  EXPECT_FALSE(p.freeSlots());
}

TEST(SpscRingTest, OpenValidatesAgainstOwnConfiguration) {
  LocalRing r(16);
  EXPECT_TRUE(SpscRingMemory<Descriptor>::open(r.span, 16, "t"));
  auto wrongCap = SpscRingMemory<Descriptor>::open(r.span, 8, "t");
  ASSERT_FALSE(wrongCap);
  EXPECT_NE(wrongCap.error().message().find("capacity is 16, expected 8"), std::string::npos);
  auto tooBig = SpscRingMemory<Descriptor>::open(r.span, 32, "t");
  ASSERT_FALSE(tooBig);
  EXPECT_EQ(tooBig.error().code, EPROTO);
  auto wrongRecord = SpscRingMemory<uint64_t>::open(r.span, 16, "t");
  ASSERT_FALSE(wrongRecord);
  EXPECT_NE(wrongRecord.error().message().find("record size"), std::string::npos);
  r.control->magic = 0;
  auto badMagic = SpscRingMemory<Descriptor>::open(r.span, 16, "t");
  ASSERT_FALSE(badMagic);
  EXPECT_NE(badMagic.error().message().find("magic"), std::string::npos);
  r.control->magic = kRingMagic;
  r.control->version = 2;
  EXPECT_FALSE(SpscRingMemory<Descriptor>::open(r.span, 16, "t"));
  r.control->version = kRingLayoutVersion;
  r.control->head.store(1000);
  auto badIdx = SpscRingMemory<Descriptor>::open(r.span, 16, "t");
  ASSERT_FALSE(badIdx);
  EXPECT_NE(badIdx.error().message().find("indices"), std::string::npos);
}

TEST(SpscRingTest, InitRefusesBadCapacity) {
  std::vector<std::byte> mem(4096);
  EXPECT_EQ(SpscRingMemory<Descriptor>::init(mem, 12).error().code, EINVAL);
  EXPECT_EQ(SpscRingMemory<Descriptor>::init(mem, 0).error().code, EINVAL);
  EXPECT_EQ(SpscRingMemory<Descriptor>::init(mem, 1024).error().code, EINVAL);  // too small
}

TEST(SpscRingTest, ConsumerSleepHandshake) {
  LocalRing r(8);
  DescriptorProducer p(r.control, 8);
  DescriptorConsumer c(r.control, 8);
  EXPECT_FALSE(p.consumerNeedsWakeup());  // consumer awake: no doorbell
  ASSERT_EQ(*p.push(desc(1)), 1u);
  EXPECT_FALSE(c.prepareSleep());         // data waiting: must not sleep
  EXPECT_FALSE(p.consumerNeedsWakeup());  // flag withdrawn
  std::array<Descriptor, 1> out{};
  ASSERT_EQ(*c.pop(out), 1u);
  EXPECT_TRUE(c.prepareSleep());          // empty: may sleep
  ASSERT_EQ(*p.push(desc(2)), 1u);
  EXPECT_TRUE(p.consumerNeedsWakeup());   // ring once
  EXPECT_FALSE(p.consumerNeedsWakeup());  // not twice
}

TEST(SpscRingTest, ProducerSleepHandshake) {
  LocalRing r(2);
  DescriptorProducer p(r.control, 2);
  DescriptorConsumer c(r.control, 2);
  EXPECT_FALSE(p.prepareSleep());  // room: must not sleep
  ASSERT_EQ(*p.push(desc(0)), 1u);
  ASSERT_EQ(*p.push(desc(1)), 1u);
  EXPECT_TRUE(p.prepareSleep());   // full: may sleep
  std::array<Descriptor, 1> out{};
  ASSERT_EQ(*c.pop(out), 1u);
  EXPECT_TRUE(c.producerNeedsWakeup());
  EXPECT_FALSE(c.producerNeedsWakeup());
}

TEST(SpscRingTest, ResumedEndsContinueWhereOldOnesStopped) {
  LocalRing r(8);
  {
    DescriptorProducer p(r.control, 8);
    ASSERT_EQ(*p.push(desc(0)), 1u);
    ASSERT_EQ(*p.push(desc(1)), 1u);
  }
  DescriptorConsumer c(r.control, 8);
  std::array<Descriptor, 1> out{};
  ASSERT_EQ(*c.pop(out), 1u);
  DescriptorProducer p2(r.control, 8);  // a restarted producer
  ASSERT_EQ(*p2.push(desc(2)), 1u);
  DescriptorConsumer c2(r.control, 8);  // a restarted consumer
  std::array<Descriptor, 4> rest{};
  ASSERT_EQ(*c2.pop(rest), 2u);
  EXPECT_EQ(rest[0].index, 1u);
  EXPECT_EQ(rest[1].index, 2u);
  resetRing(r.control);
  EXPECT_EQ(r.control->head.load(), 0u);
  EXPECT_EQ(r.control->tail.load(), 0u);
}

// Two threads, bursts of random size: every record arrives once, in order.
TEST(SpscRingTest, ThreadsTransferInOrder) {
  const uint32_t total = static_cast<uint32_t>(2'000'000 * test::testScale());
  LocalRing r(256);
  std::thread producer([&] {
    DescriptorProducer p(r.control, 256);
    uint32_t next = 0;
    std::array<Descriptor, 32> burst;
    while (next < total) {
      uint32_t n = 1 + static_cast<uint32_t>(test::mix(next) % burst.size());
      if (n > total - next) n = total - next;
      for (uint32_t i = 0; i < n; ++i) burst[i] = desc(next + i);
      auto pushed = p.push(std::span<const Descriptor>(burst.data(), n));
      ASSERT_TRUE(pushed);
      next += *pushed;
    }
  });
  DescriptorConsumer c(r.control, 256);
  uint32_t expect = 0;
  std::array<Descriptor, 17> out;
  while (expect < total) {
    auto n = c.pop(out);
    ASSERT_TRUE(n);
    for (uint32_t i = 0; i < *n; ++i) {
      ASSERT_EQ(out[i].index, expect);
      ASSERT_EQ(out[i].cookie, ~expect);
      ++expect;
    }
  }
  producer.join();
  EXPECT_TRUE(c.empty());
}

}  // namespace
}  // namespace mknet::ipc
