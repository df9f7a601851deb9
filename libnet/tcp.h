// TCP over IPv4 (RFC 9293): a validated read-only view, an option parser that
// never reads out of bounds, and builders for headers and options.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "libnet/bytes.h"
#include "libnet/ipv4.h"

namespace mknet::net {

// Flag bits of header byte 13, as returned by TcpView::flags().
inline constexpr std::uint8_t kTcpFlagFin = 0x01;
inline constexpr std::uint8_t kTcpFlagSyn = 0x02;
inline constexpr std::uint8_t kTcpFlagRst = 0x04;
inline constexpr std::uint8_t kTcpFlagPsh = 0x08;
inline constexpr std::uint8_t kTcpFlagAck = 0x10;
inline constexpr std::uint8_t kTcpFlagUrg = 0x20;
inline constexpr std::uint8_t kTcpFlagEce = 0x40;
inline constexpr std::uint8_t kTcpFlagCwr = 0x80;

// Option kinds (IANA "TCP Option Kind Numbers").
inline constexpr std::uint8_t kTcpOptionEol = 0;
inline constexpr std::uint8_t kTcpOptionNop = 1;
inline constexpr std::uint8_t kTcpOptionMss = 2;
inline constexpr std::uint8_t kTcpOptionWindowScale = 3;
inline constexpr std::uint8_t kTcpOptionSackPermitted = 4;
inline constexpr std::uint8_t kTcpOptionSack = 5;
inline constexpr std::uint8_t kTcpOptionTimestamps = 8;

// Most option bytes a header can carry: (15 - 5) * 4.
inline constexpr std::size_t kTcpMaxOptionBytes = 40;
// Most SACK blocks that fit in the option space (2 + 4 * 8 = 34 bytes).
inline constexpr std::size_t kTcpMaxSackBlocks = 4;

// One option as found by TcpOptionIterator.
struct TcpOption {
  std::uint8_t kind = 0;
  // The bytes after kind and length (empty for NOP); always inside the
  // option bytes the iterator was given. For the kinds above the
  // iterator has checked the size: MSS 2, window scale 1, SACK-permitted 0,
  // timestamps 8, SACK a multiple of 8 from 8 to 32.
  ConstBytes value{};
};

// Walks the option bytes of a TCP header.
//
// Never reads outside the span: a length byte of 0 or 1, a length running
// past the end, a kind byte with no room for its length, or a known kind with
// the wrong length makes the walk stop with kMalformed, and it stays stopped.
class TcpOptionIterator {
 public:
  enum class Status : std::uint8_t {
    kOption,     // *option holds the next option (NOPs included)
    kEnd,        // end-of-list option or end of the bytes; nothing more
    kMalformed,  // the bytes are not a valid option list; nothing more
  };

  explicit TcpOptionIterator(ConstBytes options) : options_(options) {}

  // Advances to the next option. option is written only on kOption.
  Status next(TcpOption& option);

 private:
  ConstBytes options_{};
  std::size_t pos_ = 0;
  // Set once kEnd or kMalformed has been returned; repeated by later calls.
  std::optional<Status> done_;
};

struct TcpTimestamps {
  std::uint32_t value = 0;      // TSval
  std::uint32_t echoReply = 0;  // TSecr
  friend bool operator==(const TcpTimestamps&, const TcpTimestamps&) = default;
};

struct TcpSackBlock {
  std::uint32_t left = 0;   // first sequence number of the block
  std::uint32_t right = 0;  // sequence number just past the block
  friend bool operator==(const TcpSackBlock&, const TcpSackBlock&) = default;
};

// The options mknet understands, decoded. Unknown well-formed options are
// skipped. If an option appears twice the last one wins.
struct TcpOptions {
  std::optional<std::uint16_t> mss;
  std::optional<std::uint8_t> windowScale;
  bool sackPermitted = false;
  std::optional<TcpTimestamps> timestamps;
  // Valid entries at the front of sackBlocks. parseTcpOptions() leaves the
  // entries past the count zeroed, so two TcpOptions compare meaningfully.
  std::size_t sackBlockCount = 0;
  std::array<TcpSackBlock, kTcpMaxSackBlocks> sackBlocks{};
};

// Decodes an option list. Returns nullopt if TcpOptionIterator finds it
// malformed.
std::optional<TcpOptions> parseTcpOptions(ConstBytes options);

// Encodes options 4-byte aligned the way Linux lays them out (MSS;
// SACK-permitted+timestamps; NOP+window scale; NOP,NOP+SACK). Returns the
// number of bytes written, a multiple of 4 (0 if no option is set), or
// nullopt, writing nothing, if they need more than 40 bytes, more than out's
// size, or sackBlockCount > 4.
std::optional<std::size_t> writeTcpOptions(MutableBytes out, const TcpOptions& options);

// A read-only view of one TCP segment (the IPv4 payload).
//
// Invariant: 20 <= headerLength() <= segment_.size(). segment_ is the whole
// IPv4 payload, so payload() runs to the end of the IP packet.
class TcpView {
 public:
  static constexpr std::size_t kMinHeaderSize = 20;

