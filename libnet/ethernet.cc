#include "libnet/ethernet.h"

namespace mknet::net {
namespace {

// Returns the value of one hex digit, or -1.
int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<MacAddress> MacAddress::fromBytes(ConstBytes bytes) {
  if (bytes.size() < kSize) return std::nullopt;
  std::array<std::uint8_t, kSize> a{};
  for (std::size_t i = 0; i < kSize; ++i) a[i] = bytes[i];
  return MacAddress(a);
}

std::optional<MacAddress> MacAddress::parse(std::string_view text) {
  // 6 groups of 2 digits + 5 separators.
  if (text.size() != 17) return std::nullopt;
  std::array<std::uint8_t, kSize> a{};
  for (std::size_t i = 0; i < kSize; ++i) {
    const std::size_t at = i * 3;
    const int hi = hexValue(text[at]);
    const int lo = hexValue(text[at + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    if (i + 1 < kSize && text[at + 2] != ':') return std::nullopt;
    a[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return MacAddress(a);
}

std::string MacAddress::toString() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  s.reserve(17);
  for (std::size_t i = 0; i < kSize; ++i) {
    if (i != 0) s.push_back(':');
    s.push_back(kDigits[bytes_[i] >> 4]);
    s.push_back(kDigits[bytes_[i] & 0xf]);
  }
  return s;
}

void MacAddress::writeTo(MutableBytes out) const {
  for (std::size_t i = 0; i < kSize; ++i) out[i] = bytes_[i];
}

std::optional<EthernetView> EthernetView::parse(ConstBytes frame) {
  if (frame.size() < kHeaderSize) return std::nullopt;
  return EthernetView(frame);
}

// fromBytes cannot fail here: the header is known to be complete.
MacAddress EthernetView::dst() const { return *MacAddress::fromBytes(frame_.subspan(0, 6)); }
MacAddress EthernetView::src() const { return *MacAddress::fromBytes(frame_.subspan(6, 6)); }

std::optional<std::size_t> EthernetBuilder::build(MutableBytes out, ConstBytes payload) const {
  const std::size_t total = EthernetView::kHeaderSize + payload.size();
  if (out.size() < total) return std::nullopt;
  // Payload first: it may overlap the header bytes of out.
  moveBytes(out.subspan(EthernetView::kHeaderSize), payload);
  dst.writeTo(out.subspan(0, 6));
  src.writeTo(out.subspan(6, 6));
  storeBe16(out, 12, etherType);
  return total;
}

}  // namespace mknet::net
