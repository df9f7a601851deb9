// mknet-fault-rogue: an app that breaks the rules, for malicious_app_test.
//
// Shared-memory modes open a session through libmknet (the C API), reach the
// session's memory through libmknet's internals (currentSession()->region())
// and corrupt it; then they watch for the stack closing the session (the
// header's `closed` flag) for up to --wait-ms (default 3000) and print
//   "mode=M slot=S closed=0|1 detail=..."
// and exit 0 (1: the set-up failed). They corrupt only their OWN session.
//
//   notify-head  --peer IP:PORT   the notify ring's head far beyond its capacity
//   notify-bogus --peer IP:PORT   notifications naming slots that don't exist
//   tx-head      --peer IP:PORT   a connected TCP socket's tx ring head: garbage
//   tx-tail      --peer IP:PORT   the same ring's tail (the stack's index): garbage
//   rx-tail      --peer IP:PORT   its rx ring's tail (the app's index): garbage,
//                                 then the peer's data arrives
//   udp-length   --peer IP:PORT   UDP tx records with lengths beyond any datagram
//   status-noise --peer IP:PORT   random bytes over every slot's status and flags,
//                                 then traffic on the sockets
//   (--peer: a Linux echo server; the TCP modes connect to it.)
//
// Control-socket modes talk to the stack's Unix socket directly (no
// libmknet) and print "mode=M wrote=N server_closed=0|1 ms=T":
//   rpc-garbage   --socket PATH   64 KiB of random bytes
//   rpc-segment   --socket PATH   a well-framed message whose content is garbage
//   rpc-huge      --socket PATH   a frame announcing a 4 GiB segment, then 64 MiB
//   rpc-big       --socket PATH   a 56 MiB frame of zeros (within the reader's
//                                 limits), streamed in full
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "clients/lib/client_session.h"
#include "ipc/byte_ring.h"
#include "ipc/session_region.h"
#include "mknet/mknet.h"

namespace {

using namespace std::chrono_literals;
using mknet::ipc::RingControl;
using mknet::ipc::SessionRegion;

std::map<std::string, std::string> gFlags;
std::string flag(const std::string& name, const std::string& dflt = "") {
  auto it = gFlags.find(name);
  return it == gFlags.end() ? dflt : it->second;
}

std::string errName(int e) {
  const char* n = strerrorname_np(e);
  if (n != nullptr) return n;
  std::string s = "E";
  s += std::to_string(e);  // (not "E" + ...: GCC 12 -O3 warns falsely, -Wrestrict)
  return s;
}

bool parseEndpoint(const std::string& s, sockaddr_in* out) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos) return false;
  *out = sockaddr_in{};
  out->sin_family = AF_INET;
  out->sin_port = htons(static_cast<uint16_t>(std::atoi(s.c_str() + colon + 1)));
  return inet_pton(AF_INET, s.substr(0, colon).c_str(), &out->sin_addr) == 1;
}

int fail(const std::string& what) {
  std::printf("error %s: %s\n", what.c_str(), errName(errno).c_str());
  return 1;
}

// The slot of an open socket: the one whose status names this local port
// (TCP), or the only UDP slot.
int findSlot(SessionRegion& r, int fd, bool udp) {
  sockaddr_in local{};
  socklen_t len = sizeof local;
  if (!udp && mknet_getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) return -1;
  for (uint32_t s = 0; s < r.config().maxSockets; ++s) {
    auto* st = r.status(s);
    auto state = static_cast<mknet::ipc::SlotState>(st->state.load());
    if (udp && state == mknet::ipc::SlotState::kUdp) return static_cast<int>(s);
    if (!udp && state == mknet::ipc::SlotState::kTcpConnected && st->localPort.load() == ntohs(local.sin_port))
      return static_cast<int>(s);
  }
  return -1;
}

// Tells the stack to look at `slot` the way libmknet does.
void poke(mknet::client::ClientSession& s, int slot) {
  s.notify(static_cast<uint32_t>(slot), s.region().status(static_cast<uint32_t>(slot))->generation.load());
}

