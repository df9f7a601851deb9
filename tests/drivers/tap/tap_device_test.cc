// TapDevice against real TAP interfaces in a network namespace created for
// the test (root only). The test body runs on a thread that entered the
// namespace with setns(), so every socket and the TAP live there.
#include "drivers/tap/tap_device.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <functional>
#include <thread>

#include <gtest/gtest.h>

#include "ipc/unique_fd.h"
#include "libnet/frame.h"
#include "tests/drivers/tap/netns.h"

namespace mknet::drivers {
namespace {

using namespace std::chrono_literals;
using test::runCommand;
using test::TestNetns;

const net::MacAddress kOurMac({0x02, 0x00, 0x5e, 0x00, 0x00, 0x02});

class TapDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, TAP devices)";
    ns_ = std::make_unique<TestNetns>();
    ASSERT_TRUE(ns_->ok()) << "could not set up namespace " << ns_->name();
  }

  // Runs fn on a thread inside the namespace.
  void inNetns(const std::function<void()>& fn) {
    std::thread t([&] {
      ipc::UniqueFd nsFd(::open(("/run/netns/" + ns_->name()).c_str(), O_RDONLY | O_CLOEXEC));
      ASSERT_TRUE(nsFd.valid());
      ASSERT_EQ(::setns(nsFd.get(), CLONE_NEWNET), 0) << std::strerror(errno);
      fn();
    });
    t.join();
  }

  // Waits for a frame on the device; returns its length (0 on timeout).
  static size_t readWithin(TapDevice& dev, std::span<std::byte> buf, std::chrono::milliseconds t) {
    auto deadline = std::chrono::steady_clock::now() + t;
    while (std::chrono::steady_clock::now() < deadline) {
      struct pollfd p {dev.pollFd(), POLLIN, 0};
      ::poll(&p, 1, 10);
      auto n = dev.readFrame(buf);
      EXPECT_TRUE(n) << n.error().message();
      if (!n) return 0;
      if (n->length != 0) return n->length;
    }
    return 0;
  }

  std::unique_ptr<TestNetns> ns_;
};

TEST_F(TapDeviceTest, OpensExistingTapAndReadsItsMtu) {
  ASSERT_EQ(runCommand({"ip", "-n", ns_->name(), "link", "set", ns_->tap(), "mtu", "1400"}), 0);
  inNetns([&] {
    auto dev = TapDevice::open(ns_->tap(), kOurMac);
    ASSERT_TRUE(dev) << dev.error().message();
    EXPECT_EQ(dev->name(), ns_->tap());
    EXPECT_EQ(dev->mtu(), 1400u);
    EXPECT_EQ(dev->mac(), kOurMac);
    EXPECT_TRUE(dev->linkUp());
    ASSERT_EQ(runCommand({"ip", "-n", ns_->name(), "link", "set", ns_->tap(), "down"}), 0);
    EXPECT_FALSE(dev->linkUp());
    // Nothing waiting: a read says so instead of blocking.
    std::array<std::byte, 2048> buf{};
    ASSERT_EQ(runCommand({"ip", "-n", ns_->name(), "link", "set", ns_->tap(), "up"}), 0);
    auto n = dev->readFrame(buf);
    ASSERT_TRUE(n);
  });
}

TEST_F(TapDeviceTest, ClearErrorsNameTheInterface) {
  inNetns([&] {
    auto missing = TapDevice::open("nosuch0", kOurMac);
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ENOENT);
    EXPECT_NE(missing.error().message().find("nosuch0"), std::string::npos);

    auto notTap = TapDevice::open("lo", kOurMac);
    ASSERT_FALSE(notTap);
    EXPECT_EQ(notTap.error().code, EINVAL);
    EXPECT_NE(notTap.error().message().find("lo"), std::string::npos);

    auto tooLong = TapDevice::open("a-name-that-is-too-long", kOurMac);
    ASSERT_FALSE(tooLong);
    EXPECT_EQ(tooLong.error().code, EINVAL);

    auto first = TapDevice::open(ns_->tap(), kOurMac);
    ASSERT_TRUE(first) << first.error().message();
    auto second = TapDevice::open(ns_->tap(), kOurMac);
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().code, EBUSY);
    EXPECT_NE(second.error().message().find(ns_->tap()), std::string::npos);
  });
  // Only the persistent TAP of the test exists: a failed open created nothing.
  EXPECT_NE(runCommand({"ip", "-n", ns_->name(), "link", "show", "nosuch0"}), 0);
}

