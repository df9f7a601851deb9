// rx_buffer_growth: a deterministic reproduction of a use-after-free in the
// stack's receive path, found by echo_tcp (200 connections crash the stack
// in lwIP's tcp_receive).
//
// Engine::input (servers/stack/engine.cc) wraps each received pool buffer in
// an RxPbuf kept in a std::vector indexed by buffer, and grows that vector
// (resize) the first time it sees a higher index. Growing moves every RxPbuf,
// but lwIP may still hold pbuf pointers to the old ones: an out-of-order
// segment waits on the pcb's ooseq queue. The next in-order segment makes
// lwIP walk that queue and it touches freed memory.
//
// The test plays the driver (RogueDriver), so it picks the buffer indices:
//   1. an ARP request in a high buffer (the vector grows past 128 KiB, so
//      glibc maps it and unmaps it when it moves),
//   2. a TCP handshake with mknet-echo,
//   3. data bytes 100..199 out of order, in a low buffer (held on ooseq),
//   4. an echo request in the highest lent buffer (the vector moves),
//   5. data bytes 0..99, in order (lwIP merges the ooseq segment).
// Linux or a correct stack echoes all 200 bytes back. The test asserts that
// the stack is alive and that exactly those bytes come back.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <map>
#include <thread>
#include <vector>

#include "libnet/frame.h"
#include "tests/integration/rogue_driver.h"
#include "tests/integration/testbed.h"

namespace mknet::itest {
namespace {

using Frame = std::vector<uint8_t>;

struct Peer {
  net::FrameBuilder fb;
  uint16_t port = 40000;
  uint32_t seq = 1000;  // our ISN + 1 after the SYN
  uint32_t ack = 0;

  Frame tcp(uint8_t flags, uint32_t seqNo, std::span<const uint8_t> payload) const {
    Frame f(1514);
    auto n = fb.buildTcp(f,
                         net::TcpBuilder{.srcPort = port, .dstPort = 7, .seqNumber = seqNo, .ackNumber = ack,
                                         .flags = flags, .window = 65535},
                         net::ConstBytes(payload.data(), payload.size()));
    f.resize(n ? *n : 0);
    return f;
  }
};

// TCP segments from the stack to the peer's port among `frames`.
std::vector<net::ParsedFrame> tcpFrom(const std::vector<Frame>& frames, uint16_t port) {
  std::vector<net::ParsedFrame> out;
  for (const auto& f : frames) {
    auto p = net::parseFrame(net::ConstBytes(f.data(), f.size()));
    if (p && p->tcp && p->tcp->dstPort() == port) out.push_back(*p);
  }
  return out;
}

// The scenario above; without step 4 when !growTable (the control case).
void runScenario(bool growTable) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  Process echo = tb.spawnApp({Bin::echo(), "server", "--port", "7"}, "echo.log");
  ASSERT_TRUE(echo.waitForLine("listen=", 10s)) << echo.output();
  ASSERT_TRUE(tb.stopDriver());

  RogueDriver rogue(tb);
  ASSERT_TRUE(rogue.ok()) << rogue.error();
  std::vector<uint32_t> lent = rogue.lent();
  ASSERT_GE(lent.size(), 8u);
  const uint32_t highest = lent.back();
  // A high buffer well below the highest: 2800 RxPbufs are > 128 KiB.
  auto it = std::lower_bound(lent.begin(), lent.end(), std::min<uint32_t>(2800, highest - 1));
  ASSERT_TRUE(it != lent.end() && *it < highest) << "no lent buffer between 2800 and " << highest;
  const uint32_t high = *it;
  const uint32_t low1 = lent[0], low2 = lent[1], low3 = lent[2], low4 = lent[3];  // lent[4]: the control
  record("rx_buffer_growth_indices", std::to_string(low1) + " " + std::to_string(high) + " " +
                                         std::to_string(highest));

  const auto peerMac = *net::MacAddress::parse("02:00:00:00:00:77");
  const auto peerIp = *net::Ipv4Address::parse("198.18." + std::to_string(tb.subnet()) + ".77");
  const auto stackMac = *net::MacAddress::parse(tb.mac());
  const auto stackIp = *net::Ipv4Address::parse(tb.mknetIp());
  Peer peer{net::FrameBuilder{.srcMac = peerMac, .dstMac = stackMac, .srcIp = peerIp, .dstIp = stackIp}};

