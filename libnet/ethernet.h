// Ethernet II frames: MAC addresses, a validated read-only view, and a builder.
//
// Only untagged Ethernet II is interpreted: an 802.1Q tag shows up as
// etherType() == 0x8100 and is left to the caller. The frame check sequence is
// not part of the bytes (TAP devices and AF_PACKET strip it).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "libnet/bytes.h"

namespace mknet::net {

inline constexpr std::uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr std::uint16_t kEtherTypeArp = 0x0806;
inline constexpr std::uint16_t kEtherTypeIpv6 = 0x86dd;

// A 48-bit IEEE MAC address, stored in wire order.
class MacAddress {
 public:
  static constexpr std::size_t kSize = 6;

  // The all-zero address.
  constexpr MacAddress() = default;
  constexpr explicit MacAddress(const std::array<std::uint8_t, kSize>& bytes) : bytes_(bytes) {}

  // Reads six bytes from bytes[0..6). Returns nullopt if fewer than six.
  static std::optional<MacAddress> fromBytes(ConstBytes bytes);
  // Parses exactly "aa:bb:cc:dd:ee:ff": six two-digit hex groups (either
  // case) separated by ':'. Returns nullopt for anything else.
  static std::optional<MacAddress> parse(std::string_view text);
  static constexpr MacAddress broadcast() {
    return MacAddress({0xff, 0xff, 0xff, 0xff, 0xff, 0xff});
  }

  // Lower-case "aa:bb:cc:dd:ee:ff".
  std::string toString() const;
  const std::array<std::uint8_t, kSize>& bytes() const { return bytes_; }
  bool isBroadcast() const { return *this == broadcast(); }
  // Group bit (I/G) set; true for broadcast as well.
  bool isMulticast() const { return (bytes_[0] & 0x01) != 0; }
  bool isZero() const { return *this == MacAddress(); }

  // Writes the six bytes to out[0..6); out.size() must be >= 6.
  void writeTo(MutableBytes out) const;

  friend constexpr bool operator==(const MacAddress&, const MacAddress&) = default;

 private:
  std::array<std::uint8_t, kSize> bytes_{};
};

// A read-only view of an Ethernet II frame.
//
// Invariant: frame_.size() >= kHeaderSize. Views exist only through parse(),
// so no accessor can read outside the span. The view does not own the bytes.
class EthernetView {
 public:
  static constexpr std::size_t kHeaderSize = 14;

  // Returns nullopt if the frame is shorter than the 14-byte header.
  static std::optional<EthernetView> parse(ConstBytes frame);

  MacAddress dst() const;
  MacAddress src() const;
  std::uint16_t etherType() const { return loadBe16(frame_, 12); }
  // Everything after the header, including any padding up to the 60-byte
  // minimum frame: the layer above uses its own length field to trim it.
  ConstBytes payload() const { return frame_.subspan(kHeaderSize); }
  ConstBytes frame() const { return frame_; }

 private:
  explicit EthernetView(ConstBytes frame) : frame_(frame) {}
  ConstBytes frame_{};
};

// Writes an Ethernet II header followed by a payload. A plain aggregate so
// callers can use designated initializers:
//   EthernetBuilder{.dst = mac, .src = me, .etherType = kEtherTypeIpv4}.build(buf, ip);
struct EthernetBuilder {
  MacAddress dst{};
  MacAddress src{};
  std::uint16_t etherType = 0;

  // Writes header + payload to out[0..n) and returns n = 14 + payload.size(),
  // or nullopt (writing nothing) if out is smaller than n. payload may already
  // lie inside out (it is moved, not copied). No padding to the 60-byte
  // minimum is added: TAP devices do not need it.
  std::optional<std::size_t> build(MutableBytes out, ConstBytes payload) const;
};

}  // namespace mknet::net
