// window_scale: mknet's receive window beyond lwIP's compiled-in shift.
//
// Debian's lwIP announces window-scale shift 1 (at most 128 KiB); mknet
// rewrites the shift in its SYN and SYN-ACK to kRcvScale (7) and has lwIP
// scale its windows by the same (engine_lwip.h). Seen from the Linux end with
// TCP_INFO while Linux sends 64 MiB to an mknet-bulk app, for both ways of
// opening the connection:
//   active   mknet `recv` connects to a Linux listener (our SYN carries it)
//   passive  Linux connects to mknet `sink` (our SYN-ACK carries it)
// the shift Linux took from us (tcpi_snd_wscale) is 7, and the largest window
// Linux was offered (tcpi_snd_wnd) lies above what shift 1 could say and
// within the socket's 256 KiB receive ring. The second holds only if lwIP's
// announcements use the shift the SYN said: with shift 1 in force, Linux
// would read them 64 times too large.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/tcp.h>  // struct tcp_info with tcpi_snd_wnd (glibc's lacks it)
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "mknet/mknet.h"
#include "tests/integration/testbed.h"

namespace mknet::itest {
namespace {

constexpr uint64_t kBytes = 64ull << 20;
constexpr uint32_t kShiftOneMax = 0xffffu << 1;  // what lwIP's own shift can announce
constexpr uint32_t kRing = 256u * 1024;          // mknet-stack's default --ring-kib

struct Seen {
  int sndWscale = -1;
  uint32_t maxSndWnd = 0;
  uint64_t sent = 0;
  std::string error;
};

sockaddr_in endpoint(const std::string& ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  return a;
}

// Sends kBytes on the Linux socket fd, sampling TCP_INFO after each write,
// then ends the stream and waits for the mknet app to close its side.
Seen sendAndWatch(int fd) {
  Seen s;
  std::vector<char> chunk(256 * 1024);
  for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = static_cast<char>(i * 7 + 1);
  timeval tv{20, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  while (s.sent < kBytes) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), kBytes - s.sent));
    const ssize_t w = ::send(fd, chunk.data(), n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      s.error = std::string("send: ") + std::strerror(errno);
      return s;
    }
    s.sent += static_cast<uint64_t>(w);
    tcp_info ti{};
    socklen_t len = sizeof ti;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && len >= offsetof(tcp_info, tcpi_snd_wnd) + 4) {
      s.sndWscale = ti.tcpi_snd_wscale;
      s.maxSndWnd = std::max(s.maxSndWnd, ti.tcpi_snd_wnd);
    }
  }
  ::shutdown(fd, SHUT_WR);
  char c;
  ssize_t r;
  do r = ::recv(fd, &c, 1, 0);
  while (r < 0 && errno == EINTR);
  if (r != 0) s.error = r < 0 ? std::string("waiting for the app's close: ") + std::strerror(errno) : "unexpected data";
  return s;
}

void expectScaled(const Seen& s, const char* what) {
  EXPECT_EQ(s.error, "") << what;
  EXPECT_EQ(s.sent, kBytes) << what;
  EXPECT_EQ(s.sndWscale, 7) << what << ": the shift Linux took from mknet's SYN/SYN-ACK";
  EXPECT_GT(s.maxSndWnd, kShiftOneMax) << what << ": largest window Linux was offered";
  EXPECT_LE(s.maxSndWnd, kRing) << what << ": largest window Linux was offered";
}

// The mknet app ends with all kBytes, Linux saw the scaled window, and the
// stack is left clean.
void expectDone(Testbed& tb, Process& app, const char* resultLine, const Seen& s, const char* what) {
  auto st = app.wait(10s);
  ASSERT_TRUE(st) << what << ": " << app.output();
  EXPECT_EQ(*st, 0) << what << ": " << app.output();
  EXPECT_EQ(parseKeyValues(lastLineWith(app.output(), resultLine))["bytes"], std::to_string(kBytes)) << what;
  expectScaled(s, what);
  EXPECT_EQ(tb.peerFaults(), "") << what;
  EXPECT_EQ(tb.leftovers(), "") << what;
}

