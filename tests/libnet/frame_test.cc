#include "libnet/frame.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "libnet/checksum.h"
#include "tests/libnet/hex.h"

namespace mknet::net {
namespace {

using testing::fromHex;

const FrameBuilder kBuilder{.srcMac = MacAddress({0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}),
                            .dstMac = MacAddress({0x02, 0x00, 0x00, 0x00, 0x00, 0x07}),
                            .srcIp = Ipv4Address::fromOctets(192, 168, 0, 1),
                            .dstIp = Ipv4Address::fromOctets(192, 168, 0, 199)};

constexpr std::size_t kIp = 14;  // IPv4 header offset in a frame
constexpr std::size_t kL4 = 34;  // L4 header offset (no IP options)

std::vector<std::uint8_t> udpFrame(ConstBytes payload = {}) {
  std::vector<std::uint8_t> buf(1600);
  auto n = kBuilder.buildUdp(buf, UdpBuilder{.srcPort = 12345, .dstPort = 53}, payload);
  EXPECT_TRUE(n);
  buf.resize(n.value_or(0));
  return buf;
}

std::vector<std::uint8_t> tcpFrame(ConstBytes options, ConstBytes payload = {}) {
  std::vector<std::uint8_t> buf(1600);
  auto n = kBuilder.buildTcp(buf,
                             TcpBuilder{.srcPort = 40000,
                                        .dstPort = 80,
                                        .seqNumber = 1,
                                        .flags = kTcpFlagSyn,
                                        .options = options},
                             payload);
  EXPECT_TRUE(n);
  buf.resize(n.value_or(0));
  return buf;
}

std::vector<std::uint8_t> icmpFrame(ConstBytes payload = {}) {
  std::vector<std::uint8_t> buf(1600);
  auto n = kBuilder.buildIcmp(buf, IcmpBuilder::echoRequest(1, 7), payload);
  EXPECT_TRUE(n);
  buf.resize(n.value_or(0));
  return buf;
}

// Recomputes the IPv4 header checksum after a deliberate change.
void fixIpChecksum(std::vector<std::uint8_t>& f) {
  const std::size_t ihl = std::size_t{f[kIp] & 0x0fu} * 4;
  storeBe16(f, kIp + 10, 0);
  storeBe16(f, kIp + 10, internetChecksum(ConstBytes(f).subspan(kIp, ihl)));
}

std::optional<FrameError> errorOf(ConstBytes frame) {
  FrameError e{};
  if (parseFrame(frame, &e)) return std::nullopt;
  return e;
}

TEST(ParseFrameTest, UdpFrame) {
  const auto frame = udpFrame(fromHex("68 65 6c 6c 6f"));
  ASSERT_EQ(frame.size(), 14u + 20 + 13);
  // The UDP part is byte-for-byte the independently checked datagram.
  EXPECT_EQ(std::vector<std::uint8_t>(frame.begin() + kL4, frame.end()),
            fromHex("30 39 00 35 00 0d 09 7b 68 65 6c 6c 6f"));
  auto parsed = parseFrame(frame);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->kind, FrameKind::kIpv4Udp);
  EXPECT_EQ(parsed->ethernet.src(), kBuilder.srcMac);
  EXPECT_EQ(parsed->ethernet.dst(), kBuilder.dstMac);
  EXPECT_EQ(parsed->ethernet.etherType(), kEtherTypeIpv4);
  ASSERT_TRUE(parsed->ipv4);
  EXPECT_EQ(parsed->ipv4->src(), kBuilder.srcIp);
  EXPECT_EQ(parsed->ipv4->dst(), kBuilder.dstIp);
  EXPECT_EQ(parsed->ipv4->ttl(), 64);
  EXPECT_TRUE(parsed->ipv4->dontFragment());
  ASSERT_TRUE(parsed->udp);
  EXPECT_EQ(parsed->udp->dstPort(), 53);
  EXPECT_EQ(std::string(parsed->udp->payload().begin(), parsed->udp->payload().end()), "hello");
  EXPECT_FALSE(parsed->tcp);
  EXPECT_FALSE(parsed->icmp);
  EXPECT_FALSE(parsed->arp);
}

TEST(ParseFrameTest, TcpFrameWithOptionsAndPayload) {
  TcpOptions options;
  options.mss = 1460;
  options.windowScale = 7;
  std::vector<std::uint8_t> optionBytes(40);
  optionBytes.resize(writeTcpOptions(optionBytes, options).value());
  const auto frame = tcpFrame(optionBytes, fromHex("01 02 03"));
  auto parsed = parseFrame(frame);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->kind, FrameKind::kIpv4Tcp);
  ASSERT_TRUE(parsed->tcp);
  EXPECT_TRUE(parsed->tcp->syn());
  EXPECT_EQ(parsed->tcp->dstPort(), 80);
  EXPECT_EQ(parsed->tcp->payload().size(), 3u);
  ASSERT_TRUE(parsed->tcpOptions);
  EXPECT_EQ(parsed->tcpOptions->mss, 1460);
  EXPECT_EQ(parsed->tcpOptions->windowScale, 7);
  EXPECT_EQ(parsed->ipv4->protocol(), kIpProtocolTcp);
}

