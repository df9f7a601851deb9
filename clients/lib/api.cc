// The libmknet C API (clients/include/mknet/mknet.h): the POSIX-shaped
// entry points over the fd table (fd_table.h) that maps reserved kernel fds
// to mknet sockets.
// Calls on fds that are not mknet sockets go to the kernel unchanged.
//
// This file is also linked into the LD_PRELOAD shim (clients/preload), where
// the libc names (close, fcntl, ppoll, ...) are the shim's own interposed
// functions. So every kernel call on an fd this library owns (the reserved
// fds, the session doorbells) is a raw syscall (namespace `kernel` below),
// never a libc call that would re-enter the shim.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdarg>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "clients/lib/client_socket.h"
#include "clients/lib/fd_table.h"
#include "mknet/mknet.h"

namespace {

using mknet::client::ClientSession;
using mknet::client::ClientSocket;
using mknet::client::OpenPtr;
using mknet::client::OpenSocket;
using mknet::client::SocketPtr;
using mknet::client::table;

// Raw syscalls for fds this library owns (see the file comment).
namespace kernel {
int close(int fd) { return static_cast<int>(::syscall(SYS_close, fd)); }
int fcntl(int fd, int cmd, long arg) { return static_cast<int>(::syscall(SYS_fcntl, fd, cmd, arg)); }
int dup3(int oldFd, int newFd, int flags) { return static_cast<int>(::syscall(SYS_dup3, oldFd, newFd, flags)); }
int ppoll(pollfd* fds, nfds_t n, const timespec* ts, const sigset_t* mask) {
  // The kernel may write the remaining time back: give it a copy.
  timespec copy{};
  if (ts != nullptr) copy = *ts;
  return static_cast<int>(::syscall(SYS_ppoll, fds, n, ts != nullptr ? &copy : nullptr, mask, _NSIG / 8));
}
ssize_t pread(int fd, void* buf, size_t n, off_t off) { return ::syscall(SYS_pread64, fd, buf, n, off); }
off_t lseek(int fd, off_t off, int whence) { return static_cast<off_t>(::syscall(SYS_lseek, fd, off, whence)); }
}  // namespace kernel

constexpr int kMss = 1460;  // lwIP's TCP_MSS (Debian's lwipopts.h) at MTU 1500

// Options lwIP has no counterpart for, which programs set as hints and read
// back (web servers toggle TCP_CORK per response; iperf3 reads TCP_MAXSEG).
// libmknet accepts them, remembers the value for getsockopt, and they have no
// effect. docs/preload.md lists them. {level, name, default value}.
struct HintOption {
  int level, name, defaultValue;
};
constexpr HintOption kHintOptions[] = {
    {IPPROTO_TCP, TCP_CORK, 0},          {IPPROTO_TCP, TCP_MAXSEG, kMss},
    {IPPROTO_TCP, TCP_DEFER_ACCEPT, 0},  {IPPROTO_TCP, TCP_QUICKACK, 1},
    {IPPROTO_TCP, TCP_USER_TIMEOUT, 0},  {IPPROTO_TCP, TCP_NOTSENT_LOWAT, 0},
    {IPPROTO_TCP, TCP_FASTOPEN, 0},      {IPPROTO_TCP, TCP_WINDOW_CLAMP, 0},
    {IPPROTO_TCP, TCP_LINGER2, 60},      {IPPROTO_TCP, TCP_SYNCNT, 6},
    {SOL_SOCKET, SO_REUSEPORT, 0},       {SOL_SOCKET, SO_PRIORITY, 0},
    {SOL_SOCKET, SO_BROADCAST, 0},       {SOL_SOCKET, SO_OOBINLINE, 0},
    {SOL_SOCKET, SO_MAX_PACING_RATE, -1}, {SOL_SOCKET, SO_MARK, 0},
    {IPPROTO_IP, IP_TOS, 0},             {IPPROTO_IP, IP_TTL, 64},
    {IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_WANT}, {IPPROTO_IP, IP_RECVERR, 0},
    {IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 0},        {IPPROTO_IP, IP_FREEBIND, 0},
};

const HintOption* hintOption(int level, int name) {
  for (const auto& h : kHintOptions)
    if (h.level == level && h.name == name) return &h;
  return nullptr;
}

// At exit Linux closes every socket gracefully: what the program wrote is
// still delivered, then FIN. The stack resets the connections of an app
// that dies without closing them, so close them here on a normal exit.
void closeAllAtExit() {
  for (auto& s : table().all()) s->close();
}

void registerHandlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::atexit(closeAllAtExit);
    ::pthread_atfork([] { table().lockForFork(); }, [] { table().unlockAfterFork(); },
                     [] { table().unlockAfterFork(); });
  });
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

