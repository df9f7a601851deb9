// FakeNic: an in-memory NicDevice for data-plane tests. Frames to "receive"
// are queued by the test (with offload metadata if wanted); frames the driver
// writes are recorded (gathered pieces joined, with their metadata). Faults
// can be injected: EAGAIN or an error on chosen writes, a failing read.
// Thread-safe: the driver runs on its own thread.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <deque>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "drivers/tap/nic_device.h"
#include "ipc/unique_fd.h"

namespace mknet::drivers::test {

using Frame = std::vector<std::byte>;

class FakeNic final : public NicDevice {
 public:
  // `offload`: what offload() reports (a TAP opened with virtio-net headers).
  explicit FakeNic(bool offload = false)
      : efd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)), offload_(offload) {}

  // Queues frames for readFrame(), atomically (all become visible at once).
  void inject(std::vector<Frame> frames) {
    std::lock_guard lock(mu_);
    for (auto& f : frames) rx_.push_back({std::move(f), FrameOffload{}});
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(efd_.get(), &one, sizeof one);
  }
  void inject(Frame f) {
    std::vector<Frame> v;
    v.push_back(std::move(f));
    inject(std::move(v));
  }
  // One frame with offload metadata (a super-frame or a partial checksum).
  void injectOffload(Frame f, const FrameOffload& offload) {
    std::lock_guard lock(mu_);
    rx_.push_back({std::move(f), offload});
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(efd_.get(), &one, sizeof one);
  }
  size_t pendingRx() {
    std::lock_guard lock(mu_);
    return rx_.size();
  }
  std::vector<Frame> written() {
    std::lock_guard lock(mu_);
    return written_;
  }
  // The metadata of each written frame, in the order of written().
  std::vector<FrameOffload> writtenOffload() {
    std::lock_guard lock(mu_);
    return writtenOffload_;
  }
  size_t writtenCount() {
    std::lock_guard lock(mu_);
    return written_.size();
  }
  // Write attempts (counted from 0, retries included) that report EAGAIN or fail.
  void eagainOnAttempts(std::set<size_t> attempts) {
    std::lock_guard lock(mu_);
    eagainAt_ = std::move(attempts);
  }
  void failOnAttempts(std::set<size_t> attempts) {
    std::lock_guard lock(mu_);
    failAt_ = std::move(attempts);
  }
  void failReads() {
    std::lock_guard lock(mu_);
    readsFail_ = true;
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(efd_.get(), &one, sizeof one);
  }

  // The device calls in order: 'r' per readFrame, 'w' per write.
  std::string calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }

  Result<RxFrame> readFrame(std::span<std::byte> buf) override {
    std::lock_guard lock(mu_);
    calls_ += 'r';
    if (readsFail_) return makeError(EBADFD, "fake device gone");
    if (rx_.empty()) return RxFrame{};
    auto [f, offload] = std::move(rx_.front());
    rx_.pop_front();
    if (rx_.empty()) {
      uint64_t v;
      [[maybe_unused]] ssize_t n = ::read(efd_.get(), &v, sizeof v);
    }
    size_t head = std::min(buf.size(), f.size());
    std::memcpy(buf.data(), f.data(), head);
    RxFrame r;
    r.length = f.size();
    r.offload = offload;
    if (f.size() > buf.size()) {
      overflow_.assign(f.begin() + static_cast<ptrdiff_t>(buf.size()), f.end());
      r.overflow = overflow_;
    }
    return r;
  }

  Result<bool> writeGather(std::span<const std::span<const std::byte>> pieces,
                           const FrameOffload& offload) override {
    std::lock_guard lock(mu_);
    calls_ += 'w';
    size_t attempt = attempts_++;
    if (eagainAt_.count(attempt) != 0) return false;
    if (failAt_.count(attempt) != 0) return makeError(EINVAL, "fake write refused");
    if (!offload_ && !(offload == FrameOffload{}))
      return makeError(EINVAL, "offload metadata on a device without offload");
    if (offload.gso != FrameOffload::Gso::kNone && failGso_)
      return makeError(EINVAL, "fake device refuses super-frames");
    Frame f;
    for (const auto& p : pieces) f.insert(f.end(), p.begin(), p.end());
    written_.push_back(std::move(f));
    writtenOffload_.push_back(offload);
    return true;
  }
  // Before the driver starts: what offload() reports.
  void setOffload(bool on) { offload_ = on; }
  // Every super-frame write fails (as a kernel that refuses GSO would).
  void failSuperFrames() {
    std::lock_guard lock(mu_);
    failGso_ = true;
  }
  bool offload() const override { return offload_; }

  int pollFd() const override { return efd_.get(); }
  const std::string& name() const override { return name_; }
  net::MacAddress mac() const override { return net::MacAddress({0x02, 0, 0, 0, 0, 1}); }
  uint32_t mtu() const override { return 1500; }
  bool linkUp() const override { return true; }

 private:
  std::mutex mu_;
  ipc::UniqueFd efd_;  // readable while rx_ is non-empty (or reads fail)
  std::deque<std::pair<Frame, FrameOffload>> rx_;
  std::string calls_;
  Frame overflow_;  // the part of the last frame read that did not fit the buffer
  std::vector<Frame> written_;
  std::vector<FrameOffload> writtenOffload_;
  bool offload_ = false;
  bool failGso_ = false;
  std::set<size_t> eagainAt_, failAt_;
  size_t attempts_ = 0;
  bool readsFail_ = false;
  std::string name_ = "fake0";
};

}  // namespace mknet::drivers::test
