// mknet-rtt: request/response latency over TCP. The server echoes every
// message; the client sends one message of --size bytes, waits for the whole
// echo, and repeats --count times, then prints the distribution.
// Built twice (mknet-rtt on libmknet, mknet-rtt-kernel on Linux sockets) so
// the two stacks are measured with the same program.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "flags.h"
#include "mknet/mknet.h"

namespace {

using mknet::examples::Flags;
using mknet::examples::FlagSpec;

int usage(FILE* out, int code) {
  std::fprintf(out,
               "usage: mknet-rtt server --port P [--bind IP] [--once]\n"
               "       mknet-rtt client --connect IP:PORT [--count N] [--size B] [--warmup N]\n\n"
               "Measures TCP request/response round trips: the client sends B bytes (default 1),\n"
               "waits for the server's echo, and repeats N times (default 100000), then prints\n"
               "count, p50, p90, p99, p99.9, max and mean in microseconds as one key=value line.\n"
               "TCP_NODELAY is set on both ends.\n");
  return code;
}

bool parseEndpoint(std::string_view s, sockaddr_in* a) {
  auto colon = s.rfind(':');
  if (colon == std::string_view::npos) return false;
  std::string ip(s.substr(0, colon));
  auto port = mknet::examples::parsePort(s.substr(colon + 1));
  *a = sockaddr_in{};
  a->sin_family = AF_INET;
  if (!port || inet_pton(AF_INET, ip.c_str(), &a->sin_addr) != 1) return false;
  a->sin_port = htons(*port);
  return true;
}

bool readFull(int fd, char* p, size_t n) {
  while (n > 0) {
    ssize_t r = mknet_recv(fd, p, n, 0);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool writeFull(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t r = mknet_send(fd, p, n, MSG_NOSIGNAL);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

void setNoDelay(int fd) {
  int one = 1;
  mknet_setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int serve(const Flags& f) {
  auto port = f.value("port") ? mknet::examples::parsePort(*f.value("port")) : std::nullopt;
  if (!port) return usage(stderr, 2);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(*port);
  if (auto b = f.value("bind"); b && inet_pton(AF_INET, std::string(*b).c_str(), &a.sin_addr) != 1) {
    std::fprintf(stderr, "mknet-rtt: bad --bind\n");
    return 2;
  }
  int l = mknet_socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  mknet_setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (l < 0 || mknet_bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || mknet_listen(l, 16) < 0) {
    std::perror("mknet-rtt: listen");
    return 1;
  }
  socklen_t len = sizeof a;
  mknet_getsockname(l, reinterpret_cast<sockaddr*>(&a), &len);
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
  std::printf("listen=%s:%u\n", ip, ntohs(a.sin_port));
  std::fflush(stdout);
  do {
    int c = mknet_accept(l, nullptr, nullptr);
    if (c < 0) {
      std::perror("mknet-rtt: accept");
      return 1;
    }
    setNoDelay(c);
    std::vector<char> buf(65536);
    for (;;) {
      ssize_t n = mknet_recv(c, buf.data(), buf.size(), 0);
      if (n <= 0) break;
      if (!writeFull(c, buf.data(), static_cast<size_t>(n))) break;
    }
    mknet_close(c);
  } while (!f.has("once"));
  mknet_close(l);
  return 0;
}

int client(const Flags& f) {
  sockaddr_in a;
  auto ep = f.value("connect");
  if (!ep || !parseEndpoint(*ep, &a)) return usage(stderr, 2);
  uint64_t count = 100000, size = 1, warmup = 1000;
  if (auto v = f.value("count")) {
    auto c = mknet::examples::parseCount(*v);
    if (!c || *c == 0) return usage(stderr, 2);
    count = *c;
  }
  if (auto v = f.value("size")) {
    auto c = mknet::examples::parseCount(*v);
    if (!c || *c == 0 || *c > 65536) return usage(stderr, 2);
    size = *c;
  }
  if (auto v = f.value("warmup")) {
    auto c = mknet::examples::parseCount(*v);
    if (!c) return usage(stderr, 2);
    warmup = *c;
  }
  int fd = mknet_socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || mknet_connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
    std::perror("mknet-rtt: connect");
    return 1;
  }
  setNoDelay(fd);
  std::vector<char> out(size), in(size);
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<char>('a' + i % 26);
  std::vector<double> us;
  us.reserve(count);
  using Clock = std::chrono::steady_clock;
  for (uint64_t i = 0; i < warmup + count; ++i) {
    out[0] = static_cast<char>(i);
    auto t0 = Clock::now();
    if (!writeFull(fd, out.data(), size) || !readFull(fd, in.data(), size)) {
      std::perror("mknet-rtt: exchange");
      return 1;
    }
    auto t1 = Clock::now();
    if (std::memcmp(in.data(), out.data(), size) != 0) {
      std::fprintf(stderr, "mknet-rtt: echo %llu differs\n", static_cast<unsigned long long>(i));
      return 1;
    }
    if (i >= warmup) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  mknet_close(fd);
  double sum = 0;
  for (double v : us) sum += v;
  std::sort(us.begin(), us.end());
  auto pct = [&](double p) { return us[std::min(us.size() - 1, static_cast<size_t>(p * us.size()))]; };
  std::printf("count=%zu size=%llu p50_us=%.2f p90_us=%.2f p99_us=%.2f p999_us=%.2f max_us=%.2f mean_us=%.2f\n",
              us.size(), static_cast<unsigned long long>(size), pct(0.5), pct(0.9), pct(0.99), pct(0.999),
              us.back(), sum / static_cast<double>(us.size()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage(stderr, 2);
  std::string mode = argv[1];
  if (mode == "--help" || mode == "-h") return usage(stdout, 0);
  static constexpr FlagSpec kServer[] = {{"port", true}, {"bind", true}, {"once", false}};
  static constexpr FlagSpec kClient[] = {{"connect", true}, {"count", true}, {"size", true}, {"warmup", true}};
  std::string err;
  std::span<char* const> rest(argv + 2, static_cast<size_t>(argc - 2));
  if (mode == "server") {
    auto f = Flags::parse(rest, kServer, &err);
    if (!f) return std::fprintf(stderr, "mknet-rtt: %s\n", err.c_str()), 2;
    return serve(*f);
  }
  if (mode == "client") {
    auto f = Flags::parse(rest, kClient, &err);
    if (!f) return std::fprintf(stderr, "mknet-rtt: %s\n", err.c_str()), 2;
    return client(*f);
  }
  return usage(stderr, 2);
}
