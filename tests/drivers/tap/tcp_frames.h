// Test helpers: TCP/IPv4 Ethernet frames built with libnet's FrameBuilder
// (correct checksums, independent of the driver's own offload code), a
// deterministic byte stream to fill them with, and super-frames as the kernel
// hands them to a TAP with TUN_F_TSO4.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "drivers/tap/nic_device.h"
#include "libnet/checksum.h"
#include "libnet/frame.h"
#include "libnet/tcp.h"

namespace mknet::drivers::test {

using Bytes = std::vector<std::byte>;

// Byte `i` of a test stream: position-dependent, so a reordered, duplicated
// or shifted segment shows.
inline std::byte streamByte(uint64_t i) {
  uint64_t x = i * 0x9e3779b97f4a7c15ull;
  return static_cast<std::byte>((x >> 29) ^ (i >> 8));
}
inline Bytes streamBytes(uint64_t from, size_t n) {
  Bytes b(n);
  for (size_t k = 0; k < n; ++k) b[k] = streamByte(from + k);
  return b;
}

struct TcpFlow {
  net::MacAddress srcMac{{0x02, 0, 0, 0, 0, 1}};
  net::MacAddress dstMac{{0x02, 0, 0, 0, 0, 2}};
  net::Ipv4Address srcIp = net::Ipv4Address::fromOctets(198, 18, 230, 2);
  net::Ipv4Address dstIp = net::Ipv4Address::fromOctets(198, 18, 230, 1);
  uint16_t srcPort = 40000;
  uint16_t dstPort = 5001;
  uint32_t ack = 0x01020304;
  uint16_t window = 0x7000;
  std::vector<uint8_t> options;  // encoded TCP options, a multiple of 4

  // One frame: seq, flags, IP id, payload. Checksums complete and correct.
  Bytes frame(uint32_t seq, uint8_t flags, uint16_t ipId, const Bytes& payload) const {
    Bytes out(14 + 60 + 60 + payload.size());
    net::FrameBuilder fb{.srcMac = srcMac, .dstMac = dstMac, .srcIp = srcIp, .dstIp = dstIp,
                         .ipId = ipId};
    net::TcpBuilder tcp{.srcPort = srcPort, .dstPort = dstPort, .seqNumber = seq,
                        .ackNumber = ack, .flags = flags, .window = window,
                        .options = net::ConstBytes(options)};
    auto n = fb.buildTcp(net::MutableBytes(reinterpret_cast<uint8_t*>(out.data()), out.size()), tcp,
                         net::ConstBytes(reinterpret_cast<const uint8_t*>(payload.data()),
                                         payload.size()));
    out.resize(n.value());
    return out;
  }
  // `count` MSS-sized data frames of the stream from `seq` on (stream offset
  // = seq - seq0), ids from `id`; the last has `lastPayload` bytes (0 = mss)
  // and PSH if `pushLast`.
  std::vector<Bytes> segments(uint32_t seq0, uint32_t seq, size_t count, size_t mss, uint16_t id,
                              size_t lastPayload = 0, bool pushLast = false) const {
    std::vector<Bytes> v;
    for (size_t k = 0; k < count; ++k) {
      size_t n = (k + 1 == count && lastPayload != 0) ? lastPayload : mss;
      uint8_t flags = net::kTcpFlagAck | (k + 1 == count && pushLast ? net::kTcpFlagPsh : 0);
      v.push_back(frame(seq, flags, static_cast<uint16_t>(id + k), streamBytes(seq - seq0, n)));
      seq += static_cast<uint32_t>(n);
    }
    return v;
  }
};

// A super-frame as the kernel writes it to a TAP with TUN_F_TSO4: one frame
// with the whole payload, IP total length over all of it, and in the TCP
// checksum field the pseudo-header sum (NEEDS_CSUM), plus its metadata.
inline Bytes kernelSuperFrame(const TcpFlow& flow, uint32_t seq, uint8_t flags, uint16_t ipId,
                              const Bytes& payload, uint16_t mss, FrameOffload* offload) {
  Bytes f = flow.frame(seq, flags, ipId, payload);
  auto b = net::MutableBytes(reinterpret_cast<uint8_t*>(f.data()), f.size());
  size_t tcpLen = f.size() - 34;
  auto pseudo = net::ipv4PseudoHeaderChecksum(flow.srcIp.value(), flow.dstIp.value(), 6,
                                              static_cast<uint16_t>(tcpLen));
  net::storeBe16(b, 34 + 16, pseudo.sum());
  *offload = FrameOffload{};
  offload->gso = FrameOffload::Gso::kTcpV4;
  offload->needsCsum = true;
  offload->hdrLen = static_cast<uint16_t>(34 + 20 + flow.options.size());
  offload->gsoSize = mss;
  offload->csumStart = 34;
  offload->csumOffset = 16;
  return f;
}

inline net::ConstBytes u8(const Bytes& b) {
  return net::ConstBytes(reinterpret_cast<const uint8_t*>(b.data()), b.size());
}

}  // namespace mknet::drivers::test
