// Offload through a real TAP (root only): TapDriver on a TapDevice opened
// with virtio-net headers, in a namespace created for the test, with this
// thread acting as the stack (it owns the pool and the rings and runs the
// driver's pollOnce()). A hand-made TCP connection to a socket of the Linux
// kernel in the namespace checks that:
//  - the kernel takes the driver's super-frames and its socket receives the
//    stream intact (TX coalescing), and
//  - the kernel's own super-frames (TUN_F_TSO4) come out of the driver as
//    MSS-sized frames with correct checksums, the stream intact (RX
//    segmentation).
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <functional>
#include <iostream>
#include <thread>

#include <gtest/gtest.h>

#include "drivers/tap/tap_device.h"
#include "drivers/tap/tap_driver.h"
#include "ipc/doorbell.h"
#include "ipc/pool_region.h"
#include "ipc/unique_fd.h"
#include "libnet/frame.h"
#include "tests/drivers/tap/netns.h"
#include "tests/drivers/tap/tcp_frames.h"

namespace mknet::drivers {
namespace {

using namespace std::chrono_literals;
using ipc::Descriptor;
using test::Bytes;
using test::runCommand;
using test::TcpFlow;
using test::TestNetns;

const net::MacAddress kOurMac({0x02, 0x00, 0x5e, 0x00, 0x00, 0x07});
constexpr uint16_t kPort = 5001;
constexpr uint32_t kBuffers = 512;
constexpr uint32_t kTxBuffers = 128;  // 0..127 for TX, the rest for RX

// The stack's side of a TapDriver, on the calling thread.
class MiniStack {
 public:
  explicit MiniStack(NicDevice& nic)
      : nic_(nic), region_(std::move(ipc::PoolRegion::create(ipc::PoolConfig{kBuffers, kBuffers})).value()),
        toDriver_(*ipc::Doorbell::create()), toStack_(*ipc::Doorbell::create()),
        control_(*ipc::Doorbell::create()),
        rxFree_(region_.rxFree(), kBuffers), rxActive_(region_.rxActive(), kBuffers),
        txActive_(region_.txActive(), kBuffers), txFree_(region_.txFree(), kBuffers),
        driver_(nic, region_, toDriver_, toStack_, control_) {
    for (uint32_t i = kTxBuffers; i < kBuffers; ++i) rxIdle_.push_back(i);
  }

  // Sends frames (at most kTxBuffers) and waits until all came back on
  // txFree, checking the order.
  void send(const std::vector<Bytes>& frames) {
    ASSERT_LE(frames.size(), kTxBuffers);
    std::vector<Descriptor> d;
    for (uint32_t k = 0; k < frames.size(); ++k) {
      auto buf = *region_.pool().buffer(k);
      ASSERT_LE(frames[k].size(), buf.size());
      std::memcpy(buf.data(), frames[k].data(), frames[k].size());
      d.push_back(Descriptor{k, static_cast<uint32_t>(frames[k].size()), 0, 0});
    }
    ASSERT_EQ(*txActive_.push(d), d.size());
    uint32_t back = 0;
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (back < d.size()) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "frames not returned on txFree";
      auto w = driver_.pollOnce();
      ASSERT_TRUE(w) << w.error().message();
      Descriptor out[64];
      auto n = txFree_.pop(out);
      ASSERT_TRUE(n);
      for (uint32_t i = 0; i < *n; ++i) ASSERT_EQ(out[i].index, back++) << "txFree order";
      if (*n == 0) {
        struct pollfd p {nic_.pollFd(), POLLOUT, 0};
        ::poll(&p, 1, 1);
      }
    }
  }

  // Lends every idle RX buffer, runs the driver once, returns the frames it
  // received (copied out; the buffers are idle again).
  std::vector<Bytes> receive() {
    std::vector<Bytes> frames;
    std::vector<Descriptor> give;
    for (uint32_t i : rxIdle_) give.push_back(Descriptor{i, 0, 0, 0});
    rxIdle_.clear();
    if (!give.empty()) {
      EXPECT_EQ(*rxFree_.push(give), give.size());
    }
    auto w = driver_.pollOnce();
    EXPECT_TRUE(w) << w.error().message();
    Descriptor in[64];
    for (;;) {
      auto n = rxActive_.pop(in);
      EXPECT_TRUE(n);
      if (!n || *n == 0) break;
      for (uint32_t i = 0; i < *n; ++i) {
        auto b = *region_.pool().bytes(in[i]);
        frames.emplace_back(b.begin(), b.end());
        rxIdle_.push_back(in[i].index);
      }
    }
    return frames;
  }

  TapDriver& driver() { return driver_; }