// The socket behind `fd`, or nullptr (then the caller goes to the kernel).
SocketPtr socketOf(int fd) {
  OpenPtr o = table().get(fd);
  return o ? o->sock : nullptr;
}

int closeReserved(int fd, OpenPtr lastRef) {
  if (lastRef) lastRef->sock->close();
  kernel::close(fd);
  return 0;
}

// Bytes waiting to be read: for TCP everything in the receive ring, for UDP
// the next datagram's length (as Linux's FIONREAD). ClientSocket does not say
// how full its ring is, so this peeks the data into a scratch buffer: slow
// (a copy of what is queued) but FIONREAD is rare.
int readableBytes(ClientSocket& s) {
  if (!s.isTcp()) {
    iovec none{nullptr, 0};
    ssize_t n = s.recv(&none, 1, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT, nullptr, nullptr);
    return n == -EAGAIN ? 0 : static_cast<int>(n);
  }
  static constexpr size_t kScratch = 64 * 1024;
  thread_local std::vector<char> scratch(kScratch);
  // Every iovec points at the same scratch: peek fills them in order, so the
  // return value is what is queued, up to IOV_MAX * 64 KiB.
  std::vector<iovec> iov(IOV_MAX, iovec{scratch.data(), kScratch});
  ssize_t n = s.recv(iov.data(), static_cast<int>(iov.size()), MSG_PEEK | MSG_DONTWAIT, nullptr, nullptr);
  if (n == -EAGAIN || n == -ENOTCONN) return 0;
  return n < 0 ? static_cast<int>(n) : static_cast<int>(std::min<ssize_t>(n, INT_MAX));
}

int getHint(OpenSocket& o, const HintOption& h, void* value, socklen_t* len) {
  int v = h.defaultValue;
  {
    std::lock_guard<std::mutex> g(o.hintMu);
    auto it = o.hints.find({h.level, h.name});
    if (it != o.hints.end()) v = it->second;
  }
  socklen_t n = std::min<socklen_t>(*len, sizeof v);
  std::memcpy(value, &v, n);
  *len = n;
  return 0;
}

// TCP_INFO: lwIP keeps no such record; the fields a program can act on
// (state, MSS) are filled in, the counters are zero.
int tcpInfo(ClientSocket& s, void* value, socklen_t* len) {
  tcp_info info{};
  int listening = 0;
  socklen_t l = sizeof listening;
  (void)s.getOption(SOL_SOCKET, SO_ACCEPTCONN, &listening, &l);
  sockaddr_in peer{};
  socklen_t pl = sizeof peer;
  if (listening != 0) {
    info.tcpi_state = TCP_LISTEN;
  } else if (s.peerName(reinterpret_cast<sockaddr*>(&peer), &pl) == 0) {
    info.tcpi_state = (s.readiness(POLLRDHUP) & POLLRDHUP) != 0 ? TCP_CLOSE_WAIT : TCP_ESTABLISHED;
  } else {
    info.tcpi_state = TCP_CLOSE;
  }
  info.tcpi_snd_mss = info.tcpi_rcv_mss = info.tcpi_advmss = kMss;
  info.tcpi_pmtu = kMss + 40;
  info.tcpi_snd_cwnd = 10;
  socklen_t n = std::min<socklen_t>(*len, sizeof info);
  std::memcpy(value, &info, n);
  *len = n;
  return 0;
}

// The sessions behind a set of sockets (usually one; more after the stack
// was restarted while old sockets are still open).
struct SessionSet {
  std::vector<ClientSession*> sessions;
  void add(ClientSession* s) {
    if (std::find(sessions.begin(), sessions.end(), s) == sessions.end()) sessions.push_back(s);
  }
};

