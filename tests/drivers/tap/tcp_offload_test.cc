// The driver's TCP offload helpers against libnet's frame builder and
// checksum code as the reference: which frames coalesce, the super-frame's
// headers and virtio-net metadata, segmentation of kernel super-frames, and
// completion of partial checksums.
#include "drivers/tap/tcp_offload.h"

#include <random>

#include <gtest/gtest.h>

#include "libnet/checksum.h"
#include "libnet/frame.h"
#include "tests/drivers/tap/tcp_frames.h"

namespace mknet::drivers {
namespace {

using test::Bytes;
using test::TcpFlow;
using test::u8;

constexpr size_t kMss = 1448;

Bytes join(std::span<const ConstByteSpan> pieces) {
  Bytes b;
  for (auto p : pieces) b.insert(b.end(), p.begin(), p.end());
  return b;
}

// Segments a super-frame (head = first `headSize` bytes, the rest as
// overflow) into frames with the driver's code.
std::vector<Bytes> segment(const Bytes& super, const FrameOffload& o, size_t headSize = 2048) {
  headSize = std::min(headSize, super.size());
  SplitFrame f{ConstByteSpan(super.data(), headSize),
               ConstByteSpan(super.data() + headSize, super.size() - headSize)};
  auto plan = validateTcpV4Gso(f, o, 2048);
  EXPECT_TRUE(plan);
  if (!plan) return {};
  Bytes headers(super.begin(), super.begin() + static_cast<ptrdiff_t>(plan->headerLen));
  std::vector<Bytes> out;
  for (size_t k = 0; k < plan->segments; ++k) {
    Bytes seg(2048);
    seg.resize(writeTcpV4Segment(*plan, headers, f, k, seg));
    out.push_back(std::move(seg));
  }
  return out;
}

TEST(TcpOffloadTest, OnesComplementSumMatchesLibnet) {
  std::mt19937 rng(7);
  Bytes data(300);
  for (auto& b : data) b = static_cast<std::byte>(rng());
  for (size_t off = 0; off < 9; ++off) {
    for (size_t len = 0; len + off <= data.size(); len += 1 + len / 7) {
      net::Checksum c;
      c.add(u8(data).subspan(off, len));
      ASSERT_EQ(onesComplementSum(ConstByteSpan(data).subspan(off, len)), c.sum())
          << "off " << off << " len " << len;
    }
  }
}

// Ten full segments and a short one become one super-frame: one header, the
// payloads in order, IP length and checksum for the whole, the pseudo-header
// sum in the TCP checksum field, PSH from the last frame, and metadata the
// kernel's GSO needs. Cut again, it gives back the original frames exactly.
TEST(TcpOffloadTest, AnAckIsSupersededOnlyByALargerAckOfTheSameConnection) {
  TcpFlow f;
  auto ack = [](TcpFlow flow, uint32_t ackNo, uint8_t flags = net::kTcpFlagAck) {
    flow.ack = ackNo;
    return flow.frame(1000, flags, 1, {});
  };
  auto span = [](const Bytes& b) { return ConstByteSpan(b); };
  const Bytes a1 = ack(f, 5000), a2 = ack(f, 7920);
  EXPECT_TRUE(supersededAck(span(a1), span(a2)));
  EXPECT_FALSE(supersededAck(span(a2), span(a1))) << "an older ACK never replaces a newer one";
  EXPECT_FALSE(supersededAck(span(a1), span(ack(f, 5000)))) << "duplicate ACKs (fast retransmit) all go out";
  EXPECT_TRUE(supersededAck(span(ack(f, 0xfffffff0u)), span(ack(f, 0x10)))) << "sequence space wraps";
  TcpFlow other = f;
  other.srcPort = 40001;
  EXPECT_FALSE(supersededAck(span(a1), span(ack(other, 7920)))) << "another connection";
  TcpFlow wnd = f;
  wnd.window = 0x100;
  EXPECT_TRUE(supersededAck(span(a1), span(ack(wnd, 7920)))) << "the later window is the one that counts";
  EXPECT_FALSE(supersededAck(span(ack(f, 5000, net::kTcpFlagAck | net::kTcpFlagFin)), span(a2))) << "FIN";
  EXPECT_FALSE(supersededAck(span(a1), span(ack(f, 7920, net::kTcpFlagAck | net::kTcpFlagPsh))));
  f.ack = 5000;
  const Bytes data = f.frame(1000, net::kTcpFlagAck, 1, test::streamBytes(0, 100));
  EXPECT_FALSE(supersededAck(span(data), span(a2))) << "a frame with data is never skipped";
  TcpFlow sack = f;
  sack.options = {1, 1, 5, 10, 0, 0, 0x13, 0x88, 0, 0, 0x17, 0x70};  // NOP NOP SACK(1 block)
  EXPECT_FALSE(supersededAck(span(ack(sack, 5000)), span(a2))) << "ACKs with options (SACK) go out";
}

TEST(TcpOffloadTest, CoalescesOneFlowIntoASuperFrame) {
  TcpFlow flow;
  auto frames = flow.segments(1000, 1000, 11, kMss, 77, 300, /*pushLast=*/true);
  TcpCoalescer c;
  ASSERT_TRUE(c.start(frames[0]));
  for (size_t k = 1; k < frames.size(); ++k) ASSERT_TRUE(c.append(frames[k])) << k;
  EXPECT_EQ(c.frames(), 11u);
  Bytes super = join(c.finish());
  const size_t payload = 10 * kMss + 300;
  ASSERT_EQ(super.size(), 54 + payload);
  const FrameOffload& o = c.offload();
  EXPECT_EQ(o.gso, FrameOffload::Gso::kTcpV4);
  EXPECT_TRUE(o.needsCsum);
  EXPECT_FALSE(o.ecn);
  EXPECT_EQ(o.hdrLen, 54);
  EXPECT_EQ(o.gsoSize, kMss);
  EXPECT_EQ(o.csumStart, 34);
  EXPECT_EQ(o.csumOffset, 16);

  auto b = u8(super);
  EXPECT_EQ(net::loadBe16(b, 14 + 2), 40 + payload);        // IP total length
  EXPECT_EQ(net::loadBe16(b, 14 + 4), 77);                  // the first frame's id
  EXPECT_EQ(net::internetChecksum(b.subspan(14, 20)), 0);   // header checksum valid
  EXPECT_EQ(net::loadBe32(b, 34 + 4), 1000u);               // first seq
  EXPECT_EQ(b[34 + 13], net::kTcpFlagAck | net::kTcpFlagPsh);
  auto pseudo = net::ipv4PseudoHeaderChecksum(flow.srcIp.value(), flow.dstIp.value(), 6,
                                              static_cast<uint16_t>(20 + payload));
  EXPECT_EQ(net::loadBe16(b, 34 + 16), pseudo.sum());
  for (size_t i = 0; i < payload; ++i) ASSERT_EQ(super[54 + i], test::streamByte(i)) << i;

  // The partial checksum is what NEEDS_CSUM means: completing it over the
  // TCP bytes gives the checksum libnet computes for the whole segment.
  Bytes completed = super;
  ASSERT_TRUE(completeChecksum(completed, o.csumStart, o.csumOffset));
  auto p = net::parseFrame(u8(completed));
  ASSERT_TRUE(p) << "super-frame checksums";
  ASSERT_TRUE(p->tcp);

  auto back = segment(super, o);
  ASSERT_EQ(back.size(), frames.size());
  for (size_t k = 0; k < frames.size(); ++k) EXPECT_EQ(back[k], frames[k]) << "segment " << k;

  // The pool buffers were not touched.
  EXPECT_EQ(frames, flow.segments(1000, 1000, 11, kMss, 77, 300, true));
}

// Each rule that keeps a frame out of the super-frame.
TEST(TcpOffloadTest, FramesThatDoNotCoalesce) {
  TcpFlow flow;
  auto base = flow.segments(0, 5000, 2, kMss, 1);
  auto startWith = [&](TcpCoalescer& c) { ASSERT_TRUE(c.start(base[0])); };
  auto refuses = [&](const Bytes& next, const char* why) {
    TcpCoalescer c;
    startWith(c);
    EXPECT_FALSE(c.append(next)) << why;
    EXPECT_EQ(c.frames(), 1u) << why;
  };
  const uint32_t nextSeq = 5000 + kMss;
  const Bytes data = test::streamBytes(kMss, kMss);
  {
    TcpCoalescer c;
    startWith(c);
    EXPECT_TRUE(c.append(base[1])) << "the control case";
  }
  TcpFlow other = flow;
  other.dstPort = 5002;
  refuses(other.frame(nextSeq, net::kTcpFlagAck, 2, data), "another port");
  other = flow;
  other.dstIp = net::Ipv4Address::fromOctets(198, 18, 230, 9);
  refuses(other.frame(nextSeq, net::kTcpFlagAck, 2, data), "another address");
  other = flow;
  other.dstMac = net::MacAddress({0x02, 0, 0, 0, 0, 9});
  refuses(other.frame(nextSeq, net::kTcpFlagAck, 2, data), "another MAC");
  other = flow;
  other.ack += 1;
  refuses(other.frame(nextSeq, net::kTcpFlagAck, 2, data), "another ACK");
  other = flow;
  other.window += 1;
  refuses(other.frame(nextSeq, net::kTcpFlagAck, 2, data), "another window");
  refuses(flow.frame(nextSeq + 1, net::kTcpFlagAck, 2, data), "a sequence gap");
  refuses(flow.frame(nextSeq - kMss, net::kTcpFlagAck, 2, data), "a retransmission");
  refuses(flow.frame(nextSeq, net::kTcpFlagAck | net::kTcpFlagFin, 2, data), "FIN");
  refuses(flow.frame(nextSeq, net::kTcpFlagAck | net::kTcpFlagUrg, 2, data), "URG");
  refuses(flow.frame(nextSeq, net::kTcpFlagAck | net::kTcpFlagCwr, 2, data), "CWR");
  refuses(flow.frame(nextSeq, net::kTcpFlagRst, 2, data), "RST");
  refuses(flow.frame(nextSeq, net::kTcpFlagAck, 2, {}), "no payload");
  refuses(flow.frame(nextSeq, net::kTcpFlagAck, 2, test::streamBytes(kMss, kMss + 1)),
          "more than the MSS");
  other = flow;
  other.options = {1, 1, 1, 1};  // NOPs: another TCP header length
  refuses(other.frame(nextSeq, net::kTcpFlagAck, 2, data), "other TCP options");
  {
    Bytes ttl = base[1];
    ttl[14 + 8] = std::byte{3};  // TTL (IP checksum no longer matters: the driver rewrites it)
    refuses(ttl, "another TTL");
    Bytes pad = base[1];
    pad.push_back(std::byte{0});
    refuses(pad, "a frame longer than its IP packet");
  }

  // After a short payload nothing may follow.
  {
    TcpCoalescer c;
    startWith(c);
    ASSERT_TRUE(c.append(flow.frame(nextSeq, net::kTcpFlagAck, 2, test::streamBytes(kMss, 100))));
    EXPECT_FALSE(c.append(flow.frame(nextSeq + 100, net::kTcpFlagAck, 3, data)));
    EXPECT_EQ(c.frames(), 2u);
  }
  // Frames that cannot even start one.
  TcpCoalescer c;
  EXPECT_FALSE(c.start(flow.frame(1, net::kTcpFlagAck, 1, {}))) << "pure ACK";
  EXPECT_FALSE(c.start(flow.frame(1, net::kTcpFlagSyn, 1, data))) << "SYN";
  Bytes frag = base[0];
  frag[14 + 6] |= std::byte{0x20};  // more fragments
  EXPECT_FALSE(c.start(frag)) << "fragment";
  Bytes opts = base[0];
  opts[14] = std::byte{0x46};  // an IP option word
  EXPECT_FALSE(c.start(opts)) << "IP options";
  Bytes arp = base[0];
  arp[12] = std::byte{0x08};
  arp[13] = std::byte{0x06};
  EXPECT_FALSE(c.start(arp)) << "not IPv4";
  Bytes udp = base[0];
  udp[14 + 9] = std::byte{17};
  EXPECT_FALSE(c.start(udp)) << "UDP";
  EXPECT_FALSE(c.start(Bytes(40))) << "runt";
  EXPECT_EQ(c.frames(), 0u);
  EXPECT_FALSE(c.append(base[1])) << "append without a start";
}

// A super-frame stops below 64 KiB of IP packet.
TEST(TcpOffloadTest, SuperFrameStaysWithinAnIpPacket) {
  TcpFlow flow;
  auto frames = flow.segments(0, 0, 50, kMss, 1);
  TcpCoalescer c;
  ASSERT_TRUE(c.start(frames[0]));
  size_t k = 1;
  while (k < frames.size() && c.append(frames[k])) ++k;
  EXPECT_EQ(k, (65535 - 40) / kMss);  // 45 frames: 65200 bytes of IP packet
  Bytes super = join(c.finish());
  EXPECT_LE(super.size() - 14, 65535u);
  EXPECT_EQ(net::loadBe16(u8(super), 16), super.size() - 14);
}

// A kernel super-frame with TCP options, an odd MSS, ECN's CWR and FIN+PSH:
// every segment passes libnet's full validation (IP and TCP checksums), has
// the right length, id, seq and flags, and the payloads add up to the stream,
// whatever the split between the caller's buffer and the overflow.
TEST(TcpOffloadTest, SegmentsKernelSuperFrames) {
  TcpFlow flow;
  flow.options = {1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2};  // NOP NOP timestamps
  for (uint16_t mss : {uint16_t{1448}, uint16_t{999}, uint16_t{536}}) {
    for (size_t head : {size_t{66}, size_t{1000}, size_t{2048}}) {
      const size_t payload = 20000 + mss / 3;
      const uint8_t flags = net::kTcpFlagAck | net::kTcpFlagPsh | net::kTcpFlagFin | net::kTcpFlagCwr;
      FrameOffload o;
      Bytes super = test::kernelSuperFrame(flow, 0xfffff000u, flags, 0xfffe,
                                           test::streamBytes(0, payload), mss, &o);
      auto segs = segment(super, o, head);
      const size_t n = (payload + mss - 1) / mss;
      ASSERT_EQ(segs.size(), n) << "mss " << mss;
      size_t at = 0;
      for (size_t k = 0; k < n; ++k) {
        SCOPED_TRACE("mss " + std::to_string(mss) + " head " + std::to_string(head) + " segment " +
                     std::to_string(k));
        net::FrameError err{};
        auto p = net::parseFrame(u8(segs[k]), &err);
        ASSERT_TRUE(p) << "rejected: " << static_cast<int>(err);
        ASSERT_TRUE(p->tcp);
        size_t len = std::min<size_t>(mss, payload - at);
        EXPECT_EQ(segs[k].size(), 14 + 20 + 32 + len);
        EXPECT_EQ(p->ipv4->id(), static_cast<uint16_t>(0xfffe + k));
        EXPECT_EQ(p->tcp->seqNumber(), static_cast<uint32_t>(0xfffff000u + at));
        EXPECT_EQ(p->tcp->ackNumber(), flow.ack);
        EXPECT_EQ(p->tcp->window(), flow.window);
        uint8_t want = net::kTcpFlagAck;
        if (k == 0) want |= net::kTcpFlagCwr;
        if (k + 1 == n) want |= net::kTcpFlagPsh | net::kTcpFlagFin;
        EXPECT_EQ(p->tcp->flags(), want);
        EXPECT_EQ(p->tcp->options().size(), 12u);
        auto pl = p->tcp->payload();
        ASSERT_EQ(pl.size(), len);
        for (size_t i = 0; i < len; ++i)
          ASSERT_EQ(static_cast<std::byte>(pl[i]), test::streamByte(at + i)) << i;
        at += len;
      }
      EXPECT_EQ(at, payload);
    }
  }
}

TEST(TcpOffloadTest, RejectsSuperFramesItCannotCut) {
  TcpFlow flow;
  FrameOffload o;
  Bytes super = test::kernelSuperFrame(flow, 1, net::kTcpFlagAck, 1, test::streamBytes(0, 5000),
                                       1448, &o);
  SplitFrame f{ConstByteSpan(super), {}};
  EXPECT_TRUE(validateTcpV4Gso(f, o, 2048));
  FrameOffload zero = o;
  zero.gsoSize = 0;
  EXPECT_FALSE(validateTcpV4Gso(f, zero, 2048)) << "gso_size 0";
  FrameOffload big = o;
  big.gsoSize = 2000;
  EXPECT_FALSE(validateTcpV4Gso(f, big, 2048)) << "a segment larger than a buffer";
  Bytes udp = super;
  udp[14 + 9] = std::byte{17};
  EXPECT_FALSE(validateTcpV4Gso(SplitFrame{ConstByteSpan(udp), {}}, o, 2048)) << "not TCP";
  Bytes syn = super;
  syn[34 + 13] = std::byte{net::kTcpFlagSyn};
  EXPECT_FALSE(validateTcpV4Gso(SplitFrame{ConstByteSpan(syn), {}}, o, 2048)) << "SYN";
  EXPECT_FALSE(validateTcpV4Gso(SplitFrame{ConstByteSpan(super).first(54), {}}, o, 2048))
      << "no payload";
  EXPECT_FALSE(validateTcpV4Gso(SplitFrame{ConstByteSpan(super).first(40), {}}, o, 2048))
      << "truncated headers";
}

// A partial checksum (pseudo-header sum in the field) completed by the driver
// equals the one libnet computes, for TCP and UDP, odd and even lengths.
TEST(TcpOffloadTest, CompletesPartialChecksums) {
  TcpFlow flow;
  for (size_t len : {size_t{0}, size_t{1}, size_t{2}, size_t{999}, size_t{1448}}) {
    Bytes good = flow.frame(7, net::kTcpFlagAck | net::kTcpFlagPsh, 9, test::streamBytes(3, len));
    Bytes partial = good;
    auto pseudo = net::ipv4PseudoHeaderChecksum(flow.srcIp.value(), flow.dstIp.value(), 6,
                                                static_cast<uint16_t>(good.size() - 34));
    net::storeBe16(net::MutableBytes(reinterpret_cast<uint8_t*>(partial.data()), partial.size()),
                   50, pseudo.sum());
    ASSERT_TRUE(completeChecksum(partial, 34, 16));
    EXPECT_EQ(partial, good) << "TCP, payload " << len;

    Bytes udp(14 + 20 + 8 + len);
    net::FrameBuilder fb{.srcMac = flow.srcMac, .dstMac = flow.dstMac, .srcIp = flow.srcIp,
                         .dstIp = flow.dstIp};
    auto payload = test::streamBytes(5, len);
    auto n = fb.buildUdp(net::MutableBytes(reinterpret_cast<uint8_t*>(udp.data()), udp.size()),
                         net::UdpBuilder{.srcPort = 53, .dstPort = 4000}, u8(payload));
    ASSERT_TRUE(n);
    Bytes up = udp;
    auto upseudo = net::ipv4PseudoHeaderChecksum(flow.srcIp.value(), flow.dstIp.value(), 17,
                                                 static_cast<uint16_t>(8 + len));
    net::storeBe16(net::MutableBytes(reinterpret_cast<uint8_t*>(up.data()), up.size()), 40,
                   upseudo.sum());
    ASSERT_TRUE(completeChecksum(up, 34, 6));
    EXPECT_EQ(up, udp) << "UDP, payload " << len;
  }
  Bytes small(40);
  EXPECT_FALSE(completeChecksum(small, 34, 16)) << "field beyond the frame";
}

}  // namespace
}  // namespace mknet::drivers
