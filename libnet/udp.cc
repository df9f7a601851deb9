#include "libnet/udp.h"

#include "libnet/checksum.h"

namespace mknet::net {
namespace {
// 65535 - the minimal IPv4 header.
constexpr std::size_t kMaxDatagram = 0xffff - 20;
}  // namespace

std::optional<UdpView> UdpView::parse(ConstBytes bytes) {
  if (bytes.size() < kHeaderSize) return std::nullopt;
  const std::size_t length = loadBe16(bytes, 4);
  if (length < kHeaderSize || length > bytes.size()) return std::nullopt;
  return UdpView(bytes.first(length));
}

bool UdpView::checksumValid(Ipv4Address src, Ipv4Address dst) const {
  if (!hasChecksum()) return true;
  return ipv4L4Checksum(src.value(), dst.value(), kIpProtocolUdp, datagram_) == 0;
}

std::optional<std::size_t> UdpBuilder::build(MutableBytes out, Ipv4Address src, Ipv4Address dst,
                                             ConstBytes payload) const {
  const std::size_t total = UdpView::kHeaderSize + payload.size();
  if (total > kMaxDatagram || out.size() < total) return std::nullopt;
  moveBytes(out.subspan(UdpView::kHeaderSize), payload);
  storeBe16(out, 0, srcPort);
  storeBe16(out, 2, dstPort);
  storeBe16(out, 4, static_cast<std::uint16_t>(total));
  storeBe16(out, 6, 0);
  if (computeChecksum) {
    std::uint16_t sum = ipv4L4Checksum(src.value(), dst.value(), kIpProtocolUdp, out.first(total));
    // 0 on the wire means "no checksum"; 0xffff is the same value in one's
    // complement arithmetic.
    if (sum == 0) sum = 0xffff;
    storeBe16(out, 6, sum);
  }
  return total;
}

}  // namespace mknet::net
