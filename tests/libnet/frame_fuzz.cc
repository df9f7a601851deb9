// Fuzz entry point for everything in libnet that reads peer input.
//
// Built two ways: into libnet_frame_fuzz_test (a gtest that feeds it a fixed
// stream of random and mutated valid frames, so it runs under plain ctest
// and g++), and, with clang, into the coverage-guided libnet_frame_fuzzer.
//
// Beyond "does not crash", it checks properties that must hold for any
// input, and traps if one fails, so both harnesses report it:
//  - every span a view hands out lies inside the input;
//  - whatever parseFrame() accepts has the invariants frame.h promises
//    (lengths consistent, checksums valid, the right views set for kind);
//  - rebuilding an accepted header from its parsed fields reproduces its
//    bytes (so parse and build agree on every field's position and width);
//  - text parsers round-trip through toString().
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "libnet/checksum.h"
#include "libnet/frame.h"

namespace {

using namespace mknet::net;

void require(bool condition) {
  if (!condition) __builtin_trap();
}

// Keeps a value alive so the loads behind it cannot be optimised away and
// the sanitizer sees every byte an accessor reads.
template <typename T>
void keep(const T& value) {
  asm volatile("" : : "r"(&value) : "memory");
}

struct Input {
  const std::uint8_t* data;
  std::size_t size;

  void requireInside(ConstBytes inner) const {
    if (inner.empty()) return;
    require(inner.data() >= data && inner.data() + inner.size() <= data + size);
  }
};

bool equalBytes(ConstBytes a, ConstBytes b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

// 0x0000 and 0xffff are both zero in one's complement, so when the sum of the
// other fields is zero either one is a valid checksum.
bool sameChecksum(std::uint16_t a, std::uint16_t b) {
  auto zero = [](std::uint16_t v) { return v == 0 || v == 0xffff; };
  return a == b || (zero(a) && zero(b));
}

// Same bytes except the 16-bit checksum field at checksumOffset.
bool equalExceptChecksum(ConstBytes a, ConstBytes b, std::size_t checksumOffset) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (i != checksumOffset && i != checksumOffset + 1 && a[i] != b[i]) return false;
  }
  return true;
}

void checkTcpOptions(const Input& in, ConstBytes options) {
  TcpOptionIterator it(options);
  TcpOption option;
  std::size_t steps = 0;
  TcpOptionIterator::Status status;
  while ((status = it.next(option)) == TcpOptionIterator::Status::kOption) {
    in.requireInside(option.value);
    require(option.value.size() <= options.size());
    keep(option.kind);
    for (std::uint8_t b : option.value) keep(b);
    // Each option consumes at least one byte, so the walk is bounded.
    require(++steps <= options.size());
  }
  require(it.next(option) == status);  // stopped stays stopped
  auto parsed = parseTcpOptions(options);
  require(parsed.has_value() == (status == TcpOptionIterator::Status::kEnd));
  if (parsed) {
    require(parsed->sackBlockCount <= kTcpMaxSackBlocks);
    keep(*parsed);
    // Whatever was decoded can be encoded again, and decodes the same.
    std::uint8_t buf[kTcpMaxOptionBytes];
    if (auto n = writeTcpOptions(buf, *parsed)) {
      auto again = parseTcpOptions(ConstBytes(buf, *n));
      require(again && again->mss == parsed->mss && again->windowScale == parsed->windowScale &&
              again->sackPermitted == parsed->sackPermitted &&
              again->timestamps == parsed->timestamps &&
              again->sackBlockCount == parsed->sackBlockCount &&
              again->sackBlocks == parsed->sackBlocks);
    }
  }
}

void checkIpv4(const Input& in, const Ipv4View& ip) {
  in.requireInside(ip.packet());
  in.requireInside(ip.header());
  in.requireInside(ip.options());
  in.requireInside(ip.payload());
  require(ip.version() == 4);
  require(ip.headerLength() >= 20 && ip.headerLength() <= 60);
  require(ip.packet().size() == ip.totalLength());
  require(ip.header().size() == ip.headerLength());
  require(ip.options().size() == ip.headerLength() - 20);
  require(ip.payload().size() == ip.totalLength() - ip.headerLength());
  keep(ip.tos());
  keep(ip.dscp());
  keep(ip.ecn());
  keep(ip.id());
  keep(ip.flags());
  keep(ip.isFragment());
  keep(ip.ttl());
  keep(ip.protocol());
  keep(ip.headerChecksum());
  keep(ip.src());
  keep(ip.dst());
  const bool valid = ip.checksumValid();
  keep(valid);
  // The reserved flag cannot be expressed by the builder.
  if ((ip.flags() & 0x4) == 0) {
    std::vector<std::uint8_t> out(ip.headerLength());
    auto n = Ipv4Builder{.src = ip.src(),
                         .dst = ip.dst(),
                         .protocol = ip.protocol(),
                         .ttl = ip.ttl(),
                         .tos = ip.tos(),
                         .id = ip.id(),
                         .dontFragment = ip.dontFragment(),
                         .moreFragments = ip.moreFragments(),
                         .fragmentOffset = ip.fragmentOffset(),
                         .options = ip.options()}
                 .build(out, {});
    require(n == ip.headerLength());
    // Total length differs (no payload given): compare everything else, and
    // the checksum only when it was valid.
    storeBe16(out, 2, ip.totalLength());
    storeBe16(out, 10, 0);
    storeBe16(out, 10, internetChecksum(out));
    require(equalExceptChecksum(out, ip.header(), 10));
    if (valid) require(sameChecksum(loadBe16(out, 10), ip.headerChecksum()));
  }
}

