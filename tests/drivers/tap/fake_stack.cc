#include "tests/drivers/tap/fake_stack.h"

#include <poll.h>

#include <array>
#include <cstring>

#include <kj/async-io.h>

#include "ipc/fd_cap.h"
#include "ipc/rpc_server.h"
#include "ipc/schema/admin.capnp.h"
#include "ipc/schema/driver.capnp.h"
#include "libnet/frame.h"

namespace mknet::drivers::test {

namespace {

using ipc::Descriptor;

class SessionImpl final : public schema::DriverSession::Server {
 public:
  SessionImpl(FakeStack& stack, uint64_t generation) : stack_(stack), generation_(generation) {}
  // The connection closed (or the driver dropped its session): it is gone.
  ~SessionImpl() noexcept(false) { stack_.onSessionGone(generation_); }

 protected:
  kj::Promise<void> setLink(SetLinkContext context) override {
    stack_.onSetLink(context.getParams().getUp());
    return kj::READY_NOW;
  }
  kj::Promise<void> reportStats(ReportStatsContext context) override {
    auto s = context.getParams().getStats();
    stack_.onStats(s.getRxFrames(), s.getTxFrames());
    return kj::READY_NOW;
  }

 private:
  FakeStack& stack_;
  uint64_t generation_;
};

class RegistryImpl final : public schema::DriverRegistry::Server {
 public:
  explicit RegistryImpl(FakeStack& stack) : stack_(stack) {}

 protected:
  kj::Promise<void> register_(RegisterContext context) override {
    auto info = context.getParams().getInfo();
    KJ_REQUIRE(info.getAbiVersion() == schema::DRIVER_ABI_VERSION, "driver ABI version mismatch");
    KJ_REQUIRE(info.getMac().size() == 6, "a MAC has 6 bytes");
    RegisteredDriver d;
    d.name = info.getName().cStr();
    d.mac.assign(info.getMac().begin(), info.getMac().end());
    d.mtu = info.getMtu();
    d.linkUp = info.getLinkUp();
    d.pid = info.getPid();
    d.abiVersion = info.getAbiVersion();
    FakeStack::Attachment att = stack_.onRegister(d);
    auto results = context.getResults();
    auto a = results.initAttachment();
    a.setRegion(ipc::makeFdCap(std::move(att.region), "pool-region"));
    a.setContentVersion(ipc::kPoolContentVersion);
    a.setBufferCount(att.bufferCount);
    a.setRingCapacity(att.ringCapacity);
    a.setToDriver(ipc::makeFdCap(std::move(att.toDriver), "doorbell-to-driver"));
    a.setToStack(ipc::makeFdCap(std::move(att.toStack), "doorbell-to-stack"));
    results.setSession(kj::heap<SessionImpl>(stack_, att.generation));
    return kj::READY_NOW;
  }

 private:
  FakeStack& stack_;
};

class StackImpl final : public schema::Stack::Server {
 public:
  explicit StackImpl(FakeStack& stack) : stack_(stack) {}

 protected:
  kj::Promise<void> drivers(DriversContext context) override {
    context.getResults().setRegistry(kj::heap<RegistryImpl>(stack_));
    return kj::READY_NOW;
  }

