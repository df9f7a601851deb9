// The kernel backend of the C API: the calls whose behaviour is its own
// (mknet_is_socket, mknet_fcntl's command set) and that poll mixes fds.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "mknet/mknet.h"

namespace {

TEST(KernelBackendTest, IsSocketOnlyForSockets) {
  const int tcp = mknet_socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int udp = mknet_socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(tcp, 0) << std::strerror(errno);
  ASSERT_GE(udp, 0) << std::strerror(errno);
  int pipeFds[2];
  ASSERT_EQ(::pipe2(pipeFds, O_CLOEXEC), 0);
  const int file = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(file, 0);

  EXPECT_EQ(mknet_is_socket(tcp), 1);
  EXPECT_EQ(mknet_is_socket(udp), 1);
  EXPECT_EQ(mknet_is_socket(pipeFds[0]), 0);
  EXPECT_EQ(mknet_is_socket(file), 0);
  // A query leaves errno alone, even for a bad fd.
  errno = EAGAIN;
  EXPECT_EQ(mknet_is_socket(-1), 0);
  EXPECT_EQ(errno, EAGAIN);

  EXPECT_EQ(mknet_close(tcp), 0);
  EXPECT_EQ(mknet_is_socket(tcp), 0) << "a closed fd is no socket";
  EXPECT_EQ(mknet_close(udp), 0);
  ::close(pipeFds[0]);
  ::close(pipeFds[1]);
  ::close(file);
}

TEST(KernelBackendTest, FcntlSupportsTheFourDocumentedCommands) {
  const int fd = mknet_socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  const int flags = mknet_fcntl(fd, F_GETFL);
  ASSERT_GE(flags, 0);
  EXPECT_EQ(flags & O_NONBLOCK, 0);
  ASSERT_EQ(mknet_fcntl(fd, F_SETFL, flags | O_NONBLOCK), 0);
  EXPECT_NE(mknet_fcntl(fd, F_GETFL) & O_NONBLOCK, 0);

  EXPECT_EQ(mknet_fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
  ASSERT_EQ(mknet_fcntl(fd, F_SETFD, FD_CLOEXEC), 0);
  EXPECT_EQ(mknet_fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);

  // Others are refused like an unknown command, so programs tested on the
  // kernel backend do not come to rely on what libmknet does not offer.
  errno = 0;
  EXPECT_EQ(mknet_fcntl(fd, F_DUPFD, 0), -1);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(mknet_fcntl(-1, F_GETFL), -1);
  EXPECT_EQ(errno, EBADF);
  EXPECT_EQ(mknet_close(fd), 0);
}

TEST(KernelBackendTest, PollMixesSocketsAndPipes) {
  int pipeFds[2];
  ASSERT_EQ(::pipe2(pipeFds, O_CLOEXEC), 0);
  const int udp = mknet_socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(udp, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(mknet_bind(udp, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  socklen_t len = sizeof sa;
  ASSERT_EQ(mknet_getsockname(udp, reinterpret_cast<sockaddr*>(&sa), &len), 0);

  pollfd fds[2] = {{pipeFds[0], POLLIN, 0}, {udp, POLLIN, 0}};
  EXPECT_EQ(mknet_poll(fds, 2, 0), 0);

  const char ping[] = "ping";
  ASSERT_EQ(mknet_sendto(udp, ping, 4, 0, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 4);
  ASSERT_EQ(mknet_poll(fds, 2, 5000), 1);
  EXPECT_EQ(fds[0].revents, 0);
  EXPECT_EQ(fds[1].revents, POLLIN);

  ASSERT_EQ(::write(pipeFds[1], "x", 1), 1);
  ASSERT_EQ(mknet_poll(fds, 2, 5000), 2);
  EXPECT_EQ(fds[0].revents, POLLIN);

  char buf[16];
  sockaddr_in from{};
  socklen_t fromLen = sizeof from;
  ASSERT_EQ(mknet_recvfrom(udp, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &fromLen), 4);
  EXPECT_EQ(std::memcmp(buf, ping, 4), 0);
  EXPECT_EQ(from.sin_port, sa.sin_port);
  EXPECT_EQ(mknet_close(udp), 0);
  ::close(pipeFds[0]);
  ::close(pipeFds[1]);
}

TEST(KernelBackendTest, StreamCallsMirrorPosix) {
  const int listener = mknet_socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(mknet_bind(listener, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(mknet_listen(listener, 4), 0);
  socklen_t len = sizeof sa;
  ASSERT_EQ(mknet_getsockname(listener, reinterpret_cast<sockaddr*>(&sa), &len), 0);

  const int client = mknet_socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(mknet_connect(client, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  const int server = mknet_accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  ASSERT_GE(server, 0);
  EXPECT_NE(mknet_fcntl(server, F_GETFL) & O_NONBLOCK, 0);

  char buf[32];
  errno = 0;
  EXPECT_EQ(mknet_recv(server, buf, sizeof buf, 0), -1);
  EXPECT_EQ(errno, EAGAIN);

  iovec out[2] = {{const_cast<char*>("hello "), 6}, {const_cast<char*>("world"), 5}};
  ASSERT_EQ(mknet_writev(client, out, 2), 11);
  ASSERT_EQ(mknet_write(client, "!", 1), 1);
  ASSERT_EQ(mknet_shutdown(client, SHUT_WR), 0);

  std::string got;
  while (true) {
    pollfd pfd{server, POLLIN, 0};
    ASSERT_EQ(mknet_poll(&pfd, 1, 5000), 1);
    char a[4];
    char b[64];
    iovec in[2] = {{a, sizeof a}, {b, sizeof b}};
    const ssize_t n = mknet_readv(server, in, 2);
    ASSERT_GE(n, 0) << std::strerror(errno);
    if (n == 0) break;
    got.append(a, std::min<size_t>(static_cast<size_t>(n), sizeof a));
    if (n > 4) got.append(b, static_cast<size_t>(n) - 4);
  }
  EXPECT_EQ(got, "hello world!");

  sockaddr_in peer{};
  socklen_t peerLen = sizeof peer;
  ASSERT_EQ(mknet_getpeername(server, reinterpret_cast<sockaddr*>(&peer), &peerLen), 0);
  sockaddr_in clientAt{};
  socklen_t clientLen = sizeof clientAt;
  ASSERT_EQ(mknet_getsockname(client, reinterpret_cast<sockaddr*>(&clientAt), &clientLen), 0);
  EXPECT_EQ(peer.sin_port, clientAt.sin_port);

  // Writing after the peer closed: EPIPE, and MSG_NOSIGNAL keeps us alive.
  ASSERT_EQ(mknet_close(client), 0);
  int one = 1;
  ASSERT_EQ(mknet_setsockopt(server, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one), 0);
  int value = 0;
  socklen_t valueLen = sizeof value;
  ASSERT_EQ(mknet_getsockopt(server, SOL_SOCKET, SO_KEEPALIVE, &value, &valueLen), 0);
  EXPECT_EQ(value, 1);
  ssize_t sent = 0;
  for (int i = 0; i < 100 && sent >= 0; ++i) {
    sent = mknet_send(server, "x", 1, MSG_NOSIGNAL);
    if (sent < 0 && errno == EAGAIN) sent = 0;
    ::usleep(1000);
  }
  EXPECT_EQ(sent, -1);
  EXPECT_TRUE(errno == EPIPE || errno == ECONNRESET) << std::strerror(errno);
  EXPECT_EQ(mknet_close(server), 0);
  EXPECT_EQ(mknet_close(listener), 0);
  errno = 0;
  EXPECT_EQ(mknet_close(listener), -1);
  EXPECT_EQ(errno, EBADF);
}

}  // namespace
