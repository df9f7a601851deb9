// DriverPort with the real lwIP engine and no processes: the test plays the
// driver on the four rings, byte for byte.
#include "servers/stack/driver_port.h"

#include <array>
#include <vector>

#include <gtest/gtest.h>

#include "libnet/frame.h"

namespace mknet::stack {
namespace {

using ipc::Descriptor;
using net::Ipv4Address;
using net::MacAddress;

constexpr uint32_t kBuffers = 256;
const MacAddress kStackMac({0x02, 0x6d, 0x6b, 0, 0, 2});
const MacAddress kPeerMac({0x02, 0x11, 0x22, 0x33, 0x44, 0x55});
const Ipv4Address kStackIp = Ipv4Address::fromOctets(198, 18, 9, 2);
const Ipv4Address kPeerIp = Ipv4Address::fromOctets(198, 18, 9, 1);

// One Engine per process (lwIP is global), shared by the tests in order.
struct World {
  World() {
    bell = std::move(ipc::Doorbell::create()).value();
    ipc::PoolConfig pc{kBuffers, kBuffers};
    port = std::move(DriverPort::create(pc, bell)).value();
    EngineConfig ec;
    ec.ip = kStackIp.value();
    ec.netmask = 0xffffff00u;
    ec.mac = kStackMac.bytes();
    ec.rxBuffers = kBuffers;
    engine = std::make_unique<Engine>(ec, *port);
    port->setEngine(engine.get());
  }
  ipc::Doorbell bell;
  std::unique_ptr<DriverPort> port;
  std::unique_ptr<Engine> engine;
};

World& world() {
  static World* w = new World;
  return *w;
}

// The driver's side of an attachment.
struct FakeDriver {
  explicit FakeDriver(DriverAttachment a)
      : region(std::move(ipc::PoolRegion::attach(std::move(a.region), a.config)).value()),
        rxFree(region.rxFree(), a.config.ringCapacity), rxActive(region.rxActive(), a.config.ringCapacity),
        txActive(region.txActive(), a.config.ringCapacity), txFree(region.txFree(), a.config.ringCapacity) {}

  // Receives `frame` into a buffer from rxFree and publishes it.
  void deliver(std::span<const uint8_t> frame) {
    Descriptor d;
    ASSERT_EQ(*rxFree.pop({&d, 1}), 1u) << "no rx buffer lent";
    auto buf = region.pool().buffer(d.index);
    ASSERT_TRUE(buf);
    std::memcpy(buf->data(), frame.data(), frame.size());
    d.length = static_cast<uint32_t>(frame.size());
    ASSERT_EQ(*rxActive.push(d), 1u);
  }
  // Pops every frame on txActive (copies), optionally confirming them.
  std::vector<std::vector<uint8_t>> transmitted(bool confirm = true) {
    std::vector<std::vector<uint8_t>> out;
    Descriptor d;
    while (*txActive.pop({&d, 1}) == 1) {
      auto bytes = region.pool().bytes(d);
      EXPECT_TRUE(bytes);
      auto* p = reinterpret_cast<const uint8_t*>(bytes->data());
      out.emplace_back(p, p + bytes->size());
      if (confirm) {
        EXPECT_EQ(*txFree.push(d), 1u);
      }
    }
    return out;
  }

