// Whole-frame validation and construction: Ethernet -> ARP, or Ethernet ->
// IPv4 -> TCP | UDP | ICMP.
//
// parseFrame() is the "validate, drop, count" step for frames from a peer:
// it either returns views that are safe to read and whose checksums are
// correct, or a FrameError to count the drop under. FrameBuilder crafts
// complete frames with correct checksums, mainly for tests and tools.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "libnet/arp.h"
#include "libnet/bytes.h"
#include "libnet/ethernet.h"
#include "libnet/icmp.h"
#include "libnet/ipv4.h"
#include "libnet/tcp.h"
#include "libnet/udp.h"

namespace mknet::net {

// Why parseFrame() rejected a frame. Values are dense from 0 so they can
// index an array of kFrameErrorCount drop counters.
enum class FrameError : std::uint8_t {
  kTooShort,           // shorter than the Ethernet header, or IPv4 payload < 20 bytes
  kBadArp,             // ARP shorter than 28 bytes or not Ethernet/IPv4
  kBadIpVersion,       // IPv4 EtherType but version field != 4
  kBadIpHeaderLength,  // IHL < 5 or header beyond the frame
  kBadIpTotalLength,   // total length < header length or beyond the frame
  kBadIpChecksum,      // IPv4 header checksum wrong
  kBadL4Length,        // TCP/UDP/ICMP header truncated, UDP length or TCP data offset bad
  kBadL4Checksum,      // TCP/UDP/ICMP checksum wrong (UDP checksum 0 is accepted)
  kBadTcpOptions,      // TCP option list malformed (see TcpOptionIterator)
};
inline constexpr std::size_t kFrameErrorCount = 9;
static_assert(static_cast<std::size_t>(FrameError::kBadTcpOptions) + 1 == kFrameErrorCount,
              "kFrameErrorCount must follow the last FrameError");

// A stable lower-case name for logs and counter labels, e.g. "bad_ip_checksum".
const char* frameErrorName(FrameError error);

// What a successfully parsed frame carries, i.e. which views are set.
enum class FrameKind : std::uint8_t {
  kArp,                // arp
  kIpv4Tcp,            // ipv4, tcp, tcpOptions
  kIpv4Udp,            // ipv4, udp
  kIpv4Icmp,           // ipv4, icmp
  kIpv4Fragment,       // ipv4 only: the L4 checksum covers the reassembled
                       // datagram, so nothing above IPv4 can be checked
  kIpv4OtherProtocol,  // ipv4 only: a protocol other than TCP/UDP/ICMP
  kOtherEtherType,     // ethernet only (IPv6, VLAN-tagged, ...)
};
inline constexpr std::size_t kFrameKindCount = 7;
static_assert(static_cast<std::size_t>(FrameKind::kOtherEtherType) + 1 == kFrameKindCount,
              "kFrameKindCount must follow the last FrameKind");

// The result of parseFrame(). Every set view passed its parse() and every
// checksum in it (IPv4 header and the L4 one) is correct.
struct ParsedFrame {
  FrameKind kind = FrameKind::kOtherEtherType;
  EthernetView ethernet;
  std::optional<ArpView> arp;
  std::optional<Ipv4View> ipv4;
  std::optional<TcpView> tcp;
  std::optional<TcpOptions> tcpOptions;
  std::optional<UdpView> udp;
  std::optional<IcmpView> icmp;
};

// Validates frame layer by layer. Returns the views, or nullopt with *error
// (if non-null) set to the reason for the drop. Frames of kinds it does not
// interpret (see FrameKind) are returned, not rejected: what to do with them
// is the caller's policy. Bytes after the IPv4 total length (Ethernet
// padding) are ignored.
// With l4ChecksumKnown, TCP and UDP checksums are taken as correct without
// summing the segment (the caller has it from whoever computed it; see
// ipc::kDescFlagL4ChecksumByDriver); every other check still runs.
std::optional<ParsedFrame> parseFrame(ConstBytes frame, FrameError* error = nullptr, bool l4ChecksumKnown = false);

// Sets the window-scale shift (RFC 7323) that a TCP SYN or SYN-ACK in an
// Ethernet/IPv4 frame announces, and rewrites its TCP checksum to match.
// Returns true if it did; false, leaving the frame as it was, for anything
// else: not IPv4/TCP, not a SYN, no window-scale option, a frame that fails
// parseFrame() (bad checksum, malformed options), or shift > 14 (the most
// RFC 7323 allows). Frames that are not SYNs return after a few header
// bytes, so it can sit on a transmit path.
bool setSynWindowScale(MutableBytes frame, std::uint8_t shift);

// Builds complete Ethernet + IPv4 + L4 (or Ethernet + ARP) frames with
// correct checksums, in place, no padding. A plain aggregate:
//   FrameBuilder fb{.srcMac = a, .dstMac = b, .srcIp = x, .dstIp = y};
//   auto n = fb.buildUdp(buf, UdpBuilder{.srcPort = 1, .dstPort = 2}, data);
// Each build returns the frame length, or nullopt if out is too small or the
// payload does not fit in one IPv4 packet. payload may lie inside out.
struct FrameBuilder {
  MacAddress srcMac{};
  MacAddress dstMac{};
  Ipv4Address srcIp{};
  Ipv4Address dstIp{};
  std::uint8_t ttl = 64;
  std::uint8_t tos = 0;
  std::uint16_t ipId = 0;
  bool dontFragment = true;

  std::optional<std::size_t> buildUdp(MutableBytes out, const UdpBuilder& udp,
                                      ConstBytes payload) const;
  std::optional<std::size_t> buildTcp(MutableBytes out, const TcpBuilder& tcp,
                                      ConstBytes payload) const;
  std::optional<std::size_t> buildIcmp(MutableBytes out, const IcmpBuilder& icmp,
                                       ConstBytes payload) const;
  // Ethernet + ARP; uses srcMac/dstMac only (the ARP fields come from arp).
  std::optional<std::size_t> buildArp(MutableBytes out, const ArpBuilder& arp) const;
};

}  // namespace mknet::net