TEST(WindowScale, ActiveOpenFromMknet) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  const int l = tb.socketInNs(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(l, 0) << std::strerror(errno);
  const sockaddr_in a = endpoint(tb.linuxIp(), 5301);
  ASSERT_EQ(::bind(l, reinterpret_cast<const sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
  ASSERT_EQ(::listen(l, 1), 0) << std::strerror(errno);
  Process recv = tb.spawnApp({Bin::bulk(), "recv", "--connect", tb.linuxIp() + ":5301", "--no-hash"}, "recv.log");
  pollfd p{l, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1) << "mknet-bulk recv did not connect: " << recv.output();
  const int fd = ::accept(l, nullptr, nullptr);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  const Seen s = sendAndWatch(fd);
  ::close(fd);
  ::close(l);
  expectDone(tb, recv, "mode=recv", s, "mknet connects");
}

TEST(WindowScale, PassiveOpenOnMknet) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  Process sink = tb.spawnApp({Bin::bulk(), "sink", "--port", "5302", "--once", "--no-hash"}, "sink.log");
  ASSERT_TRUE(sink.waitForLine("listen=", 10s)) << sink.output();
  const int fd = tb.socketInNs(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  const sockaddr_in a = endpoint(tb.mknetIp(), 5302);
  ASSERT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
  const Seen s = sendAndWatch(fd);
  ::close(fd);
  expectDone(tb, sink, "mode=sink", s, "Linux connects");
}

// A stream that ends (FIN) behind exactly kRing - 64 KiB unread bytes: the
// FIN leaves rcv_wnd at lwIP's TCP_WND, where lwIP does not give back the
// sequence number the FIN took. The app (this process, on libmknet) reads
// everything only after the FIN is in, answers, and closes: Linux must get
// the whole answer and a FIN, not a reset for "unread data".
TEST(WindowScale, FinAtTheWindowEdgeStillClosesWithAFin) {
  Testbed tb;
  ASSERT_TRUE(tb.ok()) << tb.error();
  setenv("MKNET_STACK_SOCKET", tb.stackSocket().c_str(), 1);  // read once, at this process's first call
  const int l = tb.socketInNs(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(l, 0) << std::strerror(errno);
  const sockaddr_in a = endpoint(tb.linuxIp(), 5303);
  ASSERT_EQ(::bind(l, reinterpret_cast<const sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
  ASSERT_EQ(::listen(l, 1), 0) << std::strerror(errno);
  const int m = mknet_socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(m, 0) << std::strerror(errno);
  ASSERT_EQ(mknet_connect(m, reinterpret_cast<const sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
  const int fd = ::accept(l, nullptr, nullptr);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

  constexpr size_t kIn = kRing - 65536, kOut = 100 * 1024;
  std::vector<char> in(kIn);
  for (size_t i = 0; i < kIn; ++i) in[i] = static_cast<char>(i * 13 + 5);
  ASSERT_EQ(::send(fd, in.data(), kIn, MSG_NOSIGNAL), static_cast<ssize_t>(kIn)) << std::strerror(errno);
  ASSERT_EQ(::shutdown(fd, SHUT_WR), 0);
  // Wait for the FIN without reading a byte.
  pollfd p{m, POLLRDHUP, 0};
  ASSERT_EQ(mknet_poll(&p, 1, 10000), 1) << "no FIN seen";
  ASSERT_NE(p.revents & POLLRDHUP, 0);

  std::vector<char> got(kIn + 1);
  size_t have = 0;
  for (;;) {
    const ssize_t r = mknet_recv(m, got.data() + have, got.size() - have, 0);
    ASSERT_GE(r, 0) << std::strerror(errno);
    if (r == 0) break;
    have += static_cast<size_t>(r);
  }
  ASSERT_EQ(have, kIn);
  EXPECT_EQ(std::memcmp(got.data(), in.data(), kIn), 0);

  std::vector<char> out(kOut);
  for (size_t i = 0; i < kOut; ++i) out[i] = static_cast<char>(i * 7 + 3);
  for (size_t sent = 0; sent < kOut;) {
    const ssize_t w = mknet_send(m, out.data() + sent, kOut - sent, MSG_NOSIGNAL);
    ASSERT_GT(w, 0) << std::strerror(errno);
    sent += static_cast<size_t>(w);
  }
  ASSERT_EQ(mknet_close(m), 0);

  std::vector<char> back(kOut + 1);
  size_t n = 0;
  int err = 0;
  for (;;) {
    const ssize_t r = ::recv(fd, back.data() + n, back.size() - n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) err = errno;
    if (r <= 0) break;
    n += static_cast<size_t>(r);
  }
  EXPECT_EQ(err, 0) << std::strerror(err) << " after " << n << " of " << kOut << " bytes";
  ASSERT_EQ(n, kOut);
  EXPECT_EQ(std::memcmp(back.data(), out.data(), kOut), 0);
  ::close(fd);
  ::close(l);
  EXPECT_TRUE(tb.waitCounter("sockets", 0, 5s)) << "the closed socket is still held";
  EXPECT_EQ(tb.peerFaults(), "");
}

}  // namespace
}  // namespace mknet::itest
