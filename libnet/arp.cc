#include "libnet/arp.h"

namespace mknet::net {

std::optional<ArpView> ArpView::parse(ConstBytes bytes) {
  if (bytes.size() < kSize) return std::nullopt;
  if (loadBe16(bytes, 0) != kArpHardwareEthernet || loadBe16(bytes, 2) != kEtherTypeIpv4 ||
      bytes[4] != MacAddress::kSize || bytes[5] != 4) {
    return std::nullopt;
  }
  return ArpView(bytes.first(kSize));
}

// fromBytes cannot fail: the packet is known to hold all 28 bytes.
MacAddress ArpView::senderMac() const { return *MacAddress::fromBytes(packet_.subspan(8, 6)); }
MacAddress ArpView::targetMac() const { return *MacAddress::fromBytes(packet_.subspan(18, 6)); }

std::optional<std::size_t> ArpBuilder::build(MutableBytes out) const {
  if (out.size() < ArpView::kSize) return std::nullopt;
  storeBe16(out, 0, kArpHardwareEthernet);
  storeBe16(out, 2, kEtherTypeIpv4);
  out[4] = MacAddress::kSize;
  out[5] = 4;
  storeBe16(out, 6, operation);
  senderMac.writeTo(out.subspan(8, 6));
  storeBe32(out, 14, senderIp.value());
  targetMac.writeTo(out.subspan(18, 6));
  storeBe32(out, 24, targetIp.value());
  return ArpView::kSize;
}

}  // namespace mknet::net