 private:
  NicDevice& nic_;
  ipc::PoolRegion region_;
  ipc::Doorbell toDriver_, toStack_, control_;
  ipc::DescriptorProducer rxFree_;
  ipc::DescriptorConsumer rxActive_;
  ipc::DescriptorProducer txActive_;
  ipc::DescriptorConsumer txFree_;
  TapDriver driver_;
  std::vector<uint32_t> rxIdle_;
};

class TapOffloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, TAP devices)";
    ns_ = std::make_unique<TestNetns>();
    ASSERT_TRUE(ns_->ok()) << "could not set up namespace " << ns_->name();
    // The kernel answers our made-up TCP peer without asking ARP first.
    ASSERT_EQ(runCommand({"ip", "-n", ns_->name(), "neigh", "replace", ns_->peerIp(), "lladdr",
                          kOurMac.toString(), "dev", ns_->tap()}),
              0);
    flow_.srcMac = kOurMac;
    flow_.srcIp = *net::Ipv4Address::parse(ns_->peerIp());
    flow_.dstIp = *net::Ipv4Address::parse(ns_->hostIp());
    flow_.srcPort = 40000;
    flow_.dstPort = kPort;
  }

  void inNetns(const std::function<void()>& fn) {
    std::thread t([&] {
      ipc::UniqueFd nsFd(::open(("/run/netns/" + ns_->name()).c_str(), O_RDONLY | O_CLOEXEC));
      ASSERT_TRUE(nsFd.valid());
      ASSERT_EQ(::setns(nsFd.get(), CLONE_NEWNET), 0) << std::strerror(errno);
      fn();
    });
    t.join();
  }

  // The kernel side's MAC (frames to another one are not for it). Call in
  // the namespace.
  void learnKernelMac() {
    ipc::UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    struct ifreq ifr {};
    std::strncpy(ifr.ifr_name, ns_->tap().c_str(), IFNAMSIZ - 1);
    ASSERT_EQ(::ioctl(s.get(), SIOCGIFHWADDR, &ifr), 0) << std::strerror(errno);
    std::array<uint8_t, 6> m{};
    std::memcpy(m.data(), ifr.ifr_hwaddr.sa_data, 6);
    flow_.dstMac = net::MacAddress(m);
  }

  // A listening socket of the kernel on hostIp:kPort.
  ipc::UniqueFd listenSocket() {
    ipc::UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    EXPECT_TRUE(s.valid());
    int one = 1;
    ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(kPort);
    a.sin_addr.s_addr = htonl(flow_.dstIp.value());
    EXPECT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
    EXPECT_EQ(::listen(s.get(), 4), 0);
    return s;
  }

  // SYN until the kernel's SYN-ACK shows up (the TAP's carrier comes up
  // asynchronously), then the ACK; returns the accepted socket. Sets
  // flow_.ack and the sequence numbers.
  ipc::UniqueFd handshake(MiniStack& stack, const ipc::UniqueFd& listener) {
    std::vector<uint8_t> mss = {2, 4, 0x05, 0xb4};  // MSS 1460, no window scaling
    TcpFlow syn = flow_;
    syn.options = mss;
    syn.ack = 0;
    bool got = false;
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!got && std::chrono::steady_clock::now() < deadline) {
      stack.send({syn.frame(kIsn, net::kTcpFlagSyn, 1, {})});
      auto until = std::chrono::steady_clock::now() + 200ms;
      while (!got && std::chrono::steady_clock::now() < until) {
        for (const Bytes& f : stack.receive()) {
          auto p = net::parseFrame(test::u8(f));
          if (!p || !p->tcp || p->tcp->srcPort() != kPort) continue;
          if (p->tcp->syn() && p->tcp->ack() && p->tcp->ackNumber() == kIsn + 1) {
            flow_.ack = p->tcp->seqNumber() + 1;
            got = true;
          }
        }
        std::this_thread::sleep_for(1ms);
      }
    }
    EXPECT_TRUE(got) << "no SYN-ACK from the kernel";
    flow_.window = 65535;
    stack.send({flow_.frame(kIsn + 1, net::kTcpFlagAck, 2, {})});
    struct pollfd p {listener.get(), POLLIN, 0};
    ::poll(&p, 1, 2000);
    ipc::UniqueFd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    EXPECT_TRUE(conn.valid()) << "accept: " << std::strerror(errno);
    return conn;
  }

  static constexpr uint32_t kIsn = 0x10000000;
  std::unique_ptr<TestNetns> ns_;
  TcpFlow flow_;
};

