// The libmknet C API (clients/include/mknet/mknet.h): an fd table mapping
// reserved kernel fds to mknet sockets, and the POSIX-shaped entry points.
// Calls on fds that are not mknet sockets go to the kernel unchanged.
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "clients/lib/client_socket.h"
#include "mknet/mknet.h"

namespace {

using mknet::client::ClientSocket;
using SocketPtr = std::shared_ptr<ClientSocket>;

// Each mknet socket holds a real kernel fd (an eventfd nobody signals), so
// its number is unique in the process and fits FD_SETSIZE like any other.
class SocketTable {
 public:
  int add(SocketPtr s, bool cloexec) {
    int fd = ::eventfd(0, EFD_NONBLOCK | (cloexec ? EFD_CLOEXEC : 0));
    if (fd < 0) return -errno;
    std::lock_guard<std::mutex> g(mu_);
    if (static_cast<size_t>(fd) >= table_.size()) table_.resize(static_cast<size_t>(fd) + 64);
    table_[static_cast<size_t>(fd)] = std::move(s);
    return fd;
  }
  SocketPtr get(int fd) {
    if (fd < 0) return nullptr;
    std::lock_guard<std::mutex> g(mu_);
    if (static_cast<size_t>(fd) >= table_.size()) return nullptr;
    return table_[static_cast<size_t>(fd)];
  }
  // Every socket still open (for the exit handler).
  std::vector<SocketPtr> all() {
    std::lock_guard<std::mutex> g(mu_);
    std::vector<SocketPtr> v;
    for (auto& s : table_)
      if (s) v.push_back(s);
    return v;
  }
  SocketPtr remove(int fd) {
    std::lock_guard<std::mutex> g(mu_);
    if (fd < 0 || static_cast<size_t>(fd) >= table_.size()) return nullptr;
    return std::move(table_[static_cast<size_t>(fd)]);
  }

 private:
  std::mutex mu_;
  std::vector<SocketPtr> table_;
};

SocketTable& table() {
  static SocketTable* t = new SocketTable;  // leaked: used until the very end of the process
  return *t;
}

// At exit Linux closes every socket gracefully: what the program wrote is
// still delivered, then FIN. The stack resets the connections of an app
// that dies without closing them, so close them here on a normal exit.
void closeAllAtExit() {
  for (auto& s : table().all()) s->close();
}

void registerExitHandler() {
  static std::once_flag once;
  std::call_once(once, [] { std::atexit(closeAllAtExit); });
}

template <typename T>
T fail(long negErrno) {
  errno = static_cast<int>(-negErrno);
  return static_cast<T>(-1);
}

template <typename T>
T result(T r) {
  if (r < 0) return fail<T>(r);
  return r;
}

}  // namespace

