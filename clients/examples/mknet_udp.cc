// mknet-udp: UDP datagram rate and loss, one direction.
//
// The sender sends datagrams of --size bytes as fast as sendto() takes them,
// for --seconds or --count datagrams, then a few end markers that carry the
// number sent. The receiver counts datagrams and bytes, checks every one
// (magic, sequence number, and the payload pattern the sequence number
// defines), and when an end marker arrives (or nothing has come for
// --idle-timeout seconds) prints what arrived, what was sent and the loss:
//   mode=recv size= received= sent= lost= loss= bad= out_of_order= seconds= pps= gbps=
// pps is datagrams received per second, from the first to the last datagram.
// Built as mknet-udp (libmknet), mknet-udp-kernel (Linux sockets) and
// mknet-udp-sp (stack in-process), like the other example apps.
//
// Datagram layout (little-endian): u32 magic, u32 kind (0 data, 1 end),
// u64 seq (for an end marker: the number of data datagrams sent), then
// payload byte i (i >= 16) = (seq * 7 + i) mod 256.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "flags.h"
#include "mknet/mknet.h"
#include "request_server.h"

namespace mknet::examples {
namespace {

using Clock = std::chrono::steady_clock;
constexpr App kApp{"mknet-udp"};
constexpr uint32_t kMagic = 0x6d6b7564;  // "mkud"
constexpr uint32_t kData = 0, kEnd = 1;
constexpr size_t kHeader = 16;
constexpr size_t kMaxSize = 65507;
constexpr int kEndMarkers = 10;

constexpr char kUsage[] =
    "usage: mknet-udp send --connect IP:PORT [--size B] [--seconds S] [--count N]\n"
    "       mknet-udp recv --port P [--bind IP] [--idle-timeout SEC]\n"
    "\n"
    "send: B-byte datagrams (default 64, 16 .. 65507) as fast as sendto() takes\n"
    "  them for S seconds (default 5) or N datagrams, whichever is first, then\n"
    "  10 end markers 2 ms apart carrying the number sent. Prints:\n"
    "    mode=send size= sent= errors= seconds= pps= gbps=\n"
    "recv: counts and verifies datagrams until an end marker arrives or none has\n"
    "  come for SEC seconds (default 3) after the first datagram. Prints listen=IP:PORT\n"
    "  first, then:\n"
    "    mode=recv size= received= sent= lost= loss= bad= out_of_order= seconds= pps= gbps=\n"
    "  (sent=-1 and loss=-1 if no end marker arrived).\n"
    "Exit status: 0 ok, 1 error (or a datagram failed verification), 2 usage.\n";

constexpr FlagSpec kSendFlags[] = {{"help", false}, {"connect", true}, {"size", true}, {"seconds", true},
                                   {"count", true}};
constexpr FlagSpec kRecvFlags[] = {{"help", false}, {"port", true}, {"bind", true}, {"idle-timeout", true}};

void putHeader(char* p, uint32_t kind, uint64_t seq) {
  std::memcpy(p, &kMagic, 4);
  std::memcpy(p + 4, &kind, 4);
  std::memcpy(p + 8, &seq, 8);
}

// pattern[k] = k mod 256, doubled: the payload of datagram seq is
// pattern + (seq * 7 + 16) mod 256, so filling and checking are memcpy/memcmp.
std::vector<char> makePattern(size_t size) {
  std::vector<char> p(256 + size);
  for (size_t k = 0; k < p.size(); ++k) p[k] = static_cast<char>(k);
  return p;
}

const char* payloadOf(const std::vector<char>& pattern, uint64_t seq) {
  return pattern.data() + ((seq * 7 + kHeader) & 0xff);
}

int send(const Flags& f) {
  sockaddr_in a;
  const auto ep = f.value("connect");
  if (!ep) return kApp.usageError("send needs --connect IP:PORT");
  if (!parseEndpoint(*ep, &a)) return kApp.usageError("bad --connect '" + std::string(*ep) + "' (want IP:PORT)");
  uint64_t size = 64, count = UINT64_MAX;
  double seconds = 5;
  if (!f.count("size", &size, kHeader, kMaxSize)) return kApp.usageError("bad --size (16 .. 65507)");
  if (!f.count("count", &count, 1, UINT64_MAX)) return kApp.usageError("bad --count (want >= 1)");
  if (const auto v = f.value("seconds")) {
    const auto s = parseSeconds(*v);
    if (!s) return kApp.usageError("bad --seconds '" + std::string(*v) + "'");
    seconds = *s;
  }
  const int fd = mknet_socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0 || mknet_connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) < 0) {
    std::fprintf(stderr, "mknet-udp: socket/connect: %s\n", std::strerror(errno));
    return 1;
  }
  const auto pattern = makePattern(size);
  std::vector<char> buf(size);
  uint64_t sent = 0, errors = 0;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  while (sent < count) {
    // The clock every 64 datagrams: a datagram takes about a microsecond.
    if ((sent & 63) == 0 && Clock::now() >= deadline) break;
    putHeader(buf.data(), kData, sent);
    std::memcpy(buf.data() + kHeader, payloadOf(pattern, sent), size - kHeader);
    const ssize_t n = mknet_send(fd, buf.data(), size, 0);
    if (n == static_cast<ssize_t>(size)) {
      ++sent;
      continue;
    }
    // ENOBUFS / EAGAIN: the local queue is full; the datagram was not sent.
    if (n < 0 && (errno == ENOBUFS || errno == EAGAIN || errno == EINTR || errno == ECONNREFUSED)) {
      ++errors;
      if (errors > 1000000 && sent == 0) break;
      std::this_thread::yield();
      continue;
    }
    std::fprintf(stderr, "mknet-udp: send: %s\n", n < 0 ? std::strerror(errno) : "short datagram");
    return 1;
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  for (int i = 0; i < kEndMarkers; ++i) {
    putHeader(buf.data(), kEnd, sent);
    mknet_send(fd, buf.data(), kHeader, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  mknet_close(fd);
  const double pps = elapsed > 0 ? static_cast<double>(sent) / elapsed : 0;
  std::printf("mode=send size=%" PRIu64 " sent=%" PRIu64 " errors=%" PRIu64 " seconds=%.3f pps=%.0f gbps=%.3f\n", size,
              sent, errors, elapsed, pps, pps * static_cast<double>(size) * 8 / 1e9);
  return sent > 0 ? 0 : 1;
}

int receive(const Flags& f) {
  const auto pv = f.value("port");
  if (!pv) return kApp.usageError("recv needs --port P");
  const auto port = parsePort(*pv);
  if (!port) return kApp.usageError("bad --port '" + std::string(*pv) + "'");
  double idle = 3;
  if (const auto v = f.value("idle-timeout")) {
    const auto s = parseSeconds(*v);
    if (!s) return kApp.usageError("bad --idle-timeout '" + std::string(*v) + "'");
    idle = *s;
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(*port);
  if (const auto b = f.value("bind"); b && inet_pton(AF_INET, std::string(*b).c_str(), &a.sin_addr) != 1) {
    return kApp.usageError("bad --bind '" + std::string(*b) + "'");
  }
  const int fd = mknet_socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) {
    std::fprintf(stderr, "mknet-udp: socket: %s\n", std::strerror(errno));
    return 1;
  }
  // A deep receive queue, so the figure is the stack's rate rather than the
  // default buffer's; not every backend has the option, and that is fine.
  int rcvbuf = 8 << 20;
  if (mknet_setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0) {
    mknet_setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  }
  if (mknet_bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
    std::fprintf(stderr, "mknet-udp: bind port %u: %s\n", *port, std::strerror(errno));
    return 1;
  }
  socklen_t len = sizeof a;
  mknet_getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
  std::printf("listen=%s:%u\n", ip, ntohs(a.sin_port));
  std::fflush(stdout);
  // A receive timeout, so an idle gap ends the run even without a marker.
  timeval tv{0, 200000};
  mknet_setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

  std::vector<char> buf(kMaxSize + 1);
  std::vector<char> pattern;
  uint64_t received = 0, bytes = 0, bad = 0, outOfOrder = 0, nextSeq = 0, size = 0;
  int64_t sent = -1;
  Clock::time_point first{}, last{};
  auto lastActivity = Clock::now();
  bool any = false;      // a valid datagram (or the end marker) arrived
  bool anyInput = false; // anything arrived: the idle timeout runs from then
  while (true) {
    const ssize_t n = mknet_recv(fd, buf.data(), buf.size(), 0);
    const auto now = Clock::now();
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        std::fprintf(stderr, "mknet-udp: recv: %s\n", std::strerror(errno));
        return 1;
      }
      if (anyInput && std::chrono::duration<double>(now - lastActivity).count() >= idle) break;
      continue;
    }
    lastActivity = now;
    anyInput = true;
    uint32_t magic = 0, kind = 0;
    uint64_t seq = 0;
    if (static_cast<size_t>(n) >= kHeader) {
      std::memcpy(&magic, buf.data(), 4);
      std::memcpy(&kind, buf.data() + 4, 4);
      std::memcpy(&seq, buf.data() + 8, 8);
    }
    if (magic != kMagic || (kind != kData && kind != kEnd)) {
      ++bad;
      continue;
    }
    if (kind == kEnd) {
      sent = static_cast<int64_t>(seq);
      any = true;
      break;
    }
    if (!any) {
      any = true;
      first = now;
      size = static_cast<uint64_t>(n);
      pattern = makePattern(size);
    }
    if (static_cast<uint64_t>(n) != size ||
        std::memcmp(buf.data() + kHeader, payloadOf(pattern, seq), size - kHeader) != 0) {
      ++bad;
      continue;
    }
    if (seq < nextSeq) ++outOfOrder;
    nextSeq = seq + 1;
    ++received;
    bytes += static_cast<uint64_t>(n);
    last = now;
  }
  mknet_close(fd);
  const double elapsed = received > 1 ? std::chrono::duration<double>(last - first).count() : 0;
  const double pps = elapsed > 0 ? static_cast<double>(received - 1) / elapsed : 0;
  const int64_t lost = sent >= 0 ? sent - static_cast<int64_t>(received) : -1;
  const double loss = sent > 0 ? static_cast<double>(lost) / static_cast<double>(sent) : -1;
  std::printf("mode=recv size=%" PRIu64 " received=%" PRIu64 " sent=%" PRId64 " lost=%" PRId64
              " loss=%.6f bad=%" PRIu64 " out_of_order=%" PRIu64 " seconds=%.3f pps=%.0f gbps=%.3f\n",
              size, received, sent, lost, loss, bad, outOfOrder, elapsed, pps,
              elapsed > 0 ? static_cast<double>(bytes) * 8 / elapsed / 1e9 : 0.0);
  return bad == 0 && received > 0 ? 0 : 1;
}

int run(int argc, char** argv) {
  if (argc < 2) return kApp.usageError("missing mode (send or recv)");
  const std::string mode = argv[1];
  if (mode == "--help" || mode == "-h") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (mode != "send" && mode != "recv") return kApp.usageError("unknown mode '" + mode + "'");
  std::string err;
  const std::span<char* const> rest(argv + 2, static_cast<size_t>(argc - 2));
  const auto f = Flags::parse(rest, mode == "send" ? std::span<const FlagSpec>(kSendFlags)
                                                   : std::span<const FlagSpec>(kRecvFlags), &err);
  if (!f) return kApp.usageError(err);
  if (f->has("help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  return mode == "send" ? send(*f) : receive(*f);
}

}  // namespace
}  // namespace mknet::examples

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  return mknet::examples::run(argc, argv);
}