timespec toTimespec(std::chrono::nanoseconds d) {
  if (d.count() < 0) d = std::chrono::nanoseconds(0);
  return timespec{static_cast<time_t>(d.count() / 1000000000), static_cast<long>(d.count() % 1000000000)};
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
  registerHandlers();
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

int mknet_is_socket(int fd) { return table().contains(fd) ? 1 : 0; }

size_t mknet_socket_count(void) { return table().live(); }

unsigned long long mknet_socket_id(int fd) {
  OpenPtr o = table().get(fd);
  return o ? o->id : 0;
}

int mknet_bind(int fd, const struct sockaddr* addr, socklen_t len) {
  SocketPtr s = socketOf(fd);
  if (!s) return ::bind(fd, addr, len);
  return result(s->bind(addr, len));
}

int mknet_listen(int fd, int backlog) {
  SocketPtr s = socketOf(fd);
  if (!s) return ::listen(fd, backlog);
  return result(s->listen(backlog));
}

int mknet_accept4(int fd, struct sockaddr* addr, socklen_t* len, int flags) {
  SocketPtr s = socketOf(fd);
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
  SocketPtr s = socketOf(fd);
  if (!s) return ::connect(fd, addr, len);
  return result(s->connect(addr, len));
}

int mknet_shutdown(int fd, int how) {
  SocketPtr s = socketOf(fd);
  if (!s) return ::shutdown(fd, how);
  return result(s->shutdown(how));
}

int mknet_close(int fd) {
  bool wasSocket = false;
  OpenPtr last = table().remove(fd, &wasSocket);
  if (!wasSocket) return ::close(fd);
  return closeReserved(fd, std::move(last));
}

int mknet_dup(int fd) {
  OpenPtr o = table().get(fd);
  if (!o) return ::dup(fd);
  int nfd = kernel::fcntl(fd, F_DUPFD, 0);
  if (nfd < 0) return -1;
  (void)table().alias(nfd, o);  // the kernel picked a free number: nothing to close
  return nfd;
}

int mknet_dup3(int oldfd, int newfd, int flags) {
  OpenPtr o = table().get(oldfd);
  if (!o && !table().contains(newfd)) return ::dup3(oldfd, newfd, flags);
  if (oldfd == newfd) return fail<int>(-EINVAL);  // dup3's rule (dup2 handles this itself)
  if (kernel::dup3(oldfd, newfd, flags) < 0) return -1;
  // The kernel closed what newfd named; do the same for its socket.
  OpenPtr last;
  if (o) {
    last = table().alias(newfd, o);
  } else {
    bool wasSocket = false;
    last = table().remove(newfd, &wasSocket);
  }
  if (last) last->sock->close();
  return newfd;
}

int mknet_dup2(int oldfd, int newfd) {
  if (oldfd == newfd) {
    // dup2(fd, fd) checks fd and returns it.
    if (table().contains(oldfd)) return oldfd;
    return ::dup2(oldfd, newfd);
  }
  return mknet_dup3(oldfd, newfd, 0);
}

ssize_t mknet_sendto(int fd, const void* buf, size_t len, int flags, const struct sockaddr* to, socklen_t tolen) {
  SocketPtr s = socketOf(fd);
  if (!s) return ::sendto(fd, buf, len, flags, to, tolen);
  iovec v{const_cast<void*>(buf), len};
  return result(s->send(&v, 1, flags, to, tolen));
}

ssize_t mknet_send(int fd, const void* buf, size_t len, int flags) { return mknet_sendto(fd, buf, len, flags, nullptr, 0); }

ssize_t mknet_recvfrom(int fd, void* buf, size_t len, int flags, struct sockaddr* from, socklen_t* fromlen) {
  SocketPtr s = socketOf(fd);
  if (!s) return ::recvfrom(fd, buf, len, flags, from, fromlen);
  iovec v{buf, len};
  return result(s->recv(&v, 1, flags, from, fromlen));
}

ssize_t mknet_recv(int fd, void* buf, size_t len, int flags) { return mknet_recvfrom(fd, buf, len, flags, nullptr, nullptr); }

ssize_t mknet_sendmsg(int fd, const struct msghdr* msg, int flags) {
  SocketPtr s = socketOf(fd);
  if (!s) return ::sendmsg(fd, msg, flags);
  if (msg == nullptr) return fail<ssize_t>(-EFAULT);
  // No ancillary data is implemented; silently dropping it could lose fds
  // or options the caller relies on.
  if (msg->msg_controllen != 0) return fail<ssize_t>(-EOPNOTSUPP);
  if (msg->msg_iovlen > IOV_MAX) return fail<ssize_t>(-EMSGSIZE);
  return result(s->send(msg->msg_iov, static_cast<int>(msg->msg_iovlen), flags,
                        static_cast<const sockaddr*>(msg->msg_name), msg->msg_name != nullptr ? msg->msg_namelen : 0));
}

ssize_t mknet_recvmsg(int fd, struct msghdr* msg, int flags) {
  SocketPtr s = socketOf(fd);
  if (!s) return ::recvmsg(fd, msg, flags);
  if (msg == nullptr) return fail<ssize_t>(-EFAULT);
  if (msg->msg_iovlen > IOV_MAX) return fail<ssize_t>(-EMSGSIZE);
  const int iovcnt = static_cast<int>(msg->msg_iovlen);
  size_t room = 0;
  for (int i = 0; i < iovcnt; ++i) room += msg->msg_iov[i].iov_len;
  socklen_t nameLen = msg->msg_namelen;
  sockaddr* name = static_cast<sockaddr*>(msg->msg_name);
  // For UDP, ask for the datagram's real length to report MSG_TRUNC.
  int f = s->isTcp() ? flags : flags | MSG_TRUNC;
  ssize_t n = s->recv(msg->msg_iov, iovcnt, f, name, name != nullptr ? &nameLen : nullptr);
  if (n < 0) return fail<ssize_t>(n);
  msg->msg_flags = 0;
  msg->msg_controllen = 0;
  if (name != nullptr) msg->msg_namelen = s->isTcp() ? 0 : nameLen;
  if (!s->isTcp() && static_cast<size_t>(n) > room) {
    msg->msg_flags |= MSG_TRUNC;
    if ((flags & MSG_TRUNC) == 0) n = static_cast<ssize_t>(room);
  }
  return n;
}

ssize_t mknet_read(int fd, void* buf, size_t len) {
  SocketPtr s = socketOf(fd);
  if (!s) return ::read(fd, buf, len);
  iovec v{buf, len};
  return result(s->recv(&v, 1, 0, nullptr, nullptr));
}

ssize_t mknet_write(int fd, const void* buf, size_t len) {
  SocketPtr s = socketOf(fd);
  if (!s) return ::write(fd, buf, len);
  iovec v{const_cast<void*>(buf), len};
  return result(s->send(&v, 1, 0, nullptr, 0));
}

ssize_t mknet_readv(int fd, const struct iovec* iov, int iovcnt) {
  SocketPtr s = socketOf(fd);
  if (!s) return ::readv(fd, iov, iovcnt);
  return result(s->recv(iov, iovcnt, 0, nullptr, nullptr));
}

ssize_t mknet_writev(int fd, const struct iovec* iov, int iovcnt) {
  SocketPtr s = socketOf(fd);
  if (!s) return ::writev(fd, iov, iovcnt);
  return result(s->send(iov, iovcnt, 0, nullptr, 0));
}

ssize_t mknet_sendfile(int outFd, int inFd, off_t* offset, size_t count) {
  SocketPtr s = socketOf(outFd);
  if (!s) return ::sendfile(outFd, inFd, offset, count);
  // Linux splices page-cache pages into the socket; here the file is read
  // into a buffer and sent, one copy more, through the same send path.
  off_t pos = offset != nullptr ? *offset : kernel::lseek(inFd, 0, SEEK_CUR);
  if (pos < 0) return errno == ESPIPE ? fail<ssize_t>(-EINVAL) : -1;
  static constexpr size_t kChunk = 256 * 1024;
  thread_local std::vector<char> buf(kChunk);
  size_t total = 0;
  int err = 0;
  while (total < count) {
    size_t want = std::min(count - total, kChunk);
    ssize_t n = kernel::pread(inFd, buf.data(), want, pos);
    if (n < 0) {
      err = errno;
      break;
    }
    if (n == 0) break;  // end of file
    iovec v{buf.data(), static_cast<size_t>(n)};
    ssize_t sent = s->send(&v, 1, 0, nullptr, 0);
    if (sent < 0) {
      err = static_cast<int>(-sent);
      break;
    }
    total += static_cast<size_t>(sent);
    pos += sent;
    if (sent < n) break;  // non-blocking socket full (or a timeout): report what went
  }
  if (total == 0 && err != 0) return fail<ssize_t>(-err);
  // The file offset moves by what was sent, as with Linux's sendfile.
  if (offset != nullptr) *offset = pos;
  else kernel::lseek(inFd, pos, SEEK_SET);
  return static_cast<ssize_t>(total);
}

int mknet_setsockopt(int fd, int level, int name, const void* value, socklen_t len) {
  OpenPtr o = table().get(fd);
  if (!o) return ::setsockopt(fd, level, name, value, len);
  if (level == IPPROTO_TCP && name == TCP_CONGESTION) {
    // lwIP always runs NewReno ("reno"): any choice is accepted, reno it is.
    if (!o->sock->isTcp()) return fail<int>(-ENOPROTOOPT);
    if (value == nullptr && len > 0) return fail<int>(-EFAULT);
    return len > 0 ? 0 : fail<int>(-EINVAL);
  }
  if (level == IPPROTO_TCP && name == TCP_INFO) return fail<int>(-ENOPROTOOPT);
  if (const HintOption* h = hintOption(level, name)) {
    if (level == IPPROTO_TCP && !o->sock->isTcp()) return fail<int>(-ENOPROTOOPT);
    if (value == nullptr) return fail<int>(-EFAULT);
    if (len < static_cast<socklen_t>(sizeof(int))) return fail<int>(-EINVAL);
    int v;
    std::memcpy(&v, value, sizeof v);
    std::lock_guard<std::mutex> g(o->hintMu);
    o->hints[{h->level, h->name}] = v;
    return 0;
  }
  return result(o->sock->setOption(level, name, value, len));
}

int mknet_getsockopt(int fd, int level, int name, void* value, socklen_t* len) {
  OpenPtr o = table().get(fd);
  if (!o) return ::getsockopt(fd, level, name, value, len);
  if (value == nullptr || len == nullptr) return fail<int>(-EFAULT);
  if (level == IPPROTO_TCP && !o->sock->isTcp() && (name == TCP_CONGESTION || name == TCP_INFO || hintOption(level, name)))
    return fail<int>(-ENOPROTOOPT);
  if (level == IPPROTO_TCP && name == TCP_CONGESTION) {
    static const char kReno[] = "reno";
    socklen_t n = std::min<socklen_t>(*len, sizeof kReno);
    std::memcpy(value, kReno, n);
    *len = n;
    return 0;
  }
  if (level == IPPROTO_TCP && name == TCP_INFO) return tcpInfo(*o->sock, value, len);
  if (const HintOption* h = hintOption(level, name)) return getHint(*o, *h, value, len);
  return result(o->sock->getOption(level, name, value, len));
}

int mknet_getsockname(int fd, struct sockaddr* addr, socklen_t* len) {
  SocketPtr s = socketOf(fd);
  if (!s) return ::getsockname(fd, addr, len);
  return result(s->localName(addr, len));
}

int mknet_getpeername(int fd, struct sockaddr* addr, socklen_t* len) {
  SocketPtr s = socketOf(fd);
  if (!s) return ::getpeername(fd, addr, len);
  return result(s->peerName(addr, len));
}

int mknet_fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  long arg = va_arg(ap, long);
  va_end(ap);
  OpenPtr o = table().get(fd);
  if (!o) return ::fcntl(fd, cmd, arg);
  switch (cmd) {
    case F_GETFL: return O_RDWR | (o->sock->nonBlocking() ? O_NONBLOCK : 0);
    case F_SETFL: o->sock->setNonBlocking((arg & O_NONBLOCK) != 0); return 0;
    case F_GETFD:
    case F_SETFD: return kernel::fcntl(fd, cmd, arg);  // FD_CLOEXEC lives on the reserved fd
    case F_DUPFD:
    case F_DUPFD_CLOEXEC: {
      int nfd = kernel::fcntl(fd, cmd, arg);
      if (nfd < 0) return -1;
      (void)table().alias(nfd, o);  // the kernel picked a free number: nothing to close
      return nfd;
    }
    default: return fail<int>(-EINVAL);
  }
}

