// FakeNic: an in-memory NicDevice for data-plane tests. Frames to "receive"
// are queued by the test; frames the driver writes are recorded. Faults can
// be injected: EAGAIN or an error on chosen writes, a failing read.
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
  FakeNic() : efd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}

  // Queues frames for readFrame(), atomically (all become visible at once).
  void inject(std::vector<Frame> frames) {
    std::lock_guard lock(mu_);
    for (auto& f : frames) rx_.push_back(std::move(f));
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(efd_.get(), &one, sizeof one);
  }
  void inject(Frame f) {
    std::vector<Frame> v;
    v.push_back(std::move(f));
    inject(std::move(v));
  }
  size_t pendingRx() {
    std::lock_guard lock(mu_);
    return rx_.size();
  }
  std::vector<Frame> written() {
    std::lock_guard lock(mu_);
    return written_;
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

  Result<size_t> readFrame(std::span<std::byte> buf) override {
    std::lock_guard lock(mu_);
    if (readsFail_) return makeError(EBADFD, "fake device gone");
    if (rx_.empty()) return size_t{0};
    Frame f = std::move(rx_.front());
    rx_.pop_front();
    if (rx_.empty()) {
      uint64_t v;
      [[maybe_unused]] ssize_t n = ::read(efd_.get(), &v, sizeof v);
    }
    std::memcpy(buf.data(), f.data(), std::min(buf.size(), f.size()));
    return f.size();
  }

  Result<bool> writeFrame(std::span<const std::byte> frame) override {
    std::lock_guard lock(mu_);
    size_t attempt = attempts_++;
    if (eagainAt_.count(attempt) != 0) return false;
    if (failAt_.count(attempt) != 0) return makeError(EINVAL, "fake write refused");
    written_.emplace_back(frame.begin(), frame.end());
    return true;
  }

  int pollFd() const override { return efd_.get(); }
  const std::string& name() const override { return name_; }
  net::MacAddress mac() const override { return net::MacAddress({0x02, 0, 0, 0, 0, 1}); }
  uint32_t mtu() const override { return 1500; }
  bool linkUp() const override { return true; }

 private:
  std::mutex mu_;
  ipc::UniqueFd efd_;  // readable while rx_ is non-empty (or reads fail)
  std::deque<Frame> rx_;
  std::vector<Frame> written_;
  std::set<size_t> eagainAt_, failAt_;
  size_t attempts_ = 0;
  bool readsFail_ = false;
  std::string name_ = "fake0";
};

}  // namespace mknet::drivers::test
