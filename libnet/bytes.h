// Byte spans and big-endian field access shared by every libnet header view.
//
// Wire formats are big-endian and frames land at arbitrary alignments, so
// fields are assembled from individual byte loads: no reinterpret_cast of
// packed structs, no unaligned loads, no dependence on host byte order.
//
// Header-only on purpose: each helper is a couple of instructions on the data
// path and must inline into the views.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace mknet::net {

// Read-only bytes of a frame or of one layer inside it.
using ConstBytes = std::span<const std::uint8_t>;
// Caller-owned bytes a builder writes into.
using MutableBytes = std::span<std::uint8_t>;

// Reads the big-endian 16-bit field at bytes[offset]. The caller guarantees
// offset + 2 <= bytes.size() (views check this once in parse()); Debug builds
// define _GLIBCXX_ASSERTIONS so std::span indexing traps on a violation.
constexpr std::uint16_t loadBe16(ConstBytes bytes, std::size_t offset) {
  return static_cast<std::uint16_t>((bytes[offset] << 8) | bytes[offset + 1]);
}

// Reads the big-endian 32-bit field at bytes[offset]; needs offset + 4 <= size.
constexpr std::uint32_t loadBe32(ConstBytes bytes, std::size_t offset) {
  return (std::uint32_t{bytes[offset]} << 24) | (std::uint32_t{bytes[offset + 1]} << 16) |
         (std::uint32_t{bytes[offset + 2]} << 8) | std::uint32_t{bytes[offset + 3]};
}

// Writes value big-endian at bytes[offset]; needs offset + 2 <= bytes.size().
constexpr void storeBe16(MutableBytes bytes, std::size_t offset, std::uint16_t value) {
  bytes[offset] = static_cast<std::uint8_t>(value >> 8);
  bytes[offset + 1] = static_cast<std::uint8_t>(value);
}

// Writes value big-endian at bytes[offset]; needs offset + 4 <= bytes.size().
constexpr void storeBe32(MutableBytes bytes, std::size_t offset, std::uint32_t value) {
  bytes[offset] = static_cast<std::uint8_t>(value >> 24);
  bytes[offset + 1] = static_cast<std::uint8_t>(value >> 16);
  bytes[offset + 2] = static_cast<std::uint8_t>(value >> 8);
  bytes[offset + 3] = static_cast<std::uint8_t>(value);
}

// Copies src to the start of dst, which must have room (dst.size() >=
// src.size()). The two may overlap: builders accept a payload that already
// sits inside their output buffer, which is how frames are built in place.
inline void moveBytes(MutableBytes dst, ConstBytes src) {
  if (!src.empty()) std::memmove(dst.data(), src.data(), src.size());
}

}  // namespace mknet::net
