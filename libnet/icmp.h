// ICMP for IPv4 (RFC 792): a validated read-only view and a builder.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "libnet/bytes.h"

namespace mknet::net {

inline constexpr std::uint8_t kIcmpEchoReply = 0;
inline constexpr std::uint8_t kIcmpDestinationUnreachable = 3;
inline constexpr std::uint8_t kIcmpEchoRequest = 8;
inline constexpr std::uint8_t kIcmpTimeExceeded = 11;

// A read-only view of one ICMP message (the IPv4 payload).
//
// Invariant: message_.size() >= kHeaderSize (type, code, checksum and the
// 4-byte rest-of-header that every ICMP type has).
class IcmpView {
 public:
  static constexpr std::size_t kHeaderSize = 8;

  // Returns nullopt if message is shorter than 8 bytes.
  static std::optional<IcmpView> parse(ConstBytes message);

  std::uint8_t type() const { return message_[0]; }
  std::uint8_t code() const { return message_[1]; }
  std::uint16_t checksum() const { return loadBe16(message_, 2); }
  // Bytes 4..8, whose meaning depends on type().
  std::uint32_t restOfHeader() const { return loadBe32(message_, 4); }
  // Echo identifier and sequence number; meaningful only when isEcho().
  std::uint16_t id() const { return loadBe16(message_, 4); }
  std::uint16_t sequence() const { return loadBe16(message_, 6); }
  bool isEcho() const { return type() == kIcmpEchoRequest || type() == kIcmpEchoReply; }
  // Bytes after the 8-byte header.
  ConstBytes payload() const { return message_.subspan(kHeaderSize); }
  ConstBytes message() const { return message_; }

  // True iff the checksum over the whole message is correct.
  bool checksumValid() const;

 private:
  explicit IcmpView(ConstBytes message) : message_(message) {}
  ConstBytes message_{};
};

// Writes an ICMP message with a correct checksum. A plain aggregate; the
// static helpers fill it in for echo messages:
//   IcmpBuilder::echoRequest(id, seq).build(buf, data);
struct IcmpBuilder {
  std::uint8_t type = 0;
  std::uint8_t code = 0;
  std::uint32_t restOfHeader = 0;

  static IcmpBuilder echoRequest(std::uint16_t id, std::uint16_t sequence) {
    return {kIcmpEchoRequest, 0, std::uint32_t{id} << 16 | sequence};
  }
  static IcmpBuilder echoReply(std::uint16_t id, std::uint16_t sequence) {
    return {kIcmpEchoReply, 0, std::uint32_t{id} << 16 | sequence};
  }

  // Writes header + payload to out[0..n) and returns n = 8 + payload.size(),
  // or nullopt (writing nothing) if out is smaller than n or n > 65515 (the
  // most an IPv4 packet can carry). payload may already lie inside out.
  std::optional<std::size_t> build(MutableBytes out, ConstBytes payload) const;
};

}  // namespace mknet::net
