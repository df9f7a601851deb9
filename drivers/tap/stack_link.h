// StackLink: the driver's control plane. Connects to the stack's control
// socket, registers the NIC, attaches the packet pool it is handed, runs the
// data plane (TapDriver) on its own thread, reports stats every second, and
// when the stack goes away drops everything and registers again, forever.
//
// Threads: StackLink lives on the thread of a kj event loop (the process's
// main thread); each attachment gets one data-plane thread that runs
// TapDriver::run() and touches nothing but the device, the shared region and
// the doorbells. The two meet in three places only: TapDriver::stats() (relaxed
// atomics), TapDriver::requestStop() (an atomic flag plus an eventfd), and a
// kj cross-thread fulfiller that tells the loop why the data plane stopped.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <kj/async-io.h>

#include "drivers/tap/nic_device.h"
#include "drivers/tap/tap_driver.h"
#include "ipc/result.h"

namespace mknet::drivers {

struct StackLinkOptions {
  std::string socketPath;
  // The first registration must succeed within this time, or run() fails;
  // later ones are retried forever.
  std::chrono::milliseconds connectTimeout{10000};
  // Delay between attempts: doubles from min to max, back to min after a
  // successful registration.
  std::chrono::milliseconds backoffMin{10};
  std::chrono::milliseconds backoffMax{500};
  // A registration (call plus fd transfer) slower than this is abandoned.
  std::chrono::milliseconds callTimeout{5000};
  std::chrono::milliseconds statsInterval{1000};
  TapDriverOptions data;
};

class StackLink {
 public:
  // `io` and `nic` must outlive the StackLink. Construct and use it on the
  // thread that owns `io`'s event loop.
  StackLink(kj::AsyncIoContext& io, NicDevice& nic, StackLinkOptions options);
  ~StackLink();
  StackLink(const StackLink&) = delete;
  StackLink& operator=(const StackLink&) = delete;

  // Registers and serves until something the driver cannot recover from:
  // the first registration did not succeed in time (or the stack refused it
  // for good: permission, ABI or layout mismatch), or the device failed.
  // Resolves only with that error; cancel the promise (e.g. on SIGTERM) to
  // stop, after which the StackLink may be destroyed.
  kj::Promise<Error> run();

  // Successful registrations so far.
  uint32_t registrations() const { return registrations_; }

 private:
  struct Attachment;

  kj::Promise<Error> cycle();
  kj::Promise<Result<kj::Own<Attachment>>> connectAndRegister();
  kj::Promise<Error> serve();
  kj::Promise<Result<void>> statsLoop();
  // Logs why, then scheduleRetry(): cycle() again after the backoff delay.
  kj::Promise<Error> retryLater(const Error& why);
  kj::Promise<Error> scheduleRetry();

  kj::AsyncIoContext& io_;
  kj::Timer& timer_;
  NicDevice& nic_;
  StackLinkOptions options_;

  kj::Own<Attachment> attachment_;
  kj::TimePoint firstDeadline_;
  std::chrono::milliseconds backoff_;
  uint32_t registrations_ = 0;
  uint32_t failedAttempts_ = 0;
  bool deviceFailed_ = false;
  bool lastLinkUp_ = false;
};

}  // namespace mknet::drivers
