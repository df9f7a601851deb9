#include "libnet/checksum.h"

#include <bit>
#include <cassert>
#include <cstring>

namespace mknet::net {

namespace {

// The one summing loop behind add() and addCopy(); with kCopy every word is
// also stored at dst. sum/odd are the Checksum's state.
template <bool kCopy>
void accumulate(std::uint64_t& sum, bool& odd, ConstBytes src, std::uint8_t* dst) {
  std::size_t i = 0;
  const std::size_t n = src.size();
  if (odd && n > 0) {
    // Completes the word whose high byte the previous chunk supplied.
    if constexpr (kCopy) dst[0] = src[0];
    sum += src[0];
    i = 1;
    odd = false;
  }
  // The bulk in native-order 8-byte loads: the one's-complement sum is
  // byte-order independent up to a final swap of the folded result
  // (RFC 1071, 2.(B)). Every frame the stack receives is summed here, so
  // this loop is on the receive path's profile (4x the byte-pair loop).
  std::uint64_t acc = 0;  // < 2^33 per step: no overflow below 2^31 steps (16 GiB)
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, src.data() + i, 8);
    if constexpr (kCopy) std::memcpy(dst + i, &w, 8);
    acc += (w & 0xffffffffu) + (w >> 32);
  }
  for (; i + 2 <= n; i += 2) {
    std::uint16_t h;
    std::memcpy(&h, src.data() + i, 2);
    if constexpr (kCopy) std::memcpy(dst + i, &h, 2);
    acc += h;
  }
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  if constexpr (std::endian::native == std::endian::little) acc = ((acc & 0xff) << 8) | (acc >> 8);
  sum += acc;
  if (i < n) {
    // A trailing byte is the high half of a word that the next chunk, or the
    // zero padding RFC 1071 prescribes at the end, completes.
    if constexpr (kCopy) dst[i] = src[i];
    sum += std::uint32_t{src[i]} << 8;
    odd = true;
  }
}

}  // namespace

void Checksum::add(ConstBytes bytes) { accumulate<false>(sum_, odd_, bytes, nullptr); }

void Checksum::addCopy(ConstBytes src, std::uint8_t* dst) { accumulate<true>(sum_, odd_, src, dst); }

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
