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

}  // namespace

Result<TapDevice> TapDevice::open(const std::string& name, net::MacAddress mac) {
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
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
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

  std::memset(&ifr, 0, sizeof ifr);
  copyName(ifr.ifr_name, name);
  if (::ioctl(ctl.get(), SIOCGIFMTU, &ifr) != 0) return errnoError(quoted(name) + ": SIOCGIFMTU");
  auto mtu = static_cast<uint32_t>(ifr.ifr_mtu);

  return TapDevice(name, mac, std::move(fd), std::move(ctl), mtu);
}

TapDevice::TapDevice(std::string name, net::MacAddress mac, ipc::UniqueFd fd, ipc::UniqueFd ctl,
                     uint32_t mtu)
    : name_(std::move(name)), mac_(mac), fd_(std::move(fd)), ctl_(std::move(ctl)), mtu_(mtu),
      scratch_(std::make_unique<std::byte[]>(kScratchBytes)) {}

Result<size_t> TapDevice::readFrame(std::span<std::byte> buf) {
  struct iovec iov[2] = {{buf.data(), buf.size()}, {scratch_.get(), kScratchBytes}};
  ssize_t n = ::readv(fd_.get(), iov, 2);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return size_t{0};
    return errnoError("read from " + quoted(name_));
  }
  return static_cast<size_t>(n);
}

Result<bool> TapDevice::writeFrame(std::span<const std::byte> frame) {
  ssize_t n = ::write(fd_.get(), frame.data(), frame.size());
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return false;
    return errnoError("write to " + quoted(name_));
  }
  if (static_cast<size_t>(n) != frame.size())
    return makeError(EIO, "short write to " + quoted(name_));
  return true;
}

bool TapDevice::linkUp() const {
  struct ifreq ifr {};
  copyName(ifr.ifr_name, name_);
  if (::ioctl(ctl_.get(), SIOCGIFFLAGS, &ifr) != 0) return false;
  return (ifr.ifr_flags & IFF_UP) != 0;
}

}  // namespace mknet::drivers
