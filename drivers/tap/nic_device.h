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

class NicDevice {
 public:
  virtual ~NicDevice() = default;

  // Reads one frame into `buf` without blocking. Returns the frame's full
  // length, which is larger than buf.size() if the frame did not fit (then
  // only the first buf.size() bytes were stored and the caller drops it);
  // 0 when no frame is waiting (EAGAIN). An Error means the device itself
  // failed (e.g. the TAP interface was deleted): the caller stops using it.
  virtual Result<size_t> readFrame(std::span<std::byte> buf) = 0;

  // Writes one whole frame without blocking. Returns true if it was handed
  // to the device, false if the device cannot take it now (EAGAIN: retry the
  // same frame later, after pollFd() is writable). An Error is about this
  // frame (too short, too long, interface down...): count it and go on.
  virtual Result<bool> writeFrame(std::span<const std::byte> frame) = 0;

  // An fd that poll() reports readable when readFrame() has a frame and
  // writable when writeFrame() would accept one; POLLERR/POLLHUP mean the
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