TEST(ParseFrameTest, IcmpFrame) {
  const auto frame = icmpFrame(fromHex("aa bb cc"));
  auto parsed = parseFrame(frame);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->kind, FrameKind::kIpv4Icmp);
  ASSERT_TRUE(parsed->icmp);
  EXPECT_EQ(parsed->icmp->type(), kIcmpEchoRequest);
  EXPECT_EQ(parsed->icmp->sequence(), 7);
  EXPECT_EQ(parsed->icmp->payload().size(), 3u);
}

TEST(ParseFrameTest, ArpFrame) {
  std::vector<std::uint8_t> frame(60, 0);  // padded to the minimum
  const auto fb = FrameBuilder{.srcMac = kBuilder.srcMac, .dstMac = MacAddress::broadcast()};
  ASSERT_EQ(
      fb.buildArp(frame, ArpBuilder::request(kBuilder.srcMac, kBuilder.srcIp, kBuilder.dstIp)),
      42u);
  auto parsed = parseFrame(frame);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->kind, FrameKind::kArp);
  ASSERT_TRUE(parsed->arp);
  EXPECT_TRUE(parsed->ethernet.dst().isBroadcast());
  EXPECT_EQ(parsed->arp->targetIp(), kBuilder.dstIp);
  EXPECT_FALSE(parsed->ipv4);
}

TEST(ParseFrameTest, EthernetPaddingAfterIpPacketIsIgnored) {
  auto frame = udpFrame();  // 42 bytes
  frame.resize(60, 0xa5);   // padding that is not zero, as some NICs send
  auto parsed = parseFrame(frame);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->kind, FrameKind::kIpv4Udp);
  EXPECT_TRUE(parsed->udp->payload().empty());
  EXPECT_EQ(parsed->ipv4->packet().size(), 28u);
}

TEST(ParseFrameTest, UninterpretedKindsAreReturnedNotDropped) {
  auto frame = udpFrame(fromHex("00 01 02 03"));
  frame[12] = 0x86;
  frame[13] = 0xdd;
  auto ipv6 = parseFrame(frame);
  ASSERT_TRUE(ipv6);
  EXPECT_EQ(ipv6->kind, FrameKind::kOtherEtherType);
  EXPECT_FALSE(ipv6->ipv4);

  frame = udpFrame(fromHex("00 01 02 03"));
  frame[kIp + 9] = 47;  // GRE
  fixIpChecksum(frame);
  auto gre = parseFrame(frame);
  ASSERT_TRUE(gre);
  EXPECT_EQ(gre->kind, FrameKind::kIpv4OtherProtocol);
  EXPECT_TRUE(gre->ipv4);
  EXPECT_FALSE(gre->udp);
}

TEST(ParseFrameTest, FragmentsSkipL4Validation) {
  for (std::uint16_t flagsAndOffset : {0x2000, 0x0001, 0x20ff}) {
    auto frame = udpFrame(fromHex("00 01 02 03"));
    storeBe16(frame, kIp + 6, flagsAndOffset);
    frame[kL4 + 9] ^= 0xff;  // the L4 checksum no longer matches
    fixIpChecksum(frame);
    auto parsed = parseFrame(frame);
    ASSERT_TRUE(parsed) << flagsAndOffset;
    EXPECT_EQ(parsed->kind, FrameKind::kIpv4Fragment);
    EXPECT_FALSE(parsed->udp);
  }
}

TEST(ParseFrameTest, TruncationAtEveryLength) {
  const auto frame = udpFrame(fromHex("68 65 6c 6c 6f"));
  for (std::size_t n = 0; n < frame.size(); ++n) {
    const auto expected = n < kL4 ? FrameError::kTooShort : FrameError::kBadIpTotalLength;
    EXPECT_EQ(errorOf(ConstBytes(frame).first(n)), expected) << n;
  }
  EXPECT_EQ(errorOf(frame), std::nullopt);
}

