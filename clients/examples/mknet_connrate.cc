// mknet-connrate: TCP connection set-up rate.
//
// The client loops: connect, send one request of --size bytes, read the whole
// response, wait for the server to close, close. The server (RequestServer
// with closeAfter = size) echoes the request and closes first, so the
// TIME_WAIT state stays on the server and the client's ephemeral ports are
// free again at once. With --conns N the client runs N such loops in
// parallel threads. It stops after --seconds (default 5) or --count
// connections, whichever comes first, and prints one line:
//   mode=connrate conns= size= connections= failed= seconds= conn_per_s=
// Built as mknet-connrate (libmknet), mknet-connrate-kernel (Linux sockets)
// and mknet-connrate-sp (stack in-process), like the other example apps.
#include <signal.h>

#include <atomic>
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
constexpr App kApp{"mknet-connrate"};

constexpr char kUsage[] =
    "usage: mknet-connrate server --port P [--bind IP] [--size B]\n"
    "       mknet-connrate client --connect IP:PORT [--seconds S] [--count N] [--size B] [--conns N]\n"
    "\n"
    "Measures TCP connections per second, each carrying one request and its\n"
    "response.\n"
    "server: on each connection reads B bytes (default 64), echoes them and\n"
    "  closes; any number of connections at once (one poll loop), until killed.\n"
    "  Prints listen=IP:PORT first (--port 0 picks a free port).\n"
    "client: N threads (default 1), each looping connect / send B bytes /\n"
    "  read the B-byte echo and verify it / wait for the server's close / close,\n"
    "  for S seconds (default 5) or N connections in all, whichever is first.\n"
    "  Prints: mode=connrate conns= size= connections= failed= seconds= conn_per_s=\n"
    "  and, if a connection failed, first_failure_s= ok_before_failure=\n"
    "  Each connection's calls time out after 2 s. A failed connection is counted\n"
    "  and the loop goes on; 100 failures in a row end the run with exit status 1.\n"
    "Exit status: 0 ok, 1 error, 2 usage.\n";

constexpr FlagSpec kServerFlags[] = {{"help", false}, {"port", true}, {"bind", true}, {"size", true}};
constexpr FlagSpec kClientFlags[] = {{"help", false}, {"connect", true}, {"seconds", true},
                                     {"count", true}, {"size", true},    {"conns", true}};

// Bounds every blocking call of one connection (connect included), so a
// stack that stops answering costs a failure, not a hung benchmark.
constexpr timeval kIoTimeout{2, 0};

// One connect/request/response/close cycle; false (errno set) on failure.
bool oneConnection(const sockaddr_in& a, std::vector<char>& req, std::vector<char>& resp, uint64_t seq) {
  std::memcpy(req.data(), &seq, std::min(req.size(), sizeof seq));
  const int fd = mknet_socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  mknet_setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &kIoTimeout, sizeof kIoTimeout);
  mknet_setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &kIoTimeout, sizeof kIoTimeout);
  bool ok = false;
  char extra;
  if (mknet_connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0) {
    setNoDelay(fd);
    if (writeFull(fd, req.data(), req.size()) && readFull(fd, resp.data(), resp.size())) {
      if (std::memcmp(req.data(), resp.data(), req.size()) != 0) {
        errno = EBADMSG;
      } else {
        // The server closes after its response: wait for that (EOF), so our
        // close is the second one and TIME_WAIT stays on the server.
        ssize_t n;
        do n = mknet_recv(fd, &extra, 1, 0);
        while (n < 0 && errno == EINTR);
        if (n == 0) ok = true;
        else if (n > 0) errno = EBADMSG;
      }
    } else if (errno == 0) {
      errno = ECONNRESET;  // end of stream before the whole response
    }
  }
  const int e = errno;
  mknet_close(fd);
  errno = e;
  return ok;
}

