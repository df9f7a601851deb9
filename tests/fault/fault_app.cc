// mknet-fault-app: an mknet app (libmknet's C API only) for the fault tests.
//
//   hold --connect IP:PORT --connections N
//       Opens N TCP connections, sends one byte on each, prints "ready N" and
//       waits to be killed.
//
//   blocked --op recv|send|accept|connect|all --peer IP:PORT --listen-port P
//           --unreachable IP:PORT --echo IP:PORT [--bytes B]
//       Phase 1: blocks in the named call(s) (all: four threads, one per
//       call): recv and send on connections to --peer (a Linux server that
//       neither sends nor reads), accept on a listener at --listen-port,
//       connect to --unreachable (no such host). Prints "ready op=X" just
//       before blocking and, when the call returns,
//         "result op=X ret=R errno=NAME t_ns=T"
//       (T: CLOCK_MONOTONIC, comparable with the test's steady_clock).
//       Phase 2, on the same process: new sockets until one connects to
//       --echo (a Linux echo server), then B bytes (default 1M) sent and
//       verified coming back:
//         "phase2 op=X ok bytes=B attempts=K"  or  "phase2 op=X fail ..."
//       Exits 0 only if every phase-2 transfer was byte-exact.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mknet/mknet.h"

namespace {

std::mutex gOut;

void say(const std::string& line) {
  std::lock_guard<std::mutex> g(gOut);
  std::fputs((line + "\n").c_str(), stdout);
  std::fflush(stdout);
}

std::string errName(int e) {
  const char* n = strerrorname_np(e);
  if (n != nullptr) return n;
  std::string s = "E";
  s += std::to_string(e);  // (not "E" + ...: GCC 12 -O3 warns falsely, -Wrestrict)
  return s;
}

uint64_t monoNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

bool parseEndpoint(const std::string& s, sockaddr_in* out) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos) return false;
  *out = sockaddr_in{};
  out->sin_family = AF_INET;
  out->sin_port = htons(static_cast<uint16_t>(std::atoi(s.c_str() + colon + 1)));
  return inet_pton(AF_INET, s.substr(0, colon).c_str(), &out->sin_addr) == 1;
}

const sockaddr* sa(const sockaddr_in& a) { return reinterpret_cast<const sockaddr*>(&a); }

std::map<std::string, std::string> gFlags;

std::string flag(const std::string& name, const std::string& dflt = "") {
  auto it = gFlags.find(name);
  return it == gFlags.end() ? dflt : it->second;
}

// ---------------------------------------------------------------- hold

int runHold() {
  sockaddr_in peer{};
  if (!parseEndpoint(flag("connect"), &peer)) return 2;
  const int n = std::atoi(flag("connections", "1").c_str());
  std::vector<int> fds;
  for (int i = 0; i < n; ++i) {
    int fd = mknet_socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || mknet_connect(fd, sa(peer), sizeof peer) != 0) {
      say("error connection " + std::to_string(i) + ": " + errName(errno));
      return 1;
    }
    char b = 'h';
    if (mknet_send(fd, &b, 1, MSG_NOSIGNAL) != 1) {
      say("error send " + std::to_string(i) + ": " + errName(errno));
      return 1;
    }
    fds.push_back(fd);
  }
  say("ready " + std::to_string(fds.size()));
  for (;;) ::pause();
}

// ---------------------------------------------------------------- blocked

struct Endpoints {
  sockaddr_in peer{}, unreachable{}, echo{};
  uint16_t listenPort = 0;
  uint64_t bytes = 1 << 20;
};

// Phase 1: one call that blocks until the stack dies. Returns false if the
// set-up failed (then nothing blocked).
bool blockIn(const std::string& op, const Endpoints& e) {
  int fd = mknet_socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    say("error op=" + op + " socket: " + errName(errno));
    return false;
  }
  long r = 0;
  int err = 0;
  if (op == "recv" || op == "send") {
    if (mknet_connect(fd, sa(e.peer), sizeof e.peer) != 0) {
      say("error op=" + op + " connect: " + errName(errno));
      return false;
    }
    say("ready op=" + op);
    if (op == "recv") {
      char buf[4096];
      r = mknet_recv(fd, buf, sizeof buf, 0);
      err = errno;
    } else {
      // The peer never reads: the first calls fill its window, lwIP's send
      // buffer and our ring; then send() blocks. A call the stack's death
      // interrupts may return a partial count; the next one fails.
      std::vector<char> buf(1 << 20, 's');
      for (;;) {
        r = mknet_send(fd, buf.data(), buf.size(), MSG_NOSIGNAL);
        err = errno;
        if (r < 0 || static_cast<size_t>(r) < buf.size()) break;
      }
      if (r >= 0) {
        r = mknet_send(fd, buf.data(), buf.size(), MSG_NOSIGNAL);
        err = errno;
      }
    }
  } else if (op == "accept") {
    sockaddr_in any{};
    any.sin_family = AF_INET;
    any.sin_port = htons(e.listenPort);
    if (mknet_bind(fd, sa(any), sizeof any) != 0 || mknet_listen(fd, 16) != 0) {
      say("error op=accept bind/listen: " + errName(errno));
      return false;
    }
    say("ready op=accept");
    r = mknet_accept(fd, nullptr, nullptr);
    err = errno;
  } else if (op == "connect") {
    say("ready op=connect");
    r = mknet_connect(fd, sa(e.unreachable), sizeof e.unreachable);
    err = errno;
  } else {
    say("error unknown op " + op);
    return false;
  }
  const uint64_t t = monoNs();
  say("result op=" + op + " ret=" + std::to_string(r) + " errno=" + (r < 0 ? errName(err) : "0") +
      " t_ns=" + std::to_string(t));
  mknet_close(fd);  // on a dead session: only the local bookkeeping
  return true;
}

