#include "libnet/ethernet.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "tests/libnet/hex.h"

namespace mknet::net {
namespace {

using testing::fromHex;

const MacAddress kMacA({0x02, 0x00, 0x5e, 0x10, 0x20, 0x30});
const MacAddress kMacB({0x52, 0x54, 0x00, 0xab, 0xcd, 0xef});

TEST(MacAddressTest, ParsesAndFormats) {
  auto mac = MacAddress::parse("52:54:00:AB:cd:eF");
  ASSERT_TRUE(mac);
  EXPECT_EQ(*mac, kMacB);
  EXPECT_EQ(mac->toString(), "52:54:00:ab:cd:ef");
  EXPECT_EQ(MacAddress::parse(kMacA.toString()), kMacA);
  EXPECT_EQ(MacAddress().toString(), "00:00:00:00:00:00");
}

TEST(MacAddressTest, RejectsMalformedText) {
  for (const char* bad : {"", "52:54:00:ab:cd", "52:54:00:ab:cd:ef:", "52:54:00:ab:cd:e",
                          "52-54-00-ab-cd-ef", "52:54:00:ab:cd:eg", "5:254:00:ab:cd:ef",
                          " 52:54:00:ab:cd:ef", "52:54:00:ab:cd:ef ", "525400abcdef00000"}) {
    EXPECT_FALSE(MacAddress::parse(bad)) << bad;
  }
}

TEST(MacAddressTest, Classification) {
  EXPECT_TRUE(MacAddress::broadcast().isBroadcast());
  EXPECT_TRUE(MacAddress::broadcast().isMulticast());
  EXPECT_FALSE(kMacB.isBroadcast());
  EXPECT_FALSE(kMacB.isMulticast());
  EXPECT_TRUE(MacAddress::parse("01:00:5e:00:00:01")->isMulticast());
  EXPECT_TRUE(MacAddress().isZero());
  EXPECT_FALSE(kMacA.isZero());
  EXPECT_FALSE(MacAddress::fromBytes(fromHex("01 02 03 04 05")));
  EXPECT_EQ(MacAddress::fromBytes(fromHex("52 54 00 ab cd ef 99")), kMacB);
}

TEST(EthernetViewTest, RejectsEveryLengthBelowTheHeader) {
  const auto frame = fromHex("ff ff ff ff ff ff 52 54 00 ab cd ef 08 06");
  for (std::size_t n = 0; n < EthernetView::kHeaderSize; ++n) {
    EXPECT_FALSE(EthernetView::parse(ConstBytes(frame).first(n))) << n;
  }
  auto view = EthernetView::parse(frame);
  ASSERT_TRUE(view);
  EXPECT_TRUE(view->payload().empty());
}

TEST(EthernetViewTest, ReadsFields) {
  const auto frame = fromHex("ff ff ff ff ff ff 52 54 00 ab cd ef 08 00 45 00 de ad");
  auto view = EthernetView::parse(frame);
  ASSERT_TRUE(view);
  EXPECT_TRUE(view->dst().isBroadcast());
  EXPECT_EQ(view->src(), kMacB);
  EXPECT_EQ(view->etherType(), kEtherTypeIpv4);
  EXPECT_EQ(std::vector<std::uint8_t>(view->payload().begin(), view->payload().end()),
            fromHex("45 00 de ad"));
  EXPECT_EQ(view->frame().data(), frame.data());
  EXPECT_EQ(view->frame().size(), frame.size());
}

TEST(EthernetBuilderTest, BuildThenParseRoundTrip) {
  const auto payload = fromHex("01 02 03 04 05");
  std::vector<std::uint8_t> buf(64, 0xcc);
  auto n =
      EthernetBuilder{.dst = kMacA, .src = kMacB, .etherType = kEtherTypeIpv6}.build(buf, payload);
  ASSERT_EQ(n, 19u);
  EXPECT_EQ(std::vector<std::uint8_t>(buf.begin(), buf.begin() + 19),
            fromHex("02 00 5e 10 20 30 52 54 00 ab cd ef 86 dd 01 02 03 04 05"));
  EXPECT_EQ(buf[19], 0xcc) << "nothing written past the frame";
  auto view = EthernetView::parse(ConstBytes(buf).first(*n));
  ASSERT_TRUE(view);
  EXPECT_EQ(view->dst(), kMacA);
  EXPECT_EQ(view->src(), kMacB);
  EXPECT_EQ(view->etherType(), kEtherTypeIpv6);
  EXPECT_TRUE(std::ranges::equal(view->payload(), payload));
}

TEST(EthernetBuilderTest, TooSmallBufferFailsAndWritesNothing) {
  const auto payload = fromHex("01 02 03");
  const EthernetBuilder builder{.dst = kMacA, .src = kMacB, .etherType = kEtherTypeArp};
  for (std::size_t size = 0; size < 17; ++size) {
    std::vector<std::uint8_t> buf(size, 0xcc);
    EXPECT_FALSE(builder.build(buf, payload)) << size;
    EXPECT_TRUE(std::ranges::all_of(buf, [](std::uint8_t b) { return b == 0xcc; })) << size;
  }
  std::vector<std::uint8_t> exact(17);
  EXPECT_EQ(builder.build(exact, payload), 17u);
}

TEST(EthernetBuilderTest, PayloadAlreadyInPlaceIsKept) {
  std::vector<std::uint8_t> buf(20, 0);
  for (std::size_t i = 14; i < 20; ++i) buf[i] = static_cast<std::uint8_t>(i);
  auto n = EthernetBuilder{.dst = kMacA, .src = kMacB, .etherType = kEtherTypeIpv4}.build(
      buf, ConstBytes(buf).subspan(14));
  ASSERT_EQ(n, 20u);
  for (std::size_t i = 14; i < 20; ++i) EXPECT_EQ(buf[i], i);
  EXPECT_EQ(EthernetView::parse(buf)->src(), kMacB);
}

}  // namespace
}  // namespace mknet::net
