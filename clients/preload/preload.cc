// libmknet-preload.so: runs unmodified Linux programs on mknet. Loaded with
// LD_PRELOAD (deploy/mknet run CMD ARGS...), it defines the libc socket and
// I/O functions; each looks at its fd: an mknet socket goes to libmknet (the
// mknet_* C API, linked into this library), anything else straight to libc
// (RealLibc). Which new sockets go to mknet: IPv4 TCP and UDP, as
// MKNET_PRELOAD_SOCKETS says (docs/preload.md); Unix sockets, IPv6, files,
// pipes and eventfds stay with the kernel.
//
// libmknet's own threads (the Cap'n Proto control thread) call these very
// functions for their Unix socket, eventfds and epoll set: none of those is an
// mknet socket, so they take the libc path, after one lock-free table check.
#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "clients/preload/epoll_table.h"
#include "clients/preload/fd_activity.h"
#include "clients/preload/real_libc.h"
#include "mknet/mknet.h"

#define MKNET_EXPORT extern "C" __attribute__((visibility("default")))

extern char** environ;
extern "C" void __chk_fail(void) __attribute__((noreturn));

using mknet::preload::EpollTable;
using mknet::preload::FdActivity;
using mknet::preload::real;

namespace {

// ------------------------------------------------------------ configuration

// MKNET_PRELOAD_SOCKETS: which new IPv4 sockets go to mknet. "tcp,udp"
// (default), "tcp", "udp" or "none".
struct Config {
  bool tcp = true, udp = true;
  bool valid = true;
  std::string raw;
};

void say(const std::string& line) {
  std::string s = "mknet-preload: " + line + "\n";
  (void)::syscall(SYS_write, 2, s.data(), s.size());  // write() is interposed; stdio may be torn down
}

const Config& config() {
  static const Config c = [] {
    Config k;
    const char* v = std::getenv("MKNET_PRELOAD_SOCKETS");
    if (v == nullptr) return k;
    k.raw = v;
    k.tcp = k.udp = false;
    std::string s = v;
    if (s == "none") return k;
    size_t pos = 0;
    while (pos <= s.size()) {
      size_t comma = s.find(',', pos);
      std::string word = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      if (word == "tcp") k.tcp = true;
      else if (word == "udp") k.udp = true;
      else k.valid = false;
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
    if (!k.valid) {
      say("MKNET_PRELOAD_SOCKETS='" + k.raw + "' is not tcp, udp, tcp,udp or none; every AF_INET socket() fails with EINVAL");
    }
    return k;
  }();
  return c;
}

// ------------------------------------------------------------ state

FdActivity& activity() {
  static FdActivity* a = new FdActivity;  // leaked: used until the very end of the process
  return *a;
}

EpollTable& epolls() {
  static EpollTable* t = new EpollTable(real(), activity());
  return *t;
}

// Set once a program puts an mknet socket in an epoll set: until then every
// epoll call goes straight to the kernel without a look at the table.
std::atomic<bool> gEpollUsed{false};

inline bool isMknet(int fd) { return mknet_is_socket(fd) != 0; }

// ------------------------------------------------------------ EINTR

// Linux restarts a socket call that a signal handler interrupted if the
// handler was installed with SA_RESTART and the socket has no timeout in that
// direction (signal(7)). The shim cannot tell which signal it was, so it
// restarts only if every installed handler has SA_RESTART: a program that
// asked for EINTR on some signal gets it. poll, select and epoll_wait are
// never restarted, as on Linux.
bool shouldRestart(int fd, bool sending) {
  timeval tv{};
  socklen_t len = sizeof tv;
  if (mknet_getsockopt(fd, SOL_SOCKET, sending ? SO_SNDTIMEO : SO_RCVTIMEO, &tv, &len) == 0 &&
      (tv.tv_sec != 0 || tv.tv_usec != 0))
    return false;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction sa {};
    if (::sigaction(sig, nullptr, &sa) != 0) continue;  // glibc's reserved signals
    if ((sa.sa_flags & SA_SIGINFO) == 0 && (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN)) continue;
    if ((sa.sa_flags & SA_RESTART) == 0) return false;
  }
  return true;
}

// Runs a blocking mknet call, restarting it after a signal as Linux would.
template <typename F>
auto restarting(int fd, bool sending, F call) -> decltype(call()) {
  for (;;) {
    auto r = call();
    if (r >= 0 || errno != EINTR) return r;
    if (!shouldRestart(fd, sending)) {
      errno = EINTR;
      return r;
    }
  }
}

// I/O bookkeeping for edge-triggered epoll (FdActivity).
template <typename T>
T afterRead(int fd, T r) {
  int e = errno;
  activity().readDone(fd);
  errno = e;
  return r;
}

template <typename T>
T afterWrite(int fd, T r, size_t wanted) {
  int e = errno;
  if ((r < 0 && (e == EAGAIN || e == EINPROGRESS)) || (r >= 0 && static_cast<size_t>(r) < wanted))
    activity().writeBlocked(fd);
  errno = e;
  return r;
}

size_t iovLength(const iovec* iov, int n) {
  size_t t = 0;
  for (int i = 0; iov != nullptr && i < n; ++i) t += iov[i].iov_len;
  return t;
}

// ------------------------------------------------------------ select

bool anyMknet(const pollfd* fds, nfds_t n) {
  if (mknet_socket_count() == 0) return false;
  for (nfds_t i = 0; i < n; ++i)
    if (isMknet(fds[i].fd)) return true;
  return false;
}

// fd_set bit access without FD_SET's fortify check: nfds may exceed
// FD_SETSIZE when the caller allocated larger sets, as Linux allows.
constexpr int kBits = 8 * sizeof(long);
bool bitSet(const fd_set* s, int fd) {
  return s != nullptr && (reinterpret_cast<const long*>(s)[fd / kBits] & (1L << (fd % kBits))) != 0;
}
void setBit(fd_set* s, int fd) { reinterpret_cast<long*>(s)[fd / kBits] |= 1L << (fd % kBits); }
void clearSet(fd_set* s, int nfds) {
  if (s != nullptr) std::memset(s, 0, static_cast<size_t>((nfds + kBits - 1) / kBits) * sizeof(long));
}

// select/pselect over a mix of mknet sockets and kernel fds, on mknet_ppoll.
// Returns -2 if there is no mknet socket among them (the caller asks the
// kernel, so such a call behaves exactly as without the shim).
int selectMixed(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, const timespec* timeout, const sigset_t* mask,
                std::chrono::steady_clock::time_point* deadlineOut) {
  using Clock = std::chrono::steady_clock;
  if (nfds < 0) {
    errno = EINVAL;
    return -1;
  }
  if (mknet_socket_count() == 0) return -2;
  std::vector<pollfd> pfds;
  bool mixed = false;
  for (int fd = 0; fd < nfds; ++fd) {
    short ev = 0;
    if (bitSet(rd, fd)) ev |= POLLIN;
    if (bitSet(wr, fd)) ev |= POLLOUT;
    if (bitSet(ex, fd)) ev |= POLLPRI;
    if (ev == 0) continue;
    pfds.push_back(pollfd{fd, ev, 0});
    mixed = mixed || isMknet(fd);
  }
  if (!mixed) return -2;
  const bool forever = timeout == nullptr;
  const auto deadline = forever ? Clock::time_point::max()
                                : Clock::now() + std::chrono::seconds(timeout->tv_sec) +
                                      std::chrono::nanoseconds(timeout->tv_nsec);
  *deadlineOut = deadline;
  for (;;) {
    timespec left{};
    if (!forever) {
      auto d = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - Clock::now());
      if (d.count() < 0) d = std::chrono::nanoseconds(0);
      left = timespec{static_cast<time_t>(d.count() / 1000000000), static_cast<long>(d.count() % 1000000000)};
    }
    int r = mknet_ppoll(pfds.data(), pfds.size(), forever ? nullptr : &left, mask);
    if (r < 0) return -1;
    int count = 0;
    for (const pollfd& p : pfds) {
      if ((p.revents & POLLNVAL) != 0) {
        errno = EBADF;
        return -1;
      }
    }
    clearSet(rd, nfds);
    clearSet(wr, nfds);
    clearSet(ex, nfds);
    // Linux's select maps poll bits so (fs/select.c POLLIN_SET, ...).
    for (const pollfd& p : pfds) {
      if ((p.events & POLLIN) && (p.revents & (POLLIN | POLLRDNORM | POLLRDBAND | POLLHUP | POLLERR))) {
        setBit(rd, p.fd);
        ++count;
      }
      if ((p.events & POLLOUT) && (p.revents & (POLLOUT | POLLWRNORM | POLLWRBAND | POLLERR))) {
        setBit(wr, p.fd);
        ++count;
      }
      if ((p.events & POLLPRI) && (p.revents & POLLPRI)) {
        setBit(ex, p.fd);
        ++count;
      }
    }
    if (count > 0) return count;
    if (r == 0 || (!forever && Clock::now() >= deadline)) return 0;
    // Only bits select does not report (POLLHUP on a write-only fd): wait on.
  }
}

