#include "ipc/packet_pool.h"

#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "ipc/shm_region.h"

namespace mknet::ipc {
namespace {

TEST(PacketPoolTest, BuffersAreDisjointTwoKiBSlices) {
  std::vector<std::byte> mem(PacketPool::bytesFor(4));
  PacketPool pool(mem, 4);
  ASSERT_EQ(pool.count(), 4u);
  for (uint32_t i = 0; i < 4; ++i) {
    auto b = pool.buffer(i);
    ASSERT_TRUE(b);
    EXPECT_EQ(b->size(), kBufferSize);
    EXPECT_EQ(b->data(), mem.data() + i * kBufferSize);
  }
  EXPECT_FALSE(pool.buffer(4));
  EXPECT_FALSE(pool.buffer(0xffffffffu));
}

TEST(PacketPoolTest, DescriptorChecks) {
  std::vector<std::byte> mem(PacketPool::bytesFor(8));
  PacketPool pool(mem, 8);
  DescriptorError why{};
  auto ok = pool.bytes(Descriptor{7, 1500, 0, 0}, &why);
  ASSERT_TRUE(ok);
  EXPECT_EQ(why, DescriptorError::kNone);
  EXPECT_EQ(ok->size(), 1500u);
  EXPECT_EQ(ok->data(), mem.data() + 7 * kBufferSize);
  EXPECT_TRUE(pool.bytes(Descriptor{0, kBufferSize, 0, 0}));
  EXPECT_TRUE(pool.bytes(Descriptor{0, 0, 0, 0}));

  EXPECT_FALSE(pool.bytes(Descriptor{8, 10, 0, 0}, &why));
  EXPECT_EQ(why, DescriptorError::kBadIndex);
  EXPECT_FALSE(pool.bytes(Descriptor{0xffffffffu, 10, 0, 0}, &why));
  EXPECT_EQ(why, DescriptorError::kBadIndex);
  EXPECT_FALSE(pool.bytes(Descriptor{1, kBufferSize + 1, 0, 0}, &why));
  EXPECT_EQ(why, DescriptorError::kBadLength);
  EXPECT_FALSE(pool.bytes(Descriptor{1, 0xffffffffu, 0, 0}, &why));
  EXPECT_EQ(why, DescriptorError::kBadLength);
  EXPECT_STREQ(toString(DescriptorError::kBadIndex), "buffer index out of range");
}

TEST(PacketPoolTest, PoolInSharedRegionSeenByPeer) {
  auto region = ShmRegion::create("pool", PacketPool::bytesFor(16), RegionKind::kPacketPool, 1);
  ASSERT_TRUE(region);
  auto mem = region->allocate("buffers", PacketPool::bytesFor(16));
  ASSERT_TRUE(mem);
  PacketPool owner(*mem, 16);
  (*owner.buffer(5))[100] = std::byte{0x5a};
  auto peerRegion = ShmRegion::attach(*region->dupFd(), RegionKind::kPacketPool, 1);
  ASSERT_TRUE(peerRegion);
  auto peerMem = peerRegion->find("buffers", PacketPool::bytesFor(16));
  ASSERT_TRUE(peerMem);
  PacketPool peer(*peerMem, 16);
  EXPECT_EQ((*peer.buffer(5))[100], std::byte{0x5a});
}

TEST(BufferAllocatorTest, AllocatesEachBufferOnce) {
  BufferAllocator a(64);
  std::set<uint32_t> seen;
  for (int i = 0; i < 64; ++i) {
    auto idx = a.allocate();
    ASSERT_TRUE(idx);
    EXPECT_LT(*idx, 64u);
    EXPECT_TRUE(seen.insert(*idx).second) << "index " << *idx << " handed out twice";
  }
  EXPECT_FALSE(a.allocate());
  EXPECT_EQ(a.inUse(), 64u);
  EXPECT_EQ(a.available(), 0u);
}

TEST(BufferAllocatorTest, RefusesDoubleAndForeignRelease) {
  BufferAllocator a(4);
  uint32_t i = *a.allocate();
  EXPECT_FALSE(a.isFree(i));
  EXPECT_TRUE(a.release(i));
  EXPECT_TRUE(a.isFree(i));
  EXPECT_FALSE(a.release(i));      // twice
  EXPECT_FALSE(a.release(4));      // out of range
  EXPECT_FALSE(a.release(0xffffffffu));
  EXPECT_EQ(a.available(), 4u);
}

TEST(BufferAllocatorTest, ReleaseAllReclaimsEverything) {
  BufferAllocator a(8);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(a.allocate());
  a.releaseAll();
  EXPECT_EQ(a.available(), 8u);
  EXPECT_EQ(a.inUse(), 0u);
  std::set<uint32_t> seen;
  while (auto i = a.allocate()) seen.insert(*i);
  EXPECT_EQ(seen.size(), 8u);
}

}  // namespace
}  // namespace mknet::ipc