TEST(ParseFrameTest, ArpErrors) {
  std::vector<std::uint8_t> frame(42);
  ASSERT_TRUE(kBuilder.buildArp(
      frame, ArpBuilder::request(kBuilder.srcMac, kBuilder.srcIp, kBuilder.dstIp)));
  EXPECT_EQ(errorOf(ConstBytes(frame).first(41)), FrameError::kBadArp);
  frame[14 + 4] = 8;  // hardware length
  EXPECT_EQ(errorOf(frame), FrameError::kBadArp);
}

TEST(ParseFrameTest, IpErrors) {
  auto frame = udpFrame(fromHex("68 65 6c 6c 6f"));
  frame[kIp] = 0x65;
  EXPECT_EQ(errorOf(frame), FrameError::kBadIpVersion);
  frame[kIp] = 0x44;
  EXPECT_EQ(errorOf(frame), FrameError::kBadIpHeaderLength);
  frame[kIp] = 0x4f;  // 60-byte header in a 33-byte packet
  EXPECT_EQ(errorOf(frame), FrameError::kBadIpHeaderLength);

  frame = udpFrame(fromHex("68 65 6c 6c 6f"));
  storeBe16(frame, kIp + 2, static_cast<std::uint16_t>(frame.size() - kIp + 1));
  fixIpChecksum(frame);
  EXPECT_EQ(errorOf(frame), FrameError::kBadIpTotalLength);

  frame = udpFrame(fromHex("68 65 6c 6c 6f"));
  frame[kIp + 8] -= 1;  // TTL decremented without updating the checksum
  EXPECT_EQ(errorOf(frame), FrameError::kBadIpChecksum);
}

TEST(ParseFrameTest, L4LengthErrors) {
  // UDP length field beyond the IP payload.
  auto frame = udpFrame(fromHex("68 65 6c 6c 6f"));
  storeBe16(frame, kL4 + 4, 14);
  EXPECT_EQ(errorOf(frame), FrameError::kBadL4Length);
  storeBe16(frame, kL4 + 4, 7);
  EXPECT_EQ(errorOf(frame), FrameError::kBadL4Length);

  // TCP data offset below 5 and beyond the segment.
  frame = tcpFrame({});
  frame[kL4 + 12] = 0x40;
  EXPECT_EQ(errorOf(frame), FrameError::kBadL4Length);
  frame[kL4 + 12] = 0x60;
  EXPECT_EQ(errorOf(frame), FrameError::kBadL4Length);

  // IP payloads too short for the L4 header: cut the total length.
  for (std::uint8_t protocol : {kIpProtocolTcp, kIpProtocolUdp, kIpProtocolIcmp}) {
    frame = udpFrame(fromHex("68 65 6c 6c 6f"));
    frame[kIp + 9] = protocol;
    storeBe16(frame, kIp + 2, 20 + 7);
    fixIpChecksum(frame);
    EXPECT_EQ(errorOf(frame), FrameError::kBadL4Length) << int(protocol);
  }
}

TEST(ParseFrameTest, L4ChecksumErrors) {
  auto frame = udpFrame(fromHex("68 65 6c 6c 6f"));
  frame.back() ^= 0x01;
  EXPECT_EQ(errorOf(frame), FrameError::kBadL4Checksum);
  // ... but not when the sender sent none.
  frame[kL4 + 6] = 0;
  frame[kL4 + 7] = 0;
  EXPECT_EQ(errorOf(frame), std::nullopt);

  frame = tcpFrame({}, fromHex("01 02 03"));
  frame.back() ^= 0x80;
  EXPECT_EQ(errorOf(frame), FrameError::kBadL4Checksum);

  frame = icmpFrame(fromHex("01 02 03"));
  frame[kL4 + 4] ^= 0x01;  // echo id
  EXPECT_EQ(errorOf(frame), FrameError::kBadL4Checksum);

  // The pseudo-header counts: a rewritten destination address with a fixed
  // IP checksum but a stale TCP checksum (a NAT bug) is caught.
  frame = tcpFrame({});
  frame[kIp + 19] ^= 0x01;
  fixIpChecksum(frame);
  EXPECT_EQ(errorOf(frame), FrameError::kBadL4Checksum);
}

