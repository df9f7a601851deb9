// The Internet checksum (RFC 1071) and the IPv4 pseudo-header used by TCP and UDP.
//
// Value convention used throughout libnet: a 16-bit checksum is handled as the
// number whose big-endian encoding is the two bytes on the wire. finish() for
// bytes 00 01 f2 03 f4 f5 f6 f7 is 0x220d, and storeBe16(header, offset,
// 0x220d) puts 22 0d in the packet. Likewise add16()/add32() take the numeric
// value of a field that is sent big-endian (a port, a length, an address in
// host order), so callers never byte-swap.
#pragma once

#include <cstdint>

#include "libnet/bytes.h"

namespace mknet::net {

// Incremental one's-complement sum over a logical byte stream.
//
// Invariant: the result equals the checksum of the concatenation of every
// byte added so far, whatever the chunk boundaries. A chunk that ends on an
// odd byte leaves the stream at an odd offset and the next chunk's first byte
// becomes the low half of that 16-bit word, so callers may feed headers,
// fragments and payloads in any split.
class Checksum {
 public:
  // Appends bytes to the stream.
  void add(ConstBytes bytes);
  // Copies src to dst (src.size() bytes) and appends them to the stream, in
  // one pass over the data instead of a memcpy and an add(). dst may be src
  // itself or lie before it (the copy runs forwards), not after it.
  void addCopy(ConstBytes src, std::uint8_t* dst);
  // Appends the two big-endian bytes of value (same as add() of those bytes).
  void add16(std::uint16_t value);
  // Appends the four big-endian bytes of value (same as add() of those bytes).
  void add32(std::uint32_t value);

  // The folded one's-complement sum of the stream, before complementing.
  // A stream that contains a correct checksum field sums to 0xffff.
  std::uint16_t sum() const;
  // The checksum to store in a header whose checksum field was zero while
  // summing: ~sum(). When verifying a received header that includes its own
  // checksum field, finish() == 0 means the checksum is correct.
  std::uint16_t finish() const { return static_cast<std::uint16_t>(~sum()); }

  // True if the next byte added lands at an odd offset of the stream.
  bool oddOffset() const { return odd_; }

 private:
  // 64 bits cannot overflow: it would take 2^48 words (256 TiB) to carry out.
  std::uint64_t sum_ = 0;
  bool odd_ = false;
};

// The checksum of bytes alone, ready to store (see finish()).
std::uint16_t internetChecksum(ConstBytes bytes);

// A Checksum already holding the IPv4 pseudo-header of RFC 793 / RFC 768:
// source, destination, zero, protocol, and the TCP/UDP length. Addresses are
// in host order (Ipv4Address::value()). Add the TCP/UDP header and payload,
// then finish().
Checksum ipv4PseudoHeaderChecksum(std::uint32_t src, std::uint32_t dst, std::uint8_t protocol,
                                  std::uint16_t l4Length);

// The checksum over the pseudo-header plus segment (header and payload, the
// length of which goes into the pseudo-header). Two uses:
//  - building: with the segment's checksum field zeroed, returns the value to
//    store in it (for UDP, store 0xffff instead if this returns 0, RFC 768);
//  - verifying: with the received checksum field in place, returns 0 iff the
//    checksum is correct.
// Requires segment.size() <= 0xffff (callers take segment from an IPv4
// packet, whose total length is 16 bits).
std::uint16_t ipv4L4Checksum(std::uint32_t src, std::uint32_t dst, std::uint8_t protocol,
                             ConstBytes segment);

}  // namespace mknet::net
