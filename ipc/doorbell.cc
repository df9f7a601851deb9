#include "ipc/doorbell.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

namespace mknet::ipc {

Result<Doorbell> Doorbell::create() {
  UniqueFd fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!fd) return errnoError("eventfd");
  return Doorbell(std::move(fd));
}

void Doorbell::ring() const {
  uint64_t one = 1;
  // EAGAIN means the counter is saturated: the sleeper will wake anyway.
  [[maybe_unused]] ssize_t n = ::write(fd_.get(), &one, sizeof one);
}

bool Doorbell::drain() const {
  uint64_t v = 0;
  return ::read(fd_.get(), &v, sizeof v) == static_cast<ssize_t>(sizeof v);
}

WaitResult Doorbell::sleep(std::chrono::nanoseconds timeout) const {
  struct pollfd p {fd_.get(), POLLIN, 0};
  struct timespec ts {};
  struct timespec* tsp = nullptr;
  if (timeout.count() >= 0) {
    ts.tv_sec = static_cast<time_t>(timeout.count() / 1000000000);
    ts.tv_nsec = static_cast<long>(timeout.count() % 1000000000);
    tsp = &ts;
  }
  int r = ::ppoll(&p, 1, tsp, nullptr);
  if (r < 0) return errno == EINTR ? WaitResult::kInterrupted : WaitResult::kError;
  if (r == 0) return WaitResult::kTimeout;
  if ((p.revents & (POLLERR | POLLNVAL)) != 0) return WaitResult::kError;
  drain();
  return WaitResult::kReady;
}

Result<UniqueFd> Doorbell::dupFd() const {
  UniqueFd d(::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0));
  if (!d) return errnoError("dup doorbell fd");
  return d;
}

}  // namespace mknet::ipc
