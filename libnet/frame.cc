#include "libnet/frame.h"

#include "libnet/checksum.h"

namespace mknet::net {
namespace {

FrameError fromIpv4Error(Ipv4Error e) {
  switch (e) {
    case Ipv4Error::kTooShort:
      return FrameError::kTooShort;
    case Ipv4Error::kBadVersion:
      return FrameError::kBadIpVersion;
    case Ipv4Error::kBadHeaderLength:
      return FrameError::kBadIpHeaderLength;
    case Ipv4Error::kBadTotalLength:
      return FrameError::kBadIpTotalLength;
  }
  return FrameError::kTooShort;  // unreachable: the switch is exhaustive
}

// Validates the L4 part of an unfragmented IPv4 packet and fills frame.
// Returns the error, or nullopt on success.
std::optional<FrameError> parseL4(const Ipv4View& ip, ParsedFrame& frame, bool l4ChecksumKnown) {
  switch (ip.protocol()) {
    case kIpProtocolTcp: {
      auto tcp = TcpView::parse(ip.payload());
      if (!tcp) return FrameError::kBadL4Length;
      if (!l4ChecksumKnown && !tcp->checksumValid(ip.src(), ip.dst())) return FrameError::kBadL4Checksum;
      auto options = tcp->parsedOptions();
      if (!options) return FrameError::kBadTcpOptions;
      frame.kind = FrameKind::kIpv4Tcp;
      frame.tcp = tcp;
      frame.tcpOptions = options;
      return std::nullopt;
    }
    case kIpProtocolUdp: {
      auto udp = UdpView::parse(ip.payload());
      if (!udp) return FrameError::kBadL4Length;
      if (!l4ChecksumKnown && !udp->checksumValid(ip.src(), ip.dst())) return FrameError::kBadL4Checksum;
      frame.kind = FrameKind::kIpv4Udp;
      frame.udp = udp;
      return std::nullopt;
    }
    case kIpProtocolIcmp: {
      auto icmp = IcmpView::parse(ip.payload());
      if (!icmp) return FrameError::kBadL4Length;
      if (!icmp->checksumValid()) return FrameError::kBadL4Checksum;
      frame.kind = FrameKind::kIpv4Icmp;
      frame.icmp = icmp;
      return std::nullopt;
    }
    default:
      frame.kind = FrameKind::kIpv4OtherProtocol;
      return std::nullopt;
  }
}

// Ethernet + IPv4 headers (20 bytes, no options).
constexpr std::size_t kL4Offset = EthernetView::kHeaderSize + Ipv4View::kMinHeaderSize;

// Adds the IPv4 and Ethernet headers in front of an L4 message of l4Length
// bytes already written at out[kL4Offset..); passes a failed L4 build through.
std::optional<std::size_t> wrapIpv4(const FrameBuilder& fb, MutableBytes out, std::uint8_t protocol,
                                    std::optional<std::size_t> l4Length) {
  if (!l4Length) return std::nullopt;
  auto ip = Ipv4Builder{.src = fb.srcIp,
                        .dst = fb.dstIp,
                        .protocol = protocol,
                        .ttl = fb.ttl,
                        .tos = fb.tos,
                        .id = fb.ipId,
                        .dontFragment = fb.dontFragment}
                .build(out.subspan(EthernetView::kHeaderSize), out.subspan(kL4Offset, *l4Length));
  if (!ip) return std::nullopt;
  return EthernetBuilder{.dst = fb.dstMac, .src = fb.srcMac, .etherType = kEtherTypeIpv4}.build(
      out, out.subspan(EthernetView::kHeaderSize, *ip));
}

}  // namespace

const char* frameErrorName(FrameError error) {
  switch (error) {
    case FrameError::kTooShort:
      return "too_short";
    case FrameError::kBadArp:
      return "bad_arp";
    case FrameError::kBadIpVersion:
      return "bad_ip_version";
    case FrameError::kBadIpHeaderLength:
      return "bad_ip_header_length";
    case FrameError::kBadIpTotalLength:
      return "bad_ip_total_length";
    case FrameError::kBadIpChecksum:
      return "bad_ip_checksum";
    case FrameError::kBadL4Length:
      return "bad_l4_length";
    case FrameError::kBadL4Checksum:
      return "bad_l4_checksum";
    case FrameError::kBadTcpOptions:
      return "bad_tcp_options";
  }
  return "unknown";
}

std::optional<ParsedFrame> parseFrame(ConstBytes bytes, FrameError* error, bool l4ChecksumKnown) {
  auto fail = [error](FrameError e) -> std::optional<ParsedFrame> {
    if (error != nullptr) *error = e;
    return std::nullopt;
  };
  auto eth = EthernetView::parse(bytes);
  if (!eth) return fail(FrameError::kTooShort);
  ParsedFrame frame{FrameKind::kOtherEtherType, *eth, {}, {}, {}, {}, {}, {}};

  switch (eth->etherType()) {
    case kEtherTypeArp: {
      auto arp = ArpView::parse(eth->payload());
      if (!arp) return fail(FrameError::kBadArp);
      frame.kind = FrameKind::kArp;
      frame.arp = arp;
      return frame;
    }
    case kEtherTypeIpv4: {
      Ipv4Error ipError{};
      auto ip = Ipv4View::parse(eth->payload(), &ipError);
      if (!ip) return fail(fromIpv4Error(ipError));
      if (!ip->checksumValid()) return fail(FrameError::kBadIpChecksum);
      frame.ipv4 = ip;
      if (ip->isFragment()) {
        frame.kind = FrameKind::kIpv4Fragment;
        return frame;
      }
      if (auto l4Error = parseL4(*ip, frame, l4ChecksumKnown)) return fail(*l4Error);
      return frame;
    }
    default:
      return frame;
  }
}

bool setSynWindowScale(MutableBytes frame, std::uint8_t shift) {
  constexpr std::uint8_t kMaxShift = 14;  // RFC 7323 section 2.3
  if (shift > kMaxShift) return false;
  // The cheap test first: EtherType IPv4, protocol TCP, SYN set.
  constexpr std::size_t kIp = EthernetView::kHeaderSize;
  if (frame.size() < kIp + Ipv4View::kMinHeaderSize + TcpView::kMinHeaderSize ||
      loadBe16(frame, 12) != kEtherTypeIpv4 || frame[kIp + 9] != kIpProtocolTcp)
    return false;
  const std::size_t tcpAt = kIp + std::size_t{frame[kIp] & 0x0fu} * 4;
  if (tcpAt + TcpView::kMinHeaderSize > frame.size() || (frame[tcpAt + 13] & kTcpFlagSyn) == 0) return false;

  auto parsed = parseFrame(frame);
  if (!parsed || parsed->kind != FrameKind::kIpv4Tcp) return false;
  const TcpView& tcp = *parsed->tcp;
  TcpOptionIterator it = tcp.optionIterator();
  TcpOption o;
  const std::uint8_t* at = nullptr;
  while (it.next(o) == TcpOptionIterator::Status::kOption) {
    if (o.kind == kTcpOptionWindowScale) at = o.value.data();  // the last one wins, as in parseTcpOptions
  }
  if (at == nullptr) return false;
  frame[static_cast<std::size_t>(at - frame.data())] = shift;
  const ConstBytes segment = parsed->ipv4->payload();
  MutableBytes writable = frame.subspan(static_cast<std::size_t>(segment.data() - frame.data()), segment.size());
  storeBe16(writable, 16, 0);
  storeBe16(writable, 16, ipv4L4Checksum(parsed->ipv4->src().value(), parsed->ipv4->dst().value(),
                                         kIpProtocolTcp, writable));
  return true;
}

std::optional<std::size_t> FrameBuilder::buildUdp(MutableBytes out, const UdpBuilder& udp,
                                                  ConstBytes payload) const {
  if (out.size() < kL4Offset) return std::nullopt;
  return wrapIpv4(*this, out, kIpProtocolUdp,
                  udp.build(out.subspan(kL4Offset), srcIp, dstIp, payload));
}

std::optional<std::size_t> FrameBuilder::buildTcp(MutableBytes out, const TcpBuilder& tcp,
                                                  ConstBytes payload) const {
  if (out.size() < kL4Offset) return std::nullopt;
  return wrapIpv4(*this, out, kIpProtocolTcp,
                  tcp.build(out.subspan(kL4Offset), srcIp, dstIp, payload));
}

std::optional<std::size_t> FrameBuilder::buildIcmp(MutableBytes out, const IcmpBuilder& icmp,
                                                   ConstBytes payload) const {
  if (out.size() < kL4Offset) return std::nullopt;
  return wrapIpv4(*this, out, kIpProtocolIcmp, icmp.build(out.subspan(kL4Offset), payload));
}

std::optional<std::size_t> FrameBuilder::buildArp(MutableBytes out, const ArpBuilder& arp) const {
  if (out.size() < EthernetView::kHeaderSize + ArpView::kSize) return std::nullopt;
  auto n = arp.build(out.subspan(EthernetView::kHeaderSize));
  if (!n) return std::nullopt;
  return EthernetBuilder{.dst = dstMac, .src = srcMac, .etherType = kEtherTypeArp}.build(
      out, out.subspan(EthernetView::kHeaderSize, *n));
}

}  // namespace mknet::net