// 48 bursts of 16 MSS-sized segments (the last of each with PSH) go out as
// 48 super-frames; the kernel's socket reads every byte, in order.
TEST_F(TapOffloadTest, KernelReceivesCoalescedStreamIntact) {
  inNetns([&] {
    auto dev = TapDevice::open(ns_->tap(), kOurMac, /*offload=*/true);
    ASSERT_TRUE(dev) << dev.error().message();
    ASSERT_TRUE(dev->offload());
    MiniStack stack(*dev);
    learnKernelMac();
    auto listener = listenSocket();
    auto conn = handshake(stack, listener);
    ASSERT_TRUE(conn.valid());

    constexpr size_t kMss = 1448, kPerBurst = 16, kBursts = 48;
    uint32_t seq = kIsn + 1;
    uint16_t id = 10;
    uint64_t offset = 0;
    std::vector<std::byte> got(kMss * kPerBurst);
    for (size_t b = 0; b < kBursts; ++b) {
      stack.send(flow_.segments(kIsn + 1, seq, kPerBurst, kMss, id, 0, /*pushLast=*/true));
      seq += kMss * kPerBurst;
      id = static_cast<uint16_t>(id + kPerBurst);
      // Read the burst back from the kernel's socket (this also reopens
      // its window, which we never scaled beyond 64 KiB).
      size_t have = 0;
      auto deadline = std::chrono::steady_clock::now() + 5s;
      while (have < got.size() && std::chrono::steady_clock::now() < deadline) {
        ssize_t n = ::recv(conn.get(), got.data() + have, got.size() - have, 0);
        if (n > 0) {
          have += static_cast<size_t>(n);
          continue;
        }
        ASSERT_TRUE(n < 0 && errno == EAGAIN) << "recv: " << (n == 0 ? "EOF" : std::strerror(errno));
        stack.receive();  // the kernel's ACKs: read and ignored
        struct pollfd p {conn.get(), POLLIN, 0};
        ::poll(&p, 1, 5);
      }
      ASSERT_EQ(have, got.size()) << "burst " << b << ": the kernel's socket got too little";
      ASSERT_EQ(got, test::streamBytes(offset, got.size())) << "burst " << b;
      offset += got.size();
    }
    TapDriverStats st = stack.driver().stats();
    EXPECT_EQ(st.txGsoFrames, kBursts);
    EXPECT_EQ(st.txCoalescedFrames, kBursts * kPerBurst);
    EXPECT_EQ(st.txErrors, 0u);
    EXPECT_EQ(st.txGsoFallbacks, 0u);
  });
}

// The kernel sends 1 MiB; its TCP hands the TAP super-frames (TSO), the
// driver cuts them, and every frame the "stack" gets has valid checksums and
// its place in the stream; the stream is intact.
TEST_F(TapOffloadTest, KernelSuperFramesAreSegmentedOnReceive) {
  inNetns([&] {
    auto dev = TapDevice::open(ns_->tap(), kOurMac, /*offload=*/true);
    ASSERT_TRUE(dev) << dev.error().message();
    MiniStack stack(*dev);
    learnKernelMac();
    auto listener = listenSocket();
    auto conn = handshake(stack, listener);
    ASSERT_TRUE(conn.valid());

    constexpr size_t kTotal = 1 << 20;
    const Bytes data = test::streamBytes(0, kTotal);
    size_t sent = 0, received = 0;
    const uint32_t kernelIsn = flow_.ack - 1;
    uint32_t ackedSeq = flow_.ack;
    uint64_t badFrames = 0;
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (received < kTotal && std::chrono::steady_clock::now() < deadline) {
      if (sent < kTotal) {
        ssize_t n = ::send(conn.get(), data.data() + sent, kTotal - sent, MSG_DONTWAIT);
        if (n > 0) sent += static_cast<size_t>(n);
      }
      for (const Bytes& f : stack.receive()) {
        auto p = net::parseFrame(test::u8(f));
        if (!p) {
          ++badFrames;  // a bad checksum would land here
          continue;
        }
        if (!p->tcp || p->tcp->srcPort() != kPort) continue;
        auto pl = p->tcp->payload();
        ASSERT_LE(f.size(), 14u + 1500u) << "a frame larger than the MTU reached the stack";
        if (pl.empty() || p->tcp->seqNumber() != kernelIsn + 1 + received) continue;  // dup / hole
        ASSERT_LE(received + pl.size(), kTotal);
        ASSERT_EQ(std::memcmp(pl.data(), data.data() + received, pl.size()), 0)
            << "stream offset " << received;
        received += pl.size();
      }
      uint32_t want = kernelIsn + 1 + static_cast<uint32_t>(received);
      if (want != ackedSeq) {
        flow_.ack = want;
        stack.send({flow_.frame(kIsn + 1, net::kTcpFlagAck, 3, {})});
        ackedSeq = want;
      } else {
        std::this_thread::sleep_for(100us);
      }
    }
    EXPECT_EQ(received, kTotal);
    EXPECT_EQ(badFrames, 0u);
    TapDriverStats st = stack.driver().stats();
    std::cout << "[ measure ] " << st.rxGsoFrames << " super-frames cut into frames, "
              << st.rxFrames << " frames in all\n";
    EXPECT_GT(st.rxGsoFrames, 0u) << "the kernel sent no super-frame to the TAP";
    EXPECT_EQ(st.rxDroppedBadOffload, 0u);
  });
}

}  // namespace
}  // namespace mknet::drivers
