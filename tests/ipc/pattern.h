// Deterministic per-sequence byte patterns for ring and pool tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace mknet::test {

// splitmix64: a well-mixed word stream from a seed, so a buffer filled for one
// sequence number can't be mistaken for another's.
inline uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

inline void fillPattern(std::span<std::byte> buf, uint64_t seq) {
  size_t i = 0;
  for (uint64_t w = 0; i + 8 <= buf.size(); i += 8, ++w) {
    uint64_t v = mix(seq * 0x10001 + w);
    std::memcpy(buf.data() + i, &v, 8);
  }
  uint64_t tail = mix(seq * 0x10001 + 0xffff);
  for (; i < buf.size(); ++i) buf[i] = static_cast<std::byte>(tail >> (8 * (i % 8)));
}

inline bool checkPattern(std::span<const std::byte> buf, uint64_t seq) {
  size_t i = 0;
  for (uint64_t w = 0; i + 8 <= buf.size(); i += 8, ++w) {
    uint64_t v = mix(seq * 0x10001 + w), got;
    std::memcpy(&got, buf.data() + i, 8);
    if (got != v) return false;
  }
  uint64_t tail = mix(seq * 0x10001 + 0xffff);
  for (; i < buf.size(); ++i)
    if (buf[i] != static_cast<std::byte>(tail >> (8 * (i % 8)))) return false;
  return true;
}

// The byte at absolute position `pos` of an endless test stream.
inline std::byte streamByte(uint64_t pos) {
  return static_cast<std::byte>(mix(pos >> 3) >> (8 * (pos & 7)));
}

// How much to scale iteration counts: 1 normally, smaller under sanitizers
// (MKNET_TEST_SCALE=0.1), so the same tests run in all builds.
double testScale();

}  // namespace mknet::test