bool waitClosed(SessionRegion& r, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (r.header()->closed.load() != 0) return true;
    std::this_thread::sleep_for(5ms);
  }
  return r.header()->closed.load() != 0;
}

int connectTo(const sockaddr_in& peer, int type) {
  int fd = mknet_socket(AF_INET, type, 0);
  if (fd < 0) return -1;
  if (mknet_connect(fd, reinterpret_cast<const sockaddr*>(&peer), sizeof peer) != 0) return -1;
  return fd;
}

// An echo round trip on a TCP socket: true if the bytes came back.
bool echoOnce(int fd) {
  const char msg[] = "rogue says hello";
  if (mknet_send(fd, msg, sizeof msg, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof msg)) return false;
  char back[sizeof msg];
  size_t got = 0;
  while (got < sizeof back) {
    ssize_t n = mknet_recv(fd, back + got, sizeof back - got, 0);
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return std::memcmp(msg, back, sizeof msg) == 0;
}

int runSessionMode(const std::string& mode) {
  sockaddr_in peer{};
  if (!parseEndpoint(flag("peer"), &peer)) return 2;
  const auto wait = std::chrono::milliseconds(std::atoi(flag("wait-ms", "3000").c_str()));
  const bool udp = mode == "udp-length";
  int fd = connectTo(peer, udp ? SOCK_DGRAM : SOCK_STREAM);
  if (fd < 0) return fail("connect");
  if (!udp && !echoOnce(fd)) return fail("echo before the corruption");
  auto session = mknet::client::currentSession();
  if (!session) return fail("currentSession");
  mknet::client::ClientSession& s = **session;
  SessionRegion& r = s.region();
  const uint32_t ringBytes = r.config().ringBytes;
  int slot = findSlot(r, fd, udp);
  if (slot < 0) return fail("no slot found");
  std::mt19937_64 rng(4242);
  std::string detail;

  if (mode == "notify-head") {
    RingControl* n = r.notifyRing();
    n->head.store(n->tail.load() + 3 * r.config().notifyCapacity + 7);
    detail = "head=" + std::to_string(n->head.load());
  } else if (mode == "notify-bogus") {
    // Our own producer on the same ring, resuming at the published head.
    mknet::ipc::SpscProducer<mknet::ipc::Notify> p(r.notifyRing(), r.config().notifyCapacity);
    const mknet::ipc::Notify bad[] = {{r.config().maxSockets, 1}, {r.config().maxSockets + 77, 1},
                                      {0xfffffffeu, 0},  // a posted close of slot 0x7ffffffe
                                      {mknet::ipc::kCloseBit | r.config().maxSockets, 3},
                                      {mknet::ipc::kControlSlot, mknet::ipc::kControlMailboxes}};  // no such mailbox
    auto pushed = p.push(std::span<const mknet::ipc::Notify>(bad));
    detail = "pushed=" + std::to_string(pushed ? *pushed : 0);
  } else if (mode == "tx-head") {
    RingControl* tx = r.txRing(static_cast<uint32_t>(slot));
    tx->head.store(tx->tail.load() + 0x40000000u + 12345);
    r.appFlags(static_cast<uint32_t>(slot))->notifyPending.store(0);
    poke(s, slot);
    detail = "head=" + std::to_string(tx->head.load()) + " tail=" + std::to_string(tx->tail.load());
  } else if (mode == "tx-tail") {
    RingControl* tx = r.txRing(static_cast<uint32_t>(slot));
    tx->tail.store(static_cast<uint32_t>(rng()));
    // Our own library now sees a broken ring: this send must fail, not crash.
    const char b[64] = {};
    ssize_t w = mknet_send(fd, b, sizeof b, MSG_NOSIGNAL);
    detail = "send=" + std::to_string(w) + (w < 0 ? "/" + errName(errno) : "");
    r.appFlags(static_cast<uint32_t>(slot))->notifyPending.store(0);
    poke(s, slot);
  } else if (mode == "rx-tail") {
    // Data the echo server sends back lands in a ring whose consumer index
    // (ours) is garbage.
    RingControl* rx = r.rxRing(static_cast<uint32_t>(slot));
    const char b[4096] = {};
    for (int i = 0; i < 16; ++i) (void)mknet_send(fd, b, sizeof b, MSG_NOSIGNAL);
    std::this_thread::sleep_for(50ms);
    rx->tail.store(rx->head.load() + 0x40000000u + 99);
    for (int i = 0; i < 16; ++i) (void)mknet_send(fd, b, sizeof b, MSG_NOSIGNAL);
    r.appFlags(static_cast<uint32_t>(slot))->notifyPending.store(0);
    poke(s, slot);
    detail = "tail=" + std::to_string(rx->tail.load());
  } else if (mode == "udp-length") {
    mknet::ipc::ByteWriter w(r.txRing(static_cast<uint32_t>(slot)), ringBytes);
    RingControl* tx = r.txRing(static_cast<uint32_t>(slot));
    const uint32_t lengths[] = {0xfffffff0u, mknet::ipc::kMaxDatagram + 1, ringBytes};
    int written = 0;
    for (uint32_t len : lengths) {
      mknet::ipc::DatagramHeader h{len, ntohl(peer.sin_addr.s_addr), ntohs(peer.sin_port), 0};
      auto wr = w.write(std::as_bytes(std::span(&h, 1)));
      const char junk[32] = {};
      (void)w.write(std::as_bytes(std::span(junk)));
      if (!wr || *wr != sizeof h) break;
      ++written;
      r.appFlags(static_cast<uint32_t>(slot))->notifyPending.store(0);
      poke(s, slot);
      // The stack discards the ring's content: wait until it has, so each
      // bad record is seen on its own.
      const auto until = std::chrono::steady_clock::now() + 2s;
      while (tx->tail.load() != tx->head.load() && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(2ms);
    }
    detail = "records=" + std::to_string(written);
  } else if (mode == "status-noise") {
    int u = connectTo(peer, SOCK_DGRAM);
    for (uint32_t i = 0; i < r.config().maxSockets; ++i) {
      auto* st = r.status(i);
      auto* fl = r.appFlags(i);
      for (size_t k = 0; k < sizeof *st; k += 8) {
        uint64_t v = rng();
        std::memcpy(reinterpret_cast<char*>(st) + k, &v, std::min<size_t>(8, sizeof *st - k));
      }
      uint64_t v = rng();
      std::memcpy(reinterpret_cast<char*>(fl), &v, sizeof(uint32_t));
    }
    // Traffic on what is left: the library reads garbage; the stack must not care.
    const char b[512] = {};
    int sends = 0;
    for (int i = 0; i < 50; ++i) {
      sends += mknet_send(fd, b, sizeof b, MSG_NOSIGNAL | MSG_DONTWAIT) > 0;
      if (u >= 0) sends += mknet_send(u, b, sizeof b, MSG_DONTWAIT) > 0;
    }
    for (uint32_t i = 0; i < 8; ++i) {
      r.appFlags(i)->notifyPending.store(0);
      poke(s, static_cast<int>(i));
    }
    detail = "sends=" + std::to_string(sends);
  } else if (mode == "control-bogus") {
    // Requests no library sends, written straight into the control mailbox:
    // an unknown operation (EINVAL, counted), a shutdown naming a slot that
    // doesn't exist (EBADF, as shutdown() of a bad fd), then the same request
    // announced twice (served once).
    mknet::ipc::ControlMailbox* box = r.control(0);
    uint32_t seq = box->requestSeq.load();
    auto ask = [&](uint32_t op, uint32_t id, int announce) {
      std::memset(&box->request, 0xa5, sizeof box->request);
      box->request.op = op;
      box->request.id = id;
      box->requestSeq.store(++seq);
      for (int i = 0; i < announce; ++i) s.pushNotify(mknet::ipc::Notify{mknet::ipc::kControlSlot, 0});
      for (int i = 0; i < 2000 && box->responseSeq.load() != seq; ++i) ::usleep(1000);
      return box->responseSeq.load() == seq ? box->response.err : -1;
    };
    int e1 = ask(77, 0, 1);
    int e2 = ask(static_cast<uint32_t>(mknet::ipc::ControlOp::kShutdown), r.config().maxSockets + 5, 2);
    detail = "errs=" + std::to_string(e1) + "/" + std::to_string(e2);
  } else {
    return 2;
  }
  const bool closed = waitClosed(r, wait);
  std::printf("mode=%s slot=%d closed=%d detail=%s\n", mode.c_str(), slot, closed ? 1 : 0, detail.c_str());
  std::fflush(stdout);
  return 0;
}

// ---------------------------------------------------------------- control socket

int connectUnix(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  return fd;
}

int runRpcMode(const std::string& mode) {
  int fd = connectUnix(flag("socket"));
  if (fd < 0) return fail("connect " + flag("socket"));
  std::mt19937_64 rng(777);
  std::vector<uint8_t> msg;
  auto put32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) msg.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  auto noise = [&](size_t n) {
    for (size_t i = 0; i < n; ++i) msg.push_back(static_cast<uint8_t>(rng()));
  };
  uint64_t extra = 0;  // zero bytes streamed after msg
  if (mode == "rpc-garbage") {
    noise(64 * 1024);
  } else if (mode == "rpc-segment") {
    put32(0);   // one segment
    put32(64);  // of 64 words
    noise(64 * 8);
  } else if (mode == "rpc-huge") {
    put32(0);
    put32(0x20000000u);  // 2^29 words: 4 GiB
    extra = 64ull << 20;
  } else if (mode == "rpc-big") {
    put32(0);
    put32(7u << 20);  // 7 Mi words: 56 MiB, under the stack's 8 Mi-word limit, all of it sent
    extra = 56ull << 20;
  } else {
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);
  const auto start = std::chrono::steady_clock::now();
  uint64_t wrote = 0;
  bool writeFailed = false;
  auto writeAll = [&](const uint8_t* p, size_t n) {
    while (n > 0) {
      pollfd pf{fd, POLLOUT, 0};
      if (::poll(&pf, 1, 5000) <= 0) return false;  // the server stopped reading
      ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (w <= 0) return false;
      p += w;
      n -= static_cast<size_t>(w);
      wrote += static_cast<uint64_t>(w);
    }
    return true;
  };
  writeFailed = !writeAll(msg.data(), msg.size());
  std::vector<uint8_t> zeros(1 << 20, 0);
  while (!writeFailed && extra > 0) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(extra, zeros.size()));
    writeFailed = !writeAll(zeros.data(), n);
    extra -= n;
  }
  // The server must hang up: EOF or a reset within 5 s (an Abort message
  // may come first).
  bool closed = false;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd pf{fd, POLLIN, 0};
    if (::poll(&pf, 1, 100) <= 0) continue;
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
      closed = true;
      break;
    }
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("mode=%s wrote=%llu write_failed=%d server_closed=%d ms=%.1f\n", mode.c_str(),
              static_cast<unsigned long long>(wrote), writeFailed ? 1 : 0, closed ? 1 : 0, ms);
  std::fflush(stdout);
  ::close(fd);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: mknet-fault-rogue MODE --flag value ... (see the source)\n");
    return 2;
  }
  for (int i = 2; i + 1 < argc; i += 2) {
    if (std::strncmp(argv[i], "--", 2) != 0) return 2;
    gFlags[argv[i] + 2] = argv[i + 1];
  }
  const std::string mode = argv[1];
  if (mode.rfind("rpc-", 0) == 0) return runRpcMode(mode);
  return runSessionMode(mode);
}
