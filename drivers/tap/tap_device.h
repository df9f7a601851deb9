// TapDevice: a NicDevice on an existing, persistent Linux TAP interface.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "drivers/tap/nic_device.h"
#include "ipc/result.h"
#include "ipc/unique_fd.h"

namespace mknet::drivers {

class TapDevice final : public NicDevice {
 public:
  // Attaches to the persistent TAP interface `name` of the caller's network
  // namespace (created beforehand, e.g. by `ip tuntap add mode tap name mk0`;
  // the driver never creates or reconfigures interfaces). The fd is
  // non-blocking and close-on-exec, frames carry no packet-information
  // header (IFF_NO_PI). `mac` is what mac() reports: the stack's own address
  // on this link, not the kernel side's.
  //
  // Errors, each naming the interface:
  //   EINVAL  the name is empty or too long, or `name` is not a TAP interface
  //           (a TUN device or another kind of link);
  //   ENOENT  no interface of that name in this namespace (or no
  //           /dev/net/tun at all), or it is not persistent;
  //   EPERM   not allowed to open /dev/net/tun or to attach to the interface
  //           (needs CAP_NET_ADMIN or the TAP's owner/group);
  //   EBUSY   another process already has the interface open;
  //   others  open/ioctl failures with errno.
  //
  // With `offload`, frames carry a virtio-net header (IFF_VNET_HDR) and the
  // interface is told (TUNSETOFFLOAD) that we complete checksums and take
  // TCP/IPv4 super-frames (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO_ECN), so the
  // kernel hands us up to 64 KiB at a time instead of segmenting, and takes
  // super-frames from us. Without it, both are switched off explicitly: the
  // offload setting is a property of the persistent interface and would
  // otherwise outlive a previous driver that enabled it.
  static Result<TapDevice> open(const std::string& name, net::MacAddress mac, bool offload = true);

  TapDevice(TapDevice&&) noexcept = default;
  TapDevice& operator=(TapDevice&&) noexcept = default;

  Result<RxFrame> readFrame(std::span<std::byte> buf) override;
  Result<bool> writeGather(std::span<const std::span<const std::byte>> pieces,
                           const FrameOffload& offload) override;
  bool offload() const override { return offload_; }
  int pollFd() const override { return fd_.get(); }
  const std::string& name() const override { return name_; }
  net::MacAddress mac() const override { return mac_; }
  uint32_t mtu() const override { return mtu_; }
  // IFF_UP of the interface, asked on every call (SIOCGIFFLAGS); false if the
  // interface can no longer be queried.
  bool linkUp() const override;

 private:
  // A frame longer than the caller's buffer lands in the scratch area, so its
  // full length is known and it can be counted as oversized, or, a GSO
  // super-frame, segmented from there (the largest frame a TAP can produce is
  // 64 KiB + an Ethernet header).
  static constexpr size_t kScratchBytes = 65536 + 64;

  // writev() takes at most this many pieces (UIO_MAXIOV), the header included.
  static constexpr size_t kMaxPieces = 1024;

  TapDevice(std::string name, net::MacAddress mac, ipc::UniqueFd fd, ipc::UniqueFd ctl, uint32_t mtu,
            bool offload);

  std::string name_;
  net::MacAddress mac_;
  ipc::UniqueFd fd_;   // the TAP queue (/dev/net/tun attached to name_)
  ipc::UniqueFd ctl_;  // an AF_INET datagram socket for interface ioctls
  uint32_t mtu_ = 0;
  bool offload_ = false;
  std::unique_ptr<std::byte[]> scratch_;
};

}  // namespace mknet::drivers
