// TCP/IPv4 offload done in the driver, for a TAP opened with virtio-net
// headers (TapDevice::open with offload):
//
//  - TX, TcpCoalescer: consecutive MSS-sized segments of one TCP flow from
//    txActive become one super-frame that the kernel takes in a single
//    writev() (VIRTIO_NET_HDR_GSO_TCPV4). The kernel then runs its TCP
//    receive path once per super-frame instead of once per 1514-byte frame,
//    which is where most of the driver's CPU went.
//  - RX, segmentTcpV4(): the kernel hands us super-frames of up to 64 KiB
//    (TUN_F_TSO4), one read() for ~44 frames. The stack (lwIP) takes only
//    wire-sized frames with complete checksums, so the driver cuts them
//    itself: the kernel's GSO is not available to a user-space driver, and
//    this is the same work (copy headers, fix lengths, ids, sequence numbers
//    and flags, full checksums) its software GSO would do.
//  - RX, completeChecksum(): a frame the kernel left with a partial checksum
//    (TUN_F_CSUM, VIRTIO_NET_HDR_F_NEEDS_CSUM) gets its full one, because
//    the stack verifies every checksum.
//
// Everything here works on bytes the driver owns for the moment; nothing
// writes into a TX pool buffer (the stack re-sends those to a new driver if
// this one dies, so they must stay as the stack wrote them).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "drivers/tap/nic_device.h"
#include "libnet/checksum.h"

namespace mknet::drivers {

using ConstByteSpan = std::span<const std::byte>;
using MutableByteSpan = std::span<std::byte>;

// Ethernet + IPv4 (with options) + TCP (with options).
inline constexpr size_t kMaxTcpV4Headers = 14 + 60 + 60;
// The largest IPv4 packet: a super-frame's IP total length must fit 16 bits.
inline constexpr size_t kMaxIpPacket = 65535;

// The one's-complement sum (RFC 1071) of bytes that start at an even offset
// of the checksummed stream, in libnet's value convention (the number whose
// big-endian encoding is the two bytes on the wire), not complemented. A
// trailing odd byte is padded with zero. Reads 8 bytes at a time: this runs
// over every received payload byte.
uint16_t onesComplementSum(ConstByteSpan bytes);

// True if `later` makes `earlier` redundant: both are bare TCP/IPv4 ACKs (no
// payload, no options, flags ACK only) of the same connection with the same
// sequence number, and `later` acknowledges strictly more. The driver then
// skips `earlier` (TCP acknowledgments are cumulative; Linux's receivers and
// GRO thin ACK runs the same way). Duplicate ACKs (equal numbers: fast
// retransmit) and window updates are never superseded.
bool supersededAck(ConstByteSpan earlier, ConstByteSpan later);

// Builds TCP/IPv4 super-frames out of consecutive frames. Use:
//   if (c.start(f0)) while (c.append(fN)) ...;  then c.frames() > 1 ?
//   write c.pieces() with c.offload() : write f0 alone.
// The pieces point into the frames given (payloads are not copied) and into
// the coalescer's own header copy; they stay valid until the next start().
class TcpCoalescer {
 public:
  // Most frames in one super-frame (one writev piece each, plus headers).
  static constexpr size_t kMaxFrames = 128;

  // Starts a super-frame with `frame`. False if the frame cannot start one:
  // not Ethernet/IPv4/TCP, IP options or a fragment, flags other than
  // ACK/PSH, no payload, or inconsistent lengths.
  bool start(ConstByteSpan frame);

  // Appends `frame` if it continues the super-frame: same Ethernet, IP and
  // TCP headers except IP id/checksum and TCP seq/flags/checksum (so same
  // addresses, ports, ACK, window, TTL, TOS, DF, TCP options), sequence
  // number right after the previous payload, flags ACK or ACK|PSH, every
  // payload so far exactly the first one's size (the MSS) and this one at
  // most that, and the whole still within 64 KiB. False (nothing changed)
  // otherwise; a shorter payload ends the super-frame (later appends fail).
  bool append(ConstByteSpan frame);