// ------------------------------------------------------------ exec

// mknet sockets cannot outlive exec: they live in this process's session
// memory, which exec discards. So every one is closed on exec as if it had
// FD_CLOEXEC (the new program finds those fd numbers closed, never a stray
// eventfd); the stack resets their connections when the session goes. If the
// exec fails, the flags are put back and the sockets work on.
class ExecGuard {
 public:
  ExecGuard() {
    size_t n = mknet_socket_fds(nullptr, 0);
    if (n == 0) return;
    std::vector<int> fds(n + 16);
    n = mknet_socket_fds(fds.data(), fds.size());
    fds.resize(std::min(n, fds.size()));
    for (int fd : fds) {
      int flags = real().fcntl(fd, F_GETFD);
      if (flags >= 0 && (flags & FD_CLOEXEC) == 0 && real().fcntl(fd, F_SETFD, flags | FD_CLOEXEC) == 0)
        marked_.push_back(fd);
    }
  }
  ~ExecGuard() {  // only reached when exec failed
    int e = errno;
    for (int fd : marked_) {
      int flags = real().fcntl(fd, F_GETFD);
      if (flags >= 0) real().fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC);
    }
    errno = e;
  }

 private:
  std::vector<int> marked_;
};

std::vector<char*> collectArgs(const char* first, va_list ap) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(first));
  while (argv.back() != nullptr) argv.push_back(va_arg(ap, char*));
  return argv;
}