 private:
  FakeStack& stack_;
};

}  // namespace

FakeStack::FakeStack(FakeStackOptions options) : options_(std::move(options)) {
  auto region = ipc::PoolRegion::create(ipc::PoolConfig{options_.buffers, options_.buffers});
  auto toDriver = ipc::Doorbell::create();
  auto toStack = ipc::Doorbell::create();
  auto wake = ipc::Doorbell::create();
  if (!region || !toDriver || !toStack || !wake) {
    startError_ = "cannot create the pool region or doorbells";
    return;
  }
  region_.emplace(std::move(region).value());
  toDriver_ = std::move(toDriver).value();
  toStack_ = std::move(toStack).value();
  wake_ = std::move(wake).value();
  where_.assign(options_.buffers, Where::kStack);
  reclaimLocked(false);  // sets up the ring ends (no one else runs yet)

  control_ = std::thread([this] { controlThread(); });
  std::unique_lock lock(startMu_);
  startCv_.wait(lock, [this] { return started_; });
  if (startError_.empty()) data_ = std::thread([this] { dataThread(); });
}

FakeStack::~FakeStack() {
  {
    std::lock_guard lock(startMu_);
    if (stopFulfiller_) stopFulfiller_->fulfill();
  }
  if (control_.joinable()) control_.join();
  stopping_.store(true);
  if (wake_.valid()) wake_.ring();
  if (data_.joinable()) data_.join();
}

void FakeStack::controlThread() {
  auto io = kj::setupAsyncIo();
  auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
  auto server = ipc::RpcServer::listen(io, options_.socketPath, kj::heap<StackImpl>(*this));
  {
    std::lock_guard lock(startMu_);
    if (!server) startError_ = server.error().message();
    stopFulfiller_ = kj::mv(paf.fulfiller);
    started_ = true;
  }
  startCv_.notify_all();
  if (!server) return;
  paf.promise.wait(io.waitScope);
  // `server` goes before `io`: every connection and capability is dropped
  // here, on this thread.
}

FakeStackCounters FakeStack::counters() {
  std::lock_guard lock(mu_);
  FakeStackCounters c = counters_;
  c.lentToDriver = 0;
  for (Where w : where_) c.lentToDriver += w != Where::kStack;
  auto inRing = [](ipc::RingControl* r) { return r->head.load() - r->tail.load(); };
  c.heldByDriver = c.lentToDriver - inRing(region_->rxFree()) - inRing(region_->txActive()) -
                   inRing(region_->rxActive()) - inRing(region_->txFree());
  return c;
}

std::optional<RegisteredDriver> FakeStack::lastDriver() {
  std::lock_guard lock(mu_);
  return driver_;
}

bool FakeStack::driverAttached() {
  std::lock_guard lock(mu_);
  return attached_;
}

void FakeStack::corruptTxActive() {
  std::lock_guard lock(mu_);
  ipc::RingControl* c = region_->txActive();
  c->head.store(c->tail.load() + options_.buffers + 1);
  toDriver_.ring();
}

FakeStack::Attachment FakeStack::onRegister(const RegisteredDriver& driver) {
  std::lock_guard lock(mu_);
  // A new instance under the same name: whatever the old one held is ours
  // again (MINIX's reset of both queues before the new driver starts).
  reclaimLocked(attached_);
  ++generation_;
  ++counters_.registrations;
  driver_ = driver;
  mac_ = *net::MacAddress::fromBytes(driver.mac);
  attached_ = true;
  for (uint32_t i = 0; i < options_.buffers; ++i) lendRx(i);
  flushLocked();
  wake_.ring();
  return Attachment{*region_->region().dupFd(), *toDriver_.dupFd(), *toStack_.dupFd(),
                    options_.buffers, options_.buffers, generation_};
}

void FakeStack::onSessionGone(uint64_t generation) {
  std::lock_guard lock(mu_);
  ++counters_.sessionsLost;
  if (generation != generation_ || !attached_) return;  // already replaced
  attached_ = false;
  reclaimLocked(true);
}

void FakeStack::onStats(uint64_t rxFrames, uint64_t txFrames) {
  std::lock_guard lock(mu_);
  ++counters_.statsReports;
  counters_.reportedRxFrames = rxFrames;
  counters_.reportedTxFrames = txFrames;
}

void FakeStack::onSetLink(bool up) {
  std::lock_guard lock(mu_);
  if (driver_) driver_->linkUp = up;
}

void FakeStack::reclaimLocked(bool driverWasAttached) {
  if (driverWasAttached) {
    // Take back what the old driver did hand over, checking it like any
    // other return, then everything it still held.
    Descriptor d[64];
    for (ipc::DescriptorConsumer* ring : {&rxActive_, &txFree_}) {
      Where expect = ring == &rxActive_ ? Where::kRxFree : Where::kTxActive;
      for (;;) {
        auto n = ring->pop(d);
        if (!n) {
          ++counters_.accountingErrors;  // corrupt index from the driver
          break;
        }
        if (*n == 0) break;
        for (uint32_t i = 0; i < *n; ++i) {
          if (d[i].index >= options_.buffers) {
            ++counters_.badDescriptors;
          } else if (where_[d[i].index] != expect) {
            ++counters_.accountingErrors;
          } else {
            where_[d[i].index] = Where::kStack;
          }
        }
      }
    }
    uint64_t n = 0;
    for (Where& w : where_) {
      if (w != Where::kStack) ++n;
      w = Where::kStack;
    }
    ++counters_.reclaims;
    counters_.buffersReclaimed += n;
    counters_.lastReclaimed = n;
  }
  region_->resetRings();
  const uint32_t cap = options_.buffers;
  rxFree_ = ipc::DescriptorProducer(region_->rxFree(), cap);
  rxActive_ = ipc::DescriptorConsumer(region_->rxActive(), cap);
  txActive_ = ipc::DescriptorProducer(region_->txActive(), cap);
  txFree_ = ipc::DescriptorConsumer(region_->txFree(), cap);
  rxFreeOut_.clear();
  txActiveOut_.clear();
}

void FakeStack::lendRx(uint32_t index) {
  where_[index] = Where::kRxFree;
  rxFreeOut_.push_back(Descriptor{index, 0, 0, 0});
}

void FakeStack::lendTx(uint32_t index, uint32_t length) {
  where_[index] = Where::kTxActive;
  txActiveOut_.push_back(Descriptor{index, length, 0, 0});
}

void FakeStack::flushLocked() {
  // Each ring holds every buffer, so these pushes always fit.
  if (!rxFreeOut_.empty()) {
    auto n = rxFree_.push(rxFreeOut_);
    if (!n || *n != rxFreeOut_.size()) ++counters_.accountingErrors;
    rxFreeOut_.clear();
    if (rxFree_.consumerNeedsWakeup()) toDriver_.ring();
  }
  if (!txActiveOut_.empty()) {
    auto n = txActive_.push(txActiveOut_);
    if (!n || *n != txActiveOut_.size()) ++counters_.accountingErrors;
    txActiveOut_.clear();
    if (txActive_.consumerNeedsWakeup()) toDriver_.ring();
  }
}

uint32_t FakeStack::processRings() {
  if (!attached_) return 0;
  Descriptor d[64];
  uint32_t work = 0;
  auto rx = rxActive_.pop(d);
  if (!rx) {
    ++counters_.accountingErrors;
    return 0;
  }
  for (uint32_t i = 0; i < *rx; ++i) {
    ipc::DescriptorError why = region_->pool().check(d[i]);
    if (d[i].index >= options_.buffers) {
      ++counters_.badDescriptors;
      continue;
    }
    if (where_[d[i].index] != Where::kRxFree) {
      ++counters_.accountingErrors;
      continue;
    }
    where_[d[i].index] = Where::kStack;
    if (why != ipc::DescriptorError::kNone) {
      ++counters_.badDescriptors;
      lendRx(d[i].index);
      continue;
    }
    uint32_t reply = answer(d[i].index, d[i].length);
    if (reply != 0)
      lendTx(d[i].index, reply);
    else
      lendRx(d[i].index);
  }
  auto tx = txFree_.pop(d);
  if (!tx) {
    ++counters_.accountingErrors;
    return *rx;
  }
  for (uint32_t i = 0; i < *tx; ++i) {
    if (d[i].index >= options_.buffers) {
      ++counters_.badDescriptors;
      continue;
    }
    if (where_[d[i].index] != Where::kTxActive) {
      ++counters_.accountingErrors;
      continue;
    }
    where_[d[i].index] = Where::kStack;
    lendRx(d[i].index);
  }
  work = *rx + *tx;
  flushLocked();
  return work;
}

uint32_t FakeStack::answer(uint32_t index, uint32_t length) {
  auto buf = *region_->pool().buffer(index);
  net::MutableBytes out(reinterpret_cast<uint8_t*>(buf.data()), buf.size());
  net::FrameError error{};
  auto p = net::parseFrame(out.first(length), &error);
  if (!p) {
    ++counters_.badFrames;
    return 0;
  }
  net::MacAddress dst = p->ethernet.dst();
  if (dst != mac_ && !dst.isBroadcast()) {
    ++counters_.otherFrames;
    return 0;
  }
  if (p->kind == net::FrameKind::kArp && p->arp->isRequest() && p->arp->targetIp() == options_.ip) {
    net::FrameBuilder fb{.srcMac = mac_, .dstMac = p->arp->senderMac()};
    auto reply = net::ArpBuilder::replyTo(*p->arp, mac_);
    std::array<uint8_t, 64> tmp{};
    auto n = fb.buildArp(tmp, reply);
    if (!n) return 0;
    std::memcpy(out.data(), tmp.data(), *n);
    ++counters_.arpReplies;
    return static_cast<uint32_t>(*n);
  }
  if (p->kind == net::FrameKind::kIpv4Icmp && p->ipv4->dst() == options_.ip &&
      p->icmp->type() == net::kIcmpEchoRequest && p->icmp->code() == 0) {
    std::vector<uint8_t> payload(p->icmp->payload().begin(), p->icmp->payload().end());
    const auto& pat = options_.echoPattern;
    if (!pat.empty()) {
      bool good = payload.size() >= 16;
      for (size_t i = 16; good && i < payload.size(); ++i) good = payload[i] == pat[i % pat.size()];
      if (!good) ++counters_.echoPayloadErrors;
    }
    net::FrameBuilder fb{.srcMac = mac_,
                         .dstMac = p->ethernet.src(),
                         .srcIp = options_.ip,
                         .dstIp = p->ipv4->src()};
    auto n = fb.buildIcmp(out, net::IcmpBuilder::echoReply(p->icmp->id(), p->icmp->sequence()),
                          payload);
    if (!n) return 0;
    ++counters_.echoReplies;
    return static_cast<uint32_t>(*n);
  }
  ++counters_.otherFrames;
  return 0;
}

void FakeStack::dataThread() {
  while (!stopping_.load()) {
    uint32_t work;
    {
      std::lock_guard lock(mu_);
      work = processRings();
    }
    if (work != 0) continue;
    bool sleep = true;
    {
      std::lock_guard lock(mu_);
      if (attached_) {
        if (!rxActive_.prepareSleep()) {
          sleep = false;
        } else if (!txFree_.prepareSleep()) {
          rxActive_.cancelSleep();
          sleep = false;
        }
      }
    }
    if (!sleep) continue;
    struct pollfd fds[2] = {{toStack_.fd(), POLLIN, 0}, {wake_.fd(), POLLIN, 0}};
    ::poll(fds, 2, -1);
    toStack_.drain();
    wake_.drain();
    std::lock_guard lock(mu_);
    rxActive_.cancelSleep();
    txFree_.cancelSleep();
  }
}

}  // namespace mknet::drivers::test
