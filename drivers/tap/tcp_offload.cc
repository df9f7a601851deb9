#include "drivers/tap/tcp_offload.h"

#include <bit>
#include <cstring>

#include "libnet/bytes.h"
#include "libnet/checksum.h"

namespace mknet::drivers {

namespace {

constexpr size_t kEthLen = 14;
constexpr size_t kIpMin = 20;
constexpr size_t kTcpMin = 20;
constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10, kCwr = 0x80;
constexpr size_t kTcpChecksumAt = 16;

net::ConstBytes u8(ConstByteSpan b) {
  return {reinterpret_cast<const uint8_t*>(b.data()), b.size()};
}
net::MutableBytes u8(MutableByteSpan b) { return {reinterpret_cast<uint8_t*>(b.data()), b.size()}; }

uint16_t fold(uint64_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(s);
}

bool equalRange(ConstByteSpan a, ConstByteSpan b, size_t from, size_t to) {
  return std::memcmp(a.data() + from, b.data() + from, to - from) == 0;
}

// Recomputes the IPv4 header checksum of the header at ip (ihl words long).
void fixIpChecksum(net::MutableBytes ip, size_t ihlBytes) {
  net::storeBe16(ip, 10, 0);
  net::storeBe16(ip, 10, net::internetChecksum(ip.first(ihlBytes)));
}

}  // namespace

uint16_t onesComplementSum(ConstByteSpan bytes) {
  // libnet's Checksum (8-byte native loads, RFC 1071 2.(B)) over std::byte spans.
  net::Checksum c;
  c.add(net::ConstBytes(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  return c.sum();
}

namespace {

// The TCP header offset of a bare ACK frame, or 0.
size_t bareAck(net::ConstBytes f) {
  if (f.size() < kEthLen + kIpMin + kTcpMin || net::loadBe16(f, 12) != 0x0800) return 0;
  auto ip = f.subspan(kEthLen);
  if (ip[0] != 0x45 || ip[9] != kProtoTcp || (net::loadBe16(ip, 6) & 0x3fff) != 0) return 0;
  if (net::loadBe16(ip, 2) != kIpMin + kTcpMin) return 0;  // no payload, no TCP options
  auto tcp = ip.subspan(kIpMin);
  if ((tcp[12] >> 4) != 5 || tcp[13] != kAck) return 0;
  return kEthLen + kIpMin;
}

}  // namespace

bool supersededAck(ConstByteSpan earlier, ConstByteSpan later) {
  auto a = u8(earlier), b = u8(later);
  const size_t t = bareAck(a);
  if (t == 0 || bareAck(b) != t) return false;
  // Same Ethernet header, same IP addresses, same ports and sequence number.
  if (std::memcmp(a.data(), b.data(), kEthLen) != 0) return false;
  if (std::memcmp(a.data() + kEthLen + 12, b.data() + kEthLen + 12, 8) != 0) return false;
  if (std::memcmp(a.data() + t, b.data() + t, 8) != 0) return false;
  return static_cast<int32_t>(net::loadBe32(b, t + 8) - net::loadBe32(a, t + 8)) > 0;
}

bool TcpCoalescer::start(ConstByteSpan frame) {
  frames_ = 0;
  pieces_.clear();
  auto f = u8(frame);
  if (f.size() < kEthLen + kIpMin + kTcpMin) return false;
  if (net::loadBe16(f, 12) != 0x0800) return false;  // IPv4, no VLAN tag
  auto ip = f.subspan(kEthLen);
  if (ip[0] != 0x45) return false;  // version 4, no IP options
  if (kEthLen + net::loadBe16(ip, 2) != f.size()) return false;  // no padding, no truncation
  if ((net::loadBe16(ip, 6) & 0x3fff) != 0) return false;        // not a fragment (DF is fine)
  if (ip[9] != kProtoTcp) return false;
  tcpOffset_ = kEthLen + kIpMin;
  auto tcp = f.subspan(tcpOffset_);
  headerLen_ = tcpOffset_ + static_cast<size_t>(tcp[12] >> 4) * 4;
  if (headerLen_ < tcpOffset_ + kTcpMin || headerLen_ >= f.size()) return false;  // need payload
  uint8_t flags = tcp[13];
  if ((flags & kAck) == 0 || (flags & ~(kAck | kPsh)) != 0) return false;

  first_ = frame;
  mss_ = f.size() - headerLen_;
  payloadTotal_ = mss_;
  nextSeq_ = net::loadBe32(tcp, 4) + static_cast<uint32_t>(mss_);
  lastFlags_ = flags;
  closed_ = false;
  std::memcpy(header_.data(), frame.data(), headerLen_);
  pieces_.push_back(ConstByteSpan(header_.data(), headerLen_));
  pieces_.push_back(frame.subspan(headerLen_));
  frames_ = 1;
  return true;
}

bool TcpCoalescer::append(ConstByteSpan frame) {
  if (frames_ == 0 || closed_ || frames_ >= kMaxFrames) return false;
  if (frame.size() <= headerLen_) return false;
  const size_t ip = ipOffset_, tcp = tcpOffset_;
  // Every header byte must match the first frame's, except those that
  // differ between segments of one super-frame anyway: IP total length, id
  // and checksum, TCP seq, flags and checksum (checked on their own below).
  if (!equalRange(first_, frame, 0, ip + 2) || !equalRange(first_, frame, ip + 6, ip + 10) ||
      !equalRange(first_, frame, ip + 12, tcp + 4) || !equalRange(first_, frame, tcp + 8, tcp + 13) ||
      !equalRange(first_, frame, tcp + 14, tcp + 16) ||
      !equalRange(first_, frame, tcp + 18, headerLen_))
    return false;
  auto f = u8(frame);
  if (kEthLen + net::loadBe16(f, ip + 2) != f.size()) return false;
  uint8_t flags = f[tcp + 13];
  if ((flags & ~(kAck | kPsh)) != 0 || (flags & kAck) == 0) return false;
  if (net::loadBe32(f, tcp + 4) != nextSeq_) return false;
  size_t payload = f.size() - headerLen_;
  if (payload > mss_) return false;
  if (headerLen_ - kEthLen + payloadTotal_ + payload > kMaxIpPacket) return false;

  pieces_.push_back(frame.subspan(headerLen_));
  ++frames_;
  payloadTotal_ += payload;
  nextSeq_ += static_cast<uint32_t>(payload);
  lastFlags_ = flags;
  closed_ = payload < mss_;  // only the last segment of a GSO frame may be short
  return true;
}

std::span<const ConstByteSpan> TcpCoalescer::finish() {
  auto h = u8(MutableByteSpan(header_.data(), headerLen_));
  auto ip = h.subspan(ipOffset_);
  const size_t ipLen = headerLen_ - kEthLen + payloadTotal_;  // <= 65535, checked by append()
  const size_t tcpLen = headerLen_ - tcpOffset_ + payloadTotal_;
  net::storeBe16(ip, 2, static_cast<uint16_t>(ipLen));
  fixIpChecksum(ip, kIpMin);
  h[tcpOffset_ + 13] = lastFlags_;  // PSH (if the last frame had it) ends up on the last segment
  // NEEDS_CSUM: the checksum field carries the pseudo-header sum (not
  // complemented) over the whole TCP length, as Linux's own TSO path leaves
  // it (__tcp_v4_send_check); its GSO code adjusts it per segment.
  net::Checksum pseudo = net::ipv4PseudoHeaderChecksum(net::loadBe32(ip, 12), net::loadBe32(ip, 16),
                                                       kProtoTcp, static_cast<uint16_t>(tcpLen));
  net::storeBe16(h, tcpOffset_ + kTcpChecksumAt, pseudo.sum());

  offload_ = FrameOffload{};
  offload_.gso = FrameOffload::Gso::kTcpV4;
  offload_.needsCsum = true;
  offload_.hdrLen = static_cast<uint16_t>(headerLen_);
  offload_.gsoSize = static_cast<uint16_t>(mss_);
  offload_.csumStart = static_cast<uint16_t>(tcpOffset_);
  offload_.csumOffset = kTcpChecksumAt;
  return pieces_;
}

void SplitFrame::copyOutSum(size_t offset, MutableByteSpan out, net::Checksum& sum) const {
  auto* o = reinterpret_cast<uint8_t*>(out.data());
  size_t done = 0;
  if (offset < head.size()) {
    size_t n = std::min(out.size(), head.size() - offset);
    // In place for segment 0 (out == head + offset): addCopy copies forwards.
    sum.addCopy(net::ConstBytes(reinterpret_cast<const uint8_t*>(head.data()) + offset, n), o);
    done = n;
  }
  if (done < out.size()) {
    size_t from = offset + done - head.size();
    sum.addCopy(net::ConstBytes(reinterpret_cast<const uint8_t*>(tail.data()) + from, out.size() - done), o + done);
  }
}

std::optional<TcpV4GsoPlan> validateTcpV4Gso(const SplitFrame& frame, const FrameOffload& offload,
                                             size_t maxSegmentFrame) {
  auto h = u8(frame.head);
  if (h.size() < kEthLen + kIpMin) return std::nullopt;
  if (net::loadBe16(h, 12) != 0x0800) return std::nullopt;
  auto ip = h.subspan(kEthLen);
  if ((ip[0] >> 4) != 4 || (ip[0] & 0x0f) < 5) return std::nullopt;
  if (ip[9] != kProtoTcp) return std::nullopt;
  if ((net::loadBe16(ip, 6) & 0x3fff) != 0) return std::nullopt;
  TcpV4GsoPlan p;
  p.tcpOffset = kEthLen + size_t{ip[0] & 0x0fu} * 4;
  if (h.size() < p.tcpOffset + kTcpMin) return std::nullopt;
  p.headerLen = p.tcpOffset + static_cast<size_t>(h[p.tcpOffset + 12] >> 4) * 4;
  if (p.headerLen < p.tcpOffset + kTcpMin || h.size() < p.headerLen) return std::nullopt;
  if (frame.size() <= p.headerLen) return std::nullopt;
  if (h[p.tcpOffset + 13] & (kSyn | kRst)) return std::nullopt;
  p.mss = offload.gsoSize;
  if (p.mss == 0 || p.headerLen + p.mss > maxSegmentFrame) return std::nullopt;
  p.payloadLen = frame.size() - p.headerLen;
  p.segments = (p.payloadLen + p.mss - 1) / p.mss;
  return p;
}

size_t writeTcpV4Segment(const TcpV4GsoPlan& plan, ConstByteSpan headers, const SplitFrame& frame,
                         size_t k, MutableByteSpan out) {
  const size_t payload = std::min(plan.mss, plan.payloadLen - k * plan.mss);
  const size_t len = plan.headerLen + payload;
  std::memmove(out.data(), headers.data(), plan.headerLen);
  // The payload is summed while it is copied (one pass instead of two); it
  // starts at an even offset of the TCP segment (the header is a multiple of
  // 4 bytes), so its sum adds to the header's.
  net::Checksum payloadSum;
  frame.copyOutSum(plan.headerLen + k * plan.mss, out.subspan(plan.headerLen, payload), payloadSum);

  auto o = u8(out.first(len));
  auto src = u8(headers);
  auto ip = o.subspan(plan.ipOffset);
  const size_t ihl = plan.tcpOffset - plan.ipOffset;
  net::storeBe16(ip, 2, static_cast<uint16_t>(len - plan.ipOffset));
  // Ids go up by one per segment, as the kernel's own GSO numbers them.
  net::storeBe16(ip, 4, static_cast<uint16_t>(net::loadBe16(src, plan.ipOffset + 4) + k));
  fixIpChecksum(ip, ihl);

  auto tcp = o.subspan(plan.tcpOffset);
  net::storeBe32(tcp, 4, net::loadBe32(src, plan.tcpOffset + 4) + static_cast<uint32_t>(k * plan.mss));
  uint8_t flags = src[plan.tcpOffset + 13];
  if (k + 1 != plan.segments) flags &= static_cast<uint8_t>(~(kFin | kPsh));
  if (k != 0) flags &= static_cast<uint8_t>(~kCwr);
  tcp[13] = flags;
  net::storeBe16(tcp, kTcpChecksumAt, 0);
  const size_t tcpLen = len - plan.tcpOffset;
  net::Checksum pseudo = net::ipv4PseudoHeaderChecksum(net::loadBe32(ip, 12), net::loadBe32(ip, 16),
                                                       kProtoTcp, static_cast<uint16_t>(tcpLen));
  uint64_t sum = pseudo.sum();
  sum += onesComplementSum(out.subspan(plan.tcpOffset, plan.headerLen - plan.tcpOffset));
  sum += payloadSum.sum();
  net::storeBe16(tcp, kTcpChecksumAt, static_cast<uint16_t>(~fold(sum)));
  return len;
}

bool completeChecksum(MutableByteSpan frame, uint16_t csumStart, uint16_t csumOffset) {
  if (size_t{csumStart} + csumOffset + 2 > frame.size()) return false;
  auto f = u8(frame);
  uint16_t c = static_cast<uint16_t>(~onesComplementSum(frame.subspan(csumStart)));
  // As the kernel's skb_checksum_help: 0 goes on the wire as 0xffff (the
  // same in one's complement, and for UDP 0 would mean "no checksum").
  net::storeBe16(f, size_t{csumStart} + csumOffset, c == 0 ? 0xffff : c);
  return true;
}

}  // namespace mknet::drivers