void warnNoStack() {
  static std::atomic<bool> once{false};
  if (once.exchange(true)) return;
  const char* s = std::getenv("MKNET_STACK_SOCKET");
  const char* d = std::getenv("MKNET_RUNTIME_DIR");
  std::string path = s != nullptr && *s != '\0' ? s : std::string(d != nullptr && *d != '\0' ? d : "/run/mknet") + "/stack.sock";
  say("socket(): cannot reach the mknet stack at " + path + " (ENETDOWN); is it running? (deploy/mknet up)");
}

__attribute__((constructor)) void initPreload() {
  (void)real();
  (void)config();
}

}  // namespace

// ============================================================ interposed calls

MKNET_EXPORT int socket(int domain, int type, int protocol) noexcept {
  if (domain == AF_INET) {
    const Config& c = config();
    if (!c.valid) {
      errno = EINVAL;
      return -1;
    }
    const int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    const bool tcp = base == SOCK_STREAM && (protocol == 0 || protocol == IPPROTO_TCP) && c.tcp;
    const bool udp = base == SOCK_DGRAM && (protocol == 0 || protocol == IPPROTO_UDP) && c.udp;
    if (tcp || udp) {
      int fd = mknet_socket(domain, type, protocol);
      if (fd < 0 && errno == ENETDOWN) warnNoStack();
      return fd;
    }
  }
  return real().socket(domain, type, protocol);
}

MKNET_EXPORT int bind(int fd, const sockaddr* addr, socklen_t len) noexcept {
  return isMknet(fd) ? mknet_bind(fd, addr, len) : real().bind(fd, addr, len);
}

MKNET_EXPORT int listen(int fd, int backlog) noexcept {
  return isMknet(fd) ? mknet_listen(fd, backlog) : real().listen(fd, backlog);
}

MKNET_EXPORT int accept4(int fd, sockaddr* addr, socklen_t* len, int flags) {
  if (!isMknet(fd)) return real().accept4(fd, addr, len, flags);
  return afterRead(fd, restarting(fd, false, [&] { return mknet_accept4(fd, addr, len, flags); }));
}

MKNET_EXPORT int accept(int fd, sockaddr* addr, socklen_t* len) {
  if (!isMknet(fd)) return real().accept(fd, addr, len);
  return afterRead(fd, restarting(fd, false, [&] { return mknet_accept4(fd, addr, len, 0); }));
}

