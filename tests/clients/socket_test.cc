// mknet/socket.hpp over the kernel backend (mknet_kernel), on loopback.
#include "mknet/socket.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>

#include <cstring>
#include <numeric>
#include <thread>
#include <vector>

namespace mknet {
namespace {

constexpr uint32_t kLoopback = 0x7f000001;

bool fdIsOpen(int fd) { return ::fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

std::vector<std::byte> pattern(size_t n) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 131 + i / 251) & 0xff);
  return v;
}

TEST(Ipv4EndpointTest, ParsesAndPrints) {
  const auto ep = Ipv4Endpoint::parse("198.18.0.2:80");
  ASSERT_TRUE(ep);
  EXPECT_EQ(ep->ip, 0xc6120002u);
  EXPECT_EQ(ep->port, 80);
  EXPECT_EQ(ep->toString(), "198.18.0.2:80");
  EXPECT_EQ(Ipv4Endpoint::parse("0.0.0.0:0"), (Ipv4Endpoint{0, 0}));
  EXPECT_EQ(Ipv4Endpoint::parse("255.255.255.255:65535"), (Ipv4Endpoint{0xffffffff, 65535}));
  const Ipv4Endpoint roundTrip{0x0a000102, 8080};
  EXPECT_EQ(Ipv4Endpoint::parse(roundTrip.toString()), roundTrip);

  const sockaddr_in sa = ep->toSockaddr();
  EXPECT_EQ(sa.sin_family, AF_INET);
  EXPECT_EQ(sa.sin_port, htons(80));
  EXPECT_EQ(sa.sin_addr.s_addr, htonl(0xc6120002u));
  EXPECT_EQ(Ipv4Endpoint::fromSockaddr(sa), *ep);
}

TEST(Ipv4EndpointTest, RejectsAnythingElse) {
  for (const char* text : {"", ":80", "1.2.3.4", "1.2.3.4:", "1.2.3:80", "1.2.3.4.5:80", "256.0.0.1:80",
                           "1.2.3.4:65536", "1.2.3.4:-1", "1.2.3.4:8o", " 1.2.3.4:80", "1.2.3.4:80 ",
                           "0x7f.0.0.1:80", "1..2.3:80", "1.2.3.4:123456", "01234.0.0.1:1", "a.b.c.d:80"}) {
    EXPECT_FALSE(Ipv4Endpoint::parse(text)) << '"' << text << '"';
  }
  EXPECT_EQ(parseIpv4("127.0.0.1"), kLoopback);
  EXPECT_FALSE(parseIpv4("127.0.0.1:5"));
}

TEST(ExpectedTest, HoldsAValueOrAnErrno) {
  Expected<int> value(7);
  ASSERT_TRUE(value);
  EXPECT_EQ(*value, 7);
  EXPECT_FALSE(value.error());

  errno = ECONNRESET;
  Expected<int> error(lastError());
  ASSERT_FALSE(error);
  EXPECT_EQ(error.error(), std::errc::connection_reset);
  EXPECT_EQ(error.error().category(), std::generic_category());
  EXPECT_EQ(error.error().message(), std::strerror(ECONNRESET));

  Expected<void> ok;
  EXPECT_TRUE(ok);
  Expected<void> failed(std::make_error_code(std::errc::broken_pipe));
  EXPECT_FALSE(failed);
  EXPECT_EQ(failed.error().value(), EPIPE);
}