  // 1. ARP request in a high buffer: the stack learns our MAC and answers.
  Frame arp(64);
  auto an = peer.fb.buildArp(arp, net::ArpBuilder::request(peerMac, peerIp, stackIp));
  ASSERT_TRUE(an);
  arp.resize(*an);
  ASSERT_TRUE(rogue.pushFrame(high, arp));
  (void)rogue.takeTx(1s);

  // 2. Handshake.
  ASSERT_TRUE(rogue.pushFrame(low1, peer.tcp(net::kTcpFlagSyn, peer.seq - 1, {})));
  std::optional<uint32_t> synAck;
  for (auto until = std::chrono::steady_clock::now() + 3s; !synAck && std::chrono::steady_clock::now() < until;)
    for (auto& p : tcpFrom(rogue.takeTx(200ms), peer.port))
      if (p.tcp->hasFlags(net::kTcpFlagSyn | net::kTcpFlagAck)) synAck = p.tcp->seqNumber();
  ASSERT_TRUE(synAck) << "no SYN-ACK from the stack";
  peer.ack = *synAck + 1;
  ASSERT_TRUE(rogue.pushFrame(low2, peer.tcp(net::kTcpFlagAck, peer.seq, {})));
  std::this_thread::sleep_for(200ms);  // mknet-echo accepts

  std::array<uint8_t, 200> data;
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7 + 3);

  // 3. Bytes 100..199 first: out of order, lwIP keeps the pbuf on ooseq.
  ASSERT_TRUE(rogue.pushFrame(low3, peer.tcp(net::kTcpFlagAck | net::kTcpFlagPsh, peer.seq + 100,
                                             std::span(data).subspan(100))));
  (void)rogue.takeTx(300ms);  // the duplicate ACK

  // 4. A frame in the highest buffer: the stack's RxPbuf table grows.
  std::array<uint8_t, 32> ping{};
  Frame icmp(1514);
  auto in = peer.fb.buildIcmp(icmp, net::IcmpBuilder::echoRequest(9, 1), ping);
  ASSERT_TRUE(in);
  icmp.resize(*in);
  ASSERT_TRUE(rogue.pushFrame(growTable ? highest : lent[4], icmp));
  (void)rogue.takeTx(300ms);

  // 5. Bytes 0..99: in order; lwIP appends the queued segment.
  ASSERT_TRUE(rogue.pushFrame(low4, peer.tcp(net::kTcpFlagAck | net::kTcpFlagPsh, peer.seq,
                                             std::span(data).first(100))));

  // The echo comes back: collect the stack's data by sequence number.
  std::map<uint32_t, std::vector<uint8_t>> echoed;
  size_t bytes = 0;
  for (auto until = std::chrono::steady_clock::now() + 3s;
       bytes < data.size() && std::chrono::steady_clock::now() < until && tb.stack().running();) {
    for (auto& p : tcpFrom(rogue.takeTx(200ms), peer.port)) {
      auto pl = p.tcp->payload();
      if (pl.empty() || echoed.count(p.tcp->seqNumber())) continue;
      echoed[p.tcp->seqNumber()] = std::vector<uint8_t>(pl.begin(), pl.end());
      bytes += pl.size();
    }
  }
  ASSERT_TRUE(tb.stack().running()) << "mknet-stack died (status " << tb.stack().wait(1s).value_or(-1)
                                    << ": 139 = SIGSEGV) after an out-of-order segment met a new highest buffer";
  std::vector<uint8_t> got;
  for (auto& [seq, bytesAt] : echoed) got.insert(got.end(), bytesAt.begin(), bytesAt.end());
  EXPECT_EQ(got, std::vector<uint8_t>(data.begin(), data.end())) << "the echo is not the 200 bytes sent";
}

TEST(RxBufferGrowth, OutOfOrderSegmentSurvivesAHigherBufferIndex) { runScenario(true); }

// Control: the same frames, with step 4 in a low buffer instead.
TEST(RxBufferGrowth, OutOfOrderSegmentIsMergedControl) { runScenario(false); }

}  // namespace
}  // namespace mknet::itest
