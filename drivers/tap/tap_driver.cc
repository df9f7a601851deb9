#include "drivers/tap/tap_driver.h"

#include <poll.h>
#include <sched.h>

#include <array>
#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

namespace mknet::drivers {

using ipc::Descriptor;
using ipc::DescriptorError;

const char* toString(TapDriverStop s) {
  switch (s) {
    case TapDriverStop::kStopped:
      return "stopped";
    case TapDriverStop::kRingCorrupt:
      return "ring corrupt";
    case TapDriverStop::kDeviceError:
      return "device error";
  }
  return "?";
}

TapDriver::TapDriver(NicDevice& nic, ipc::PoolRegion& region, const ipc::Doorbell& toDriver,
                     const ipc::Doorbell& toStack, const ipc::Doorbell& control,
                     TapDriverOptions options)
    : nic_(nic), pool_(region.pool()), toDriver_(toDriver), toStack_(toStack), control_(control),
      options_(options),
      // Capacities from our own configuration (the registration answer we
      // checked), never from the shared control blocks.
      rxFree_(region.rxFree(), region.config().ringCapacity),
      rxActive_(region.rxActive(), region.config().ringCapacity),
      txActive_(region.txActive(), region.config().ringCapacity),
      txFree_(region.txFree(), region.config().ringCapacity),
      dropBuffer_(ipc::kBufferSize), coalesce_(nic.offload()) {
  if (options_.burst == 0) options_.burst = 1;
  if (options_.rxStash == 0) options_.rxStash = 1;
  stash_.reserve(options_.rxStash);
  rxOut_.reserve(options_.burst);
  txIn_.reserve(options_.burst);
  pendingTx_.reserve(options_.burst);
  txDone_.reserve(options_.burst);
}

void TapDriver::requestStop() {
  stop_.store(true, std::memory_order_release);
  control_.ring();
}

TapDriverStats TapDriver::stats() const {
  TapDriverStats s;
  s.rxFrames = rxFrames_.get();
  s.rxBytes = rxBytes_.get();
  s.rxDroppedNoBuffer = rxDroppedNoBuffer_.get();
  s.rxDroppedOversize = rxDroppedOversize_.get();
  s.rxDroppedBadOffload = rxDroppedBadOffload_.get();
  s.rxDropped = s.rxDroppedNoBuffer + s.rxDroppedOversize + s.rxDroppedBadOffload;
  s.rxGsoFrames = rxGsoFrames_.get();
  s.rxChecksumsCompleted = rxChecksumsCompleted_.get();
  s.txFrames = txFrames_.get();
  s.txBytes = txBytes_.get();
  s.txGsoFrames = txGsoFrames_.get();
  s.txAcksThinned = txAcksThinned_.get();
  s.txCoalescedFrames = txCoalescedFrames_.get();
  s.txGsoFallbacks = txGsoFallbacks_.get();
  s.txErrors = txErrors_.get();
  s.badDescriptors = badDescriptors_.get();
  s.wakeups = wakeups_.get();
  return s;
}

TapDriverStop TapDriver::run() {
  using Clock = std::chrono::steady_clock;
  Clock::time_point idleSince{};
  bool idle = false;
  for (;;) {
    if (stop_.load(std::memory_order_acquire)) return TapDriverStop::kStopped;
    const uint64_t sentBefore = txFrames_.get();
    auto work = pollOnce();
    if (work && *work > 0) {
      idle = false;
      // Frames just went out: their answers are microseconds away, and the
      // peer they woke (or the stack) may be waiting for this very CPU.
      if (txFrames_.get() != sentBefore) sched_yield();
      continue;
    }
    if (work) {
      // Nothing to do: spin a little (the next frame is often microseconds
      // away), then sleep.
      auto now = Clock::now();
      if (!idle) {
        idle = true;
        idleSince = now;
        continue;
      }
      if (now - idleSince < options_.spin) {
        sched_yield();  // spin, but give the CPU to the stack or the peer if they can run
        continue;
      }
      idle = false;
      if (auto slept = sleep(); slept) continue;
      else work = slept.error();
    }
    TapDriverStop why = deviceFailed_ ? TapDriverStop::kDeviceError : TapDriverStop::kRingCorrupt;
    spdlog::error("{}: data plane stops ({}): {}", nic_.name(), toString(why),
                  work.error().message());
    return why;
  }
}

Result<uint32_t> TapDriver::pollOnce() {
  // Transmit first: when the stack hands us a frame, its answer cannot be
  // on the device yet, and a read that finds nothing costs a system call on
  // the way out (about a microsecond of every request's round trip).
  auto tx = transmit();
  if (!tx) return tx;
  auto rx = receive();
  if (!rx) return rx;
  return *rx + *tx;
}

Result<void> TapDriver::refillStash() {
  if (stash_.size() >= options_.rxStash) return ok();
  Descriptor in[64];
  while (stash_.size() < options_.rxStash) {
    size_t want = std::min<size_t>(options_.rxStash - stash_.size(), std::size(in));
    auto n = rxFree_.pop(std::span<Descriptor>(in, want));
    if (!n) return n.error();
    for (uint32_t i = 0; i < *n; ++i) {
      // Only the index matters on rxFree; the length is ours to set.
      if (in[i].index >= pool_.count()) {
        badDescriptors_.add(1);
        logPeerFault("rxFree", in[i]);
        continue;
      }
      stash_.push_back(in[i]);
    }
    if (*n < want) break;  // rxFree is empty
  }
  return ok();
}

Result<uint32_t> TapDriver::receive() {
  if (auto r = refillStash(); !r) return r.error();
  rxOut_.clear();
  uint32_t work = 0;
  for (uint32_t i = 0; i < options_.burst; ++i) {
    if (stash_.empty()) {
      if (auto r = refillStash(); !r) return r.error();
    }
    if (stash_.empty()) {
      // No buffer anywhere: take the frame off the device anyway, so stale
      // frames don't pile up in the kernel, and count the drop (a
      // super-frame as the frames it carries).
      auto f = nic_.readFrame(dropBuffer_);
      if (!f) {
        deviceFailed_ = true;
        return f.error();
      }
      if (f->length == 0) break;
      uint64_t frames = 1;
      if (f->offload.gso == FrameOffload::Gso::kTcpV4 && f->offload.gsoSize != 0 &&
          f->length > f->offload.hdrLen)
        frames = (f->length - f->offload.hdrLen + f->offload.gsoSize - 1) / f->offload.gsoSize;
      rxDroppedNoBuffer_.add(frames);
      ++work;
      continue;
    }
    Descriptor d = stash_.back();
    auto buf = *pool_.buffer(d.index);  // index checked in refillStash()
    auto f = nic_.readFrame(buf);
    if (!f) {
      deviceFailed_ = true;
      return f.error();
    }
    if (f->length == 0) break;
    ++work;
    if (f->offload.gso == FrameOffload::Gso::kTcpV4) {
      stash_.pop_back();  // receiveGso() puts it back if it does not use it
      if (auto r = receiveGso(d, buf, *f); !r) return r.error();
      continue;
    }
    if (f->offload.gso != FrameOffload::Gso::kNone) {
      rxDroppedBadOffload_.add(1);  // a GSO type we never enabled
      continue;
    }
    if (f->length > buf.size()) {
      rxDroppedOversize_.add(1);  // the buffer stays in the stash
      continue;
    }
    if (f->offload.needsCsum) {
      // TUN_F_CSUM: the kernel left the L4 checksum to us; lwIP verifies
      // every checksum, so complete it here (and tell the stack it need not
      // sum the frame again: kDescFlagL4ChecksumByDriver).
      if (!completeChecksum(buf.first(f->length), f->offload.csumStart, f->offload.csumOffset)) {
        rxDroppedBadOffload_.add(1);
        continue;
      }
      rxChecksumsCompleted_.add(1);
    }
    stash_.pop_back();
    d.length = static_cast<uint32_t>(f->length);
    d.flags = f->offload.needsCsum ? ipc::kDescFlagL4ChecksumByDriver : ipc::kDescFlagNone;
    d.cookie = 0;
    rxOut_.push_back(d);
    rxFrames_.add(1);
    rxBytes_.add(f->length);
  }
  if (auto r = publish(rxActive_, rxOut_.data(), static_cast<uint32_t>(rxOut_.size()), "rxActive");
      !r)
    return r.error();
  return work;
}

Result<void> TapDriver::receiveGso(Descriptor d, std::span<std::byte> buf, const RxFrame& f) {
  SplitFrame frame{ConstByteSpan(buf.data(), std::min(f.length, buf.size())), f.overflow};
  auto plan = validateTcpV4Gso(frame, f.offload, buf.size());
  if (!plan) {
    rxDroppedBadOffload_.add(1);
    stash_.push_back(d);
    return ok();
  }
  // Segment 0 is built in place over the super-frame's head, so the
  // original headers are copied out first.
  std::array<std::byte, kMaxTcpV4Headers> headers;
  std::memcpy(headers.data(), buf.data(), plan->headerLen);
  ConstByteSpan hdr(headers.data(), plan->headerLen);
  rxGsoFrames_.add(1);
  // Segments 1.. first, each into a buffer of its own; their payloads lie
  // beyond segment 0's bytes, which are rewritten last.
  const size_t firstOut = rxOut_.size();
  rxOut_.push_back(d);  // segment 0's slot, filled below
  size_t k = 1;
  for (; k < plan->segments; ++k) {
    if (stash_.empty()) {
      if (auto r = refillStash(); !r) return r.error();
      if (stash_.empty()) break;
    }
    Descriptor s = stash_.back();
    stash_.pop_back();
    size_t len = writeTcpV4Segment(*plan, hdr, frame, k, *pool_.buffer(s.index));
    s.length = static_cast<uint32_t>(len);
    s.flags = ipc::kDescFlagL4ChecksumByDriver;  // writeTcpV4Segment computed it
    s.cookie = 0;
    rxOut_.push_back(s);
    rxFrames_.add(1);
    rxBytes_.add(len);
  }
  // Not enough buffers: the rest is dropped (TCP will send it again).
  if (k < plan->segments) rxDroppedNoBuffer_.add(plan->segments - k);
  size_t len0 = writeTcpV4Segment(*plan, hdr, frame, 0, buf);
  rxOut_[firstOut].length = static_cast<uint32_t>(len0);
  rxOut_[firstOut].flags = ipc::kDescFlagL4ChecksumByDriver;
  rxOut_[firstOut].cookie = 0;
  rxFrames_.add(1);
  rxBytes_.add(len0);
  return ok();
}

Result<uint32_t> TapDriver::transmit() {
  uint32_t work = 0;
  txDone_.clear();
  // Frames the device refused earlier go first, so the order on the wire is
  // the order on txActive; new ones are taken only when those are out.
  if (pendingTx_.empty()) {
    txIn_.resize(options_.burst);
    auto n = txActive_.pop(txIn_);
    if (!n) return n.error();
    work += *n;
    for (uint32_t i = 0; i < *n; ++i) {
      Descriptor d = txIn_[i];  // our copy; validated once, used from here on
      DescriptorError why = DescriptorError::kNone;
      if (pool_.bytes(d, &why)) {
        pendingTx_.push_back(TxEntry{d, false});
        continue;
      }
      badDescriptors_.add(1);
      logPeerFault("txActive", d);
      // A valid index is still the stack's buffer: it goes back on txFree
      // unsent, in its place (the stack expects completions in order). A bad
      // index is no buffer at all and is dropped.
      if (why == DescriptorError::kBadLength) {
        d.length = 0;
        pendingTx_.push_back(TxEntry{d, true});
      }
    }
  }
  size_t done = 0;
  while (done < pendingTx_.size()) {
    size_t n = transmitRun(done);
    if (n == 0) break;  // device full: retry from here later
    done += n;
  }
  pendingTx_.erase(pendingTx_.begin(), pendingTx_.begin() + static_cast<ptrdiff_t>(done));
  work += static_cast<uint32_t>(done);
  if (auto r = publish(txFree_, txDone_.data(), static_cast<uint32_t>(txDone_.size()), "txFree");
      !r)
    return r.error();
  return work;
}

size_t TapDriver::transmitRun(size_t at) {
  const TxEntry& e = pendingTx_[at];
  if (e.refused) {
    txDone_.push_back(e.desc);
    return 1;
  }
  auto bytes = *pool_.bytes(e.desc);  // validated when popped
  if (coalesce_ && at + 1 < pendingTx_.size() && !pendingTx_[at + 1].refused &&
      supersededAck(bytes, *pool_.bytes(pendingTx_[at + 1].desc))) {
    // The next frame acknowledges more on the same connection: this ACK
    // would tell the peer nothing (one write() and one pass of Linux's TCP
    // receive saved per ACK on a bulk stream towards mknet).
    txAcksThinned_.add(1);
    txDone_.push_back(e.desc);
    return 1;
  }
  size_t count = 1;
  if (coalesce_ && coalescer_.start(bytes)) {
    while (at + count < pendingTx_.size()) {
      const TxEntry& next = pendingTx_[at + count];
      if (next.refused || !coalescer_.append(*pool_.bytes(next.desc))) break;
      ++count;
    }
  }
  if (count > 1) {
    auto pieces = coalescer_.finish();
    auto r = nic_.writeGather(pieces, coalescer_.offload());
    if (r && !*r) return 0;  // EAGAIN: the whole run again later
    if (r) {
      gsoRefusalsInRow_ = 0;
      txGsoFrames_.add(1);
      txCoalescedFrames_.add(count);
      txFrames_.add(count);
      for (size_t k = 0; k < count; ++k) {
        txBytes_.add(pendingTx_[at + k].desc.length);
        txDone_.push_back(pendingTx_[at + k].desc);
      }
      return count;
    }
    // The device refused the super-frame: not the frames' fault, so send
    // this one alone (the rest follow, one run at a time) rather than drop
    // them all.
    txGsoFallbacks_.add(1);
    logTxError(r.error());
    if (++gsoRefusalsInRow_ >= kMaxGsoRefusals) {
      coalesce_ = false;
      spdlog::warn("{}: the device refused {} super-frames in a row; sending frames one by one "
                   "from now on", nic_.name(), gsoRefusalsInRow_);
    }
  }
  auto r = nic_.writeFrame(bytes);
  if (r && !*r) return 0;
  if (!r) {
    txErrors_.add(1);
    logTxError(r.error());
  } else {
    txFrames_.add(1);
    txBytes_.add(e.desc.length);
  }
  txDone_.push_back(e.desc);
  return 1;
}

Result<void> TapDriver::publish(ipc::DescriptorProducer& ring, const Descriptor* d, uint32_t n,
                                const char* what) {
  if (n == 0) return ok();
  auto pushed = ring.push(std::span<const Descriptor>(d, n));
  if (!pushed) return pushed.error();
  // Each ring holds every buffer of the pool, so it can only be full if the
  // stack handed out a buffer twice or never consumes: a broken contract.
  if (*pushed != n)
    return makeError(EPROTO, std::string(what) + " is full: the stack broke the ring contract");
  if (ring.consumerNeedsWakeup()) toStack_.ring();
  return ok();
}

Result<void> TapDriver::sleep() {
  // sDDF's double check: announce the sleep in each ring we consume, then
  // look again; the stack rings toDriver only for a consumer that announced.
  if (!txActive_.prepareSleep()) return ok();
  // rxFree matters only when we have no buffer to receive into.
  const bool wantBuffers = stash_.empty();
  if (wantBuffers && !rxFree_.prepareSleep()) {
    txActive_.cancelSleep();
    return ok();
  }
  short deviceEvents = 0;
  if (!stash_.empty()) deviceEvents |= POLLIN;  // no buffer: let the kernel queue frames
  if (!pendingTx_.empty()) deviceEvents |= POLLOUT;
  struct pollfd fds[3] = {
      {control_.fd(), POLLIN, 0},
      {toDriver_.fd(), POLLIN, 0},
      {nic_.pollFd(), deviceEvents, 0},  // POLLERR/POLLHUP are reported regardless
  };
  int r = ::poll(fds, 3, -1);
  int err = errno;
  txActive_.cancelSleep();
  if (wantBuffers) rxFree_.cancelSleep();
  wakeups_.add(1);
  if (r < 0) {
    if (err == EINTR) return ok();
    deviceFailed_ = true;
    return makeError(err, "poll");
  }
  if ((fds[0].revents & POLLIN) != 0) control_.drain();
  if ((fds[1].revents & POLLIN) != 0) toDriver_.drain();
  if ((fds[2].revents & (POLLERR | POLLHUP | POLLNVAL)) != 0) {
    deviceFailed_ = true;
    return makeError(EIO, nic_.name() + ": the device reports an error or hang-up");
  }
  return ok();
}

void TapDriver::logTxError(const Error& e) {
  int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
  if (now - lastLogNs_ < 1'000'000'000) {
    ++suppressedLogs_;
    return;
  }
  spdlog::warn("{}: transmit failed: {} (+{} similar messages suppressed)", nic_.name(),
               e.message(), suppressedLogs_);
  lastLogNs_ = now;
  suppressedLogs_ = 0;
}

void TapDriver::logPeerFault(const char* what, const Descriptor& d) {
  int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
  if (now - lastLogNs_ < 1'000'000'000) {
    ++suppressedLogs_;
    return;
  }
  spdlog::warn("{}: bad descriptor on {} (index {}, length {}; pool has {} buffers of {} bytes); "
               "dropped (+{} similar messages suppressed)",
               nic_.name(), what, d.index, d.length, pool_.count(), ipc::kBufferSize,
               suppressedLogs_);
  lastLogNs_ = now;
  suppressedLogs_ = 0;
}

}  // namespace mknet::drivers
