#include "drivers/tap/tap_device.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace mknet::drivers {

namespace {

void copyName(char (&dst)[IFNAMSIZ], const std::string& name) {
  std::memset(dst, 0, IFNAMSIZ);
  std::memcpy(dst, name.data(), name.size());  // size checked by the caller
}

std::string quoted(const std::string& name) { return "TAP interface '" + name + "'"; }

// struct virtio_net_hdr and its constants, as in <linux/virtio_net.h>, which
// cannot be included from C++ (a struct there has a member named `class`).
// The layout is the kernel ABI of IFF_VNET_HDR: fields in host order (a TAP
// is "legacy" virtio unless TUNSETVNETLE is used).
struct VirtioNetHdr {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
};
static_assert(sizeof(VirtioNetHdr) == 10, "virtio_net_hdr is 10 bytes");
constexpr uint8_t VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
constexpr uint8_t VIRTIO_NET_HDR_GSO_NONE = 0;
constexpr uint8_t VIRTIO_NET_HDR_GSO_TCPV4 = 1;
constexpr uint8_t VIRTIO_NET_HDR_GSO_ECN = 0x80;

}  // namespace

Result<TapDevice> TapDevice::open(const std::string& name, net::MacAddress mac, bool offload) {
  if (name.empty() || name.size() >= IFNAMSIZ)
    return makeError(EINVAL, quoted(name) + ": a name must have 1 to " +
                                 std::to_string(IFNAMSIZ - 1) + " characters");

  ipc::UniqueFd ctl(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!ctl) return errnoError(quoted(name) + ": socket for interface ioctls");

  // TUNSETIFF would create a missing interface (and lose it again when we
  // close): the driver only attaches to one that deploy/ set up, so look first.
  struct ifreq ifr {};
  copyName(ifr.ifr_name, name);
  if (::ioctl(ctl.get(), SIOCGIFFLAGS, &ifr) != 0) {
    if (errno == ENODEV || errno == ENXIO)
      return makeError(ENOENT, quoted(name) + " does not exist in this network namespace "
                                              "(create it with: ip tuntap add mode tap name " +
                                   name + ")");
    return errnoError(quoted(name) + ": SIOCGIFFLAGS");
  }

  ipc::UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    int err = errno;
    if (err == EACCES || err == EPERM)
      return makeError(EPERM, quoted(name) + ": cannot open /dev/net/tun (needs root or "
                                             "CAP_NET_ADMIN)");
    if (err == ENOENT || err == ENODEV || err == ENXIO)
      return makeError(ENOENT, quoted(name) + ": no /dev/net/tun (is the tun module loaded?)");
    return makeError(err, quoted(name) + ": open /dev/net/tun");
  }

  std::memset(&ifr, 0, sizeof ifr);
  copyName(ifr.ifr_name, name);
  // IFF_VNET_HDR is a property of this attachment (set again on every
  // TUNSETIFF), so a driver without offload gets plain frames.
  ifr.ifr_flags = static_cast<short>(IFF_TAP | IFF_NO_PI | (offload ? IFF_VNET_HDR : 0));
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
    int err = errno;
    switch (err) {
      case EBUSY:
        return makeError(EBUSY, quoted(name) + " is busy: another process (another driver?) "
                                               "has it open");
      case EPERM:
      case EACCES:
        return makeError(EPERM, quoted(name) + ": not permitted to attach (needs "
                                               "CAP_NET_ADMIN or the TAP's owner/group)");
      case EINVAL:
        return makeError(EINVAL, "'" + name + "' is not a TAP interface (a TUN device or "
                                              "another kind of link?)");
      default:
        return makeError(err, quoted(name) + ": TUNSETIFF");
    }
  }
  // If the interface vanished between the check and TUNSETIFF, the kernel
  // created a fresh non-persistent one that would die with us: refuse it.
  std::memset(&ifr, 0, sizeof ifr);
  if (::ioctl(fd.get(), TUNGETIFF, &ifr) != 0) return errnoError(quoted(name) + ": TUNGETIFF");
  if ((ifr.ifr_flags & IFF_PERSIST) == 0)
    return makeError(ENOENT, quoted(name) + " is not a persistent TAP (create it with: ip "
                                            "tuntap add mode tap name " + name + ")");

  if (offload) {
    int hdrSize = sizeof(VirtioNetHdr);
    if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &hdrSize) != 0)
      return errnoError(quoted(name) + ": TUNSETVNETHDRSZ");
  }
  // The offload features belong to the interface, not to this fd: set them
  // either way, so what a previous driver enabled does not reach one that
  // cannot parse it.
  unsigned int features = offload ? (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO_ECN) : 0u;
  if (::ioctl(fd.get(), TUNSETOFFLOAD, features) != 0)
    return errnoError(quoted(name) + ": TUNSETOFFLOAD");

  std::memset(&ifr, 0, sizeof ifr);
  copyName(ifr.ifr_name, name);
  if (::ioctl(ctl.get(), SIOCGIFMTU, &ifr) != 0) return errnoError(quoted(name) + ": SIOCGIFMTU");
  auto mtu = static_cast<uint32_t>(ifr.ifr_mtu);

  return TapDevice(name, mac, std::move(fd), std::move(ctl), mtu, offload);
}