MKNET_EXPORT int connect(int fd, const sockaddr* addr, socklen_t len) {
  if (!isMknet(fd)) return real().connect(fd, addr, len);
  return afterWrite(fd, restarting(fd, true, [&] { return mknet_connect(fd, addr, len); }), 0);
}

MKNET_EXPORT int shutdown(int fd, int how) noexcept {
  return isMknet(fd) ? mknet_shutdown(fd, how) : real().shutdown(fd, how);
}

MKNET_EXPORT int close(int fd) {
  if (isMknet(fd)) return mknet_close(fd);
  if (gEpollUsed.load(std::memory_order_relaxed)) epolls().forget(fd);
  return real().close(fd);
}

MKNET_EXPORT ssize_t read(int fd, void* buf, size_t len) {
  if (!isMknet(fd)) return real().read(fd, buf, len);
  return afterRead(fd, restarting(fd, false, [&] { return mknet_read(fd, buf, len); }));
}

MKNET_EXPORT ssize_t __read_chk(int fd, void* buf, size_t len, size_t buflen) {
  if (len > buflen) __chk_fail();
  return read(fd, buf, len);
}

MKNET_EXPORT ssize_t readv(int fd, const iovec* iov, int iovcnt) {
  if (!isMknet(fd)) return real().readv(fd, iov, iovcnt);
  return afterRead(fd, restarting(fd, false, [&] { return mknet_readv(fd, iov, iovcnt); }));
}

MKNET_EXPORT ssize_t write(int fd, const void* buf, size_t len) {
  if (!isMknet(fd)) return real().write(fd, buf, len);
  return afterWrite(fd, restarting(fd, true, [&] { return mknet_write(fd, buf, len); }), len);
}

MKNET_EXPORT ssize_t writev(int fd, const iovec* iov, int iovcnt) {
  if (!isMknet(fd)) return real().writev(fd, iov, iovcnt);
  return afterWrite(fd, restarting(fd, true, [&] { return mknet_writev(fd, iov, iovcnt); }), iovLength(iov, iovcnt));
}

MKNET_EXPORT ssize_t recv(int fd, void* buf, size_t len, int flags) {
  if (!isMknet(fd)) return real().recv(fd, buf, len, flags);
  return afterRead(fd, restarting(fd, false, [&] { return mknet_recv(fd, buf, len, flags); }));
}

MKNET_EXPORT ssize_t __recv_chk(int fd, void* buf, size_t len, size_t buflen, int flags) {
  if (len > buflen) __chk_fail();
  return recv(fd, buf, len, flags);
}

MKNET_EXPORT ssize_t recvfrom(int fd, void* buf, size_t len, int flags, sockaddr* from, socklen_t* fromlen) {
  if (!isMknet(fd)) return real().recvfrom(fd, buf, len, flags, from, fromlen);
  return afterRead(fd, restarting(fd, false, [&] { return mknet_recvfrom(fd, buf, len, flags, from, fromlen); }));
}

MKNET_EXPORT ssize_t __recvfrom_chk(int fd, void* buf, size_t len, size_t buflen, int flags, sockaddr* from,
                                    socklen_t* fromlen) {
  if (len > buflen) __chk_fail();
  return recvfrom(fd, buf, len, flags, from, fromlen);
}

MKNET_EXPORT ssize_t recvmsg(int fd, msghdr* msg, int flags) {
  if (!isMknet(fd)) return real().recvmsg(fd, msg, flags);
  return afterRead(fd, restarting(fd, false, [&] { return mknet_recvmsg(fd, msg, flags); }));
}

// recvmmsg/sendmmsg: the batch calls, as loops of the single ones (Linux's
// own fallback semantics: the first message may block, the rest do not).
MKNET_EXPORT int recvmmsg(int fd, mmsghdr* vec, unsigned int vlen, int flags, timespec* timeout) {
  if (!isMknet(fd)) return real().recvmmsg(fd, vec, vlen, flags, timeout);
  unsigned int n = 0;
  for (; n < vlen; ++n) {
    int f = n == 0 ? flags & ~MSG_WAITFORONE : flags | ((flags & MSG_WAITFORONE) ? MSG_DONTWAIT : 0);
    ssize_t r = recvmsg(fd, &vec[n].msg_hdr, f);
    if (r < 0) {
      if (n > 0) break;
      return -1;
    }
    vec[n].msg_len = static_cast<unsigned int>(r);
  }
  return static_cast<int>(n);
}

