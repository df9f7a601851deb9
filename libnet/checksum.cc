#include "libnet/checksum.h"

#include <cassert>

namespace mknet::net {

void Checksum::add(ConstBytes bytes) {
  std::size_t i = 0;
  const std::size_t n = bytes.size();
  if (odd_ && n > 0) {
    // Completes the word whose high byte the previous chunk supplied.
    sum_ += bytes[0];
    i = 1;
    odd_ = false;
  }
  for (; i + 1 < n; i += 2) {
    sum_ += (std::uint32_t{bytes[i]} << 8) | bytes[i + 1];
  }
  if (i < n) {
    // A trailing byte is the high half of a word that the next chunk, or the
    // zero padding RFC 1071 prescribes at the end, completes.
    sum_ += std::uint32_t{bytes[i]} << 8;
    odd_ = true;
  }
}

void Checksum::add16(std::uint16_t value) {
  if (!odd_) {
    sum_ += value;
  } else {
    // The high byte completes the pending word; the low byte starts the next
    // one, so the stream stays at an odd offset.
    sum_ += (value >> 8) + (std::uint32_t{static_cast<std::uint8_t>(value)} << 8);
  }
}

void Checksum::add32(std::uint32_t value) {
  add16(static_cast<std::uint16_t>(value >> 16));
  add16(static_cast<std::uint16_t>(value));
}

std::uint16_t Checksum::sum() const {
  std::uint64_t s = sum_;
  // End-around carry: fold until nothing is left above bit 15.
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<std::uint16_t>(s);
}

std::uint16_t internetChecksum(ConstBytes bytes) {
  Checksum c;
  c.add(bytes);
  return c.finish();
}

Checksum ipv4PseudoHeaderChecksum(std::uint32_t src, std::uint32_t dst, std::uint8_t protocol,
                                  std::uint16_t l4Length) {
  Checksum c;
  c.add32(src);
  c.add32(dst);
  c.add16(protocol);  // zero byte, then protocol
  c.add16(l4Length);
  return c;
}

std::uint16_t ipv4L4Checksum(std::uint32_t src, std::uint32_t dst, std::uint8_t protocol,
                             ConstBytes segment) {
  assert(segment.size() <= 0xffff && "an IPv4 payload is at most 65535 bytes");
  Checksum c =
      ipv4PseudoHeaderChecksum(src, dst, protocol, static_cast<std::uint16_t>(segment.size()));
  c.add(segment);
  return c.finish();
}

}  // namespace mknet::net
