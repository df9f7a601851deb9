#include "libnet/ipv4.h"

#include "libnet/checksum.h"

namespace mknet::net {

std::optional<Ipv4Address> Ipv4Address::parse(std::string_view text) {
  std::uint32_t value = 0;
  std::size_t pos = 0;
  for (int octet = 0; octet < 4; ++octet) {
    if (octet != 0) {
      if (pos >= text.size() || text[pos] != '.') return std::nullopt;
      ++pos;
    }
    const std::size_t start = pos;
    std::uint32_t n = 0;
    while (pos < text.size() && pos - start < 3 && text[pos] >= '0' && text[pos] <= '9') {
      n = n * 10 + static_cast<std::uint32_t>(text[pos] - '0');
      ++pos;
    }
    const std::size_t digits = pos - start;
    if (digits == 0 || n > 255) return std::nullopt;
    if (digits > 1 && text[start] == '0') return std::nullopt;
    value = value << 8 | n;
  }
  // A fourth digit or any trailing text lands here.
  if (pos != text.size()) return std::nullopt;
  return Ipv4Address(value);
}

std::string Ipv4Address::toString() const {
  std::string s;
  for (int shift = 24; shift >= 0; shift -= 8) {
    if (shift != 24) s.push_back('.');
    s += std::to_string((value_ >> shift) & 0xff);
  }
  return s;
}

std::optional<Ipv4View> Ipv4View::parse(ConstBytes bytes, Ipv4Error* error) {
  auto fail = [error](Ipv4Error e) -> std::optional<Ipv4View> {
    if (error != nullptr) *error = e;
    return std::nullopt;
  };
  if (bytes.size() < kMinHeaderSize) return fail(Ipv4Error::kTooShort);
  if ((bytes[0] >> 4) != 4) return fail(Ipv4Error::kBadVersion);
  const std::size_t headerLength = std::size_t{bytes[0] & 0x0fu} * 4;
  if (headerLength < kMinHeaderSize || headerLength > bytes.size()) {
    return fail(Ipv4Error::kBadHeaderLength);
  }
  const std::size_t totalLength = loadBe16(bytes, 2);
  if (totalLength < headerLength || totalLength > bytes.size()) {
    return fail(Ipv4Error::kBadTotalLength);
  }
  return Ipv4View(bytes.first(totalLength));
}

bool Ipv4View::checksumValid() const { return internetChecksum(header()) == 0; }

std::optional<std::size_t> Ipv4Builder::build(MutableBytes out, ConstBytes payload) const {
  if (options.size() % 4 != 0 ||
      options.size() > Ipv4View::kMaxHeaderSize - Ipv4View::kMinHeaderSize) {
    return std::nullopt;
  }
  if (fragmentOffset > 0x1fff) return std::nullopt;
  const std::size_t header = headerLength();
  const std::size_t total = header + payload.size();
  if (total > 0xffff || out.size() < total) return std::nullopt;

  moveBytes(out.subspan(header), payload);
  out[0] = static_cast<std::uint8_t>(0x40 | header / 4);
  out[1] = tos;
  storeBe16(out, 2, static_cast<std::uint16_t>(total));
  storeBe16(out, 4, id);
  const std::uint16_t flagBits = (dontFragment ? 0x4000 : 0) | (moreFragments ? 0x2000 : 0);
  storeBe16(out, 6, static_cast<std::uint16_t>(flagBits | fragmentOffset));
  out[8] = ttl;
  out[9] = protocol;
  storeBe16(out, 10, 0);
  storeBe32(out, 12, src.value());
  storeBe32(out, 16, dst.value());
  moveBytes(out.subspan(Ipv4View::kMinHeaderSize), options);
  storeBe16(out, 10, internetChecksum(out.first(header)));
  return total;
}

}  // namespace mknet::net
