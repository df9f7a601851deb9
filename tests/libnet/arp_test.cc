#include "libnet/arp.h"

#include <gtest/gtest.h>

#include <vector>

#include "tests/libnet/hex.h"

namespace mknet::net {
namespace {

using testing::fromHex;

// "Who has 192.168.0.199? Tell 192.168.0.1" from 52:54:00:ab:cd:ef.
const char* kRequestHex =
    "00 01 08 00 06 04 00 01 52 54 00 ab cd ef c0 a8 00 01 00 00 00 00 00 00 c0 a8 00 c7";

const MacAddress kMyMac({0x02, 0x00, 0x00, 0x00, 0x00, 0x07});

TEST(ArpViewTest, ParsesRequest) {
  const auto bytes = fromHex(kRequestHex);
  auto arp = ArpView::parse(bytes);
  ASSERT_TRUE(arp);
  EXPECT_EQ(arp->operation(), kArpRequest);
  EXPECT_TRUE(arp->isRequest());
  EXPECT_FALSE(arp->isReply());
  EXPECT_EQ(arp->senderMac().toString(), "52:54:00:ab:cd:ef");
  EXPECT_EQ(arp->senderIp().toString(), "192.168.0.1");
  EXPECT_TRUE(arp->targetMac().isZero());
  EXPECT_EQ(arp->targetIp().toString(), "192.168.0.199");
}

TEST(ArpViewTest, RejectsTruncationAtEveryLength) {
  const auto bytes = fromHex(kRequestHex);
  for (std::size_t n = 0; n < ArpView::kSize; ++n) {
    EXPECT_FALSE(ArpView::parse(ConstBytes(bytes).first(n))) << n;
  }
}

TEST(ArpViewTest, RejectsOtherHardwareOrProtocol) {
  // Offsets: htype 0..1, ptype 2..3, hlen 4, plen 5.
  for (std::size_t offset : {1, 2, 3, 4, 5}) {
    auto bytes = fromHex(kRequestHex);
    bytes[offset] ^= 0x01;
    EXPECT_FALSE(ArpView::parse(bytes)) << "offset " << offset;
  }
}

TEST(ArpViewTest, IgnoresEthernetPadding) {
  auto bytes = fromHex(kRequestHex);
  bytes.resize(46, 0);  // padded to the 60-byte minimum frame
  auto arp = ArpView::parse(bytes);
  ASSERT_TRUE(arp);
  EXPECT_EQ(arp->packet().size(), ArpView::kSize);
}

TEST(ArpBuilderTest, RequestMatchesKnownBytes) {
  std::vector<std::uint8_t> buf(40, 0xcc);
  auto n = ArpBuilder::request(*MacAddress::parse("52:54:00:ab:cd:ef"),
                               Ipv4Address::fromOctets(192, 168, 0, 1),
                               Ipv4Address::fromOctets(192, 168, 0, 199))
               .build(buf);
  ASSERT_EQ(n, 28u);
  buf.resize(28);
  EXPECT_EQ(buf, fromHex(kRequestHex));
}

TEST(ArpBuilderTest, ReplyToSwapsRolesAndRoundTrips) {
  const auto requestBytes = fromHex(kRequestHex);
  auto request = ArpView::parse(requestBytes);
  ASSERT_TRUE(request);
  std::vector<std::uint8_t> buf(28);
  ASSERT_EQ(ArpBuilder::replyTo(*request, kMyMac).build(buf), 28u);
  auto reply = ArpView::parse(buf);
  ASSERT_TRUE(reply);
  EXPECT_TRUE(reply->isReply());
  EXPECT_EQ(reply->senderMac(), kMyMac);
  EXPECT_EQ(reply->senderIp().toString(), "192.168.0.199");
  EXPECT_EQ(reply->targetMac(), request->senderMac());
  EXPECT_EQ(reply->targetIp().toString(), "192.168.0.1");
}

TEST(ArpBuilderTest, TooSmallBufferFails) {
  std::vector<std::uint8_t> buf(27, 0xcc);
  EXPECT_FALSE(ArpBuilder{}.build(buf));
  EXPECT_EQ(buf, std::vector<std::uint8_t>(27, 0xcc));
}

}  // namespace
}  // namespace mknet::net