MKNET_EXPORT ssize_t send(int fd, const void* buf, size_t len, int flags) {
  if (!isMknet(fd)) return real().send(fd, buf, len, flags);
  return afterWrite(fd, restarting(fd, true, [&] { return mknet_send(fd, buf, len, flags); }), len);
}

MKNET_EXPORT ssize_t sendto(int fd, const void* buf, size_t len, int flags, const sockaddr* to, socklen_t tolen) {
  if (!isMknet(fd)) return real().sendto(fd, buf, len, flags, to, tolen);
  return afterWrite(fd, restarting(fd, true, [&] { return mknet_sendto(fd, buf, len, flags, to, tolen); }), len);
}

MKNET_EXPORT ssize_t sendmsg(int fd, const msghdr* msg, int flags) {
  if (!isMknet(fd)) return real().sendmsg(fd, msg, flags);
  size_t len = msg != nullptr ? iovLength(msg->msg_iov, static_cast<int>(msg->msg_iovlen)) : 0;
  return afterWrite(fd, restarting(fd, true, [&] { return mknet_sendmsg(fd, msg, flags); }), len);
}

MKNET_EXPORT int sendmmsg(int fd, mmsghdr* vec, unsigned int vlen, int flags) {
  if (!isMknet(fd)) return real().sendmmsg(fd, vec, vlen, flags);
  unsigned int n = 0;
  for (; n < vlen; ++n) {
    ssize_t r = sendmsg(fd, &vec[n].msg_hdr, flags);
    if (r < 0) {
      if (n > 0) break;
      return -1;
    }
    vec[n].msg_len = static_cast<unsigned int>(r);
  }
  return static_cast<int>(n);
}

MKNET_EXPORT ssize_t sendfile(int outFd, int inFd, off_t* offset, size_t count) noexcept {
  if (!isMknet(outFd)) return real().sendfile(outFd, inFd, offset, count);
  return afterWrite(outFd, restarting(outFd, true, [&] { return mknet_sendfile(outFd, inFd, offset, count); }), count);
}

MKNET_EXPORT ssize_t sendfile64(int outFd, int inFd, off64_t* offset, size_t count) noexcept {
  static_assert(sizeof(off64_t) == sizeof(off_t), "64-bit off_t only");
  return sendfile(outFd, inFd, reinterpret_cast<off_t*>(offset), count);
}

MKNET_EXPORT int getsockopt(int fd, int level, int name, void* value, socklen_t* len) noexcept {
  return isMknet(fd) ? mknet_getsockopt(fd, level, name, value, len) : real().getsockopt(fd, level, name, value, len);
}

MKNET_EXPORT int setsockopt(int fd, int level, int name, const void* value, socklen_t len) noexcept {
  return isMknet(fd) ? mknet_setsockopt(fd, level, name, value, len) : real().setsockopt(fd, level, name, value, len);
}

MKNET_EXPORT int getsockname(int fd, sockaddr* addr, socklen_t* len) noexcept {
  return isMknet(fd) ? mknet_getsockname(fd, addr, len) : real().getsockname(fd, addr, len);
}

MKNET_EXPORT int getpeername(int fd, sockaddr* addr, socklen_t* len) noexcept {
  return isMknet(fd) ? mknet_getpeername(fd, addr, len) : real().getpeername(fd, addr, len);
}

namespace {
int fcntlCommon(int fd, int cmd, void* arg) {
  if (isMknet(fd)) return mknet_fcntl(fd, cmd, reinterpret_cast<long>(arg));
  int r = real().fcntl(fd, cmd, arg);
  if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && gEpollUsed.load(std::memory_order_relaxed))
    epolls().alias(fd, r);
  return r;
}
}  // namespace

MKNET_EXPORT int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void* arg = va_arg(ap, void*);  // as glibc does: every argument fits a pointer
  va_end(ap);
  return fcntlCommon(fd, cmd, arg);
}

MKNET_EXPORT int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  return fcntlCommon(fd, cmd, arg);
}