  ipc::PoolRegion region;
  ipc::DescriptorConsumer rxFree;
  ipc::DescriptorProducer rxActive;
  ipc::DescriptorConsumer txActive;
  ipc::DescriptorProducer txFree;
};

// Attaches a fake driver and takes what the stack sends as soon as the link
// is up (a gratuitous ARP, and frames a previous driver left unconfirmed).
std::unique_ptr<FakeDriver> attachDriver(World& w, uint32_t pid) {
  auto a = w.port->attach("fake0", pid);
  EXPECT_TRUE(a) << a.error().message();
  auto drv = std::make_unique<FakeDriver>(std::move(a).value());
  drv->transmitted();
  w.port->poll(64);  // takes the confirmations back
  return drv;
}

std::vector<uint8_t> arpRequest() {
  std::vector<uint8_t> f(64);
  net::FrameBuilder fb{.srcMac = kPeerMac, .dstMac = MacAddress::broadcast(), .srcIp = kPeerIp, .dstIp = kStackIp};
  auto n = fb.buildArp(f, net::ArpBuilder::request(kPeerMac, kPeerIp, kStackIp));
  f.resize(*n);
  return f;
}

std::vector<uint8_t> echoRequest(uint16_t seq, size_t payload) {
  std::vector<uint8_t> data(payload);
  for (size_t i = 0; i < payload; ++i) data[i] = static_cast<uint8_t>(i * 7 + seq);
  std::vector<uint8_t> f(2048);
  net::FrameBuilder fb{.srcMac = kPeerMac, .dstMac = kStackMac, .srcIp = kPeerIp, .dstIp = kStackIp};
  auto n = fb.buildIcmp(f, net::IcmpBuilder::echoRequest(0x4242, seq), data);
  f.resize(*n);
  return f;
}

TEST(DriverPortTest, AttachLendsBuffersAndAnswersArpAndPing) {
  World& w = world();
  auto a = w.port->attach("fake0", 1);
  ASSERT_TRUE(a) << a.error().message();
  FakeDriver drv(std::move(a).value());
  EXPECT_TRUE(w.engine->linkUp());
  // Link up: lwIP announces itself with a gratuitous ARP.
  auto hello = drv.transmitted();
  ASSERT_EQ(hello.size(), 1u);
  auto g = net::parseFrame(hello[0]);
  ASSERT_TRUE(g && g->arp);
  EXPECT_EQ(g->arp->senderIp(), kStackIp);
  EXPECT_EQ(g->arp->targetIp(), kStackIp);
  w.port->poll(64);
  auto lent = drv.rxFree.available();
  ASSERT_TRUE(lent);
  EXPECT_GT(*lent, 0u);
  EXPECT_EQ(*lent + w.port->freeBuffers(), kBuffers);  // every buffer accounted for

  drv.deliver(arpRequest());
  w.port->poll(64);
  auto out = drv.transmitted();
  ASSERT_EQ(out.size(), 1u);
  auto arp = net::parseFrame(out[0]);
  ASSERT_TRUE(arp && arp->arp);
  EXPECT_TRUE(arp->arp->isReply());
  EXPECT_EQ(arp->arp->senderMac(), kStackMac);
  EXPECT_EQ(arp->arp->senderIp(), kStackIp);
  EXPECT_EQ(arp->arp->targetMac(), kPeerMac);

  auto req = echoRequest(1, 1000);
  drv.deliver(req);
  w.port->poll(64);
  out = drv.transmitted();
  ASSERT_EQ(out.size(), 1u);
  auto reply = net::parseFrame(out[0]);
  ASSERT_TRUE(reply && reply->icmp) << "not a valid ICMP frame";
  EXPECT_EQ(reply->icmp->type(), net::kIcmpEchoReply);
  EXPECT_EQ(reply->icmp->sequence(), 1);
  auto sent = net::parseFrame(req);
  ASSERT_EQ(reply->icmp->payload().size(), 1000u);
  EXPECT_TRUE(std::equal(reply->icmp->payload().begin(), reply->icmp->payload().end(),
                         sent->icmp->payload().begin()));
  w.port->poll(64);  // takes txFree back
  EXPECT_EQ(w.port->counters().badDescriptors, 0u);
}

TEST(DriverPortTest, MalformedFramesAreDroppedAndCounted) {
  World& w = world();
  auto d = attachDriver(w, 2);
  FakeDriver& drv = *d;
  auto before = w.port->counters();
  auto good = echoRequest(2, 100);
  auto badSum = good;
  badSum[14 + 10] ^= 0xff;  // IPv4 header checksum
  auto tooLong = good;
  tooLong[14 + 2] = 0x7f;  // total length far beyond the frame
  std::vector<uint8_t> runt(good.begin(), good.begin() + 20);
  auto martian = echoRequest(3, 10);
  // Source = the stack's own address: lwIP must never see it.
  std::vector<uint8_t> m(2048);
  net::FrameBuilder fb{.srcMac = kPeerMac, .dstMac = kStackMac, .srcIp = kStackIp, .dstIp = kStackIp};
  m.resize(*fb.buildIcmp(m, net::IcmpBuilder::echoRequest(1, 1), {}));
  for (auto* f : {&badSum, &tooLong, &runt, &m}) drv.deliver(*f);
  w.port->poll(64);
  const auto& c = w.port->counters();
  EXPECT_EQ(c.rxBad[static_cast<size_t>(net::FrameError::kBadIpChecksum)] -
                before.rxBad[static_cast<size_t>(net::FrameError::kBadIpChecksum)], 1u);
  EXPECT_EQ(c.rxBad[static_cast<size_t>(net::FrameError::kBadIpTotalLength)] -
                before.rxBad[static_cast<size_t>(net::FrameError::kBadIpTotalLength)], 1u);
  EXPECT_EQ(c.rxBad[static_cast<size_t>(net::FrameError::kTooShort)] +
                c.rxBad[static_cast<size_t>(net::FrameError::kBadIpHeaderLength)] -
                before.rxBad[static_cast<size_t>(net::FrameError::kTooShort)] -
                before.rxBad[static_cast<size_t>(net::FrameError::kBadIpHeaderLength)], 1u);
  EXPECT_EQ(c.rxMartian - before.rxMartian, 1u);
  EXPECT_TRUE(drv.transmitted().empty());  // nothing answered
  drv.deliver(good);  // and the stack still serves
  w.port->poll(64);
  EXPECT_EQ(drv.transmitted().size(), 1u);
}

TEST(DriverPortTest, BadDescriptorsAreCountedNotTrusted) {
  World& w = world();
  auto d = attachDriver(w, 3);
  FakeDriver& drv = *d;
  auto before = w.port->counters().badDescriptors;
  Descriptor bad[3] = {{kBuffers + 5, 60, 0, 0}, {0, ipc::kBufferSize + 1, 0, 0}, {0, 60, 0, 0}};
  // {0, 60}: a valid index, but a buffer the driver was never lent (it is
  // the stack's own if it isn't in rxFree) — unless it is; find one that isn't.
  Descriptor lentOne;
  ASSERT_EQ(*drv.rxFree.pop({&lentOne, 1}), 1u);
  bad[2].index = lentOne.index;
  ASSERT_EQ(*drv.rxActive.push(std::span<const Descriptor>(bad, 2)), 2u);
  w.port->poll(64);
  EXPECT_EQ(w.port->counters().badDescriptors - before, 2u);
  // The same valid buffer twice: the second is not the driver's any more.
  Descriptor twice[2] = {lentOne, lentOne};
  twice[0].length = twice[1].length = 10;
  ASSERT_EQ(*drv.rxActive.push(std::span<const Descriptor>(twice, 2)), 2u);
  w.port->poll(64);
  EXPECT_EQ(w.port->counters().badDescriptors - before, 3u);
  // txFree with a buffer that was never transmitted.
  ASSERT_EQ(*drv.txFree.push(Descriptor{7, 0, 0, 0}), 1u);
  w.port->poll(64);
  EXPECT_EQ(w.port->counters().badDescriptors - before, 4u);
  EXPECT_TRUE(w.port->attached());
}

TEST(DriverPortTest, CorruptRingDetachesDriver) {
  World& w = world();
  auto d = attachDriver(w, 4);
  FakeDriver& drv = *d;
  auto before = w.port->counters().corruptRings;
  drv.region.rxActive()->head.store(drv.region.rxActive()->tail.load() + 100000);
  w.port->poll(64);
  EXPECT_EQ(w.port->counters().corruptRings - before, 1u);
  EXPECT_FALSE(w.port->attached());
  EXPECT_FALSE(w.engine->linkUp());
  EXPECT_EQ(w.port->freeBuffers(), kBuffers);  // everything reclaimed (all frames had been confirmed)
}

TEST(DriverPortTest, DeadDriversUnconfirmedFramesAreSentAgain) {
  World& w = world();
  {
    auto d = attachDriver(w, 5);
    FakeDriver& drv = *d;
    drv.deliver(echoRequest(9, 200));
    w.port->poll(64);
    // The driver takes the reply off txActive but dies before confirming it.
    auto lost = drv.transmitted(/*confirm=*/false);
    ASSERT_EQ(lost.size(), 1u);
    w.port->detach("test: driver killed");
  }
  EXPECT_FALSE(w.engine->linkUp());
  FakeDriver next(std::move(w.port->attach("fake0", 6)).value());
  auto again = next.transmitted();
  ASSERT_EQ(again.size(), 2u);  // the unconfirmed reply first (duplication over loss), then the ARP
  auto reply = net::parseFrame(again[0]);
  ASSERT_TRUE(reply && reply->icmp);
  EXPECT_EQ(reply->icmp->sequence(), 9);
  EXPECT_EQ(w.port->counters().txRequeued >= 1, true);
  w.port->poll(64);
  // All buffers are either lent on rxFree or free in the stack again.
  auto lent = next.rxFree.available();
  EXPECT_EQ(*lent + w.port->freeBuffers(), kBuffers);
}

}  // namespace
}  // namespace mknet::stack
