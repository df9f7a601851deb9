// PrngStream: the deterministic pseudo-random byte stream the apps send.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace mknet::examples {

// The stream for seed S is splitmix64 (state starts at S; each step adds
// 0x9e3779b97f4a7c15 and mixes) with every 64-bit output written in
// little-endian byte order, concatenated. This definition is the contract:
// tests regenerate the stream independently from it, and any chunking of
// fill() calls yields the same bytes.
class PrngStream {
 public:
  explicit PrngStream(uint64_t seed) : state_(seed) {}

  void fill(std::span<std::byte> out) {
    std::byte* p = out.data();
    size_t n = out.size();
    // Bytes left over from a word a previous call cut short come first.
    while (n > 0 && left_ > 0) {
      *p++ = spare_[8 - left_--];
      --n;
    }
    while (n >= 8) {
      storeWord(p, next());
      p += 8;
      n -= 8;
    }
    if (n > 0) {
      storeWord(spare_, next());
      std::memcpy(p, spare_, n);
      left_ = static_cast<unsigned>(8 - n);
    }
  }

  // The next 64-bit output (also used by the apps for sizes and seeds).
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  static void storeWord(std::byte* p, uint64_t w) {
    if constexpr (std::endian::native == std::endian::little) {
      std::memcpy(p, &w, 8);
    } else {
      for (int i = 0; i < 8; ++i) p[i] = static_cast<std::byte>(w >> (8 * i));
    }
  }

  uint64_t state_;
  std::byte spare_[8] = {};
  unsigned left_ = 0;  // unread bytes at the end of spare_
};

}  // namespace mknet::examples