MKNET_EXPORT int ioctl(int fd, unsigned long request, ...) noexcept {
  va_list ap;
  va_start(ap, request);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  return isMknet(fd) ? mknet_ioctl(fd, request, arg) : real().ioctl(fd, request, arg);
}

MKNET_EXPORT int poll(pollfd* fds, nfds_t nfds, int timeout) {
  if (!anyMknet(fds, nfds)) return real().poll(fds, nfds, timeout);
  return mknet_poll(fds, nfds, timeout);
}

MKNET_EXPORT int __poll_chk(pollfd* fds, nfds_t nfds, int timeout, size_t fdslen) {
  if (fdslen / sizeof(*fds) < nfds) __chk_fail();
  return poll(fds, nfds, timeout);
}

MKNET_EXPORT int ppoll(pollfd* fds, nfds_t nfds, const timespec* timeout, const sigset_t* sigmask) {
  if (!anyMknet(fds, nfds)) return real().ppoll(fds, nfds, timeout, sigmask);
  return mknet_ppoll(fds, nfds, timeout, sigmask);
}

MKNET_EXPORT int __ppoll_chk(pollfd* fds, nfds_t nfds, const timespec* timeout, const sigset_t* sigmask,
                             size_t fdslen) {
  if (fdslen / sizeof(*fds) < nfds) __chk_fail();
  return ppoll(fds, nfds, timeout, sigmask);
}

MKNET_EXPORT int select(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, timeval* timeout) {
  using Clock = std::chrono::steady_clock;
  if (timeout != nullptr && (timeout->tv_sec < 0 || timeout->tv_usec < 0)) {
    errno = EINVAL;
    return -1;
  }
  timespec ts{};
  if (timeout != nullptr) {
    // Linux normalises tv_usec >= 1000000 into seconds.
    ts.tv_sec = timeout->tv_sec + timeout->tv_usec / 1000000;
    ts.tv_nsec = (timeout->tv_usec % 1000000) * 1000;
  }
  Clock::time_point deadline{};
  int r = selectMixed(nfds, rd, wr, ex, timeout != nullptr ? &ts : nullptr, nullptr, &deadline);
  if (r == -2) return real().select(nfds, rd, wr, ex, timeout);
  if (timeout != nullptr) {
    // Linux writes back the time not slept.
    int e = errno;
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now()).count();
    if (left < 0) left = 0;
    timeout->tv_sec = static_cast<time_t>(left / 1000000);
    timeout->tv_usec = static_cast<suseconds_t>(left % 1000000);
    errno = e;
  }
  return r;
}

MKNET_EXPORT int pselect(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, const timespec* timeout,
                         const sigset_t* sigmask) {
  std::chrono::steady_clock::time_point deadline{};
  int r = selectMixed(nfds, rd, wr, ex, timeout, sigmask, &deadline);
  if (r == -2) return real().pselect(nfds, rd, wr, ex, timeout, sigmask);
  return r;
}

MKNET_EXPORT int epoll_create(int size) noexcept {
  int fd = real().epoll_create(size);
  if (fd >= 0 && gEpollUsed.load(std::memory_order_relaxed)) epolls().forget(fd);  // a number closed behind our back
  return fd;
}

MKNET_EXPORT int epoll_create1(int flags) noexcept {
  int fd = real().epoll_create1(flags);
  if (fd >= 0 && gEpollUsed.load(std::memory_order_relaxed)) epolls().forget(fd);
  return fd;
}

MKNET_EXPORT int epoll_ctl(int epfd, int op, int fd, epoll_event* event) noexcept {
  if (!isMknet(fd)) return real().epoll_ctl(epfd, op, fd, event);
  gEpollUsed.store(true, std::memory_order_relaxed);
  return epolls().ctl(epfd, op, fd, event);
}

namespace {
int epollWaitMs(int epfd, epoll_event* events, int maxEvents, int timeoutMs, const sigset_t* sigmask) {
  if (timeoutMs < 0) return epolls().wait(epfd, events, maxEvents, nullptr, sigmask, false);
  timespec ts{timeoutMs / 1000, (timeoutMs % 1000) * 1000000L};
  return epolls().wait(epfd, events, maxEvents, &ts, sigmask, false);
}
}  // namespace