TEST(SocketTest, OwnsItsFdAndMovesIt) {
  auto made = Socket::tcp();
  ASSERT_TRUE(made) << made.error().message();
  const int fd = made->fd();
  EXPECT_TRUE(fdIsOpen(fd));
  EXPECT_EQ(::fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  {
    Socket moved = std::move(*made);
    EXPECT_EQ(moved.fd(), fd);
    EXPECT_FALSE(made->valid());
    Socket other;
    other = std::move(moved);
    EXPECT_EQ(other.fd(), fd);
    EXPECT_FALSE(moved.valid());
  }
  EXPECT_FALSE(fdIsOpen(fd)) << "destructor must close";

  auto released = Socket::udp();
  ASSERT_TRUE(released);
  const int raw = released->release();
  EXPECT_FALSE(released->valid());
  EXPECT_TRUE(fdIsOpen(raw));
  Socket adopted(raw);
  EXPECT_TRUE(adopted.close());
  EXPECT_FALSE(adopted.valid());
  EXPECT_FALSE(fdIsOpen(raw));
  EXPECT_TRUE(adopted.close()) << "closing an empty socket is a no-op";
}

TEST(SocketTest, TcpLoopbackCarriesEveryByteBothWays) {
  auto listener = Listener::listen(Ipv4Endpoint{kLoopback, 0});
  ASSERT_TRUE(listener) << listener.error().message();
  const auto local = listener->localEndpoint();
  ASSERT_TRUE(local);
  EXPECT_EQ(local->ip, kLoopback);
  ASSERT_NE(local->port, 0);

  const auto data = pattern(4 << 20);
  std::vector<std::byte> echoed(data.size());
  Expected<size_t> clientGot(size_t{0});
  Ipv4Endpoint clientLocal;
  std::thread client([&] {
    auto s = Socket::tcp();
    if (!s || !s->connect(*local)) return;
    (void)s->setNoDelay();
    clientLocal = *s->localEndpoint();
    // Writes everything, then reads it back: the server echoes as it reads,
    // and 4 MiB fits in loopback buffers only together with our reads, so
    // send on one thread and read on another.
    std::thread reader([&] { clientGot = recvExactly(*s, echoed); });
    (void)sendAll(*s, data);
    (void)s->shutdown(SHUT_WR);
    reader.join();
  });

  auto accepted = listener->accept();
  ASSERT_TRUE(accepted) << accepted.error().message();
  Socket& conn = accepted->socket;
  // While connected: once both sides have closed, getpeername is ENOTCONN.
  const auto peer = conn.peerEndpoint();
  ASSERT_TRUE(peer) << peer.error().message();
  EXPECT_EQ(*peer, accepted->peer);
  EXPECT_EQ(conn.localEndpoint().value(), *local);
  std::vector<std::byte> buf(100000);
  uint64_t total = 0;
  while (true) {
    auto n = conn.recv(buf);
    ASSERT_TRUE(n) << n.error().message();
    if (*n == 0) break;
    ASSERT_TRUE(sendAll(conn, std::span(buf.data(), *n)));
    total += *n;
  }
  ASSERT_TRUE(conn.shutdown(SHUT_WR));
  client.join();

  EXPECT_EQ(total, data.size());
  ASSERT_TRUE(clientGot) << clientGot.error().message();
  EXPECT_EQ(*clientGot, data.size());
  EXPECT_TRUE(echoed == data);
  EXPECT_EQ(accepted->peer, clientLocal);
}

TEST(SocketTest, RecvExactlyReportsEndOfStreamAsAShortCount) {
  auto listener = Listener::listen(Ipv4Endpoint{kLoopback, 0});
  ASSERT_TRUE(listener);
  auto client = Socket::tcp();
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->connect(*listener->localEndpoint()));
  auto accepted = listener->accept();
  ASSERT_TRUE(accepted);
  const auto data = pattern(1000);
  ASSERT_TRUE(sendAll(*client, data));
  ASSERT_TRUE(client->close());

  std::vector<std::byte> buf(5000);
  auto got = recvExactly(accepted->socket, buf);
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_EQ(*got, 1000u);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), buf.begin()));
}

