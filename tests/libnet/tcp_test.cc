#include "libnet/tcp.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "libnet/checksum.h"
#include "tests/libnet/hex.h"

namespace mknet::net {
namespace {

using testing::fromHex;

const Ipv4Address kSrc = Ipv4Address::fromOctets(192, 168, 0, 1);
const Ipv4Address kDst = Ipv4Address::fromOctets(192, 168, 0, 199);

// A SYN laid out like Linux's: 40000 -> 80, seq 0x11223344, window 64240,
// options MSS 1460, SACK-permitted, timestamps 123456/0, NOP, window scale 7.
// Checksum 07be computed independently.
const char* kSynHex =
    "9c 40 00 50 11 22 33 44 00 00 00 00 a0 02 fa f0 07 be 00 00 "
    "02 04 05 b4 04 02 08 0a 00 01 e2 40 00 00 00 00 01 03 03 07";

// Collects what the iterator yields, ending with its final status.
struct Walk {
  std::vector<std::uint8_t> kinds;
  std::vector<std::size_t> valueSizes;
  TcpOptionIterator::Status last;
};

Walk walk(ConstBytes options) {
  Walk w;
  TcpOptionIterator it(options);
  TcpOption option;
  for (;;) {
    w.last = it.next(option);
    if (w.last != TcpOptionIterator::Status::kOption) break;
    w.kinds.push_back(option.kind);
    w.valueSizes.push_back(option.value.size());
    // Every value lies inside the option bytes.
    EXPECT_GE(option.value.data(), options.data());
    EXPECT_LE(option.value.data() + option.value.size(), options.data() + options.size());
  }
  // Stopped iterators stay stopped.
  EXPECT_EQ(it.next(option), w.last);
  return w;
}

TEST(TcpViewTest, ParsesKnownSyn) {
  const auto bytes = fromHex(kSynHex);
  auto tcp = TcpView::parse(bytes);
  ASSERT_TRUE(tcp);
  EXPECT_EQ(tcp->srcPort(), 40000);
  EXPECT_EQ(tcp->dstPort(), 80);
  EXPECT_EQ(tcp->seqNumber(), 0x11223344u);
  EXPECT_EQ(tcp->ackNumber(), 0u);
  EXPECT_EQ(tcp->dataOffset(), 10);
  EXPECT_EQ(tcp->headerLength(), 40u);
  EXPECT_EQ(tcp->flags(), kTcpFlagSyn);
  EXPECT_TRUE(tcp->syn());
  EXPECT_FALSE(tcp->ack());
  EXPECT_FALSE(tcp->fin());
  EXPECT_FALSE(tcp->rst());
  EXPECT_FALSE(tcp->psh());
  EXPECT_FALSE(tcp->urg());
  EXPECT_EQ(tcp->window(), 64240);
  EXPECT_EQ(tcp->checksum(), 0x07be);
  EXPECT_EQ(tcp->urgentPointer(), 0);
  EXPECT_EQ(tcp->options().size(), 20u);
  EXPECT_TRUE(tcp->payload().empty());
  EXPECT_TRUE(tcp->checksumValid(kSrc, kDst));
  EXPECT_FALSE(tcp->checksumValid(kSrc, Ipv4Address(kDst.value() + 1)));

  auto options = tcp->parsedOptions();
  ASSERT_TRUE(options);
  EXPECT_EQ(options->mss, 1460);
  EXPECT_TRUE(options->sackPermitted);
  EXPECT_EQ(options->timestamps, (TcpTimestamps{123456, 0}));
  EXPECT_EQ(options->windowScale, 7);
  EXPECT_EQ(options->sackBlockCount, 0u);

  const Walk w = walk(tcp->options());
  EXPECT_EQ(w.kinds, (std::vector<std::uint8_t>{2, 4, 8, 1, 3}));
  EXPECT_EQ(w.valueSizes, (std::vector<std::size_t>{2, 0, 8, 0, 1}));
  EXPECT_EQ(w.last, TcpOptionIterator::Status::kEnd);
}

TEST(TcpViewTest, FlagsAreIndependentBits) {
  auto bytes = fromHex(kSynHex);
  const std::pair<std::uint8_t, bool (TcpView::*)() const> flags[] = {
      {kTcpFlagFin, &TcpView::fin}, {kTcpFlagSyn, &TcpView::syn}, {kTcpFlagRst, &TcpView::rst},
      {kTcpFlagPsh, &TcpView::psh}, {kTcpFlagAck, &TcpView::ack}, {kTcpFlagUrg, &TcpView::urg}};
  for (auto [bit, accessor] : flags) {
    bytes[13] = bit;
    auto tcp = TcpView::parse(bytes);
    ASSERT_TRUE(tcp);
    for (auto [otherBit, otherAccessor] : flags) {
      EXPECT_EQ(((*tcp).*otherAccessor)(), otherBit == bit) << int(bit) << " " << int(otherBit);
    }
  }
  bytes[13] = kTcpFlagSyn | kTcpFlagAck | kTcpFlagEce | kTcpFlagCwr;
  auto tcp = TcpView::parse(bytes);
  EXPECT_TRUE(tcp->hasFlags(kTcpFlagSyn | kTcpFlagAck));
  EXPECT_FALSE(tcp->hasFlags(kTcpFlagSyn | kTcpFlagFin));
  EXPECT_EQ(tcp->flags(), 0xd2);
}

TEST(TcpViewTest, DetectsCorruptionAnywhere) {
  const auto good = fromHex(kSynHex);
  for (std::size_t i = 0; i < good.size(); ++i) {
    if (i == 12) continue;  // data offset: see the data offset tests
    auto bytes = good;
    bytes[i] ^= 0x01;
    auto tcp = TcpView::parse(bytes);
    ASSERT_TRUE(tcp) << i;
    EXPECT_FALSE(tcp->checksumValid(kSrc, kDst)) << i;
  }
}

TEST(TcpViewTest, RejectsTruncationAtEveryLengthBelowTheHeader) {
  const auto bytes = fromHex(kSynHex);
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    // Below 20 the fixed header is cut; from 20 to 39 the options are.
    EXPECT_FALSE(TcpView::parse(ConstBytes(bytes).first(n))) << n;
  }
  EXPECT_TRUE(TcpView::parse(bytes));
}

TEST(TcpViewTest, RejectsDataOffsetBelowFiveOrBeyondTheSegment) {
  auto bytes = fromHex(kSynHex);
  for (int offset = 0; offset < 5; ++offset) {
    bytes[12] = static_cast<std::uint8_t>(offset << 4);
    EXPECT_FALSE(TcpView::parse(bytes)) << offset;
  }
  for (int offset = 11; offset <= 15; ++offset) {
    bytes[12] = static_cast<std::uint8_t>(offset << 4);
    EXPECT_FALSE(TcpView::parse(bytes)) << offset;
  }
  // 5..10 fit in the 40 bytes; the rest becomes payload.
  bytes[12] = 0x50;
  auto tcp = TcpView::parse(bytes);
  ASSERT_TRUE(tcp);
  EXPECT_TRUE(tcp->options().empty());
  EXPECT_EQ(tcp->payload().size(), 20u);
}

TEST(TcpViewTest, RejectsSegmentsLongerThanThePseudoHeaderCanDescribe) {
  std::vector<std::uint8_t> bytes(0x10000);
  bytes[12] = 0x50;
  EXPECT_FALSE(TcpView::parse(bytes));
  EXPECT_TRUE(TcpView::parse(ConstBytes(bytes).first(0xffff)));
}

TEST(TcpOptionIteratorTest, RejectsLengthZeroOrOne) {
  for (std::uint8_t length : {0, 1}) {
    // An unknown kind with a bad length, then a valid MSS that must not be
    // reached: a zero length would otherwise loop forever.
    auto options = fromHex("1e 00 02 04 05 b4 00 00");
    options[1] = length;
    const Walk w = walk(options);
    EXPECT_TRUE(w.kinds.empty());
    EXPECT_EQ(w.last, TcpOptionIterator::Status::kMalformed) << int(length);
    EXPECT_FALSE(parseTcpOptions(options));
  }
}

TEST(TcpOptionIteratorTest, RejectsOptionRunningPastTheHeader) {
  // NOP, then timestamps claiming 10 bytes with only 7 left.
  const auto options = fromHex("01 08 0a 00 00 00 01 00");
  const Walk w = walk(options);
  EXPECT_EQ(w.kinds, std::vector<std::uint8_t>{1});
  EXPECT_EQ(w.last, TcpOptionIterator::Status::kMalformed);
  // Unknown kind running past by one byte.
  EXPECT_EQ(walk(fromHex("01 01 fd 04 00")).last, TcpOptionIterator::Status::kMalformed);
  // A kind byte as the very last byte has no length.
  EXPECT_EQ(walk(fromHex("01 01 01 02")).last, TcpOptionIterator::Status::kMalformed);
}

TEST(TcpOptionIteratorTest, RejectsKnownKindsWithWrongLength) {
  for (const char* hex :
       {"02 03 05 00", "02 05 05 b4 00 00 00 00", "03 02 01 01", "03 04 07 00", "04 03 00 01",
        "08 09 00 00 00 00 00 00 00 00 00 00", "08 0b 00 00 00 00 00 00 00 00 00 00", "05 02 00 00",
        "05 09 00 00 00 00 00 00 00 00 00 00", "05 0b 00 00 00 00 00 00 00 00 00 00"}) {
    EXPECT_EQ(walk(fromHex(hex)).last, TcpOptionIterator::Status::kMalformed) << hex;
    EXPECT_FALSE(parseTcpOptions(fromHex(hex))) << hex;
  }
}

TEST(TcpOptionIteratorTest, EndOfListStopsAndIgnoresTheRest) {
  // MSS, EOL, then bytes that would be malformed if read.
  const auto options = fromHex("02 04 02 18 00 ff 00 ff");
  const Walk w = walk(options);
  EXPECT_EQ(w.kinds, std::vector<std::uint8_t>{2});
  EXPECT_EQ(w.last, TcpOptionIterator::Status::kEnd);
  EXPECT_EQ(parseTcpOptions(options)->mss, 0x0218);
  EXPECT_EQ(walk({}).last, TcpOptionIterator::Status::kEnd);
  EXPECT_TRUE(parseTcpOptions({}));
}

TEST(TcpOptionIteratorTest, SkipsUnknownOptionsAndDecodesSack) {
  // Unknown kind 30 length 4; NOP NOP; SACK with two blocks.
  const auto options =
      fromHex("1e 04 aa bb 01 01 05 12 00 00 00 10 00 00 00 20 00 00 01 00 00 00 02 00");
  const Walk w = walk(options);
  EXPECT_EQ(w.kinds, (std::vector<std::uint8_t>{30, 1, 1, 5}));
  EXPECT_EQ(w.valueSizes, (std::vector<std::size_t>{2, 0, 0, 16}));
  auto parsed = parseTcpOptions(options);
  ASSERT_TRUE(parsed);
  ASSERT_EQ(parsed->sackBlockCount, 2u);
  EXPECT_EQ(parsed->sackBlocks[0], (TcpSackBlock{0x10, 0x20}));
  EXPECT_EQ(parsed->sackBlocks[1], (TcpSackBlock{0x100, 0x200}));
  EXPECT_FALSE(parsed->mss);
  EXPECT_FALSE(parsed->sackPermitted);
}

TEST(TcpOptionIteratorTest, RepeatedSackLeavesNoStaleBlocks) {
  // Found by libFuzzer: SACK with two blocks, then SACK with one. The last
  // option wins, and its missing second block must not survive from the
  // first.
  const auto options = fromHex(
      "05 12 00 00 00 01 00 00 00 02 00 00 00 03 00 00 00 04 "
      "05 0a 00 00 00 05 00 00 00 06");
  auto parsed = parseTcpOptions(options);
  ASSERT_TRUE(parsed);
  ASSERT_EQ(parsed->sackBlockCount, 1u);
  EXPECT_EQ(parsed->sackBlocks[0], (TcpSackBlock{5, 6}));
  EXPECT_EQ(parsed->sackBlocks[1], (TcpSackBlock{0, 0}));
}

TEST(TcpOptionsWriterTest, RoundTripsEveryCombination) {
  for (int mask = 0; mask < 32; ++mask) {
    TcpOptions in;
    if (mask & 1) in.mss = 1400;
    if (mask & 2) in.windowScale = 14;
    if (mask & 4) in.sackPermitted = true;
    if (mask & 8) in.timestamps = TcpTimestamps{0xdeadbeef, 0x01020304};
    if (mask & 16) {
      in.sackBlockCount = 2;
      in.sackBlocks[0] = {1, 2};
      in.sackBlocks[1] = {3, 4};
    }
    std::vector<std::uint8_t> buf(kTcpMaxOptionBytes);
    auto n = writeTcpOptions(buf, in);
    ASSERT_TRUE(n) << mask;
    EXPECT_EQ(*n % 4, 0u) << mask;
    auto out = parseTcpOptions(ConstBytes(buf).first(*n));
    ASSERT_TRUE(out) << mask;
    EXPECT_EQ(out->mss, in.mss);
    EXPECT_EQ(out->windowScale, in.windowScale);
    EXPECT_EQ(out->sackPermitted, in.sackPermitted);
    EXPECT_EQ(out->timestamps, in.timestamps);
    EXPECT_EQ(out->sackBlockCount, in.sackBlockCount);
    EXPECT_EQ(out->sackBlocks, in.sackBlocks);
  }
}

TEST(TcpOptionsWriterTest, MatchesLinuxSynLayoutAndRejectsOverflow) {
  TcpOptions syn;
  syn.mss = 1460;
  syn.sackPermitted = true;
  syn.timestamps = TcpTimestamps{123456, 0};
  syn.windowScale = 7;
  std::vector<std::uint8_t> buf(40);
  ASSERT_EQ(writeTcpOptions(buf, syn), 20u);
  buf.resize(20);
  EXPECT_EQ(buf, fromHex("02 04 05 b4 04 02 08 0a 00 01 e2 40 00 00 00 00 01 03 03 07"));

  std::vector<std::uint8_t> small(19, 0xcc);
  EXPECT_FALSE(writeTcpOptions(small, syn));
  EXPECT_EQ(small, std::vector<std::uint8_t>(19, 0xcc));
  // Timestamps (12) + 4 SACK blocks (36) exceed 40 bytes.
  TcpOptions tooMany;
  tooMany.timestamps = TcpTimestamps{};
  tooMany.sackBlockCount = 4;
  std::vector<std::uint8_t> big(64);
  EXPECT_FALSE(writeTcpOptions(big, tooMany));
  tooMany.timestamps.reset();
  EXPECT_EQ(writeTcpOptions(big, tooMany), 36u);
  tooMany.sackBlockCount = 5;
  EXPECT_FALSE(writeTcpOptions(big, tooMany));
}

TEST(TcpBuilderTest, ReproducesKnownSyn) {
  TcpOptions options;
  options.mss = 1460;
  options.sackPermitted = true;
  options.timestamps = TcpTimestamps{123456, 0};
  options.windowScale = 7;
  std::array<std::uint8_t, kTcpMaxOptionBytes> optionBytes{};
  auto optionLength = writeTcpOptions(optionBytes, options);
  ASSERT_TRUE(optionLength);
  std::vector<std::uint8_t> buf(60, 0xcc);
  auto n = TcpBuilder{.srcPort = 40000,
                      .dstPort = 80,
                      .seqNumber = 0x11223344,
                      .flags = kTcpFlagSyn,
                      .window = 64240,
                      .options = ConstBytes(optionBytes).first(*optionLength)}
               .build(buf, kSrc, kDst, {});
  ASSERT_EQ(n, 40u);
  buf.resize(*n);
  EXPECT_EQ(buf, fromHex(kSynHex));
}

TEST(TcpBuilderTest, RoundTripWithOddPayload) {
  const auto payload = fromHex("47 45 54 20 2f 0d 0a");
  const TcpBuilder builder{.srcPort = 80,
                           .dstPort = 51000,
                           .seqNumber = 0xfffffff0,
                           .ackNumber = 0x80000001,
                           .flags = kTcpFlagAck | kTcpFlagPsh | kTcpFlagUrg,
                           .window = 512,
                           .urgentPointer = 3};
  std::vector<std::uint8_t> buf(27);
  ASSERT_EQ(builder.build(buf, kSrc, kDst, payload), 27u);
  auto tcp = TcpView::parse(buf);
  ASSERT_TRUE(tcp);
  EXPECT_EQ(tcp->srcPort(), 80);
  EXPECT_EQ(tcp->dstPort(), 51000);
  EXPECT_EQ(tcp->seqNumber(), 0xfffffff0u);
  EXPECT_EQ(tcp->ackNumber(), 0x80000001u);
  EXPECT_TRUE(tcp->ack());
  EXPECT_TRUE(tcp->psh());
  EXPECT_TRUE(tcp->urg());
  EXPECT_FALSE(tcp->syn());
  EXPECT_EQ(tcp->window(), 512);
  EXPECT_EQ(tcp->urgentPointer(), 3);
  EXPECT_TRUE(std::ranges::equal(tcp->payload(), payload));
  EXPECT_TRUE(tcp->checksumValid(kSrc, kDst));
  EXPECT_FALSE(tcp->checksumValid(kSrc, Ipv4Address(kDst.value() ^ 1)));
}

TEST(TcpBuilderTest, RejectsBadOptionsAndSmallBuffers) {
  std::vector<std::uint8_t> buf(100, 0xcc);
  const auto three = fromHex("01 01 01");
  const std::vector<std::uint8_t> fortyFour(44, 1);
  EXPECT_FALSE(TcpBuilder{.options = three}.build(buf, kSrc, kDst, {}));
  EXPECT_FALSE(TcpBuilder{.options = fortyFour}.build(buf, kSrc, kDst, {}));
  std::vector<std::uint8_t> small(20, 0xcc);
  EXPECT_FALSE(TcpBuilder{}.build(small, kSrc, kDst, fromHex("01")));
  EXPECT_EQ(small, std::vector<std::uint8_t>(20, 0xcc));
  std::vector<std::uint8_t> huge(70000);
  EXPECT_FALSE(TcpBuilder{}.build(huge, kSrc, kDst, ConstBytes(huge).first(0xffff - 40 + 1)));
}

}  // namespace
}  // namespace mknet::net