int mknet_ioctl(int fd, unsigned long request, void* arg) {
  OpenPtr o = table().get(fd);
  if (!o) return ::ioctl(fd, request, arg);
  switch (request) {
    case FIONBIO: {
      if (arg == nullptr) return fail<int>(-EFAULT);
      int on;
      std::memcpy(&on, arg, sizeof on);
      o->sock->setNonBlocking(on != 0);
      return 0;
    }
    case FIONREAD: {  // == SIOCINQ
      if (arg == nullptr) return fail<int>(-EFAULT);
      int listening = 0;
      socklen_t l = sizeof listening;
      (void)o->sock->getOption(SOL_SOCKET, SO_ACCEPTCONN, &listening, &l);
      if (listening != 0) return fail<int>(-EINVAL);  // as Linux for a listening TCP socket
      int n = readableBytes(*o->sock);
      if (n < 0) return fail<int>(n);
      std::memcpy(arg, &n, sizeof n);
      return 0;
    }
    default: return fail<int>(-ENOTTY);
  }
}

int mknet_readiness(int fd, short events) {
  SocketPtr s = socketOf(fd);
  if (!s) return fail<int>(-EBADF);
  return static_cast<unsigned short>(s->readiness(events));
}

int mknet_readiness_batch(struct mknet_watch* watches, size_t n) {
  thread_local std::vector<int> fds;
  fds.resize(n);
  for (size_t i = 0; i < n; ++i) fds[i] = watches[i].fd;
  int ready = 0;
  table().withEach(fds.data(), n, [&](size_t i, OpenSocket* o) {
    mknet_watch& w = watches[i];
    if (o == nullptr || (w.id != 0 && w.id != o->id)) {
      w.revents = POLLNVAL;
      w.wake_fd = -1;
      ++ready;
      return;
    }
    w.id = o->id;
    w.revents = o->sock->readiness(w.events);
    w.wake_fd = o->sock->session().wakeFd();
    ready += w.revents != 0;
  });
  return ready;
}

