#include "ipc/byte_ring.h"

#include <array>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "ipc/shm_region.h"
#include "tests/ipc/pattern.h"

namespace mknet::ipc {
namespace {

std::span<const std::byte> bytesOf(const std::string& s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}
std::string str(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

struct RegionRing {
  explicit RegionRing(uint32_t capacity) : capacity(capacity) {
    auto r = ShmRegion::create("bytering", ByteRingMemory::bytesFor(capacity), RegionKind::kTest, 1);
    EXPECT_TRUE(r);
    region.emplace(std::move(r).value());
    auto mem = region->allocate("ring", ByteRingMemory::bytesFor(capacity));
    EXPECT_TRUE(mem);
    control = *ByteRingMemory::init(*mem, capacity);
  }
  uint32_t capacity;
  std::optional<ShmRegion> region;
  RingControl* control;
};

TEST(ByteRingTest, WriteReadRoundTrip) {
  RegionRing r(16);
  ByteWriter w(r.control, 16);
  ByteReader rd(r.control, 16);
  ASSERT_EQ(*w.write(bytesOf("hello, ")), 7u);
  ASSERT_EQ(*w.write(bytesOf("world")), 5u);
  std::array<std::byte, 32> out{};
  ASSERT_EQ(*rd.read(out), 12u);
  EXPECT_EQ(str(std::span(out).first(12)), "hello, world");
  EXPECT_EQ(*rd.read(out), 0u);
}

TEST(ByteRingTest, PartialWriteWhenFullAndWrapAround) {
  RegionRing r(16);
  ByteWriter w(r.control, 16);
  ByteReader rd(r.control, 16);
  ASSERT_EQ(*w.write(bytesOf("0123456789abcdefXYZ")), 16u);  // only 16 fit
  EXPECT_EQ(*w.write(bytesOf("!")), 0u);
  std::array<std::byte, 10> out{};
  ASSERT_EQ(*rd.read(out), 10u);
  EXPECT_EQ(str(out), "0123456789");
  ASSERT_EQ(*w.write(bytesOf("ghijklmnop")), 10u);  // wraps past the end
  std::array<std::byte, 32> rest{};
  ASSERT_EQ(*rd.read(rest), 16u);
  EXPECT_EQ(str(std::span(rest).first(16)), "abcdefghijklmnop");
}

TEST(ByteRingTest, SmallReadsOfLargeWrite) {
  RegionRing r(64);
  ByteWriter w(r.control, 64);
  ByteReader rd(r.control, 64);
  std::string msg = "The quick brown fox jumps over the lazy dog";
  ASSERT_EQ(*w.write(bytesOf(msg)), msg.size());
  std::string got;
  std::array<std::byte, 5> chunk{};
  while (true) {
    uint32_t n = *rd.read(chunk);
    if (n == 0) break;
    got += str(std::span(chunk).first(n));
  }
  EXPECT_EQ(got, msg);
}

TEST(ByteRingTest, PeekThenConsume) {
  RegionRing r(16);
  ByteWriter w(r.control, 16);
  ByteReader rd(r.control, 16);
  ASSERT_EQ(*w.write(bytesOf("abcdefgh")), 8u);
  std::array<std::byte, 3> out{};
  ASSERT_EQ(*rd.peek(out, 2), 3u);
  EXPECT_EQ(str(out), "cde");
  ASSERT_TRUE(rd.consume(5));
  std::array<std::byte, 8> rest{};
  ASSERT_EQ(*rd.read(rest), 3u);
  EXPECT_EQ(str(std::span(rest).first(3)), "fgh");
}

TEST(ByteRingTest, CorruptIndicesAreReported) {
  RegionRing r(16);
  ByteWriter w(r.control, 16);
  ByteReader rd(r.control, 16);
  r.control->head.store(17);  // more bytes than fit: a lie
  std::array<std::byte, 4> out{};
  EXPECT_EQ(rd.read(out).error().code, EPROTO);
  r.control->head.store(0);
  r.control->tail.store(0x80000000u);
  EXPECT_EQ(w.freeSlots().error().code, EPROTO);  // the writer re-reads the index
}

TEST(ByteRingTest, ReaderValidatesAgainstOwnCapacity) {
  RegionRing r(4096);
  auto mem = r.region->find("ring", ByteRingMemory::bytesFor(4096));
  ASSERT_TRUE(mem);
  EXPECT_TRUE(ByteRingMemory::open(*mem, 4096, "rx"));
  EXPECT_FALSE(ByteRingMemory::open(*mem, 8192, "rx"));
  EXPECT_FALSE(ByteRingMemory::open(*mem, 2048, "rx"));
}

// A stream of random-sized writes and reads across two threads: every byte
// arrives once, in order (checked against the position-derived pattern).
TEST(ByteRingTest, ThreadsStreamBytesIntact) {
  const uint64_t total = static_cast<uint64_t>(64e6 * test::testScale());
  RegionRing r(8192);
  std::thread writer([&] {
    ByteWriter w(r.control, 8192);
    uint64_t pos = 0;
    std::vector<std::byte> buf(3000);
    while (pos < total) {
      size_t n = 1 + test::mix(pos) % buf.size();
      if (n > total - pos) n = total - pos;
      for (size_t i = 0; i < n; ++i) buf[i] = test::streamByte(pos + i);
      size_t done = 0;
      while (done < n) {
        auto k = w.write(std::span<const std::byte>(buf.data() + done, n - done));
        ASSERT_TRUE(k);
        done += *k;
      }
      pos += n;
    }
  });
  ByteReader rd(r.control, 8192);
  uint64_t pos = 0, bad = 0;
  std::vector<std::byte> buf(2500);
  while (pos < total) {
    size_t want = 1 + test::mix(pos ^ 0x55) % buf.size();
    auto k = rd.read(std::span<std::byte>(buf.data(), want));
    ASSERT_TRUE(k);
    for (uint32_t i = 0; i < *k; ++i) bad += buf[i] != test::streamByte(pos + i);
    pos += *k;
  }
  writer.join();
  EXPECT_EQ(pos, total);
  EXPECT_EQ(bad, 0u);
}

}  // namespace
}  // namespace mknet::ipc