TEST(SocketTest, ErrorsCarryErrno) {
  // A port that was just free has nobody listening.
  uint16_t port = 0;
  {
    auto l = Listener::listen(Ipv4Endpoint{kLoopback, 0});
    ASSERT_TRUE(l);
    port = l->localEndpoint()->port;
  }
  auto s = Socket::tcp();
  ASSERT_TRUE(s);
  const auto refused = s->connect(Ipv4Endpoint{kLoopback, port});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), std::errc::connection_refused);

  auto listener = Listener::listen(Ipv4Endpoint{kLoopback, 0});
  ASSERT_TRUE(listener);
  auto again = Socket::tcp();
  ASSERT_TRUE(again);
  ASSERT_TRUE(again->setReuseAddr(false));
  const auto inUse = again->bind(*listener->localEndpoint());
  ASSERT_FALSE(inUse);
  EXPECT_EQ(inUse.error(), std::errc::address_in_use);

  Socket empty;
  const auto bad = empty.send(std::span<const std::byte>());
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), std::errc::bad_file_descriptor);
}

TEST(SocketTest, NonBlockingAndOptions) {
  auto listener = Listener::listen(Ipv4Endpoint{kLoopback, 0});
  ASSERT_TRUE(listener);
  ASSERT_TRUE(listener->setNonBlocking());
  const auto none = listener->accept();
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error(), std::errc::resource_unavailable_try_again);

  auto s = Socket::tcp(SOCK_NONBLOCK);
  ASSERT_TRUE(s);
  const auto connecting = s->connect(*listener->localEndpoint());
  // Loopback may finish at once; otherwise the non-blocking contract applies.
  if (!connecting) {
    EXPECT_EQ(connecting.error(), std::errc::operation_in_progress);
    pollfd pfd{s->fd(), POLLOUT, 0};
    ASSERT_EQ(mknet_poll(&pfd, 1, 5000), 1);
  }
  EXPECT_EQ(s->pendingError().value(), 0);
  std::byte b[1];
  const auto empty = s->recv(b);
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error(), std::errc::resource_unavailable_try_again);
  ASSERT_TRUE(s->setNonBlocking(false));
  EXPECT_EQ(::fcntl(s->fd(), F_GETFL) & O_NONBLOCK, 0);

  ASSERT_TRUE(s->setNoDelay());
  EXPECT_NE(s->option(IPPROTO_TCP, TCP_NODELAY).value(), 0);
  ASSERT_TRUE(s->setNoDelay(false));
  EXPECT_EQ(s->option(IPPROTO_TCP, TCP_NODELAY).value(), 0);
  ASSERT_TRUE(s->setKeepAlive());
  EXPECT_NE(s->option(SOL_SOCKET, SO_KEEPALIVE).value(), 0);
  EXPECT_NE(listener->socket().option(SOL_SOCKET, SO_REUSEADDR).value(), 0) << "Listener::listen sets it";
}

TEST(SocketTest, UdpSendToAndRecvFrom) {
  auto a = Socket::udp();
  auto b = Socket::udp();
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->bind(Ipv4Endpoint{kLoopback, 0}));
  ASSERT_TRUE(b->bind(Ipv4Endpoint{kLoopback, 0}));
  const Ipv4Endpoint aAt = *a->localEndpoint();
  const Ipv4Endpoint bAt = *b->localEndpoint();

  const auto data = pattern(1472);
  auto sent = a->sendTo(data, bAt);
  ASSERT_TRUE(sent) << sent.error().message();
  EXPECT_EQ(*sent, data.size());

  std::vector<std::byte> buf(2000);
  auto got = b->recvFrom(buf);
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_EQ(got->size, data.size());
  EXPECT_EQ(got->from, aAt);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), buf.begin()));

  // A datagram larger than the buffer is truncated, as recvfrom(2) does.
  ASSERT_TRUE(a->sendTo(data, bAt));
  std::vector<std::byte> small(100);
  auto cut = b->recvFrom(small);
  ASSERT_TRUE(cut);
  EXPECT_EQ(cut->size, 100u);
  EXPECT_TRUE(std::equal(small.begin(), small.end(), data.begin()));
}

}  // namespace
}  // namespace mknet
