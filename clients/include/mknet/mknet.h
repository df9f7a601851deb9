/* libmknet C API: POSIX sockets on the mknet stack.
 *
 * Every function mirrors its POSIX namesake with Linux's semantics: the same
 * arguments, the same return values, the same errno values. An mknet socket
 * is a real file descriptor in the process (a reserved kernel fd), so its
 * number never collides with files, pipes or kernel sockets, and fits in
 * FD_SETSIZE like any other.
 *
 * The first call opens the process's session with the stack (the socket path
 * is $MKNET_RUNTIME_DIR/stack.sock, default /run/mknet/stack.sock, or
 * $MKNET_STACK_SOCKET). If the stack is not reachable, calls fail with
 * ENETDOWN. If the stack dies, calls on existing sockets fail (ECONNRESET,
 * EPIPE, ENOTCONN as Linux would for a dead connection) and new sockets work
 * again once the stack is back.
 *
 * Supported: AF_INET, SOCK_STREAM (TCP) and SOCK_DGRAM (UDP), with
 * SOCK_NONBLOCK and SOCK_CLOEXEC. Thread-safe.
 *
 * Options lwIP has no counterpart for (TCP_CORK, TCP_MAXSEG, TCP_DEFER_ACCEPT,
 * SO_REUSEPORT, IP_TOS, ... : docs/preload.md has the list) are accepted and
 * read back without effect; TCP_CONGESTION reads "reno" (what lwIP does);
 * TCP_INFO gives the state and MSS with zero counters.
 *
 * Unmodified programs: libmknet-preload.so (deploy/mknet run CMD) puts these
 * calls under the libc names; see docs/preload.md. */
#ifndef MKNET_MKNET_H
#define MKNET_MKNET_H

#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

int mknet_socket(int domain, int type, int protocol);
int mknet_bind(int fd, const struct sockaddr* addr, socklen_t len);
int mknet_listen(int fd, int backlog);
int mknet_accept(int fd, struct sockaddr* addr, socklen_t* len);
int mknet_accept4(int fd, struct sockaddr* addr, socklen_t* len, int flags);
int mknet_connect(int fd, const struct sockaddr* addr, socklen_t len);
int mknet_shutdown(int fd, int how);
int mknet_close(int fd);
/* The new fd names the same socket (shared O_NONBLOCK); the socket closes
 * with its last fd. dup2/dup3 onto an mknet socket close it as Linux would. */
int mknet_dup(int fd);
int mknet_dup2(int oldfd, int newfd);
int mknet_dup3(int oldfd, int newfd, int flags);

ssize_t mknet_send(int fd, const void* buf, size_t len, int flags);
ssize_t mknet_recv(int fd, void* buf, size_t len, int flags);
ssize_t mknet_sendto(int fd, const void* buf, size_t len, int flags, const struct sockaddr* to, socklen_t tolen);
ssize_t mknet_recvfrom(int fd, void* buf, size_t len, int flags, struct sockaddr* from, socklen_t* fromlen);
ssize_t mknet_read(int fd, void* buf, size_t len);
ssize_t mknet_write(int fd, const void* buf, size_t len);
ssize_t mknet_readv(int fd, const struct iovec* iov, int iovcnt);
ssize_t mknet_writev(int fd, const struct iovec* iov, int iovcnt);
/* No ancillary data: sendmsg with msg_controllen != 0 fails with EOPNOTSUPP;
 * recvmsg returns msg_controllen 0 and sets MSG_TRUNC for cut datagrams. */
ssize_t mknet_sendmsg(int fd, const struct msghdr* msg, int flags);
ssize_t mknet_recvmsg(int fd, struct msghdr* msg, int flags);
/* out_fd an mknet socket, in_fd a seekable file (else EINVAL): the file is
 * read and sent; the offset moves by what was sent, as with sendfile(2). */
ssize_t mknet_sendfile(int out_fd, int in_fd, off_t* offset, size_t count);

int mknet_setsockopt(int fd, int level, int name, const void* value, socklen_t len);
int mknet_getsockopt(int fd, int level, int name, void* value, socklen_t* len);
int mknet_getsockname(int fd, struct sockaddr* addr, socklen_t* len);
int mknet_getpeername(int fd, struct sockaddr* addr, socklen_t* len);
/* F_GETFL / F_SETFL (O_NONBLOCK), F_GETFD / F_SETFD (FD_CLOEXEC),
 * F_DUPFD / F_DUPFD_CLOEXEC; other commands EINVAL. */
int mknet_fcntl(int fd, int cmd, ... /* int arg */);
/* FIONBIO and FIONREAD (bytes queued; for UDP the next datagram's length);
 * other requests ENOTTY. */
int mknet_ioctl(int fd, unsigned long request, void* arg);

/* poll(2) / ppoll(2) over any mix of mknet sockets and ordinary kernel fds.
 * Like Linux's, they are never restarted after a signal handler (EINTR). */
int mknet_poll(struct pollfd* fds, nfds_t nfds, int timeout_ms);
int mknet_ppoll(struct pollfd* fds, nfds_t nfds, const struct timespec* timeout, const sigset_t* sigmask);

/* 1 if fd is an mknet socket, 0 otherwise. Lock-free. */
int mknet_is_socket(int fd);
/* How many fds name mknet sockets in this process. Lock-free. */
size_t mknet_socket_count(void);
/* A number unique to the socket fd names, shared by its dups and never
 * reused in the process (fd numbers are); 0 if fd is not an mknet socket. */
unsigned long long mknet_socket_id(int fd);

/* For event loops that wait on their own kernel fds as well (the preload
 * shim's epoll and select are built on these):
 *   mknet_readiness(fd, events)  poll(2) revents of an mknet socket now,
 *                                from shared memory (no syscall);
 *   mknet_wake_fd(fd)            a kernel fd that becomes readable when the
 *                                stack posts news for fd's session, once the
 *                                caller announced its sleep;
 *   mknet_prepare_sleep(fd)      announce it; then check readiness once more
 *                                before sleeping, so no wake-up is lost;
 *   mknet_after_wake(fd)         call after mknet_wake_fd(fd) was readable.
 * Each returns -1 with EBADF if fd is not an mknet socket. */
int mknet_readiness(int fd, short events);
/* mknet_readiness for many fds at once (one table lock). In: fd, events and
 * id (0: take the socket fd names now). Out: id, revents, and wake_fd (the
 * mknet_wake_fd of the socket's session); revents is POLLNVAL and wake_fd -1
 * if fd is closed or names another socket than id. Returns how many entries
 * have revents != 0. */
struct mknet_watch {
  int fd;
  short events;
  short revents;
  unsigned long long id;
  int wake_fd;
};
int mknet_readiness_batch(struct mknet_watch* watches, size_t n);
/* Stores up to max fd numbers naming mknet sockets; returns how many there are. */
size_t mknet_socket_fds(int* fds, size_t max);
int mknet_wake_fd(int fd);
int mknet_prepare_sleep(int fd);
int mknet_after_wake(int fd);

#ifdef __cplusplus
}
#endif

#endif /* MKNET_MKNET_H */