// An ARP request written to the TAP reaches the kernel, whose reply comes
// back through readFrame() with the right addresses.
TEST_F(TapDeviceTest, FramesRoundTripThroughTheKernel) {
  inNetns([&] {
    auto dev = TapDevice::open(ns_->tap(), kOurMac);
    ASSERT_TRUE(dev) << dev.error().message();
    auto hostIp = *net::Ipv4Address::parse(ns_->hostIp());
    auto ourIp = *net::Ipv4Address::parse(ns_->peerIp());
    std::array<uint8_t, 64> req{};
    net::FrameBuilder fb{.srcMac = kOurMac, .dstMac = net::MacAddress::broadcast()};
    auto len = fb.buildArp(req, net::ArpBuilder::request(kOurMac, ourIp, hostIp));
    ASSERT_TRUE(len);
    std::array<std::byte, 2048> buf{};
    bool gotReply = false;
    // Until the kernel has turned the carrier on it drops its answers: ask again.
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!gotReply && std::chrono::steady_clock::now() < deadline) {
      auto w = dev->writeFrame(std::as_bytes(std::span(req.data(), *len)));
      ASSERT_TRUE(w) << w.error().message();
      EXPECT_TRUE(*w);
      for (size_t n; !gotReply && (n = readWithin(*dev, buf, 200ms)) != 0;) {
        ASSERT_LE(n, buf.size());
        auto p = net::parseFrame(net::ConstBytes(reinterpret_cast<uint8_t*>(buf.data()), n));
        if (!p || p->kind != net::FrameKind::kArp || !p->arp->isReply()) continue;  // IPv6 noise
        EXPECT_EQ(p->ethernet.dst(), kOurMac);
        EXPECT_EQ(p->arp->senderIp(), hostIp);
        EXPECT_EQ(p->arp->targetIp(), ourIp);
        gotReply = true;
      }
    }
    EXPECT_TRUE(gotReply);

    // A frame too short for Ethernet is refused by the kernel: an error for
    // this frame, not EAGAIN.
    std::array<std::byte, 4> runt{};
    auto bad = dev->writeFrame(runt);
    EXPECT_FALSE(bad);
  });
}

// A frame longer than the caller's buffer is reported with its full length.
TEST_F(TapDeviceTest, OversizedFrameReportsItsFullLength) {
  ASSERT_EQ(runCommand({"ip", "-n", ns_->name(), "link", "set", ns_->tap(), "mtu", "9000"}), 0);
  ASSERT_EQ(runCommand({"ip", "-n", ns_->name(), "neigh", "replace", ns_->peerIp(), "lladdr",
                        kOurMac.toString(), "dev", ns_->tap()}),
            0);
  inNetns([&] {
    auto dev = TapDevice::open(ns_->tap(), kOurMac);
    ASSERT_TRUE(dev) << dev.error().message();
    ipc::UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(sock.valid());
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(9);
    to.sin_addr.s_addr = htonl(net::Ipv4Address::parse(ns_->peerIp())->value());
    std::vector<char> payload(3000, 'x');
    std::array<std::byte, 2048> buf{};
    bool seen = false;
    // The kernel turns the carrier on asynchronously after the TAP is opened
    // and drops what is sent before: send again until the frame shows up.
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!seen && std::chrono::steady_clock::now() < deadline) {
      ASSERT_EQ(::sendto(sock.get(), payload.data(), payload.size(), 0,
                         reinterpret_cast<sockaddr*>(&to), sizeof to),
                static_cast<ssize_t>(payload.size()));
      for (size_t n; !seen && (n = readWithin(*dev, buf, 200ms)) != 0;)
        seen = n == 14 + 20 + 8 + payload.size();  // the datagram, truncated in buf
    }
    EXPECT_TRUE(seen);
  });
}

}  // namespace
}  // namespace mknet::drivers