void checkTcp(const Input& in, const TcpView& tcp, Ipv4Address src, Ipv4Address dst) {
  in.requireInside(tcp.segment());
  in.requireInside(tcp.options());
  in.requireInside(tcp.payload());
  require(tcp.headerLength() >= 20 && tcp.headerLength() <= tcp.segment().size());
  require(tcp.options().size() + 20 + tcp.payload().size() == tcp.segment().size());
  keep(tcp.srcPort());
  keep(tcp.dstPort());
  keep(tcp.seqNumber());
  keep(tcp.ackNumber());
  keep(tcp.flags());
  keep(tcp.syn() || tcp.ack() || tcp.fin() || tcp.rst() || tcp.psh() || tcp.urg());
  keep(tcp.window());
  keep(tcp.checksum());
  keep(tcp.urgentPointer());
  checkTcpOptions(in, tcp.options());
  const bool valid = tcp.checksumValid(src, dst);
  keep(valid);
  if (tcp.options().size() % 4 == 0 && tcp.segment().size() <= 0xffff - 20) {
    std::vector<std::uint8_t> out(tcp.segment().size());
    auto n = TcpBuilder{.srcPort = tcp.srcPort(),
                        .dstPort = tcp.dstPort(),
                        .seqNumber = tcp.seqNumber(),
                        .ackNumber = tcp.ackNumber(),
                        .flags = tcp.flags(),
                        .window = tcp.window(),
                        .urgentPointer = tcp.urgentPointer(),
                        .options = tcp.options()}
                 .build(out, src, dst, tcp.payload());
    require(n == tcp.segment().size());
    // Byte 12's low nibble (reserved bits and NS) is not built. 0x0000 and
    // 0xffff can both be valid, see sameChecksum().
    out[12] = static_cast<std::uint8_t>((out[12] & 0xf0) | (tcp.segment()[12] & 0x0f));
    require(equalExceptChecksum(out, tcp.segment(), 16));
    if ((tcp.segment()[12] & 0x0f) == 0) {
      require(TcpView::parse(out)->checksumValid(src, dst));
      if (valid) require(sameChecksum(loadBe16(out, 16), tcp.checksum()));
    }
  }
}

void checkUdp(const Input& in, const UdpView& udp, Ipv4Address src, Ipv4Address dst) {
  in.requireInside(udp.datagram());
  in.requireInside(udp.payload());
  require(udp.length() == udp.datagram().size() && udp.length() >= 8);
  require(udp.payload().size() + 8 == udp.datagram().size());
  keep(udp.srcPort());
  keep(udp.dstPort());
  const bool valid = udp.checksumValid(src, dst);
  keep(valid);
  if (udp.datagram().size() <= 0xffff - 20) {
    std::vector<std::uint8_t> out(udp.datagram().size());
    auto n = UdpBuilder{.srcPort = udp.srcPort(),
                        .dstPort = udp.dstPort(),
                        .computeChecksum = udp.hasChecksum()}
                 .build(out, src, dst, udp.payload());
    require(n == udp.datagram().size());
    // A valid checksum has exactly one encoding on the wire (0 means none).
    if (valid) {
      require(equalBytes(out, udp.datagram()));
    } else {
      require(equalExceptChecksum(out, udp.datagram(), 6));
    }
  }
}

void checkIcmp(const Input& in, const IcmpView& icmp) {
  in.requireInside(icmp.message());
  in.requireInside(icmp.payload());
  require(icmp.payload().size() + 8 == icmp.message().size());
  keep(icmp.type());
  keep(icmp.code());
  keep(icmp.checksum());
  keep(icmp.restOfHeader());
  keep(icmp.id());
  keep(icmp.sequence());
  keep(icmp.isEcho());
  const bool valid = icmp.checksumValid();
  if (icmp.message().size() <= 0xffff - 20) {
    std::vector<std::uint8_t> out(icmp.message().size());
    auto n = IcmpBuilder{icmp.type(), icmp.code(), icmp.restOfHeader()}.build(out, icmp.payload());
    require(n == icmp.message().size());
    require(equalExceptChecksum(out, icmp.message(), 2));
    require(IcmpView::parse(out)->checksumValid());
    if (valid) require(sameChecksum(loadBe16(out, 2), icmp.checksum()));
  }
}

