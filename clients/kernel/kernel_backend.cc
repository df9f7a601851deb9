// The "kernel" backend of the libmknet C API.
//
// Every mknet_* function here forwards to its Linux namesake (mknet_socket ->
// socket(2), mknet_poll -> poll(2), ...), so it has exactly Linux's semantics
// and errno values by construction. A program written against mknet/mknet.h
// or mknet/socket.hpp and linked against mknet_kernel instead of mknet_client
// runs unchanged on the Linux kernel's TCP/IP stack: that is how mknet
// measures its baseline (the examples build each app twice, NAME on mknet and
// NAME-kernel on Linux) and how the apps' tests run without a running stack.
// Nothing here keeps state, so it is as thread-safe as the system calls are.
#include "mknet/mknet.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>

extern "C" {

int mknet_socket(int domain, int type, int protocol) { return ::socket(domain, type, protocol); }

int mknet_bind(int fd, const struct sockaddr* addr, socklen_t len) { return ::bind(fd, addr, len); }

int mknet_listen(int fd, int backlog) { return ::listen(fd, backlog); }

int mknet_accept(int fd, struct sockaddr* addr, socklen_t* len) { return ::accept(fd, addr, len); }

int mknet_accept4(int fd, struct sockaddr* addr, socklen_t* len, int flags) {
  return ::accept4(fd, addr, len, flags);
}

int mknet_connect(int fd, const struct sockaddr* addr, socklen_t len) { return ::connect(fd, addr, len); }

int mknet_shutdown(int fd, int how) { return ::shutdown(fd, how); }

int mknet_close(int fd) { return ::close(fd); }

ssize_t mknet_send(int fd, const void* buf, size_t len, int flags) { return ::send(fd, buf, len, flags); }

ssize_t mknet_recv(int fd, void* buf, size_t len, int flags) { return ::recv(fd, buf, len, flags); }

ssize_t mknet_sendto(int fd, const void* buf, size_t len, int flags, const struct sockaddr* to,
                     socklen_t tolen) {
  return ::sendto(fd, buf, len, flags, to, tolen);
}

ssize_t mknet_recvfrom(int fd, void* buf, size_t len, int flags, struct sockaddr* from, socklen_t* fromlen) {
  return ::recvfrom(fd, buf, len, flags, from, fromlen);
}

ssize_t mknet_read(int fd, void* buf, size_t len) { return ::read(fd, buf, len); }

ssize_t mknet_write(int fd, const void* buf, size_t len) { return ::write(fd, buf, len); }

ssize_t mknet_readv(int fd, const struct iovec* iov, int iovcnt) { return ::readv(fd, iov, iovcnt); }

ssize_t mknet_writev(int fd, const struct iovec* iov, int iovcnt) { return ::writev(fd, iov, iovcnt); }

int mknet_setsockopt(int fd, int level, int name, const void* value, socklen_t len) {
  return ::setsockopt(fd, level, name, value, len);
}

int mknet_getsockopt(int fd, int level, int name, void* value, socklen_t* len) {
  return ::getsockopt(fd, level, name, value, len);
}

int mknet_getsockname(int fd, struct sockaddr* addr, socklen_t* len) { return ::getsockname(fd, addr, len); }

int mknet_getpeername(int fd, struct sockaddr* addr, socklen_t* len) { return ::getpeername(fd, addr, len); }

int mknet_fcntl(int fd, int cmd, ...) {
  // mknet.h promises only these four commands (the ones the mknet backend can
  // honour), so the kernel backend refuses the rest the way Linux refuses an
  // unknown command: a program that works here then also works on mknet.
  // The argument is read only for the commands that take one: va_arg on an
  // argument the caller did not pass is undefined behaviour.
  switch (cmd) {
    case F_GETFL:
    case F_GETFD:
      return ::fcntl(fd, cmd);
    case F_SETFL:
    case F_SETFD: {
      va_list args;
      va_start(args, cmd);
      const int arg = va_arg(args, int);
      va_end(args);
      return ::fcntl(fd, cmd, arg);
    }
    default:
      errno = EINVAL;
      return -1;
  }
}

int mknet_poll(struct pollfd* fds, nfds_t nfds, int timeout_ms) { return ::poll(fds, nfds, timeout_ms); }

int mknet_is_socket(int fd) {
  // A pure query: a bad fd is simply "not a socket", and errno is left as the
  // caller had it, so the check can sit between a failing call and its errno.
  const int savedErrno = errno;
  struct stat st;
  const bool isSocket = ::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
  errno = savedErrno;
  return isSocket ? 1 : 0;
}

}  // extern "C"