size_t mknet_socket_fds(int* out, size_t max) {
  std::vector<int> v = table().fds();
  for (size_t i = 0; i < v.size() && i < max; ++i) out[i] = v[i];
  return v.size();
}

int mknet_wake_fd(int fd) {
  SocketPtr s = socketOf(fd);
  if (!s) return fail<int>(-EBADF);
  return s->session().wakeFd();
}

int mknet_prepare_sleep(int fd) {
  SocketPtr s = socketOf(fd);
  if (!s) return fail<int>(-EBADF);
  s->session().announceSleep();
  return 0;
}

int mknet_after_wake(int fd) {
  SocketPtr s = socketOf(fd);
  if (!s) return fail<int>(-EBADF);
  s->session().consumeWake();
  return 0;
}

int mknet_ppoll(struct pollfd* fds, nfds_t nfds, const struct timespec* timeout, const sigset_t* sigmask) {
  static constexpr timespec kZero{0, 0};
  using Clock = std::chrono::steady_clock;
  if (timeout != nullptr && (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= 1000000000))
    return fail<int>(-EINVAL);
  const bool forever = timeout == nullptr;
  const bool once = timeout != nullptr && timeout->tv_sec == 0 && timeout->tv_nsec == 0;
  const auto deadline = forever ? Clock::time_point::max()
                                : Clock::now() + std::chrono::seconds(timeout->tv_sec) +
                                      std::chrono::nanoseconds(timeout->tv_nsec);
  std::vector<SocketPtr> socks(nfds);
  std::vector<pollfd> kernelFds;  // kernel fds, then the sessions' doorbells
  std::vector<nfds_t> kernelIndex;
  SessionSet sessions;
  for (nfds_t i = 0; i < nfds; ++i) {
    fds[i].revents = 0;
    if (fds[i].fd < 0) continue;
    socks[i] = socketOf(fds[i].fd);
    if (socks[i]) {
      sessions.add(&socks[i]->session());
    } else {
      kernelFds.push_back(fds[i]);
      kernelIndex.push_back(i);
    }
  }
  const size_t nk = kernelFds.size();
  for (ClientSession* s : sessions.sessions) kernelFds.push_back(pollfd{s->wakeFd(), POLLIN, 0});
  auto scan = [&] {
    int ready = 0;
    for (nfds_t i = 0; i < nfds; ++i) {
      if (!socks[i]) continue;
      fds[i].revents = socks[i]->readiness(fds[i].events);
      ready += fds[i].revents != 0;
    }
    return ready;
  };
  // From here on a signal must not fall between two scans (SignalHold).
  std::optional<mknet::client::SignalHold> held;
  if (!once) held.emplace(sigmask);
  // Before sleeping, spin a little as blocking calls do (ClientSession::wait):
  // the stack usually answers well within spinTime(), and sleeping costs a
  // cross-CPU wake-up. Kernel fds are checked every few rounds meanwhile.
  if (!once && !sessions.sessions.empty()) {
    mknet::client::Spin spin(sessions.sessions.front()->stackBeat(), deadline);
    for (uint32_t i = 1;; ++i) {
      int ready = scan();
      // Kernel fds are looked at every few rounds while nothing is ready, and
      // always before returning: poll() reports every ready fd, and a pipe
      // must not starve behind a socket that is always ready.
      if (nk > 0 && (ready > 0 || (i & 7) == 0)) {
        int r = kernel::ppoll(kernelFds.data(), nk, &kZero, nullptr);
        if (r < 0) return -1;
        for (size_t k = 0; k < nk; ++k) {
          fds[kernelIndex[k]].revents = kernelFds[k].revents;
          ready += kernelFds[k].revents != 0;
        }
      }
      if (ready > 0) return ready;
      if (!spin.again()) break;
    }
  }
  for (;;) {
    int ready = scan();
    if (ready == 0 && !once) {
      for (ClientSession* s : sessions.sessions) s->announceSleep();
      ready = scan();  // re-check after announcing, so no wake-up is lost
    }
    // Sleep in slices: a missed wake-up costs at most one slice.
    constexpr auto kSlice = std::chrono::milliseconds(100);
    std::chrono::nanoseconds wait{0};
    if (ready == 0 && !once) {
      wait = forever ? kSlice : std::min<std::chrono::nanoseconds>(kSlice, deadline - Clock::now());
      if (wait.count() < 0) wait = std::chrono::nanoseconds(0);
      if (forever && sessions.sessions.empty()) wait = std::chrono::nanoseconds(-1);  // kernel fds only
    }
    timespec ts = toTimespec(wait);
    int r = kernel::ppoll(kernelFds.data(), kernelFds.size(), wait.count() < 0 ? nullptr : &ts,
                          held ? held->sleepMask() : sigmask);
    if (r < 0) return -1;  // errno from ppoll (EINTR, EFAULT, ...)
    bool woken = false;
    for (size_t k = nk; k < kernelFds.size(); ++k) {
      if ((kernelFds[k].revents & POLLIN) != 0) {
        sessions.sessions[k - nk]->consumeWake();
        woken = true;
      }
    }
    if (woken && ready == 0) ready = scan();
    for (size_t k = 0; k < nk; ++k) {
      fds[kernelIndex[k]].revents = kernelFds[k].revents;
      ready += kernelFds[k].revents != 0;
    }
    if (ready > 0) return ready;
    if (once || Clock::now() >= deadline) return 0;
  }
}

int mknet_poll(struct pollfd* fds, nfds_t nfds, int timeout_ms) {
  if (timeout_ms < 0) return mknet_ppoll(fds, nfds, nullptr, nullptr);
  timespec ts{timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
  return mknet_ppoll(fds, nfds, &ts, nullptr);
}

}  // extern "C"
