// bad_frames: malformed frames sent from inside the namespace, through an
// AF_PACKET socket on the TAP, to the stack's MAC. The stack must drop each
// one under its reason (rx_drop_too_short, rx_drop_bad_ip_checksum,
// rx_drop_bad_ip_total_length), count exactly what was sent, and still answer
// ping afterwards.
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <thread>
#include <vector>

#include "libnet/checksum.h"
#include "libnet/frame.h"
#include "tests/integration/testbed.h"

namespace mknet::itest {
namespace {

using Frame = std::vector<uint8_t>;
constexpr size_t kEth = 14;

class PacketSocket {
 public:
  PacketSocket(const Testbed& tb) {
    fd_ = tb.socketInNs(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (fd_ < 0) return;
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, tb.tap().c_str(), IFNAMSIZ - 1);
    if (::ioctl(fd_, SIOCGIFINDEX, &ifr) != 0) return;
    ifindex_ = ifr.ifr_ifindex;
    if (::ioctl(fd_, SIOCGIFHWADDR, &ifr) != 0) return;
    std::memcpy(mac_.data(), ifr.ifr_hwaddr.sa_data, 6);
  }
  ~PacketSocket() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return fd_ >= 0 && ifindex_ > 0; }
  const std::array<uint8_t, 6>& mac() const { return mac_; }
  bool send(const Frame& f) {
    sockaddr_ll to{};
    to.sll_family = AF_PACKET;
    to.sll_ifindex = ifindex_;
    to.sll_halen = 6;
    std::memcpy(to.sll_addr, f.data(), 6);
    return ::sendto(fd_, f.data(), f.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) ==
           static_cast<ssize_t>(f.size());
  }

 private:
  int fd_ = -1;
  int ifindex_ = 0;
  std::array<uint8_t, 6> mac_{};
};

// A correct ICMP echo request from the Linux side to the stack.
Frame echoRequest(const Testbed& tb, const std::array<uint8_t, 6>& srcMac, uint16_t seq) {
  net::FrameBuilder fb{.srcMac = net::MacAddress(srcMac),
                       .dstMac = *net::MacAddress::parse(tb.mac()),
                       .srcIp = *net::Ipv4Address::parse(tb.linuxIp()),
                       .dstIp = *net::Ipv4Address::parse(tb.mknetIp())};
  std::array<uint8_t, 56> payload{};
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<uint8_t>(i);
  Frame f(1514);
  auto n = fb.buildIcmp(f, net::IcmpBuilder::echoRequest(0x4d4b, seq), payload);
  f.resize(n ? *n : 0);
  return f;
}

void setIpChecksum(Frame& f) {
  f[kEth + 10] = 0;
  f[kEth + 11] = 0;
  uint16_t c = net::internetChecksum(net::ConstBytes(f.data() + kEth, 20));
  net::storeBe16(net::MutableBytes(f.data() + kEth, 20), 10, c);
}

std::map<std::string, uint64_t> drops(const Testbed& tb) {
  std::map<std::string, uint64_t> d;
  if (auto st = tb.status())
    for (auto& [k, v] : *st)
      if (k.rfind("rx_drop_", 0) == 0) d[k] = v;
  return d;
}

TEST(BadFrames, DroppedCountedAndPingStillWorks) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  PacketSocket raw(tb);
  ASSERT_TRUE(raw.ok()) << std::strerror(errno);

  const auto before = drops(tb);
  ASSERT_TRUE(before.count("rx_drop_too_short") && before.count("rx_drop_bad_ip_checksum") &&
              before.count("rx_drop_bad_ip_total_length"));

  constexpr int kShort = 3, kBadChecksum = 4, kBadTotalLength = 5;
  uint16_t seq = 1;
  for (int i = 0; i < kShort; ++i) {
    // Ethernet header + 10 bytes: too short for an IPv4 header.
    Frame f = echoRequest(tb, raw.mac(), seq++);
    ASSERT_GT(f.size(), kEth + 20);
    f.resize(kEth + 10);
    ASSERT_TRUE(raw.send(f)) << std::strerror(errno);
  }
  for (int i = 0; i < kBadChecksum; ++i) {
    Frame f = echoRequest(tb, raw.mac(), seq++);
    f[kEth + 10] ^= 0x5a;  // header checksum off
    ASSERT_TRUE(raw.send(f)) << std::strerror(errno);
  }
  for (int i = 0; i < kBadTotalLength; ++i) {
    Frame f = echoRequest(tb, raw.mac(), seq++);
    uint16_t total = static_cast<uint16_t>(f.size() - kEth + 100 + i);  // beyond the frame
    net::storeBe16(net::MutableBytes(f.data() + kEth, 20), 2, total);
    setIpChecksum(f);  // a correct checksum: only the length is wrong
    ASSERT_TRUE(raw.send(f)) << std::strerror(errno);
  }

  std::map<std::string, uint64_t> want = before;
  want["rx_drop_too_short"] += kShort;
  want["rx_drop_bad_ip_checksum"] += kBadChecksum;
  want["rx_drop_bad_ip_total_length"] += kBadTotalLength;
  std::map<std::string, uint64_t> after;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  do {
    after = drops(tb);
    if (after == want) break;
    std::this_thread::sleep_for(20ms);
  } while (std::chrono::steady_clock::now() < deadline);
  std::this_thread::sleep_for(300ms);  // nothing more trickles in
  after = drops(tb);
  for (auto& [k, v] : want) EXPECT_EQ(after[k], v) << k << " (was " << before.at(k) << ")";
  EXPECT_TRUE(tb.stack().running());
  EXPECT_TRUE(tb.driver().running());

  // A correct echo request through the same raw socket still counts as a
  // frame, and ping works.
  const auto rx = tb.counter("rx_frames");
  ASSERT_TRUE(raw.send(echoRequest(tb, raw.mac(), seq++)));
  ASSERT_TRUE(rx);
  bool counted = false;
  for (auto until = std::chrono::steady_clock::now() + 5s; !counted && std::chrono::steady_clock::now() < until;
       std::this_thread::sleep_for(20ms))
    counted = tb.counter("rx_frames").value_or(0) >= *rx + 1;
  EXPECT_TRUE(counted) << "a valid frame after the bad ones was not received";
  EXPECT_TRUE(tb.pingOk(5));
  after = drops(tb);
  for (auto& [k, v] : want) EXPECT_EQ(after[k], v) << k << " changed after the valid traffic";
  EXPECT_EQ(tb.leftovers(), "") << "leak check: what the stack still holds after every app has exited";
}

}  // namespace
}  // namespace mknet::itest
