// NicDevice: the OS boundary of a NIC driver — one Ethernet device that frames
// are read from and written to without blocking. TapDevice is the real one;
// tests put an in-memory fake behind it to inject frames and faults.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "ipc/result.h"
#include "libnet/ethernet.h"

namespace mknet::drivers {

// Offload metadata that travels with a frame: the fields of Linux's struct
// virtio_net_hdr (<linux/virtio_net.h>), in host order. Only meaningful on a
// device whose offload() is true; a plain frame has all fields zero.
struct FrameOffload {
  enum class Gso : uint8_t {
    kNone,    // an ordinary frame
    kTcpV4,   // a TCP/IPv4 super-frame to be cut into gsoSize-byte segments
    kOther,   // a GSO type this driver does not handle (RX only: dropped and counted)
  };
  Gso gso = Gso::kNone;
  bool ecn = false;        // VIRTIO_NET_HDR_GSO_ECN: the segments carry ECN (CWR on the first only)
  bool needsCsum = false;  // VIRTIO_NET_HDR_F_NEEDS_CSUM: the L4 checksum at csumStart+csumOffset
                           // holds only the pseudo-header sum; the receiver completes it
  uint16_t hdrLen = 0;     // Ethernet + IP + TCP header bytes of a super-frame
  uint16_t gsoSize = 0;    // payload bytes per segment (MSS) of a super-frame
  uint16_t csumStart = 0;  // where the checksummed bytes start (the L4 header), from the frame start
  uint16_t csumOffset = 0; // where the checksum field is, from csumStart

  bool operator==(const FrameOffload&) const = default;
};

// What readFrame() returns.
struct RxFrame {
  // The frame's full length; 0 when no frame was waiting (EAGAIN).
  size_t length = 0;
  // If length > the caller's buffer: the bytes beyond it, in storage the
  // device owns, valid until the next readFrame() (a GSO super-frame is up to
  // 64 KiB and lands there). Empty otherwise.
  std::span<const std::byte> overflow;
  FrameOffload offload;
};

class NicDevice {
 public:
  virtual ~NicDevice() = default;

  // Reads one frame into `buf` without blocking. RxFrame::length is the
  // frame's full length, which is larger than buf.size() if it did not fit
  // (then the first buf.size() bytes are in buf and the rest in
  // RxFrame::overflow); 0 when no frame is waiting (EAGAIN). An Error means
  // the device itself failed (e.g. the TAP interface was deleted): the caller
  // stops using it.
  virtual Result<RxFrame> readFrame(std::span<std::byte> buf) = 0;

  // Writes one frame, gathered from `pieces` in order, with its offload
  // metadata, without blocking. Returns true if it was handed to the device,
  // false if the device cannot take it now (EAGAIN: retry the same frame
  // later, after pollFd() is writable). An Error is about this frame (too
  // short, too long, interface down, offload refused...): count it and go on.
  // A device whose offload() is false refuses metadata other than none.
  virtual Result<bool> writeGather(std::span<const std::span<const std::byte>> pieces,
                                   const FrameOffload& offload) = 0;

  // One contiguous frame without offload metadata.
  Result<bool> writeFrame(std::span<const std::byte> frame) {
    std::span<const std::byte> one[1] = {frame};
    return writeGather(one, FrameOffload{});
  }

  // Whether the device takes TCP/IPv4 super-frames and partial checksums on
  // write, and may hand them out on read (virtio-net header offloads).
  virtual bool offload() const = 0;

  // An fd that poll() reports readable when readFrame() has a frame and
  // writable when a write would be accepted; POLLERR/POLLHUP mean the
  // device failed.
  virtual int pollFd() const = 0;

  // The interface name, for logs and the registration ("mk0").
  virtual const std::string& name() const = 0;
  // The MAC the stack uses on this link.
  virtual net::MacAddress mac() const = 0;
  // The largest IP packet the link carries (without the Ethernet header).
  virtual uint32_t mtu() const = 0;
  // Whether the link is up now (may ask the OS on every call).
  virtual bool linkUp() const = 0;
};

}  // namespace mknet::drivers