// Phase 2: new sockets on a new session until one connects, then an echo.
bool transferAgain(const std::string& op, const Endpoints& e) {
  const uint64_t deadline = monoNs() + 60ull * 1000000000ull;
  int attempts = 0;
  int fd = -1;
  std::string last;
  while (monoNs() < deadline) {
    ++attempts;
    fd = mknet_socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
      last = "socket " + errName(errno);
      ::usleep(20000);
      continue;
    }
    timeval tv{10, 0};
    mknet_setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    mknet_setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (mknet_connect(fd, sa(e.echo), sizeof e.echo) == 0) break;
    last = "connect " + errName(errno);
    mknet_close(fd);
    fd = -1;
    ::usleep(20000);
  }
  if (fd < 0) {
    say("phase2 op=" + op + " fail no connection after " + std::to_string(attempts) + " attempts: " + last);
    return false;
  }
  // Lock-step echo: a chunk out, the same chunk back, compared.
  std::vector<unsigned char> out(16384), in(16384);
  uint64_t x = 0x9e3779b97f4a7c15ull ^ std::hash<std::string>{}(op);
  uint64_t done = 0;
  while (done < e.bytes) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(out.size(), e.bytes - done));
    for (size_t i = 0; i < n; ++i) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      out[i] = static_cast<unsigned char>(x);
    }
    size_t sent = 0;
    while (sent < n) {
      ssize_t w = mknet_send(fd, out.data() + sent, n - sent, MSG_NOSIGNAL);
      if (w <= 0) {
        say("phase2 op=" + op + " fail send after " + std::to_string(done) + " bytes: " + errName(errno));
        return false;
      }
      sent += static_cast<size_t>(w);
    }
    size_t got = 0;
    while (got < n) {
      ssize_t rd = mknet_recv(fd, in.data() + got, n - got, 0);
      if (rd <= 0) {
        say("phase2 op=" + op + " fail recv after " + std::to_string(done + got) +
            " bytes: " + (rd == 0 ? std::string("EOF") : errName(errno)));
        return false;
      }
      got += static_cast<size_t>(rd);
    }
    if (std::memcmp(out.data(), in.data(), n) != 0) {
      say("phase2 op=" + op + " fail mismatch at " + std::to_string(done));
      return false;
    }
    done += n;
  }
  mknet_close(fd);
  say("phase2 op=" + op + " ok bytes=" + std::to_string(done) + " attempts=" + std::to_string(attempts));
  return true;
}

int runBlocked() {
  Endpoints e;
  if (!parseEndpoint(flag("peer"), &e.peer) || !parseEndpoint(flag("unreachable"), &e.unreachable) ||
      !parseEndpoint(flag("echo"), &e.echo))
    return 2;
  e.listenPort = static_cast<uint16_t>(std::atoi(flag("listen-port", "0").c_str()));
  e.bytes = std::strtoull(flag("bytes", "1048576").c_str(), nullptr, 10);
  const std::string op = flag("op");
  std::vector<std::string> ops = op == "all" ? std::vector<std::string>{"recv", "send", "accept", "connect"}
                                             : std::vector<std::string>{op};
  std::vector<int> ok(ops.size(), 0);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < ops.size(); ++i)
    threads.emplace_back([&, i] { ok[i] = blockIn(ops[i], e) && transferAgain(ops[i], e); });
  for (auto& t : threads) t.join();
  for (int v : ok)
    if (!v) return 1;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: mknet-fault-app hold|blocked --flag value ... (see the source)\n");
    return 2;
  }
  for (int i = 2; i + 1 < argc; i += 2) {
    if (std::strncmp(argv[i], "--", 2) != 0) return 2;
    gFlags[argv[i] + 2] = argv[i + 1];
  }
  const std::string mode = argv[1];
  if (mode == "hold") return runHold();
  if (mode == "blocked") return runBlocked();
  return 2;
}
