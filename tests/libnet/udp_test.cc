#include "libnet/udp.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "libnet/checksum.h"
#include "tests/libnet/hex.h"

namespace mknet::net {
namespace {

using testing::fromHex;

const Ipv4Address kSrc = Ipv4Address::fromOctets(192, 168, 0, 1);
const Ipv4Address kDst = Ipv4Address::fromOctets(192, 168, 0, 199);
// 12345 -> 53, "hello", checksum 097b (independently computed).
const char* kDatagramHex = "30 39 00 35 00 0d 09 7b 68 65 6c 6c 6f";

TEST(UdpViewTest, ParsesKnownDatagram) {
  const auto bytes = fromHex(kDatagramHex);
  auto udp = UdpView::parse(bytes);
  ASSERT_TRUE(udp);
  EXPECT_EQ(udp->srcPort(), 12345);
  EXPECT_EQ(udp->dstPort(), 53);
  EXPECT_EQ(udp->length(), 13);
  EXPECT_EQ(udp->checksum(), 0x097b);
  EXPECT_TRUE(udp->hasChecksum());
  EXPECT_EQ(std::vector<std::uint8_t>(udp->payload().begin(), udp->payload().end()),
            fromHex("68 65 6c 6c 6f"));
  EXPECT_TRUE(udp->checksumValid(kSrc, kDst));
  EXPECT_FALSE(udp->checksumValid(kDst, Ipv4Address(kSrc.value() + 1)));
}

TEST(UdpViewTest, RejectsTruncationAtEveryLengthBelowTheHeaderAndTheLengthField) {
  const auto bytes = fromHex(kDatagramHex);
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(UdpView::parse(ConstBytes(bytes).first(n))) << n;
  }
}

TEST(UdpViewTest, RejectsLengthFieldBelowHeader) {
  for (std::uint16_t length : {0, 1, 7}) {
    auto bytes = fromHex(kDatagramHex);
    storeBe16(bytes, 4, length);
    EXPECT_FALSE(UdpView::parse(bytes)) << length;
  }
}

TEST(UdpViewTest, TrimsToLengthFieldWhenTheSpanIsLonger) {
  auto bytes = fromHex(kDatagramHex);
  bytes.push_back(0x99);
  bytes.push_back(0x98);
  auto udp = UdpView::parse(bytes);
  ASSERT_TRUE(udp);
  EXPECT_EQ(udp->datagram().size(), 13u);
  EXPECT_EQ(udp->payload().size(), 5u);
  EXPECT_TRUE(udp->checksumValid(kSrc, kDst)) << "trailing bytes are not summed";
}

TEST(UdpViewTest, ZeroChecksumMeansNone) {
  auto bytes = fromHex(kDatagramHex);
  bytes[6] = 0;
  bytes[7] = 0;
  bytes[9] ^= 0xff;  // corrupt the payload: nothing can tell
  auto udp = UdpView::parse(bytes);
  ASSERT_TRUE(udp);
  EXPECT_FALSE(udp->hasChecksum());
  EXPECT_TRUE(udp->checksumValid(kSrc, kDst));
}

TEST(UdpViewTest, DetectsCorruptionAnywhere) {
  const auto good = fromHex(kDatagramHex);
  for (std::size_t i = 0; i < good.size(); ++i) {
    if (i == 4 || i == 5) continue;  // length: rejected by parse instead
    auto bytes = good;
    bytes[i] ^= 0x20;
    auto udp = UdpView::parse(bytes);
    ASSERT_TRUE(udp);
    EXPECT_FALSE(udp->checksumValid(kSrc, kDst)) << i;
  }
}

TEST(UdpBuilderTest, ReproducesKnownDatagram) {
  std::vector<std::uint8_t> buf(32, 0xcc);
  auto n =
      UdpBuilder{.srcPort = 12345, .dstPort = 53}.build(buf, kSrc, kDst, fromHex("68 65 6c 6c 6f"));
  ASSERT_EQ(n, 13u);
  buf.resize(*n);
  EXPECT_EQ(buf, fromHex(kDatagramHex));
}

TEST(UdpBuilderTest, WithoutChecksumSendsZero) {
  std::vector<std::uint8_t> buf(8);
  ASSERT_EQ(
      (UdpBuilder{.srcPort = 1, .dstPort = 2, .computeChecksum = false}.build(buf, kSrc, kDst, {})),
      8u);
  EXPECT_EQ(buf, fromHex("00 01 00 02 00 08 00 00"));
}

TEST(UdpBuilderTest, ComputedZeroIsSentAsAllOnes) {
  // Choose the payload word so that the checksum comes out as 0: the word
  // equal to the checksum computed with that word zero does it.
  const UdpBuilder builder{.srcPort = 7, .dstPort = 9};
  std::vector<std::uint8_t> buf(10);
  std::vector<std::uint8_t> payload{0, 0};
  ASSERT_TRUE(builder.build(buf, kSrc, kDst, payload));
  const std::uint16_t word = loadBe16(buf, 6);
  storeBe16(payload, 0, word);
  ASSERT_EQ(builder.build(buf, kSrc, kDst, payload), 10u);
  EXPECT_EQ(loadBe16(buf, 6), 0xffff);
  auto udp = UdpView::parse(buf);
  ASSERT_TRUE(udp);
  EXPECT_TRUE(udp->hasChecksum());
  EXPECT_TRUE(udp->checksumValid(kSrc, kDst));
}

TEST(UdpBuilderTest, RoundTripOddPayloadAndFailures) {
  std::vector<std::uint8_t> payload(333);
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::uint8_t>(i * 7);
  std::vector<std::uint8_t> buf(400);
  auto n = UdpBuilder{.srcPort = 65535, .dstPort = 0}.build(buf, kDst, kSrc, payload);
  ASSERT_EQ(n, 341u);
  auto udp = UdpView::parse(ConstBytes(buf).first(*n));
  ASSERT_TRUE(udp);
  EXPECT_EQ(udp->srcPort(), 65535);
  EXPECT_EQ(udp->dstPort(), 0);
  EXPECT_TRUE(std::ranges::equal(udp->payload(), payload));
  EXPECT_TRUE(udp->checksumValid(kDst, kSrc));
  EXPECT_FALSE(udp->checksumValid(kDst, Ipv4Address(0x0a000001)));

  std::vector<std::uint8_t> small(340, 0xcc);
  EXPECT_FALSE(UdpBuilder{}.build(small, kSrc, kDst, payload));
  EXPECT_EQ(small, std::vector<std::uint8_t>(340, 0xcc));
  std::vector<std::uint8_t> huge(70000);
  EXPECT_FALSE(UdpBuilder{}.build(huge, kSrc, kDst, ConstBytes(huge).first(0xffff - 20 - 8 + 1)));
  EXPECT_EQ(UdpBuilder{}.build(huge, kSrc, kDst, ConstBytes(huge).first(0xffff - 20 - 8)),
            0xffffu - 20);
}

}  // namespace
}  // namespace mknet::net