extern "C" {

int mknet_socket(int domain, int type, int protocol) {
  if (domain != AF_INET) return fail<int>(-EAFNOSUPPORT);
  int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (base != SOCK_STREAM && base != SOCK_DGRAM) return fail<int>(-ESOCKTNOSUPPORT);
  bool tcp = base == SOCK_STREAM;
  if (protocol != 0 && protocol != (tcp ? IPPROTO_TCP : IPPROTO_UDP)) return fail<int>(-EPROTONOSUPPORT);
  auto session = mknet::client::currentSession();
  if (!session) return fail<int>(-ENETDOWN);
  registerExitHandler();
  int err = 0;
  SocketPtr s = ClientSocket::open(*session, tcp, &err);
  if (!s) return fail<int>(-err);
  s->setNonBlocking((type & SOCK_NONBLOCK) != 0);
  int fd = table().add(s, (type & SOCK_CLOEXEC) != 0);
  if (fd < 0) {
    s->close();
    return fail<int>(fd);
  }
  return fd;
}

int mknet_is_socket(int fd) { return table().get(fd) ? 1 : 0; }

int mknet_bind(int fd, const struct sockaddr* addr, socklen_t len) {
  SocketPtr s = table().get(fd);
  if (!s) return ::bind(fd, addr, len);
  return result(s->bind(addr, len));
}

int mknet_listen(int fd, int backlog) {
  SocketPtr s = table().get(fd);
  if (!s) return ::listen(fd, backlog);
  return result(s->listen(backlog));
}

int mknet_accept4(int fd, struct sockaddr* addr, socklen_t* len, int flags) {
  SocketPtr s = table().get(fd);
  if (!s) return ::accept4(fd, addr, len, flags);
  if ((flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) != 0) return fail<int>(-EINVAL);
  int err = 0;
  SocketPtr c = s->accept(addr, len, &err);
  if (!c) return fail<int>(-err);
  c->setNonBlocking((flags & SOCK_NONBLOCK) != 0);
  int nfd = table().add(c, (flags & SOCK_CLOEXEC) != 0);
  if (nfd < 0) {
    c->close();
    return fail<int>(nfd);
  }
  return nfd;
}

int mknet_accept(int fd, struct sockaddr* addr, socklen_t* len) { return mknet_accept4(fd, addr, len, 0); }

int mknet_connect(int fd, const struct sockaddr* addr, socklen_t len) {
  SocketPtr s = table().get(fd);
  if (!s) return ::connect(fd, addr, len);
  return result(s->connect(addr, len));
}

int mknet_shutdown(int fd, int how) {
  SocketPtr s = table().get(fd);
  if (!s) return ::shutdown(fd, how);
  return result(s->shutdown(how));
}

int mknet_close(int fd) {
  SocketPtr s = table().remove(fd);
  if (!s) return ::close(fd);
  s->close();
  ::close(fd);
  return 0;
}

ssize_t mknet_sendto(int fd, const void* buf, size_t len, int flags, const struct sockaddr* to, socklen_t tolen) {
  SocketPtr s = table().get(fd);
  if (!s) return ::sendto(fd, buf, len, flags, to, tolen);
  iovec v{const_cast<void*>(buf), len};
  return result(s->send(&v, 1, flags, to, tolen));
}

ssize_t mknet_send(int fd, const void* buf, size_t len, int flags) { return mknet_sendto(fd, buf, len, flags, nullptr, 0); }

ssize_t mknet_recvfrom(int fd, void* buf, size_t len, int flags, struct sockaddr* from, socklen_t* fromlen) {
  SocketPtr s = table().get(fd);
  if (!s) return ::recvfrom(fd, buf, len, flags, from, fromlen);
  iovec v{buf, len};
  return result(s->recv(&v, 1, flags, from, fromlen));
}

ssize_t mknet_recv(int fd, void* buf, size_t len, int flags) { return mknet_recvfrom(fd, buf, len, flags, nullptr, nullptr); }

ssize_t mknet_read(int fd, void* buf, size_t len) {
  SocketPtr s = table().get(fd);
  if (!s) return ::read(fd, buf, len);
  iovec v{buf, len};
  return result(s->recv(&v, 1, 0, nullptr, nullptr));
}

ssize_t mknet_write(int fd, const void* buf, size_t len) {
  SocketPtr s = table().get(fd);
  if (!s) return ::write(fd, buf, len);
  iovec v{const_cast<void*>(buf), len};
  return result(s->send(&v, 1, 0, nullptr, 0));
}

ssize_t mknet_readv(int fd, const struct iovec* iov, int iovcnt) {
  SocketPtr s = table().get(fd);
  if (!s) return ::readv(fd, iov, iovcnt);
  return result(s->recv(iov, iovcnt, 0, nullptr, nullptr));
}

ssize_t mknet_writev(int fd, const struct iovec* iov, int iovcnt) {
  SocketPtr s = table().get(fd);
  if (!s) return ::writev(fd, iov, iovcnt);
  return result(s->send(iov, iovcnt, 0, nullptr, 0));
}

int mknet_setsockopt(int fd, int level, int name, const void* value, socklen_t len) {
  SocketPtr s = table().get(fd);
  if (!s) return ::setsockopt(fd, level, name, value, len);
  return result(s->setOption(level, name, value, len));
}

int mknet_getsockopt(int fd, int level, int name, void* value, socklen_t* len) {
  SocketPtr s = table().get(fd);
  if (!s) return ::getsockopt(fd, level, name, value, len);
  return result(s->getOption(level, name, value, len));
}

int mknet_getsockname(int fd, struct sockaddr* addr, socklen_t* len) {
  SocketPtr s = table().get(fd);
  if (!s) return ::getsockname(fd, addr, len);
  return result(s->localName(addr, len));
}

int mknet_getpeername(int fd, struct sockaddr* addr, socklen_t* len) {
  SocketPtr s = table().get(fd);
  if (!s) return ::getpeername(fd, addr, len);
  return result(s->peerName(addr, len));
}

int mknet_fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  long arg = va_arg(ap, long);
  va_end(ap);
  SocketPtr s = table().get(fd);
  if (!s) return ::fcntl(fd, cmd, arg);
  switch (cmd) {
    case F_GETFL: return O_RDWR | (s->nonBlocking() ? O_NONBLOCK : 0);
    case F_SETFL: s->setNonBlocking((arg & O_NONBLOCK) != 0); return 0;
    case F_GETFD:
    case F_SETFD: return ::fcntl(fd, cmd, arg);  // FD_CLOEXEC lives on the reserved fd
    default: return fail<int>(-EINVAL);
  }
}