  // Returns nullopt if bytes is shorter than 20 or longer than 65535 (no
  // IPv4 packet carries that much), or if the data offset is below 5 or puts
  // the end of the header beyond bytes.size().
  static std::optional<TcpView> parse(ConstBytes bytes);

  std::uint16_t srcPort() const { return loadBe16(segment_, 0); }
  std::uint16_t dstPort() const { return loadBe16(segment_, 2); }
  std::uint32_t seqNumber() const { return loadBe32(segment_, 4); }
  std::uint32_t ackNumber() const { return loadBe32(segment_, 8); }
  // Header length in 32-bit words (5..15).
  std::uint8_t dataOffset() const { return segment_[12] >> 4; }
  std::size_t headerLength() const { return std::size_t{dataOffset()} * 4; }
  // The eight flag bits (kTcpFlag*).
  std::uint8_t flags() const { return segment_[13]; }
  bool hasFlags(std::uint8_t mask) const { return (flags() & mask) == mask; }
  bool fin() const { return hasFlags(kTcpFlagFin); }
  bool syn() const { return hasFlags(kTcpFlagSyn); }
  bool rst() const { return hasFlags(kTcpFlagRst); }
  bool psh() const { return hasFlags(kTcpFlagPsh); }
  // The ACK flag; the acknowledgment number is ackNumber().
  bool ack() const { return hasFlags(kTcpFlagAck); }
  bool urg() const { return hasFlags(kTcpFlagUrg); }
  std::uint16_t window() const { return loadBe16(segment_, 14); }
  std::uint16_t checksum() const { return loadBe16(segment_, 16); }
  std::uint16_t urgentPointer() const { return loadBe16(segment_, 18); }
  // Raw option bytes (headerLength() - 20, possibly none).
  ConstBytes options() const {
    return segment_.subspan(kMinHeaderSize, headerLength() - kMinHeaderSize);
  }
  TcpOptionIterator optionIterator() const { return TcpOptionIterator(options()); }
  // parseTcpOptions(options()): nullopt if the options are malformed.
  std::optional<TcpOptions> parsedOptions() const { return parseTcpOptions(options()); }
  ConstBytes payload() const { return segment_.subspan(headerLength()); }
  ConstBytes segment() const { return segment_; }

  // True iff the checksum over the IPv4 pseudo-header (src, dst, protocol 6,
  // segment length) and the segment is correct.
  bool checksumValid(Ipv4Address src, Ipv4Address dst) const;

 private:
  explicit TcpView(ConstBytes segment) : segment_(segment) {}
  ConstBytes segment_{};
};

// Writes a TCP header with a correct checksum, followed by the payload.
// A plain aggregate:
//   TcpBuilder{.srcPort = 80, .dstPort = p, .seqNumber = s, .flags = kTcpFlagSyn}
//       .build(buf, srcIp, dstIp, {});
struct TcpBuilder {
  std::uint16_t srcPort = 0;
  std::uint16_t dstPort = 0;
  std::uint32_t seqNumber = 0;
  std::uint32_t ackNumber = 0;
  std::uint8_t flags = 0;
  std::uint16_t window = 0xffff;
  std::uint16_t urgentPointer = 0;
  // Encoded option bytes (e.g. from writeTcpOptions): a multiple of 4, <= 40.
  ConstBytes options{};

  std::size_t headerLength() const { return TcpView::kMinHeaderSize + options.size(); }

  // Writes header + payload to out[0..n) and returns n; src and dst feed the
  // pseudo-header checksum. Returns nullopt, writing nothing, if out is
  // smaller than n, n does not fit in an IPv4 packet (65515), or options are
  // not a multiple of 4 or longer than 40. payload (but not options) may
  // already lie inside out.
  std::optional<std::size_t> build(MutableBytes out, Ipv4Address src, Ipv4Address dst,
                                   ConstBytes payload) const;
};

}  // namespace mknet::net
