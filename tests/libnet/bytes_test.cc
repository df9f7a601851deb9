#include "libnet/bytes.h"

#include <gtest/gtest.h>

#include <array>
#include <numeric>

namespace mknet::net {
namespace {

TEST(BytesTest, LoadsAreBigEndianAtAnyOffset) {
  const std::array<std::uint8_t, 7> b{0x00, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xff};
  EXPECT_EQ(loadBe16(b, 0), 0x0012);
  EXPECT_EQ(loadBe16(b, 1), 0x1234);  // odd, unaligned offset
  EXPECT_EQ(loadBe16(b, 5), 0x9aff);
  EXPECT_EQ(loadBe32(b, 0), 0x00123456u);
  EXPECT_EQ(loadBe32(b, 3), 0x56789affu);
}

TEST(BytesTest, StoresAreBigEndianAndTouchOnlyTheirBytes) {
  std::array<std::uint8_t, 8> b{};
  b.fill(0xee);
  storeBe16(b, 1, 0xabcd);
  storeBe32(b, 3, 0x01020304);
  const std::array<std::uint8_t, 8> expected{0xee, 0xab, 0xcd, 0x01, 0x02, 0x03, 0x04, 0xee};
  EXPECT_EQ(b, expected);
  EXPECT_EQ(loadBe16(b, 1), 0xabcd);
  EXPECT_EQ(loadBe32(b, 3), 0x01020304u);
}

TEST(BytesTest, MoveBytesHandlesOverlapInBothDirections) {
  std::array<std::uint8_t, 10> b{};
  std::iota(b.begin(), b.end(), 0);
  // Forward overlap: [0..6) -> [2..8).
  moveBytes(MutableBytes(b).subspan(2), ConstBytes(b).first(6));
  EXPECT_EQ(b, (std::array<std::uint8_t, 10>{0, 1, 0, 1, 2, 3, 4, 5, 8, 9}));
  // Backward overlap: [4..10) -> [0..6).
  moveBytes(b, ConstBytes(b).subspan(4));
  EXPECT_EQ(b, (std::array<std::uint8_t, 10>{2, 3, 4, 5, 8, 9, 4, 5, 8, 9}));
  // Same place and empty source are no-ops.
  moveBytes(b, b);
  moveBytes(b, ConstBytes());
  EXPECT_EQ(b, (std::array<std::uint8_t, 10>{2, 3, 4, 5, 8, 9, 4, 5, 8, 9}));
}

}  // namespace
}  // namespace mknet::net