int mknet_poll(struct pollfd* fds, nfds_t nfds, int timeout_ms) {
  using Clock = std::chrono::steady_clock;
  auto deadline = timeout_ms < 0 ? Clock::time_point::max() : Clock::now() + std::chrono::milliseconds(timeout_ms);
  std::vector<SocketPtr> socks(nfds);
  std::vector<pollfd> kernel;  // kernel fds, then (maybe) the session doorbell
  std::vector<nfds_t> kernelIndex;
  mknet::client::ClientSession* session = nullptr;
  for (nfds_t i = 0; i < nfds; ++i) {
    fds[i].revents = 0;
    if (fds[i].fd < 0) continue;
    socks[i] = table().get(fds[i].fd);
    if (socks[i]) {
      session = &socks[i]->session();
    } else {
      kernel.push_back(fds[i]);
      kernelIndex.push_back(i);
    }
  }
  const size_t nk = kernel.size();
  if (session != nullptr) kernel.push_back(pollfd{session->wakeFd(), POLLIN, 0});
  auto scan = [&] {
    int ready = 0;
    for (nfds_t i = 0; i < nfds; ++i) {
      if (!socks[i]) continue;
      fds[i].revents = socks[i]->readiness(fds[i].events);
      ready += fds[i].revents != 0;
    }
    return ready;
  };
  for (;;) {
    int ready = scan();
    if (ready == 0 && session != nullptr) {
      session->announceSleep();
      ready = scan();  // re-check after announcing, so no wake-up is lost
    }
    int waitMs = 0;
    if (ready == 0 && timeout_ms != 0) {
      // Sleep in slices: a missed wake-up costs at most one slice.
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count() + 1;
      waitMs = deadline == Clock::time_point::max() || left > 100 ? 100 : static_cast<int>(left > 0 ? left : 0);
    }
    int r = ::poll(kernel.data(), kernel.size(), waitMs);
    if (r < 0) return -1;  // errno from poll (EINTR, EFAULT, ...)
    if (session != nullptr && (kernel[nk].revents & POLLIN) != 0) {
      session->consumeWake();
      if (ready == 0) ready = scan();
    }
    for (size_t k = 0; k < nk; ++k) {
      fds[kernelIndex[k]].revents = kernel[k].revents;
      ready += kernel[k].revents != 0;
    }
    if (ready > 0) return ready;
    if (timeout_ms == 0 || Clock::now() >= deadline) return 0;
  }
}

}  // extern "C"