  // Frames in the current super-frame (0 before a successful start()).
  size_t frames() const { return frames_; }

  // Completes the super-frame: headers with the total IP length and header
  // checksum, the TCP flags of the last frame (PSH travels to the end), and
  // in the TCP checksum field the pseudo-header sum over the total TCP length
  // (what VIRTIO_NET_HDR_F_NEEDS_CSUM expects; the kernel completes it per
  // segment). Returns the pieces to write: the header copy, then each frame's
  // payload. Call after the last append().
  std::span<const ConstByteSpan> finish();
  // The matching virtio-net metadata (valid after finish()).
  const FrameOffload& offload() const { return offload_; }

 private:
  std::array<std::byte, kMaxTcpV4Headers> header_{};  // the first frame's headers, then patched
  std::vector<ConstByteSpan> pieces_;                 // [0] header_, then payloads
  ConstByteSpan first_;                               // the first frame (for comparisons)
  FrameOffload offload_;
  size_t frames_ = 0;
  size_t ipOffset_ = 14, tcpOffset_ = 0, headerLen_ = 0;  // offsets within a frame
  size_t mss_ = 0;         // the first frame's payload size
  size_t payloadTotal_ = 0;
  uint32_t nextSeq_ = 0;
  uint8_t lastFlags_ = 0;
  bool closed_ = false;    // a short payload was appended: nothing may follow
};

// A GSO super-frame as read: `head` (in the caller's buffer) followed by
// `tail` (the device's overflow, possibly empty).
struct SplitFrame {
  ConstByteSpan head;
  ConstByteSpan tail;
  size_t size() const { return head.size() + tail.size(); }
  // Copies [offset, offset + out.size()) of the frame to out, adding the
  // copied bytes to sum on the way (one pass). out may be the frame's own
  // bytes at that offset (segment 0 is built in place).
  void copyOutSum(size_t offset, MutableByteSpan out, net::Checksum& sum) const;
};

// How a TCP/IPv4 super-frame is cut. From validateTcpV4Gso().
struct TcpV4GsoPlan {
  size_t ipOffset = 14;   // Ethernet header length
  size_t tcpOffset = 0;   // Ethernet + IP header length
  size_t headerLen = 0;   // Ethernet + IP + TCP header length (our own parse, not hdr_len)
  size_t payloadLen = 0;  // TCP payload bytes in the super-frame
  size_t mss = 0;         // payload bytes per segment (gso_size)
  size_t segments = 0;    // ceil(payloadLen / mss)
};

// Checks a super-frame the kernel marked VIRTIO_NET_HDR_GSO_TCPV4 before we
// trust it: Ethernet/IPv4/TCP headers in `frame.head`, not a fragment,
// gso_size > 0, each segment fits `maxSegmentFrame` bytes, at least one
// payload byte. nullopt: drop it.
std::optional<TcpV4GsoPlan> validateTcpV4Gso(const SplitFrame& frame, const FrameOffload& offload,
                                             size_t maxSegmentFrame);

// Writes segment `k` of the super-frame into `out` (at least headerLen + mss
// bytes) and returns its length. `headers` is a copy of the super-frame's
// first plan.headerLen bytes, taken before anything was written (segment 0
// may be built in place over the super-frame's own first bytes: its payload
// is then already where it belongs). Per segment: IP total length, id (+k),
// header checksum; TCP seq (+k*mss), FIN/PSH only on the last segment, CWR
// only on the first, and the full TCP checksum.
size_t writeTcpV4Segment(const TcpV4GsoPlan& plan, ConstByteSpan headers, const SplitFrame& frame,
                         size_t k, MutableByteSpan out);

// Completes a partial checksum (VIRTIO_NET_HDR_F_NEEDS_CSUM): the 16-bit
// field at csumStart + csumOffset holds the pseudo-header sum; replace it by
// the complement of the sum over frame[csumStart..]. False (nothing written)
// if the offsets do not fit the frame.
bool completeChecksum(MutableByteSpan frame, uint16_t csumStart, uint16_t csumOffset);

}  // namespace mknet::drivers
