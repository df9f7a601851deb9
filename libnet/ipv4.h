// IPv4 (RFC 791): addresses, a validated read-only header view, and a builder.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "libnet/bytes.h"

namespace mknet::net {

inline constexpr std::uint8_t kIpProtocolIcmp = 1;
inline constexpr std::uint8_t kIpProtocolTcp = 6;
inline constexpr std::uint8_t kIpProtocolUdp = 17;

// An IPv4 address. value() is in host order: 192.168.0.1 is 0xc0a80001.
class Ipv4Address {
 public:
  constexpr Ipv4Address() = default;
  constexpr explicit Ipv4Address(std::uint32_t hostOrder) : value_(hostOrder) {}
  static constexpr Ipv4Address fromOctets(std::uint8_t a, std::uint8_t b, std::uint8_t c,
                                          std::uint8_t d) {
    return Ipv4Address(std::uint32_t{a} << 24 | std::uint32_t{b} << 16 | std::uint32_t{c} << 8 | d);
  }
  // Parses a dotted quad "a.b.c.d": four decimal numbers 0..255 of one to
  // three digits, no sign, no spaces, no leading zeros (so "010" is not
  // silently read as octal or decimal). Returns nullopt for anything else.
  static std::optional<Ipv4Address> parse(std::string_view text);

  constexpr std::uint32_t value() const { return value_; }
  // "a.b.c.d".
  std::string toString() const;

  friend constexpr auto operator<=>(const Ipv4Address&, const Ipv4Address&) = default;

 private:
  std::uint32_t value_ = 0;
};

// Why Ipv4View::parse rejected a packet; the checks run in this order.
enum class Ipv4Error : std::uint8_t {
  kTooShort,         // fewer than 20 bytes
  kBadVersion,       // version field is not 4
  kBadHeaderLength,  // IHL < 5, or IHL * 4 beyond the span
  kBadTotalLength,   // total length < IHL * 4, or beyond the span
};

// A read-only view of an IPv4 packet.
//
// Invariants established by parse(): version 4; 20 <= headerLength() <=
// totalLength() <= the span's size. packet_ is trimmed to totalLength(), so
// link-layer padding after the packet is never part of payload().
// The header checksum is NOT checked by parse(): see checksumValid().
class Ipv4View {
 public:
  static constexpr std::size_t kMinHeaderSize = 20;
  static constexpr std::size_t kMaxHeaderSize = 60;

  // Returns the view, or nullopt with *error (if non-null) set to the first
  // failed check.
  static std::optional<Ipv4View> parse(ConstBytes bytes, Ipv4Error* error = nullptr);

  std::uint8_t version() const { return packet_[0] >> 4; }
  // Header length in 32-bit words (5..15).
  std::uint8_t ihl() const { return packet_[0] & 0x0f; }
  // Header length in bytes, options included (20..60).
  std::size_t headerLength() const { return std::size_t{ihl()} * 4; }
  std::uint8_t tos() const { return packet_[1]; }
  std::uint8_t dscp() const { return packet_[1] >> 2; }
  std::uint8_t ecn() const { return packet_[1] & 0x03; }
  std::uint16_t totalLength() const { return loadBe16(packet_, 2); }
  std::uint16_t id() const { return loadBe16(packet_, 4); }
  // The three flag bits: 0x4 reserved, 0x2 DF, 0x1 MF.
  std::uint8_t flags() const { return packet_[6] >> 5; }
  bool dontFragment() const { return (flags() & 0x2) != 0; }
  bool moreFragments() const { return (flags() & 0x1) != 0; }
  // Fragment offset in 8-byte units, as on the wire.
  std::uint16_t fragmentOffset() const { return loadBe16(packet_, 6) & 0x1fff; }
  // True if this packet is part of a fragmented datagram: MF set or a
  // non-zero offset. Its payload then carries only part of the L4 segment.
  bool isFragment() const { return moreFragments() || fragmentOffset() != 0; }
  std::uint8_t ttl() const { return packet_[8]; }
  std::uint8_t protocol() const { return packet_[9]; }
  std::uint16_t headerChecksum() const { return loadBe16(packet_, 10); }
  Ipv4Address src() const { return Ipv4Address(loadBe32(packet_, 12)); }
  Ipv4Address dst() const { return Ipv4Address(loadBe32(packet_, 16)); }
  // Option bytes (headerLength() - 20 of them, possibly none), unparsed.
  ConstBytes options() const {
    return packet_.subspan(kMinHeaderSize, headerLength() - kMinHeaderSize);
  }
  ConstBytes header() const { return packet_.first(headerLength()); }
  // Bytes from the end of the header to totalLength().
  ConstBytes payload() const { return packet_.subspan(headerLength()); }
  // The whole packet, trimmed to totalLength().
  ConstBytes packet() const { return packet_; }

  // True iff the header checksum is correct.
  bool checksumValid() const;

 private:
  explicit Ipv4View(ConstBytes packet) : packet_(packet) {}
  ConstBytes packet_{};
};

// Writes an IPv4 header with a correct checksum, followed by the payload.
// A plain aggregate for designated initializers:
//   Ipv4Builder{.src = a, .dst = b, .protocol = kIpProtocolUdp}.build(buf, udp);
struct Ipv4Builder {
  Ipv4Address src{};
  Ipv4Address dst{};
  std::uint8_t protocol = 0;
  std::uint8_t ttl = 64;
  std::uint8_t tos = 0;
  std::uint16_t id = 0;
  bool dontFragment = true;
  bool moreFragments = false;
  std::uint16_t fragmentOffset = 0;  // 8-byte units, 13 bits
  // Raw option bytes, already padded: size must be a multiple of 4, <= 40.
  ConstBytes options{};

  // Header size this builder writes: 20 + options.size().
  std::size_t headerLength() const { return Ipv4View::kMinHeaderSize + options.size(); }

  // Writes header + payload to out[0..n) and returns n, the total length.
  // Returns nullopt, writing nothing, if out is smaller than n, if n exceeds
  // 65535, if options are not a multiple of 4 or longer than 40 bytes, or if
  // fragmentOffset does not fit in 13 bits. payload (but not options) may
  // already lie inside out.
  std::optional<std::size_t> build(MutableBytes out, ConstBytes payload) const;
};

}  // namespace mknet::net
