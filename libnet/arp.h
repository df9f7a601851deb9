// ARP for IPv4 over Ethernet (RFC 826): a validated read-only view and a
// builder. Other hardware or protocol types are rejected: mknet has no use
// for them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "libnet/bytes.h"
#include "libnet/ethernet.h"
#include "libnet/ipv4.h"

namespace mknet::net {

inline constexpr std::uint16_t kArpRequest = 1;
inline constexpr std::uint16_t kArpReply = 2;
inline constexpr std::uint16_t kArpHardwareEthernet = 1;

// A read-only view of an Ethernet/IPv4 ARP packet (the Ethernet payload).
//
// Invariants established by parse(): at least 28 bytes; hardware type 1,
// protocol type 0x0800, hardware length 6, protocol length 4. Bytes after
// the 28 (Ethernet padding) are ignored. operation() is not restricted: the
// caller decides what to do with opcodes other than request and reply.
class ArpView {
 public:
  static constexpr std::size_t kSize = 28;

  // Returns nullopt if bytes is shorter than 28 or is not Ethernet/IPv4 ARP.
  static std::optional<ArpView> parse(ConstBytes bytes);

  std::uint16_t operation() const { return loadBe16(packet_, 6); }
  bool isRequest() const { return operation() == kArpRequest; }
  bool isReply() const { return operation() == kArpReply; }
  MacAddress senderMac() const;
  Ipv4Address senderIp() const { return Ipv4Address(loadBe32(packet_, 14)); }
  MacAddress targetMac() const;
  Ipv4Address targetIp() const { return Ipv4Address(loadBe32(packet_, 24)); }
  // The 28 ARP bytes, without padding.
  ConstBytes packet() const { return packet_; }

 private:
  explicit ArpView(ConstBytes packet) : packet_(packet) {}
  ConstBytes packet_{};
};

// Writes a 28-byte Ethernet/IPv4 ARP packet. A plain aggregate; the static
// helpers fill it in for the two common cases.
struct ArpBuilder {
  std::uint16_t operation = kArpRequest;
  MacAddress senderMac{};
  Ipv4Address senderIp{};
  MacAddress targetMac{};
  Ipv4Address targetIp{};

  // "Who has targetIp? Tell senderIp": the target MAC is zero (RFC 826 leaves
  // it unspecified; zero is what Linux sends).
  static ArpBuilder request(MacAddress senderMac, Ipv4Address senderIp, Ipv4Address targetIp) {
    return {kArpRequest, senderMac, senderIp, MacAddress(), targetIp};
  }
  // The answer to request: "senderIp is at senderMac", addressed to the
  // request's sender.
  static ArpBuilder replyTo(const ArpView& request, MacAddress myMac) {
    return {kArpReply, myMac, request.targetIp(), request.senderMac(), request.senderIp()};
  }

  // Writes out[0..28) and returns 28, or nullopt (writing nothing) if out is
  // smaller than 28.
  std::optional<std::size_t> build(MutableBytes out) const;
};

}  // namespace mknet::net
