// mknet-rtt: request/response over TCP, two ways.
//
// Latency (the default): the client sends one message of --size bytes, waits
// for the whole echo, and repeats --count times on one connection, then
// prints the distribution of round-trip times.
// Transactions/s (--conns N and/or --seconds S): the client opens N
// connections and keeps one request of --size bytes (default 64) in flight on
// each, driving all of them from one thread with mknet_poll, for S seconds;
// it prints the completed transactions per second. Every response is checked
// against its request (each carries its own sequence number).
//
// The server echoes every byte on each connection (RequestServer: one poll
// loop, any number of connections). Built three times from this source
// (mknet-rtt on libmknet, mknet-rtt-kernel on Linux sockets, mknet-rtt-sp
// with the stack in-process) so the architectures are measured with the same
// program.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "flags.h"
#include "mknet/mknet.h"
#include "request_server.h"

namespace mknet::examples {
namespace {

using Clock = std::chrono::steady_clock;
constexpr App kApp{"mknet-rtt"};

constexpr char kUsage[] =
    "usage: mknet-rtt server --port P [--bind IP] [--once]\n"
    "       mknet-rtt client --connect IP:PORT [--count N] [--size B] [--warmup N]\n"
    "       mknet-rtt client --connect IP:PORT --conns N [--seconds S] [--size B]\n"
    "\n"
    "server: echoes every byte on every TCP connection, any number at once\n"
    "  (one poll loop). Prints listen=IP:PORT first (--port 0 picks a free port).\n"
    "  --once: exit when the last connection has closed.\n"
    "client, latency (default): sends B bytes (default 1), waits for the echo,\n"
    "  and repeats N times (default 100000) after --warmup round trips (default\n"
    "  1000); prints one line:\n"
    "    count= size= p50_us= p90_us= p99_us= p999_us= max_us= mean_us=\n"
    "client, transactions/s (--conns and/or --seconds): N connections (default\n"
    "  1), each with one B-byte request (default 64) in flight, for S seconds\n"
    "  (default 5; at most --count transactions if given); prints one line:\n"
    "    mode=tps conns= size= transactions= seconds= tps= mean_us=\n"
    "TCP_NODELAY on both ends. Every echo is verified. Exit status: 0 ok,\n"
    "1 error or mismatch, 2 usage.\n";

constexpr FlagSpec kServerFlags[] = {{"help", false}, {"port", true}, {"bind", true}, {"once", false}};
constexpr FlagSpec kClientFlags[] = {{"help", false},  {"connect", true}, {"count", true},  {"size", true},
                                     {"warmup", true}, {"conns", true},   {"seconds", true}};

int serve(const Flags& f) {
  const auto pv = f.value("port");
  if (!pv) return kApp.usageError("server needs --port P");
  const auto port = parsePort(*pv);
  if (!port) return kApp.usageError("bad --port '" + std::string(*pv) + "'");
  const int l = listenTcp(kApp.name, f.value("bind").value_or(""), *port, 1024);
  if (l < 0) return 1;
  RequestServer server(kApp.name, l, {0, f.has("once")});
  const int rc = server.run();
  mknet_close(l);
  return rc;
}

int connectTo(const sockaddr_in& a) {
  const int fd = mknet_socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  if (mknet_connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) < 0) {
    const int e = errno;
    mknet_close(fd);
    errno = e;
    return -1;
  }
  setNoDelay(fd);
  return fd;
}

// The request for transaction `seq`: the sequence number, then a pattern
// derived from it, so a response from the wrong request cannot pass.
void fillRequest(std::vector<char>& req, uint64_t seq) {
  const size_t head = std::min(req.size(), sizeof seq);
  std::memcpy(req.data(), &seq, head);
  for (size_t i = head; i < req.size(); ++i) req[i] = static_cast<char>(seq * 31 + i);
}

int latency(const sockaddr_in& a, uint64_t count, size_t size, uint64_t warmup) {
  const int fd = connectTo(a);
  if (fd < 0) {
    std::fprintf(stderr, "mknet-rtt: connect: %s\n", std::strerror(errno));
    return 1;
  }
  std::vector<char> out(size), in(size);
  std::vector<double> us;
  us.reserve(count);
  for (uint64_t i = 0; i < warmup + count; ++i) {
    fillRequest(out, i);
    const auto t0 = Clock::now();
    if (!writeFull(fd, out.data(), size) || !readFull(fd, in.data(), size)) {
      std::fprintf(stderr, "mknet-rtt: exchange %" PRIu64 ": %s\n", i, errno ? std::strerror(errno) : "end of stream");
      return 1;
    }
    const auto t1 = Clock::now();
    if (std::memcmp(in.data(), out.data(), size) != 0) {
      std::fprintf(stderr, "mknet-rtt: echo %" PRIu64 " differs\n", i);
      return 1;
    }
    if (i >= warmup) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  mknet_close(fd);
  double sum = 0;
  for (double v : us) sum += v;
  std::sort(us.begin(), us.end());
  auto pct = [&](double p) { return us[std::min(us.size() - 1, static_cast<size_t>(p * us.size()))]; };
  std::printf("count=%zu size=%zu p50_us=%.2f p90_us=%.2f p99_us=%.2f p999_us=%.2f max_us=%.2f mean_us=%.2f\n",
              us.size(), size, pct(0.5), pct(0.9), pct(0.99), pct(0.999), us.back(),
              sum / static_cast<double>(us.size()));
  return 0;
}

// One connection of the transactions/s client.
struct TxConn {
  int fd = -1;
  uint64_t seq = 0;     // the request in flight
  size_t sent = 0;      // bytes of it sent
  size_t received = 0;  // bytes of its response received
  std::vector<char> req, resp;
};

int transactions(const sockaddr_in& a, uint64_t conns, size_t size, double seconds, uint64_t maxCount) {
  std::vector<TxConn> cs(conns);
  uint64_t nextSeq = 0;
  for (TxConn& c : cs) {
    c.fd = connectTo(a);
    if (c.fd < 0 || !setNonBlocking(c.fd)) {
      std::fprintf(stderr, "mknet-rtt: connect (connection %zu of %" PRIu64 "): %s\n",
                   static_cast<size_t>(&c - cs.data()) + 1, conns, std::strerror(errno));
      return 1;
    }
    c.req.resize(size);
    c.resp.resize(size);
    c.seq = nextSeq++;
    fillRequest(c.req, c.seq);
  }
  std::vector<pollfd> fds(conns);
  uint64_t done = 0;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  auto now = start;
  // Sends what it can of c's request; false on error.
  auto pushRequest = [](TxConn& c) {
    while (c.sent < c.req.size()) {
      const ssize_t n = mknet_send(c.fd, c.req.data() + c.sent, c.req.size() - c.sent, MSG_NOSIGNAL);
      if (n < 0) return errno == EINTR || wouldBlockErrno();
      c.sent += static_cast<size_t>(n);
    }
    return true;
  };
  for (TxConn& c : cs) {
    if (!pushRequest(c)) {
      std::fprintf(stderr, "mknet-rtt: send: %s\n", std::strerror(errno));
      return 1;
    }
  }
  while (done < maxCount) {
    now = Clock::now();
    if (now >= deadline) break;
    for (size_t i = 0; i < conns; ++i) {
      fds[i] = {cs[i].fd, static_cast<short>(cs[i].sent < size ? POLLOUT : POLLIN), 0};
    }
    const int ready = mknet_poll(fds.data(), fds.size(), 100);
    if (ready < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "mknet-rtt: poll: %s\n", std::strerror(errno));
      return 1;
    }
    for (size_t i = 0; i < conns && ready > 0; ++i) {
      if (fds[i].revents == 0) continue;
      TxConn& c = cs[i];
      if (c.sent < size) {
        if (!pushRequest(c)) {
          std::fprintf(stderr, "mknet-rtt: send: %s\n", std::strerror(errno));
          return 1;
        }
        continue;
      }
      const ssize_t n = mknet_recv(c.fd, c.resp.data() + c.received, size - c.received, 0);
      if (n < 0) {
        if (errno == EINTR || wouldBlockErrno()) continue;
        std::fprintf(stderr, "mknet-rtt: recv: %s\n", std::strerror(errno));
        return 1;
      }
      if (n == 0) {
        std::fprintf(stderr, "mknet-rtt: the server closed connection %zu\n", i + 1);
        return 1;
      }
      c.received += static_cast<size_t>(n);
      if (c.received < size) continue;
      if (std::memcmp(c.resp.data(), c.req.data(), size) != 0) {
        std::fprintf(stderr, "mknet-rtt: response to request %" PRIu64 " differs\n", c.seq);
        return 1;
      }
      if (++done >= maxCount) break;  // the requests still in flight are not counted
      c.seq = nextSeq++;
      c.sent = c.received = 0;
      fillRequest(c.req, c.seq);
      if (!pushRequest(c)) {
        std::fprintf(stderr, "mknet-rtt: send: %s\n", std::strerror(errno));
        return 1;
      }
    }
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  for (TxConn& c : cs) mknet_close(c.fd);
  const double tps = elapsed > 0 ? static_cast<double>(done) / elapsed : 0;
  std::printf("mode=tps conns=%" PRIu64 " size=%zu transactions=%" PRIu64 " seconds=%.3f tps=%.0f mean_us=%.2f\n",
              conns, size, done, elapsed, tps, done > 0 ? elapsed * 1e6 * static_cast<double>(conns) / static_cast<double>(done) : 0.0);
  return done > 0 ? 0 : 1;
}

int client(const Flags& f) {
  sockaddr_in a;
  const auto ep = f.value("connect");
  if (!ep) return kApp.usageError("client needs --connect IP:PORT");
  if (!parseEndpoint(*ep, &a)) return kApp.usageError("bad --connect '" + std::string(*ep) + "' (want IP:PORT)");
  const bool tps = f.has("conns") || f.has("seconds");
  uint64_t count = tps ? UINT64_MAX : 100000, size = tps ? 64 : 1, warmup = 1000, conns = 1;
  double seconds = 5;
  if (!f.count("count", &count, 1, UINT64_MAX)) return kApp.usageError("bad --count (want >= 1)");
  if (!f.count("size", &size, 1, 65536)) return kApp.usageError("bad --size (1 .. 65536)");
  if (!f.count("warmup", &warmup, 0, UINT64_MAX)) return kApp.usageError("bad --warmup");
  if (!f.count("conns", &conns, 1, 4096)) return kApp.usageError("bad --conns (1 .. 4096)");
  if (const auto v = f.value("seconds")) {
    const auto s = parseSeconds(*v);
    if (!s) return kApp.usageError("bad --seconds '" + std::string(*v) + "'");
    seconds = *s;
  }
  if (tps && f.has("warmup")) return kApp.usageError("--warmup applies to the latency mode only");
  return tps ? transactions(a, conns, size, seconds, count) : latency(a, count, size, warmup);
}

}  // namespace
}  // namespace mknet::examples

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  using namespace mknet::examples;
  return runServerOrClient(kApp, argc, argv, kUsage, kServerFlags, kClientFlags, serve, client);
}
