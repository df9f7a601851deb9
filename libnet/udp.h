// UDP over IPv4 (RFC 768): a validated read-only view and a builder.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "libnet/bytes.h"
#include "libnet/ipv4.h"

namespace mknet::net {

// A read-only view of one UDP datagram (the IPv4 payload).
//
// Invariants: 8 <= length() <= the span given to parse(); datagram_ is
// trimmed to length(), so bytes the IP packet carries beyond the UDP length
// are not part of payload() (RFC 768 leaves them undefined; Linux trims them
// the same way).
class UdpView {
 public:
  static constexpr std::size_t kHeaderSize = 8;

  // Returns nullopt if bytes is shorter than 8, or the length field is below
  // 8 or beyond bytes.size().
  static std::optional<UdpView> parse(ConstBytes bytes);

  std::uint16_t srcPort() const { return loadBe16(datagram_, 0); }
  std::uint16_t dstPort() const { return loadBe16(datagram_, 2); }
  std::uint16_t length() const { return loadBe16(datagram_, 4); }
  std::uint16_t checksum() const { return loadBe16(datagram_, 6); }
  // False when the checksum field is 0, which over IPv4 means the sender
  // computed none.
  bool hasChecksum() const { return checksum() != 0; }
  ConstBytes payload() const { return datagram_.subspan(kHeaderSize); }
  // Header + payload, trimmed to length().
  ConstBytes datagram() const { return datagram_; }

  // True if the datagram carries no checksum, or if the checksum over the
  // IPv4 pseudo-header (src, dst, protocol 17, length()) and datagram() is
  // correct.
  bool checksumValid(Ipv4Address src, Ipv4Address dst) const;

 private:
  explicit UdpView(ConstBytes datagram) : datagram_(datagram) {}
  ConstBytes datagram_{};
};

// Writes a UDP header and payload. A plain aggregate:
//   UdpBuilder{.srcPort = 5000, .dstPort = 53}.build(buf, srcIp, dstIp, data);
struct UdpBuilder {
  std::uint16_t srcPort = 0;
  std::uint16_t dstPort = 0;
  // False sends checksum 0 ("none"), which IPv4 allows.
  bool computeChecksum = true;

  // Writes header + payload to out[0..n) and returns n = 8 + payload.size();
  // src and dst feed the pseudo-header checksum. A computed checksum of 0 is
  // sent as 0xffff (RFC 768). Returns nullopt, writing nothing, if out is
  // smaller than n or n does not fit in an IPv4 packet (65515). payload may
  // already lie inside out.
  std::optional<std::size_t> build(MutableBytes out, Ipv4Address src, Ipv4Address dst,
                                   ConstBytes payload) const;
};

}  // namespace mknet::net
