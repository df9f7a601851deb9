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
 * SOCK_NONBLOCK and SOCK_CLOEXEC. Thread-safe. */
#ifndef MKNET_MKNET_H
#define MKNET_MKNET_H

#include <poll.h>
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

ssize_t mknet_send(int fd, const void* buf, size_t len, int flags);
ssize_t mknet_recv(int fd, void* buf, size_t len, int flags);
ssize_t mknet_sendto(int fd, const void* buf, size_t len, int flags, const struct sockaddr* to, socklen_t tolen);
ssize_t mknet_recvfrom(int fd, void* buf, size_t len, int flags, struct sockaddr* from, socklen_t* fromlen);
ssize_t mknet_read(int fd, void* buf, size_t len);
ssize_t mknet_write(int fd, const void* buf, size_t len);
ssize_t mknet_readv(int fd, const struct iovec* iov, int iovcnt);
ssize_t mknet_writev(int fd, const struct iovec* iov, int iovcnt);

int mknet_setsockopt(int fd, int level, int name, const void* value, socklen_t len);
int mknet_getsockopt(int fd, int level, int name, void* value, socklen_t* len);
int mknet_getsockname(int fd, struct sockaddr* addr, socklen_t* len);
int mknet_getpeername(int fd, struct sockaddr* addr, socklen_t* len);
/* F_GETFL / F_SETFL (O_NONBLOCK), F_GETFD / F_SETFD (FD_CLOEXEC). */
int mknet_fcntl(int fd, int cmd, ... /* int arg */);

/* poll(2) over any mix of mknet sockets and ordinary kernel fds. */
int mknet_poll(struct pollfd* fds, nfds_t nfds, int timeout_ms);

/* 1 if fd is an mknet socket, 0 otherwise. */
int mknet_is_socket(int fd);

#ifdef __cplusplus
}
#endif

#endif /* MKNET_MKNET_H */
