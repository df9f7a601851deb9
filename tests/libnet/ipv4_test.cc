#include "libnet/ipv4.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "libnet/checksum.h"
#include "tests/libnet/hex.h"

namespace mknet::net {
namespace {

using testing::fromHex;

// A captured header (total length 0x73 = 115) with 95 payload bytes.
std::vector<std::uint8_t> capturedPacket() {
  auto p = fromHex("45 00 00 73 00 00 40 00 40 11 b8 61 c0 a8 00 01 c0 a8 00 c7");
  for (int i = 0; i < 95; ++i) p.push_back(static_cast<std::uint8_t>(i));
  return p;
}

// Rewrites the header checksum after a field was changed on purpose, so a
// test exercises the check it means to and not the checksum.
void fixChecksum(std::vector<std::uint8_t>& p) {
  const std::size_t ihl = std::size_t{p[0] & 0x0fu} * 4;
  storeBe16(p, 10, 0);
  storeBe16(p, 10, internetChecksum(ConstBytes(p).first(std::min(ihl, p.size()))));
}

std::optional<Ipv4Error> errorOf(ConstBytes bytes) {
  Ipv4Error e{};
  if (Ipv4View::parse(bytes, &e)) return std::nullopt;
  return e;
}

TEST(Ipv4AddressTest, ParsesAndFormats) {
  auto a = Ipv4Address::parse("192.168.0.199");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->value(), 0xc0a800c7u);
  EXPECT_EQ(a->toString(), "192.168.0.199");
  EXPECT_EQ(Ipv4Address::parse("0.0.0.0")->value(), 0u);
  EXPECT_EQ(Ipv4Address::parse("255.255.255.255")->value(), 0xffffffffu);
  EXPECT_EQ(Ipv4Address::fromOctets(10, 0, 0, 1), Ipv4Address(0x0a000001));
  EXPECT_EQ(Ipv4Address(0x0a000001).toString(), "10.0.0.1");
  EXPECT_LT(Ipv4Address(1), Ipv4Address(2));
}

TEST(Ipv4AddressTest, RejectsMalformedText) {
  for (const char* bad :
       {"", "1.2.3", "1.2.3.4.", "1.2.3.4.5", "256.0.0.1", "1.2.3.1000", "01.2.3.4", "1..3.4",
        "1.2.3.-4", "+1.2.3.4", " 1.2.3.4", "1.2.3.4 ", "a.b.c.d", "1.2.3.4/24", "0x1.2.3.4"}) {
    EXPECT_FALSE(Ipv4Address::parse(bad)) << bad;
  }
}

TEST(Ipv4ViewTest, ParsesCapturedHeader) {
  const auto p = capturedPacket();
  auto ip = Ipv4View::parse(p);
  ASSERT_TRUE(ip);
  EXPECT_EQ(ip->version(), 4);
  EXPECT_EQ(ip->ihl(), 5);
  EXPECT_EQ(ip->headerLength(), 20u);
  EXPECT_EQ(ip->tos(), 0);
  EXPECT_EQ(ip->totalLength(), 115);
  EXPECT_EQ(ip->id(), 0);
  EXPECT_EQ(ip->flags(), 0x2);
  EXPECT_TRUE(ip->dontFragment());
  EXPECT_FALSE(ip->moreFragments());
  EXPECT_EQ(ip->fragmentOffset(), 0);
  EXPECT_FALSE(ip->isFragment());
  EXPECT_EQ(ip->ttl(), 64);
  EXPECT_EQ(ip->protocol(), kIpProtocolUdp);
  EXPECT_EQ(ip->headerChecksum(), 0xb861);
  EXPECT_EQ(ip->src().toString(), "192.168.0.1");
  EXPECT_EQ(ip->dst().toString(), "192.168.0.199");
  EXPECT_TRUE(ip->options().empty());
  EXPECT_EQ(ip->payload().size(), 95u);
  EXPECT_EQ(ip->payload()[0], 0);
  EXPECT_EQ(ip->payload()[94], 94);
  EXPECT_TRUE(ip->checksumValid());
}

TEST(Ipv4ViewTest, TosFieldsAndFragmentFields) {
  auto p = capturedPacket();
  p[1] = 0xb9;                       // DSCP 46 (EF), ECN 1
  storeBe16(p, 6, 0x2000 | 0x0123);  // MF, offset 0x123
  fixChecksum(p);
  auto ip = Ipv4View::parse(p);
  ASSERT_TRUE(ip);
  EXPECT_EQ(ip->dscp(), 46);
  EXPECT_EQ(ip->ecn(), 1);
  EXPECT_EQ(ip->flags(), 0x1);
  EXPECT_FALSE(ip->dontFragment());
  EXPECT_TRUE(ip->moreFragments());
  EXPECT_EQ(ip->fragmentOffset(), 0x123);
  EXPECT_TRUE(ip->isFragment());
  EXPECT_TRUE(ip->checksumValid());
}

TEST(Ipv4ViewTest, RejectsTruncationAtEveryLengthBelowTheHeader) {
  const auto p = capturedPacket();
  for (std::size_t n = 0; n < Ipv4View::kMinHeaderSize; ++n) {
    EXPECT_EQ(errorOf(ConstBytes(p).first(n)), Ipv4Error::kTooShort) << n;
  }
  // And every length between the header and the total length.
  for (std::size_t n = Ipv4View::kMinHeaderSize; n < p.size(); ++n) {
    EXPECT_EQ(errorOf(ConstBytes(p).first(n)), Ipv4Error::kBadTotalLength) << n;
  }
  EXPECT_EQ(errorOf(p), std::nullopt);
}

TEST(Ipv4ViewTest, RejectsBadVersion) {
  for (int version : {0, 1, 5, 6, 15}) {
    auto p = capturedPacket();
    p[0] = static_cast<std::uint8_t>(version << 4 | 5);
    EXPECT_EQ(errorOf(p), Ipv4Error::kBadVersion) << version;
  }
}

TEST(Ipv4ViewTest, RejectsIhlBelowFive) {
  for (int ihl = 0; ihl < 5; ++ihl) {
    auto p = capturedPacket();
    p[0] = static_cast<std::uint8_t>(0x40 | ihl);
    EXPECT_EQ(errorOf(p), Ipv4Error::kBadHeaderLength) << ihl;
  }
}

TEST(Ipv4ViewTest, RejectsIhlBeyondTheSpan) {
  // A bare 20-byte header claiming 24..60 bytes of header.
  auto p = fromHex("45 00 00 14 00 00 40 00 40 11 00 00 c0 a8 00 01 c0 a8 00 c7");
  for (int ihl = 6; ihl <= 15; ++ihl) {
    p[0] = static_cast<std::uint8_t>(0x40 | ihl);
    EXPECT_EQ(errorOf(p), Ipv4Error::kBadHeaderLength) << ihl;
  }
}

TEST(Ipv4ViewTest, RejectsTotalLengthBeyondSpanOrBelowHeader) {
  auto p = capturedPacket();
  storeBe16(p, 2, static_cast<std::uint16_t>(p.size() + 1));
  EXPECT_EQ(errorOf(p), Ipv4Error::kBadTotalLength);
  storeBe16(p, 2, 0xffff);
  EXPECT_EQ(errorOf(p), Ipv4Error::kBadTotalLength);
  storeBe16(p, 2, 19);
  EXPECT_EQ(errorOf(p), Ipv4Error::kBadTotalLength);
  // With options the header is 24 bytes, so 23 is too small and 24 is fine.
  p[0] = 0x46;
  storeBe16(p, 2, 23);
  EXPECT_EQ(errorOf(p), Ipv4Error::kBadTotalLength);
  storeBe16(p, 2, 24);
  EXPECT_EQ(errorOf(p), std::nullopt);
  EXPECT_TRUE(Ipv4View::parse(p)->payload().empty());
  // Null error pointer is allowed.
  storeBe16(p, 2, 0);
  EXPECT_FALSE(Ipv4View::parse(p));
}

TEST(Ipv4ViewTest, PaddingAfterTotalLengthIsNotPayload) {
  auto p = capturedPacket();
  p.resize(p.size() + 17, 0xee);  // Ethernet padding or trailer
  auto ip = Ipv4View::parse(p);
  ASSERT_TRUE(ip);
  EXPECT_EQ(ip->packet().size(), 115u);
  EXPECT_EQ(ip->payload().size(), 95u);
  EXPECT_EQ(ip->payload().back(), 94);
  EXPECT_TRUE(ip->checksumValid());
}

TEST(Ipv4ViewTest, DetectsCorruptionInEveryHeaderByte) {
  for (std::size_t i = 0; i < 20; ++i) {
    // Skip bytes whose change the parser rejects before the checksum.
    if (i == 0 || i == 2 || i == 3) continue;
    auto p = capturedPacket();
    p[i] ^= 0x10;
    auto ip = Ipv4View::parse(p);
    ASSERT_TRUE(ip) << i;
    EXPECT_FALSE(ip->checksumValid()) << "byte " << i;
  }
}

TEST(Ipv4ViewTest, Options) {
  // IHL 6: one 4-byte option word (router alert 94 04 00 00).
  auto p = fromHex(
      "46 00 00 1c 00 01 00 00 01 02 00 00 0a 00 00 01 e0 00 00 16 94 04 00 00 aa bb cc dd");
  fixChecksum(p);
  auto ip = Ipv4View::parse(p);
  ASSERT_TRUE(ip);
  EXPECT_EQ(ip->headerLength(), 24u);
  EXPECT_EQ(std::vector<std::uint8_t>(ip->options().begin(), ip->options().end()),
            fromHex("94 04 00 00"));
  EXPECT_EQ(std::vector<std::uint8_t>(ip->payload().begin(), ip->payload().end()),
            fromHex("aa bb cc dd"));
  EXPECT_EQ(ip->header().size(), 24u);
  EXPECT_TRUE(ip->checksumValid());
}

TEST(Ipv4BuilderTest, ReproducesCapturedHeader) {
  std::vector<std::uint8_t> payload(95);
  for (int i = 0; i < 95; ++i) payload[i] = static_cast<std::uint8_t>(i);
  std::vector<std::uint8_t> buf(200, 0xcc);
  auto n = Ipv4Builder{.src = Ipv4Address::fromOctets(192, 168, 0, 1),
                       .dst = Ipv4Address::fromOctets(192, 168, 0, 199),
                       .protocol = kIpProtocolUdp}
               .build(buf, payload);
  ASSERT_EQ(n, 115u);
  buf.resize(115);
  EXPECT_EQ(buf, capturedPacket());
}

TEST(Ipv4BuilderTest, BuildThenParseRoundTripWithOptions) {
  const auto options = fromHex("94 04 00 00 01 01 01 00");
  const auto payload = fromHex("de ad be ef 01");
  const Ipv4Builder builder{.src = Ipv4Address(0x0a000001),
                            .dst = Ipv4Address(0x0a0000fe),
                            .protocol = 99,
                            .ttl = 3,
                            .tos = 0x28,
                            .id = 0xbeef,
                            .dontFragment = false,
                            .moreFragments = true,
                            .fragmentOffset = 0x1fff,
                            .options = options};
  EXPECT_EQ(builder.headerLength(), 28u);
  std::vector<std::uint8_t> buf(64);
  auto n = builder.build(buf, payload);
  ASSERT_EQ(n, 33u);
  auto ip = Ipv4View::parse(ConstBytes(buf).first(*n));
  ASSERT_TRUE(ip);
  EXPECT_TRUE(ip->checksumValid());
  EXPECT_EQ(ip->ihl(), 7);
  EXPECT_EQ(ip->totalLength(), 33);
  EXPECT_EQ(ip->src(), builder.src);
  EXPECT_EQ(ip->dst(), builder.dst);
  EXPECT_EQ(ip->protocol(), 99);
  EXPECT_EQ(ip->ttl(), 3);
  EXPECT_EQ(ip->tos(), 0x28);
  EXPECT_EQ(ip->id(), 0xbeef);
  EXPECT_FALSE(ip->dontFragment());
  EXPECT_TRUE(ip->moreFragments());
  EXPECT_EQ(ip->fragmentOffset(), 0x1fff);
  EXPECT_TRUE(std::ranges::equal(ip->options(), options));
  EXPECT_TRUE(std::ranges::equal(ip->payload(), payload));
}

TEST(Ipv4BuilderTest, RejectsWhatCannotBeEncoded) {
  std::vector<std::uint8_t> buf(70000, 0);
  const auto threeBytes = fromHex("01 01 01");
  const std::vector<std::uint8_t> fortyFour(44, 1);
  EXPECT_FALSE(Ipv4Builder{.options = threeBytes}.build(buf, {}));
  EXPECT_FALSE(Ipv4Builder{.options = fortyFour}.build(buf, {}));
  EXPECT_FALSE(Ipv4Builder{.fragmentOffset = 0x2000}.build(buf, {}));
  const std::vector<std::uint8_t> big(0xffff - 20 + 1);
  EXPECT_FALSE(Ipv4Builder{}.build(buf, big)) << "total length would exceed 65535";
  EXPECT_EQ(Ipv4Builder{}.build(buf, ConstBytes(big).first(0xffff - 20)), 0xffffu);
  // Buffer one byte short of header + payload.
  const auto payload = fromHex("01 02 03");
  std::vector<std::uint8_t> small(22, 0xcc);
  EXPECT_FALSE(Ipv4Builder{}.build(small, payload));
  EXPECT_EQ(small, std::vector<std::uint8_t>(22, 0xcc));
}

}  // namespace
}  // namespace mknet::net