// l4ChecksumKnown (the driver wrote the checksum): TCP and UDP checksums are
// not summed, everything else is still checked, ICMP's checksum included.
TEST(ParseFrameTest, KnownL4ChecksumSkipsOnlyTheTcpAndUdpSums) {
  FrameError e{};
  auto tcp = tcpFrame({}, fromHex("01 02 03"));
  tcp.back() ^= 0x80;
  ASSERT_FALSE(parseFrame(tcp, &e));
  auto parsed = parseFrame(tcp, &e, true);
  ASSERT_TRUE(parsed);
  ASSERT_TRUE(parsed->tcp);
  EXPECT_EQ(parsed->tcp->payload().size(), 3u);
  EXPECT_EQ(parsed->tcp->payload()[2], 0x03 ^ 0x80);

  auto udp = udpFrame(fromHex("68 65 6c 6c 6f"));
  udp.back() ^= 0x01;
  EXPECT_TRUE(parseFrame(udp, &e, true));

  auto icmp = icmpFrame(fromHex("01 02 03"));
  icmp[kL4 + 4] ^= 0x01;
  e = {};
  EXPECT_FALSE(parseFrame(icmp, &e, true));
  EXPECT_EQ(e, FrameError::kBadL4Checksum);

  // The IPv4 header checksum and the lengths are checked as always.
  auto badIp = tcpFrame({}, fromHex("01 02 03"));
  badIp[kIp + 10] ^= 0x01;
  e = {};
  EXPECT_FALSE(parseFrame(badIp, &e, true));
  EXPECT_EQ(e, FrameError::kBadIpChecksum);
  auto shortTcp = udpFrame(fromHex("68 65 6c 6c 6f"));
  shortTcp[kIp + 9] = kIpProtocolTcp;
  storeBe16(shortTcp, kIp + 2, 20 + 7);
  fixIpChecksum(shortTcp);
  e = {};
  EXPECT_FALSE(parseFrame(shortTcp, &e, true));
  EXPECT_EQ(e, FrameError::kBadL4Length);
}

TEST(ParseFrameTest, MalformedTcpOptions) {
  // Builders take raw option bytes, so a correct checksum over bad options
  // can be made: NOP NOP, then kind 30 with length 0.
  const auto frame = tcpFrame(fromHex("01 01 1e 00"));
  EXPECT_EQ(errorOf(frame), FrameError::kBadTcpOptions);
  // Length 1, and running past the header.
  EXPECT_EQ(errorOf(tcpFrame(fromHex("1e 01 00 00"))), FrameError::kBadTcpOptions);
  EXPECT_EQ(errorOf(tcpFrame(fromHex("01 1e 04 00"))), FrameError::kBadTcpOptions);
}

TEST(ParseFrameTest, NullErrorPointerAndErrorNames) {
  EXPECT_FALSE(parseFrame({}));
  std::set<std::string> names;
  for (std::size_t i = 0; i < kFrameErrorCount; ++i) {
    const std::string name = frameErrorName(static_cast<FrameError>(i));
    EXPECT_NE(name, "unknown") << i;
    names.insert(name);
  }
  EXPECT_EQ(names.size(), kFrameErrorCount);
  EXPECT_EQ(std::string(frameErrorName(FrameError::kBadIpChecksum)), "bad_ip_checksum");
}

// lwIP's layout for a SYN: MSS, then NOP + window scale (shift 1).
std::vector<std::uint8_t> lwipSynOptions() { return fromHex("02 04 05 b4 01 03 03 01"); }

TEST(SetSynWindowScaleTest, RewritesTheShiftAndKeepsTheChecksumRight) {
  auto frame = tcpFrame(lwipSynOptions(), fromHex("aa bb cc"));
  const auto before = frame;
  ASSERT_TRUE(setSynWindowScale(frame, 7));
  auto parsed = parseFrame(frame);  // verifies the TCP checksum
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->tcpOptions->windowScale, 7);
  EXPECT_EQ(parsed->tcpOptions->mss, 1460);
  // The shift byte changed; nothing else but the checksum bytes did.
  EXPECT_EQ(frame[kL4 + 20 + 7], 7);
  EXPECT_NE(loadBe16(frame, kL4 + 16), loadBe16(before, kL4 + 16));
  for (std::size_t i = 0; i < frame.size(); ++i) {
    if (i != kL4 + 16 && i != kL4 + 17 && i != kL4 + 20 + 7) {
      EXPECT_EQ(frame[i], before[i]) << "byte " << i;
    }
  }
  // A SYN-ACK too, and again (idempotent), and back.
  storeBe16(frame, kL4 + 12, static_cast<std::uint16_t>((loadBe16(frame, kL4 + 12) & 0xff00) |
                                                        (kTcpFlagSyn | kTcpFlagAck)));
  storeBe16(frame, kL4 + 16, 0);
  storeBe16(frame, kL4 + 16, ipv4L4Checksum(kBuilder.srcIp.value(), kBuilder.dstIp.value(), kIpProtocolTcp,
                                            ConstBytes(frame).subspan(kL4)));
  ASSERT_TRUE(setSynWindowScale(frame, 7));
  ASSERT_TRUE(setSynWindowScale(frame, 1));
  parsed = parseFrame(frame);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->tcpOptions->windowScale, 1);
}