TapDevice::TapDevice(std::string name, net::MacAddress mac, ipc::UniqueFd fd, ipc::UniqueFd ctl,
                     uint32_t mtu, bool offload)
    : name_(std::move(name)), mac_(mac), fd_(std::move(fd)), ctl_(std::move(ctl)), mtu_(mtu),
      offload_(offload), scratch_(std::make_unique<std::byte[]>(kScratchBytes)) {}

Result<RxFrame> TapDevice::readFrame(std::span<std::byte> buf) {
  // With offload every frame is preceded by its virtio-net header; readv
  // puts it in a local struct and the frame itself straight into `buf`.
  VirtioNetHdr vh{};
  struct iovec iov[3];
  int n = 0;
  if (offload_) iov[n++] = {&vh, sizeof vh};
  iov[n++] = {buf.data(), buf.size()};
  iov[n++] = {scratch_.get(), kScratchBytes};
  ssize_t got = ::readv(fd_.get(), iov, n);
  if (got < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return RxFrame{};
    return errnoError("read from " + quoted(name_));
  }
  RxFrame f;
  size_t len = static_cast<size_t>(got);
  if (offload_) {
    // The kernel always writes the whole header; anything shorter is no frame.
    if (len < sizeof vh) return RxFrame{};
    len -= sizeof vh;
    // Fields are in host order: a TAP is "legacy" virtio (no TUNSETVNETLE).
    uint8_t type = vh.gso_type & static_cast<uint8_t>(~VIRTIO_NET_HDR_GSO_ECN);
    f.offload.gso = type == VIRTIO_NET_HDR_GSO_NONE    ? FrameOffload::Gso::kNone
                    : type == VIRTIO_NET_HDR_GSO_TCPV4 ? FrameOffload::Gso::kTcpV4
                                                       : FrameOffload::Gso::kOther;
    f.offload.ecn = (vh.gso_type & VIRTIO_NET_HDR_GSO_ECN) != 0;
    f.offload.needsCsum = (vh.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) != 0;
    f.offload.hdrLen = vh.hdr_len;
    f.offload.gsoSize = vh.gso_size;
    f.offload.csumStart = vh.csum_start;
    f.offload.csumOffset = vh.csum_offset;
  }
  f.length = len;
  if (len > buf.size()) f.overflow = std::span<const std::byte>(scratch_.get(), len - buf.size());
  return f;
}

Result<bool> TapDevice::writeGather(std::span<const std::span<const std::byte>> pieces,
                                    const FrameOffload& offload) {
  if (!offload_ && !(offload == FrameOffload{}))
    return makeError(EINVAL, "offload metadata for " + quoted(name_) + ", opened without offload");
  if (pieces.size() + 1 > kMaxPieces)
    return makeError(EINVAL, "a frame in " + std::to_string(pieces.size()) + " pieces for " +
                                 quoted(name_));
  VirtioNetHdr vh{};
  if (offload.needsCsum) vh.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  if (offload.gso == FrameOffload::Gso::kTcpV4) {
    vh.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
    if (offload.ecn) vh.gso_type |= VIRTIO_NET_HDR_GSO_ECN;
  } else if (offload.gso != FrameOffload::Gso::kNone) {
    return makeError(EINVAL, "unsupported GSO type for " + quoted(name_));
  }
  vh.hdr_len = offload.hdrLen;
  vh.gso_size = offload.gsoSize;
  vh.csum_start = offload.csumStart;
  vh.csum_offset = offload.csumOffset;

  struct iovec iov[kMaxPieces];
  int n = 0;
  size_t total = 0;
  if (offload_) {
    iov[n++] = {&vh, sizeof vh};
    total += sizeof vh;
  }
  for (const auto& p : pieces) {
    // writev takes non-const pointers but does not write through them.
    iov[n++] = {const_cast<std::byte*>(p.data()), p.size()};
    total += p.size();
  }
  ssize_t w = ::writev(fd_.get(), iov, n);
  if (w < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return false;
    return errnoError("write to " + quoted(name_));
  }
  if (static_cast<size_t>(w) != total) return makeError(EIO, "short write to " + quoted(name_));
  return true;
}

bool TapDevice::linkUp() const {
  struct ifreq ifr {};
  copyName(ifr.ifr_name, name_);
  if (::ioctl(ctl_.get(), SIOCGIFFLAGS, &ifr) != 0) return false;
  return (ifr.ifr_flags & IFF_UP) != 0;
}

}  // namespace mknet::drivers
