#include "libnet/icmp.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string_view>
#include <vector>

#include "tests/libnet/hex.h"

namespace mknet::net {
namespace {

using testing::fromHex;

// An echo request as Windows ping sends it: id 1, seq 7, 32 bytes
// "abcdefghijklmnopqrstuvwabcdefghi". Checksum 4d54 computed independently.
const char* kEchoHex =
    "08 00 4d 54 00 01 00 07 61 62 63 64 65 66 67 68 69 6a 6b 6c 6d 6e 6f 70 71 72 73 74 75 "
    "76 77 61 62 63 64 65 66 67 68 69";
constexpr std::string_view kEchoData = "abcdefghijklmnopqrstuvwabcdefghi";

ConstBytes asBytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

TEST(IcmpViewTest, ParsesEchoRequest) {
  const auto bytes = fromHex(kEchoHex);
  auto icmp = IcmpView::parse(bytes);
  ASSERT_TRUE(icmp);
  EXPECT_EQ(icmp->type(), kIcmpEchoRequest);
  EXPECT_EQ(icmp->code(), 0);
  EXPECT_EQ(icmp->checksum(), 0x4d54);
  EXPECT_TRUE(icmp->isEcho());
  EXPECT_EQ(icmp->id(), 1);
  EXPECT_EQ(icmp->sequence(), 7);
  EXPECT_EQ(icmp->restOfHeader(), 0x00010007u);
  EXPECT_TRUE(std::ranges::equal(icmp->payload(), asBytes(kEchoData)));
  EXPECT_EQ(icmp->message().size(), bytes.size());
  EXPECT_TRUE(icmp->checksumValid());
}

TEST(IcmpViewTest, RejectsTruncationAtEveryLengthBelowTheHeader) {
  const auto bytes = fromHex(kEchoHex);
  for (std::size_t n = 0; n < IcmpView::kHeaderSize; ++n) {
    EXPECT_FALSE(IcmpView::parse(ConstBytes(bytes).first(n))) << n;
  }
  auto bare = IcmpView::parse(ConstBytes(bytes).first(8));
  ASSERT_TRUE(bare);
  EXPECT_TRUE(bare->payload().empty());
  EXPECT_FALSE(bare->checksumValid()) << "the checksum covered the dropped payload";
}

TEST(IcmpViewTest, DetectsCorruptionAnywhereInTheMessage) {
  const auto good = fromHex(kEchoHex);
  for (std::size_t i = 0; i < good.size(); ++i) {
    auto bytes = good;
    bytes[i] ^= 0x04;
    EXPECT_FALSE(IcmpView::parse(bytes)->checksumValid()) << i;
  }
}

TEST(IcmpBuilderTest, ReproducesKnownEchoRequest) {
  std::vector<std::uint8_t> buf(64, 0xcc);
  auto n = IcmpBuilder::echoRequest(1, 7).build(buf, asBytes(kEchoData));
  ASSERT_EQ(n, 40u);
  buf.resize(*n);
  EXPECT_EQ(buf, fromHex(kEchoHex));
}

TEST(IcmpBuilderTest, EchoReplyRoundTripWithOddPayload) {
  const auto payload = fromHex("01 02 03 04 05 06 07");
  std::vector<std::uint8_t> buf(15);
  auto n = IcmpBuilder::echoReply(0xabcd, 0xffff).build(buf, payload);
  ASSERT_EQ(n, 15u);
  auto icmp = IcmpView::parse(buf);
  ASSERT_TRUE(icmp);
  EXPECT_EQ(icmp->type(), kIcmpEchoReply);
  EXPECT_EQ(icmp->id(), 0xabcd);
  EXPECT_EQ(icmp->sequence(), 0xffff);
  EXPECT_TRUE(std::ranges::equal(icmp->payload(), payload));
  EXPECT_TRUE(icmp->checksumValid());
}

TEST(IcmpBuilderTest, OtherTypesAndFailures) {
  std::vector<std::uint8_t> buf(8);
  ASSERT_EQ((IcmpBuilder{kIcmpDestinationUnreachable, 3, 0}.build(buf, {})), 8u);
  auto icmp = IcmpView::parse(buf);
  EXPECT_FALSE(icmp->isEcho());
  EXPECT_EQ(icmp->code(), 3);
  EXPECT_TRUE(icmp->checksumValid());

  std::vector<std::uint8_t> small(9, 0xcc);
  EXPECT_FALSE(IcmpBuilder::echoRequest(1, 1).build(small, fromHex("01 02")));
  EXPECT_EQ(small, std::vector<std::uint8_t>(9, 0xcc));
  std::vector<std::uint8_t> huge(70000);
  EXPECT_FALSE(IcmpBuilder{}.build(huge, ConstBytes(huge).first(0xffff - 20 - 8 + 1)));
}

}  // namespace
}  // namespace mknet::net
