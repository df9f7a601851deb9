#include "libnet/checksum.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "tests/libnet/hex.h"

namespace mknet::net {
namespace {

using testing::fromHex;

// The obvious implementation to cross-check against: pad to an even length,
// add big-endian words, fold, complement.
std::uint16_t referenceChecksum(std::vector<std::uint8_t> bytes) {
  if (bytes.size() % 2 != 0) bytes.push_back(0);
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < bytes.size(); i += 2) sum += bytes[i] * 256u + bytes[i + 1];
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

TEST(ChecksumTest, Rfc1071Example) {
  // RFC 1071 section 3: the sum is ddf2, so the checksum is 220d.
  const auto bytes = fromHex("00 01 f2 03 f4 f5 f6 f7");
  Checksum c;
  c.add(bytes);
  EXPECT_EQ(c.sum(), 0xddf2);
  EXPECT_EQ(c.finish(), 0x220d);
  EXPECT_EQ(internetChecksum(bytes), 0x220d);
}

TEST(ChecksumTest, Rfc1071ExampleInEverySplitAndByteByByte) {
  const auto bytes = fromHex("00 01 f2 03 f4 f5 f6 f7");
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    Checksum c;
    c.add(ConstBytes(bytes).first(cut));
    c.add(ConstBytes(bytes).subspan(cut));
    EXPECT_EQ(c.finish(), 0x220d) << "cut at " << cut;
  }
  Checksum c;
  for (std::uint8_t b : bytes) c.add(ConstBytes(&b, 1));
  EXPECT_EQ(c.finish(), 0x220d);
}

TEST(ChecksumTest, OddLengthPadsTheLastByteWithZero) {
  // 0x0102 + 0x0300 = 0x0402 -> ~ = 0xfbfd.
  EXPECT_EQ(internetChecksum(fromHex("01 02 03")), 0xfbfd);
  EXPECT_EQ(internetChecksum(fromHex("ab")), static_cast<std::uint16_t>(~0xab00));
}

TEST(ChecksumTest, EmptyAndCarryFolding) {
  Checksum empty;
  EXPECT_EQ(empty.sum(), 0);
  EXPECT_EQ(empty.finish(), 0xffff);
  // ffff + ffff = 1fffe -> fffe + 1 = ffff.
  Checksum c;
  c.add(fromHex("ff ff ff ff"));
  EXPECT_EQ(c.sum(), 0xffff);
  EXPECT_EQ(c.finish(), 0);
  // Many carries: 100000 words of ffff still fold to ffff.
  std::vector<std::uint8_t> many(200000, 0xff);
  EXPECT_EQ(internetChecksum(many), 0);
}

TEST(ChecksumTest, CapturedIpv4HeaderVerifiesAndRecomputes) {
  // A real header: 192.168.0.1 -> 192.168.0.199, UDP, checksum b861.
  auto header = fromHex("45 00 00 73 00 00 40 00 40 11 b8 61 c0 a8 00 01 c0 a8 00 c7");
  EXPECT_EQ(internetChecksum(header), 0) << "a header with its checksum sums to ffff";
  header[10] = 0;
  header[11] = 0;
  EXPECT_EQ(internetChecksum(header), 0xb861);
  // A single flipped bit is caught.
  header[10] = 0xb8;
  header[11] = 0x61;
  header[8] ^= 0x01;
  EXPECT_NE(internetChecksum(header), 0);
}

TEST(ChecksumTest, Add16AndAdd32EqualAddingTheirBytesAtEvenAndOddOffsets) {
  for (int lead = 0; lead < 2; ++lead) {
    Checksum words;
    Checksum bytes;
    if (lead == 1) {
      words.add(fromHex("5a"));
      bytes.add(fromHex("5a"));
    }
    EXPECT_EQ(words.oddOffset(), lead == 1);
    words.add16(0x1234);
    words.add32(0xdeadbeef);
    words.add16(0xff01);
    bytes.add(fromHex("12 34 de ad be ef ff 01"));
    EXPECT_EQ(words.sum(), bytes.sum()) << "lead " << lead;
    EXPECT_EQ(words.oddOffset(), bytes.oddOffset());
  }
}

TEST(ChecksumTest, MatchesReferenceOverRandomBuffersInRandomOddChunks) {
  std::mt19937 rng(1071);
  for (int iteration = 0; iteration < 2000; ++iteration) {
    std::vector<std::uint8_t> data(std::uniform_int_distribution<std::size_t>(0, 1500)(rng));
    for (auto& b : data) b = static_cast<std::uint8_t>(rng());
    const std::uint16_t expected = referenceChecksum(data);
    ASSERT_EQ(internetChecksum(data), expected) << "length " << data.size();

    // Same bytes fed as chunks of random (mostly odd) length, with an
    // occasional empty chunk and an occasional add16 in place of two bytes.
    Checksum c;
    std::size_t at = 0;
    while (at < data.size()) {
      const std::size_t chunk =
          std::min<std::size_t>(data.size() - at, 2 * (rng() % 8) + 1 - (rng() % 16 == 0 ? 1 : 0));
      if (chunk == 2 && rng() % 2 == 0) {
        c.add16(static_cast<std::uint16_t>(data[at] << 8 | data[at + 1]));
      } else {
        c.add(ConstBytes(data).subspan(at, chunk));
      }
      at += chunk;
    }
    ASSERT_EQ(c.finish(), expected) << "chunked, length " << data.size();
  }
}

// addCopy: the bytes arrive at dst unchanged and the sum is the reference's,
// in chunks at even and odd stream offsets, to another buffer and in place
// (dst == src, and dst a little before src, as the driver's segment 0).
TEST(ChecksumTest, AddCopyCopiesAndSumsLikeAdd) {
  std::mt19937 rng(793);
  for (int iteration = 0; iteration < 1000; ++iteration) {
    std::vector<std::uint8_t> data(std::uniform_int_distribution<std::size_t>(0, 1600)(rng));
    for (auto& b : data) b = static_cast<std::uint8_t>(rng());
    const std::uint16_t expected = referenceChecksum(data);

    std::vector<std::uint8_t> out(data.size() + 1, 0xee);
    Checksum c;
    std::size_t at = 0;
    while (at < data.size()) {
      const std::size_t chunk = std::min<std::size_t>(data.size() - at, 1 + rng() % 700);
      c.addCopy(ConstBytes(data).subspan(at, chunk), out.data() + at);
      at += chunk;
    }
    ASSERT_EQ(c.finish(), expected) << "length " << data.size();
    ASSERT_TRUE(std::equal(data.begin(), data.end(), out.begin())) << "length " << data.size();
    ASSERT_EQ(out.back(), 0xee) << "wrote past the end";

    std::vector<std::uint8_t> inPlace = data;
    Checksum same;
    same.addCopy(inPlace, inPlace.data());
    ASSERT_EQ(same.finish(), expected);
    ASSERT_EQ(inPlace, data);

    const std::size_t shift = 1 + rng() % 9;  // dst before src, overlapping
    std::vector<std::uint8_t> buf(shift + data.size());
    std::copy(data.begin(), data.end(), buf.begin() + static_cast<std::ptrdiff_t>(shift));
    Checksum back;
    back.addCopy(ConstBytes(buf).subspan(shift), buf.data());
    ASSERT_EQ(back.finish(), expected);
    ASSERT_TRUE(std::equal(data.begin(), data.end(), buf.begin())) << "shift " << shift;
  }
}

TEST(ChecksumTest, PseudoHeaderMatchesExplicitBytes) {
  // UDP 12345 -> 53 "hello" from 192.168.0.1 to 192.168.0.199; the checksum
  // 097b was computed by an independent implementation.
  auto udp = fromHex("30 39 00 35 00 0d 00 00 68 65 6c 6c 6f");
  const std::uint32_t src = 0xc0a80001;
  const std::uint32_t dst = 0xc0a800c7;
  EXPECT_EQ(ipv4L4Checksum(src, dst, 17, udp), 0x097b);

  // The same as a plain checksum over the pseudo-header bytes + segment.
  auto explicitBytes = fromHex("c0 a8 00 01 c0 a8 00 c7 00 11 00 0d");
  explicitBytes.insert(explicitBytes.end(), udp.begin(), udp.end());
  EXPECT_EQ(referenceChecksum(explicitBytes), 0x097b);

  Checksum c = ipv4PseudoHeaderChecksum(src, dst, 17, static_cast<std::uint16_t>(udp.size()));
  c.add(udp);
  EXPECT_EQ(c.finish(), 0x097b);

  // Verification form: with the checksum in place the result is 0.
  udp[6] = 0x09;
  udp[7] = 0x7b;
  EXPECT_EQ(ipv4L4Checksum(src, dst, 17, udp), 0);
  EXPECT_NE(ipv4L4Checksum(src + 1, dst, 17, udp), 0);
  EXPECT_NE(ipv4L4Checksum(src, dst, 6, udp), 0);
}

}  // namespace
}  // namespace mknet::net