TEST(SetSynWindowScaleTest, LeavesEverythingElseAlone) {
  auto expectUntouched = [](std::vector<std::uint8_t> frame, std::uint8_t shift, const char* what) {
    const auto before = frame;
    EXPECT_FALSE(setSynWindowScale(frame, shift)) << what;
    EXPECT_EQ(frame, before) << what;
  };
  // Not a SYN: an ACK carrying the same options.
  auto ack = tcpFrame(lwipSynOptions());
  ack[kL4 + 13] = kTcpFlagAck;
  storeBe16(ack, kL4 + 16, 0);
  storeBe16(ack, kL4 + 16, ipv4L4Checksum(kBuilder.srcIp.value(), kBuilder.dstIp.value(), kIpProtocolTcp,
                                          ConstBytes(ack).subspan(kL4)));
  ASSERT_TRUE(parseFrame(ack));
  expectUntouched(ack, 7, "ACK");
  expectUntouched(tcpFrame(fromHex("02 04 05 b4")), 7, "SYN without window scale");
  expectUntouched(tcpFrame({}), 7, "SYN without options");
  expectUntouched(udpFrame(fromHex("01 03 03 01")), 7, "UDP");
  expectUntouched(icmpFrame(), 7, "ICMP");
  expectUntouched(tcpFrame(lwipSynOptions()), 15, "shift beyond RFC 7323's 14");
  auto badSum = tcpFrame(lwipSynOptions());
  badSum[kL4 + 17] ^= 0x01;
  expectUntouched(badSum, 7, "bad TCP checksum");
  expectUntouched(tcpFrame(fromHex("01 01 1e 00")), 7, "malformed options");
  const auto whole = tcpFrame(lwipSynOptions());
  for (std::size_t n = 0; n < whole.size(); ++n)
    expectUntouched(std::vector<std::uint8_t>(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(n)), 7,
                    "truncated");
}

TEST(FrameBuilderTest, FailsOnEveryTooSmallBuffer) {
  const auto payload = fromHex("01 02 03 04 05");
  const std::size_t udpSize = 14 + 20 + 8 + 5;
  const std::size_t tcpSize = 14 + 20 + 20 + 5;
  const std::size_t icmpSize = 14 + 20 + 8 + 5;
  for (std::size_t size = 0; size <= tcpSize; ++size) {
    std::vector<std::uint8_t> buf(size);
    EXPECT_EQ(kBuilder.buildUdp(buf, UdpBuilder{}, payload).has_value(), size >= udpSize) << size;
    EXPECT_EQ(kBuilder.buildTcp(buf, TcpBuilder{}, payload).has_value(), size >= tcpSize) << size;
    EXPECT_EQ(kBuilder.buildIcmp(buf, IcmpBuilder{}, payload).has_value(), size >= icmpSize)
        << size;
    EXPECT_EQ(kBuilder.buildArp(buf, ArpBuilder{}).has_value(), size >= 42u) << size;
  }
}

TEST(FrameBuilderTest, PayloadMayAlreadySitInTheBuffer) {
  // A payload staged at the start of the buffer (overlapping the headers to
  // be written) ends up intact after them.
  std::vector<std::uint8_t> buf(100);
  for (std::size_t i = 0; i < 50; ++i) buf[i] = static_cast<std::uint8_t>(i + 1);
  auto n =
      kBuilder.buildUdp(buf, UdpBuilder{.srcPort = 1, .dstPort = 2}, ConstBytes(buf).first(50));
  ASSERT_EQ(n, 92u);
  auto parsed = parseFrame(ConstBytes(buf).first(*n));
  ASSERT_TRUE(parsed);
  ASSERT_EQ(parsed->udp->payload().size(), 50u);
  for (std::size_t i = 0; i < 50; ++i) EXPECT_EQ(parsed->udp->payload()[i], i + 1);
}

}  // namespace
}  // namespace mknet::net