MKNET_EXPORT int epoll_wait(int epfd, epoll_event* events, int maxEvents, int timeout) {
  if (!gEpollUsed.load(std::memory_order_relaxed)) return real().epoll_wait(epfd, events, maxEvents, timeout);
  return epollWaitMs(epfd, events, maxEvents, timeout, nullptr);
}

MKNET_EXPORT int epoll_pwait(int epfd, epoll_event* events, int maxEvents, int timeout, const sigset_t* sigmask) {
  if (!gEpollUsed.load(std::memory_order_relaxed))
    return real().epoll_pwait(epfd, events, maxEvents, timeout, sigmask);
  return epollWaitMs(epfd, events, maxEvents, timeout, sigmask);
}

MKNET_EXPORT int epoll_pwait2(int epfd, epoll_event* events, int maxEvents, const timespec* timeout,
                              const sigset_t* sigmask) {
  if (!gEpollUsed.load(std::memory_order_relaxed) && real().epoll_pwait2 != nullptr)
    return real().epoll_pwait2(epfd, events, maxEvents, timeout, sigmask);
  return epolls().wait(epfd, events, maxEvents, timeout, sigmask, true);
}

MKNET_EXPORT int dup(int fd) noexcept {
  if (isMknet(fd)) return mknet_dup(fd);
  int r = real().dup(fd);
  if (r >= 0 && gEpollUsed.load(std::memory_order_relaxed)) epolls().alias(fd, r);
  return r;
}

namespace {
// After oldfd was duplicated onto newfd: newfd's epoll interest list is
// oldfd's (or none).
int afterDupOnto(int oldfd, int newfd, int r) {
  if (r >= 0 && oldfd != newfd && gEpollUsed.load(std::memory_order_relaxed)) epolls().alias(oldfd, newfd);
  return r;
}
}  // namespace

MKNET_EXPORT int dup2(int oldfd, int newfd) noexcept {
  if (isMknet(oldfd) || isMknet(newfd)) return afterDupOnto(oldfd, newfd, mknet_dup2(oldfd, newfd));
  return afterDupOnto(oldfd, newfd, real().dup2(oldfd, newfd));
}

MKNET_EXPORT int dup3(int oldfd, int newfd, int flags) noexcept {
  if (isMknet(oldfd) || isMknet(newfd)) return afterDupOnto(oldfd, newfd, mknet_dup3(oldfd, newfd, flags));
  return afterDupOnto(oldfd, newfd, real().dup3(oldfd, newfd, flags));
}

// fork: libc's. What the child needs (its own session, the inherited sockets
// working in it) is done by libmknet's pthread_atfork handlers, which run
// inside it. Around it the shim holds its epoll locks, so no other thread
// holds one in the child (see EpollTable::lockForFork for the order).
MKNET_EXPORT pid_t fork() noexcept {
  epolls().lockForFork();
  pid_t pid = real().fork();
  int e = errno;
  epolls().unlockAfterFork();
  errno = e;
  return pid;
}

MKNET_EXPORT int execve(const char* path, char* const argv[], char* const envp[]) noexcept {
  ExecGuard guard;
  return real().execve(path, argv, envp);
}

MKNET_EXPORT int execv(const char* path, char* const argv[]) noexcept { return execve(path, argv, environ); }

MKNET_EXPORT int execvpe(const char* file, char* const argv[], char* const envp[]) noexcept {
  ExecGuard guard;
  return real().execvpe(file, argv, envp);
}

MKNET_EXPORT int execvp(const char* file, char* const argv[]) noexcept { return execvpe(file, argv, environ); }

MKNET_EXPORT int execl(const char* path, const char* arg, ...) noexcept {
  va_list ap;
  va_start(ap, arg);
  std::vector<char*> argv = collectArgs(arg, ap);
  va_end(ap);
  return execve(path, argv.data(), environ);
}

MKNET_EXPORT int execlp(const char* file, const char* arg, ...) noexcept {
  va_list ap;
  va_start(ap, arg);
  std::vector<char*> argv = collectArgs(arg, ap);
  va_end(ap);
  return execvpe(file, argv.data(), environ);
}

MKNET_EXPORT int execle(const char* path, const char* arg, ...) noexcept {
  va_list ap;
  va_start(ap, arg);
  std::vector<char*> argv = collectArgs(arg, ap);
  char* const* envp = va_arg(ap, char* const*);
  va_end(ap);
  return execve(path, argv.data(), envp);
}