int client(const Flags& f) {
  sockaddr_in a;
  const auto ep = f.value("connect");
  if (!ep) return kApp.usageError("client needs --connect IP:PORT");
  if (!parseEndpoint(*ep, &a)) return kApp.usageError("bad --connect '" + std::string(*ep) + "' (want IP:PORT)");
  uint64_t count = UINT64_MAX, size = 64, conns = 1;
  double seconds = 5;
  if (!f.count("count", &count, 1, UINT64_MAX)) return kApp.usageError("bad --count (want >= 1)");
  if (!f.count("size", &size, 1, 65536)) return kApp.usageError("bad --size (1 .. 65536)");
  if (!f.count("conns", &conns, 1, 256)) return kApp.usageError("bad --conns (1 .. 256)");
  if (const auto v = f.value("seconds")) {
    const auto s = parseSeconds(*v);
    if (!s) return kApp.usageError("bad --seconds '" + std::string(*v) + "'");
    seconds = *s;
  }
  std::atomic<uint64_t> started{0}, ok{0}, failed{0};
  std::atomic<bool> giveUp{false};
  std::atomic<int> lastErrno{0};
  // When the first connection failed, and how many had succeeded by then: a
  // stack that stops accepting shows up as a rate that collapses, and these
  // say where (and what the rate was before).
  std::atomic<bool> anyFailed{false};
  std::atomic<uint64_t> okBeforeFailure{0};
  std::atomic<int64_t> firstFailureNs{0};
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  auto loop = [&] {
    std::vector<char> req(size), resp(size);
    for (size_t i = 0; i < size; ++i) req[i] = static_cast<char>('a' + i % 26);
    int inARow = 0;
    while (!giveUp.load(std::memory_order_relaxed) && Clock::now() < deadline) {
      const uint64_t seq = started.fetch_add(1, std::memory_order_relaxed);
      if (seq >= count) break;
      if (oneConnection(a, req, resp, seq)) {
        ok.fetch_add(1, std::memory_order_relaxed);
        inARow = 0;
      } else {
        lastErrno.store(errno, std::memory_order_relaxed);
        failed.fetch_add(1, std::memory_order_relaxed);
        if (!anyFailed.exchange(true)) {
          okBeforeFailure.store(ok.load());
          firstFailureNs.store(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
        }
        if (++inARow >= 100) giveUp.store(true);
      }
    }
  };
  std::vector<std::thread> threads;
  for (uint64_t i = 1; i < conns; ++i) threads.emplace_back(loop);
  loop();
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  if (failed.load() > 0) {
    std::fprintf(stderr, "mknet-connrate: %" PRIu64 " connections failed, the last with: %s\n", failed.load(),
                 std::strerror(lastErrno.load()));
  }
  std::printf("mode=connrate conns=%" PRIu64 " size=%" PRIu64 " connections=%" PRIu64 " failed=%" PRIu64
              " seconds=%.3f conn_per_s=%.0f",
              conns, size, ok.load(), failed.load(), elapsed, elapsed > 0 ? static_cast<double>(ok.load()) / elapsed : 0.0);
  if (anyFailed.load()) {
    const double t = static_cast<double>(firstFailureNs.load()) / 1e9;
    // The failed attempt itself took up to the I/O timeout: it began about then.
    std::printf(" first_failure_s=%.3f ok_before_failure=%" PRIu64, t, okBeforeFailure.load());
  }
  std::printf("\n");
  return giveUp.load() || ok.load() == 0 ? 1 : 0;
}

int serve(const Flags& f) {
  const auto pv = f.value("port");
  if (!pv) return kApp.usageError("server needs --port P");
  const auto port = parsePort(*pv);
  if (!port) return kApp.usageError("bad --port '" + std::string(*pv) + "'");
  uint64_t size = 64;
  if (!f.count("size", &size, 1, 65536)) return kApp.usageError("bad --size (1 .. 65536)");
  const int l = listenTcp(kApp.name, f.value("bind").value_or(""), *port, 1024);
  if (l < 0) return 1;
  RequestServer server(kApp.name, l, {static_cast<size_t>(size), false});
  const int rc = server.run();
  mknet_close(l);
  return rc;
}

}  // namespace
}  // namespace mknet::examples

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  using namespace mknet::examples;
  return runServerOrClient(kApp, argc, argv, kUsage, kServerFlags, kClientFlags, serve, client);
}
