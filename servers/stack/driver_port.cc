#include "servers/stack/driver_port.h"

#include <spdlog/spdlog.h>

namespace mknet::stack {

using ipc::Descriptor;

Result<std::unique_ptr<DriverPort>> DriverPort::create(const ipc::PoolConfig& config,
                                                       const ipc::Doorbell& stackBell) {
  auto region = ipc::PoolRegion::create(config);
  if (!region) return region.error();
  auto toDriver = ipc::Doorbell::create();
  if (!toDriver) return toDriver.error();
  auto dup = stackBell.dupFd();
  if (!dup) return dup.error();
  return std::unique_ptr<DriverPort>(new DriverPort(std::move(region).value(), std::move(toDriver).value(),
                                                    ipc::Doorbell(std::move(dup).value())));
}

DriverPort::DriverPort(ipc::PoolRegion region, ipc::Doorbell toDriver, ipc::Doorbell toStack)
    : region_(std::move(region)), toDriver_(std::move(toDriver)), toStack_(std::move(toStack)),
      alloc_(region_.config().bufferCount), owner_(region_.config().bufferCount, Owner::kFree) {}

Result<DriverAttachment> DriverPort::attach(const std::string& name, uint32_t pid) {
  if (attached_) detach("replaced by a new registration");
  region_.resetRings();
  const uint32_t cap = region_.config().ringCapacity;
  rxFree_ = ipc::DescriptorProducer(region_.rxFree(), cap);
  rxActive_ = ipc::DescriptorConsumer(region_.rxActive(), cap);
  txActive_ = ipc::DescriptorProducer(region_.txActive(), cap);
  txFree_ = ipc::DescriptorConsumer(region_.txFree(), cap);
  toDriver_.drain();

  DriverAttachment a;
  auto r = region_.region().dupFd();
  if (!r) return r.error();
  auto d = toDriver_.dupFd();
  if (!d) return d.error();
  auto s = toStack_.dupFd();
  if (!s) return s.error();
  a.region = std::move(r).value();
  a.toDriver = std::move(d).value();
  a.toStack = std::move(s).value();
  a.config = region_.config();

  attached_ = true;
  name_ = name;
  pid_ = pid;
  ++registrations_;
  ++counters_.attaches;
  // Unconfirmed frames of the previous driver go first, in their order.
  size_t requeued = txPending_.size();
  counters_.txRequeued += requeued;
  refillRxFree();
  flushTx();
  if (engine_ != nullptr) {
    engine_->setLink(true);
    if (registrations_ > 1) engine_->kickConnections();
  }
  spdlog::info("driver {} (pid {}) attached: {} buffers lent, {} frames sent again", name, pid,
               region_.config().bufferCount - alloc_.available(), requeued);
  return a;
}

void DriverPort::detach(const char* why) {
  if (!attached_) return;
  attached_ = false;
  ++counters_.detaches;
  if (engine_ != nullptr) engine_->setLink(false);
  // Frames on txActive the driver never confirmed go out again first, in
  // their order, when the next driver attaches (duplication over loss).
  for (auto it = txInFlight_.rbegin(); it != txInFlight_.rend(); ++it) {
    owner_[it->index] = Owner::kTxQueued;
    txPending_.push_front(*it);
  }
  txInFlight_.clear();
  // Everything else the driver held (rxFree, frames it was receiving into)
  // is free again.
  uint32_t reclaimed = 0;
  for (uint32_t i = 0; i < owner_.size(); ++i) {
    if (owner_[i] == Owner::kDriverRx) {
      owner_[i] = Owner::kFree;
      alloc_.release(i);
      ++reclaimed;
    }
  }
  spdlog::warn("driver {} detached ({}): {} rx buffers reclaimed, {} frames kept to send again", name_, why,
               reclaimed, txPending_.size());
}

void DriverPort::corrupt(const char* which) {
  ++counters_.corruptRings;
  spdlog::error("driver {} broke the {} ring; dropping its attachment", name_, which);
  detach("corrupt ring");
}

void DriverPort::ringDriver() {
  toDriver_.ring();
  needRing_ = false;
}

void DriverPort::refillRxFree() {
  if (!attached_) return;
  std::array<Descriptor, 64> burst;
  for (;;) {
    uint32_t n = 0;
    // Keep a quarter of the pool for transmit so received data can always be answered.
    while (n < burst.size() && alloc_.available() > region_.config().bufferCount / 4) {
      uint32_t i = *alloc_.allocate();
      owner_[i] = Owner::kDriverRx;
      burst[n++] = Descriptor{i, ipc::kBufferSize, 0, 0};
    }
    if (n == 0) return;
    auto pushed = rxFree_.push(std::span<const Descriptor>(burst.data(), n));
    if (!pushed) return corrupt("rxFree");
    for (uint32_t k = *pushed; k < n; ++k) {  // ring full: give the rest back
      owner_[burst[k].index] = Owner::kFree;
      alloc_.release(burst[k].index);
    }
    if (*pushed != 0 && rxFree_.consumerNeedsWakeup()) needRing_ = true;
    if (*pushed < n) return;
  }
}

void DriverPort::flushTx() {
  if (!attached_ || txPending_.empty()) return;
  std::array<Descriptor, 64> burst;
  while (!txPending_.empty()) {
    uint32_t n = 0;
    for (; n < burst.size() && n < txPending_.size(); ++n) burst[n] = txPending_[n];
    auto pushed = txActive_.push(std::span<const Descriptor>(burst.data(), n));
    if (!pushed) return corrupt("txActive");
    for (uint32_t k = 0; k < *pushed; ++k) {
      owner_[burst[k].index] = Owner::kDriverTx;
      txInFlight_.push_back(burst[k]);
      txPending_.pop_front();
    }
    if (*pushed != 0 && txActive_.consumerNeedsWakeup()) needRing_ = true;
    if (*pushed < n) break;
  }
}

uint32_t DriverPort::poll(uint32_t budget) {
  if (!attached_) return 0;
  uint32_t work = 0;
  const ipc::PacketPool& pool = region_.pool();

  // Transmitted buffers come back, in the order they were sent.
  std::array<Descriptor, 64> burst;
  auto done = txFree_.pop(burst);
  if (!done) {
    corrupt("txFree");
    return 1;
  }
  for (uint32_t k = 0; k < *done; ++k) {
    const Descriptor& d = burst[k];  // our own copy, validated before use
    if (d.index >= owner_.size() || owner_[d.index] != Owner::kDriverTx || txInFlight_.empty() ||
        txInFlight_.front().index != d.index) {
      ++counters_.badDescriptors;
      continue;
    }
    txInFlight_.pop_front();
    owner_[d.index] = Owner::kFree;
    alloc_.release(d.index);
  }
  work += *done;

  // Received frames: validate, then into lwIP without a copy.
  uint32_t rxBudget = budget;
  while (rxBudget > 0 && attached_) {
    uint32_t want = rxBudget < burst.size() ? rxBudget : static_cast<uint32_t>(burst.size());
    auto got = rxActive_.pop(std::span<Descriptor>(burst.data(), want));
    if (!got) {
      corrupt("rxActive");
      break;
    }
    if (*got == 0) break;
    rxBudget -= *got;
    work += *got;
    for (uint32_t k = 0; k < *got; ++k) {
      const Descriptor d = burst[k];
      auto bytes = pool.bytes(d);
      if (!bytes || owner_[d.index] != Owner::kDriverRx) {
        ++counters_.badDescriptors;  // not a buffer the driver was lent: ignore it
        continue;
      }
      net::FrameError why{};
      const bool l4ByDriver = (d.flags & ipc::kDescFlagL4ChecksumByDriver) != 0;
      auto frame = net::parseFrame(
          net::ConstBytes(reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size()), &why, l4ByDriver);
      if (!frame) {
        ++counters_.rxBad[static_cast<size_t>(why)];
        owner_[d.index] = Owner::kFree;
        alloc_.release(d.index);
        continue;
      }
      if (frame->ipv4) {
        // A source that is us or loopback: lwIP would answer itself, which
        // it can't (see engine_lwip.h, isLocal). Martians are dropped.
        uint32_t src = frame->ipv4->src().value();
        if (src == engine_->ip() || (src >> 24) == 127) {
          ++counters_.rxMartian;
          owner_[d.index] = Owner::kFree;
          alloc_.release(d.index);
          continue;
        }
      }
      ++counters_.rxFrames;
      counters_.rxBytes += d.length;
      if (l4ByDriver && (frame->tcp || frame->udp)) ++counters_.rxL4ChecksumByDriver;
      if (engineHeld_ >= region_.config().bufferCount / 4) {
        // lwIP holds many received buffers (out-of-order segments, data it
        // could not deliver yet): copy instead of lending more, so the driver
        // always gets buffers back and the retransmission that fills the gap
        // can still be received.
        engine_->inputCopy(bytes->data(), d.length);
        owner_[d.index] = Owner::kFree;
        alloc_.release(d.index);
        continue;
      }
      owner_[d.index] = Owner::kEngine;
      ++engineHeld_;
      engine_->input(d.index, pool.buffer(d.index)->data(), d.length, ipc::kBufferSize);
    }
  }
  refillRxFree();
  flushTx();
  if (needRing_) ringDriver();
  return work;
}

bool DriverPort::prepareSleep() {
  if (!attached_) return true;
  if (!rxActive_.prepareSleep()) return false;
  if (!txFree_.prepareSleep()) {
    rxActive_.cancelSleep();
    return false;
  }
  return true;
}

void DriverPort::cancelSleep() {
  if (!attached_) return;
  rxActive_.cancelSleep();
  txFree_.cancelSleep();
}

std::span<std::byte> DriverPort::beginFrame() {
  if (!attached_ && txPending_.size() >= region_.config().bufferCount / 4) {
    ++counters_.txDroppedNoDriver;  // no driver for a while: don't hoard the pool
    return {};
  }
  auto i = alloc_.allocate();
  if (!i) return {};
  building_ = *i;
  owner_[*i] = Owner::kTxBuilding;
  return *region_.pool().buffer(*i);
}

void DriverPort::endFrame(size_t length) {
  uint32_t i = building_;
  building_ = UINT32_MAX;
  if (length == 0) {
    owner_[i] = Owner::kFree;
    alloc_.release(i);
    return;
  }
  ++counters_.txFrames;
  counters_.txBytes += length;
  owner_[i] = Owner::kTxQueued;
  txPending_.push_back(Descriptor{i, static_cast<uint32_t>(length), 0, 0});
  // Run to completion: push right away so a reply leaves in the same round.
  flushTx();
  if (needRing_) ringDriver();
}

void DriverPort::releaseRxBuffer(uint32_t index) {
  --engineHeld_;
  owner_[index] = Owner::kFree;
  alloc_.release(index);
}

}  // namespace mknet::stack