void checkArp(const Input& in, const ArpView& arp) {
  in.requireInside(arp.packet());
  require(arp.packet().size() == ArpView::kSize);
  std::uint8_t out[ArpView::kSize];
  auto n =
      ArpBuilder{arp.operation(), arp.senderMac(), arp.senderIp(), arp.targetMac(), arp.targetIp()}
          .build(out);
  require(n == ArpView::kSize && equalBytes(out, arp.packet()));
  keep(arp.isRequest());
  keep(arp.isReply());
}

void checkParsedFrame(const Input& in, const ParsedFrame& f) {
  in.requireInside(f.ethernet.frame());
  in.requireInside(f.ethernet.payload());
  require(f.ethernet.frame().size() == in.size);
  keep(f.ethernet.dst().isBroadcast());
  keep(f.ethernet.src().isMulticast());
  const bool isIpv4 = f.kind == FrameKind::kIpv4Tcp || f.kind == FrameKind::kIpv4Udp ||
                      f.kind == FrameKind::kIpv4Icmp || f.kind == FrameKind::kIpv4Fragment ||
                      f.kind == FrameKind::kIpv4OtherProtocol;
  require(f.ipv4.has_value() == isIpv4);
  require(f.arp.has_value() == (f.kind == FrameKind::kArp));
  require(f.tcp.has_value() == (f.kind == FrameKind::kIpv4Tcp));
  require(f.tcpOptions.has_value() == (f.kind == FrameKind::kIpv4Tcp));
  require(f.udp.has_value() == (f.kind == FrameKind::kIpv4Udp));
  require(f.icmp.has_value() == (f.kind == FrameKind::kIpv4Icmp));
  if (f.arp) {
    require(f.ethernet.etherType() == kEtherTypeArp);
    checkArp(in, *f.arp);
  }
  if (f.ipv4) {
    require(f.ethernet.etherType() == kEtherTypeIpv4);
    checkIpv4(in, *f.ipv4);
    require(f.ipv4->checksumValid());
    require(f.ipv4->isFragment() == (f.kind == FrameKind::kIpv4Fragment));
  }
  if (f.kind == FrameKind::kOtherEtherType) {
    require(f.ethernet.etherType() != kEtherTypeArp && f.ethernet.etherType() != kEtherTypeIpv4);
  }
  if (f.tcp) {
    require(f.ipv4->protocol() == kIpProtocolTcp);
    require(f.tcp->segment().size() == f.ipv4->payload().size());
    checkTcp(in, *f.tcp, f.ipv4->src(), f.ipv4->dst());
    require(f.tcp->checksumValid(f.ipv4->src(), f.ipv4->dst()));
    require(f.tcp->parsedOptions().has_value());
  }
  if (f.udp) {
    require(f.ipv4->protocol() == kIpProtocolUdp);
    checkUdp(in, *f.udp, f.ipv4->src(), f.ipv4->dst());
    require(f.udp->checksumValid(f.ipv4->src(), f.ipv4->dst()));
  }
  if (f.icmp) {
    require(f.ipv4->protocol() == kIpProtocolIcmp);
    checkIcmp(in, *f.icmp);
    require(f.icmp->checksumValid());
  }
}

// Each parser on its own, on the raw input: they must be safe on any bytes,
// not only on what the layer below has vetted.
void checkStandaloneParsers(const Input& in, ConstBytes bytes) {
  if (auto eth = EthernetView::parse(bytes)) {
    in.requireInside(eth->payload());
    require(eth->payload().size() + 14 == bytes.size());
  } else {
    require(bytes.size() < 14);
  }
  if (auto ip = Ipv4View::parse(bytes)) checkIpv4(in, *ip);
  const Ipv4Address a(0x0a000001);
  const Ipv4Address b(0xc0a80001);
  if (auto tcp = TcpView::parse(bytes)) checkTcp(in, *tcp, a, b);
  if (auto udp = UdpView::parse(bytes)) checkUdp(in, *udp, a, b);
  if (auto icmp = IcmpView::parse(bytes)) checkIcmp(in, *icmp);
  if (auto arp = ArpView::parse(bytes)) checkArp(in, *arp);
  checkTcpOptions(in, bytes.first(std::min<std::size_t>(bytes.size(), kTcpMaxOptionBytes)));
  checkTcpOptions(in, bytes);

  const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  if (auto ip = Ipv4Address::parse(text)) require(ip->toString() == text);
  if (auto mac = MacAddress::parse(text)) {
    require(MacAddress::parse(mac->toString()) == mac);
  }

  // Checksum: any split gives the same result as one pass.
  Checksum whole;
  whole.add(bytes);
  Checksum split;
  const std::size_t cut = bytes.empty() ? 0 : bytes[0] % bytes.size();
  split.add(bytes.first(cut));
  split.add(bytes.subspan(cut));
  require(whole.finish() == split.finish());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const Input in{data, size};
  const ConstBytes bytes(data, size);
  FrameError error{};
  if (auto frame = parseFrame(bytes, &error)) {
    checkParsedFrame(in, *frame);
  } else {
    require(static_cast<std::size_t>(error) < kFrameErrorCount);
  }
  checkStandaloneParsers(in, bytes);
  return 0;
}
