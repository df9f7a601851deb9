// mknet-bulk: one TCP stream as fast as it will go, for throughput baselines.
//
// The payload is PrngStream(seed) (see prng_stream.h), so both ends and any
// independent tool can agree on its SHA-256; `dump` writes the same stream to
// stdout for exactly that. Every transfer prints one line of key=value pairs:
//   mode=send bytes=268435456 seconds=0.123 gbps=17.4 sha256=<hex> peer=127.0.0.1:5001
// Servers first print `listen=IP:PORT` so a caller that asked for port 0
// learns the port.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "flags.h"
#include "mknet/socket.hpp"
#include "prng_stream.h"
#include "sha256.h"

namespace mknet::examples {
namespace {

constexpr char kUsage[] =
    "usage: mknet-bulk send  --connect IP:PORT --bytes N [--seconds T] [--seed S] [common]\n"
    "       mknet-bulk sink  --port P [--bind IP] [--once] [common]\n"
    "       mknet-bulk serve --port P [--bind IP] --bytes N [--seconds T] [--seed S] [--once] [common]\n"
    "       mknet-bulk recv  --connect IP:PORT [common]\n"
    "       mknet-bulk dump  --bytes N [--seed S]\n"
    "\n"
    "Streams bytes of a deterministic pseudo-random stream over one TCP\n"
    "connection and reports throughput. send/serve transmit N bytes of the\n"
    "stream for seed S (default 1); sink/recv read until the peer ends the\n"
    "stream. Without --once, sink and serve handle one connection after another\n"
    "until killed. dump writes the stream to stdout (pipe it to sha256sum).\n"
    "--seconds T makes send/serve stop after T seconds if the N bytes are not\n"
    "out by then (--bytes may then be left out: no byte limit); bytes= reports\n"
    "what was sent.\n"
    "\n"
    "Each transfer prints one line: mode= bytes= seconds= gbps= sha256= peer=\n"
    "Servers first print listen=IP:PORT (--port 0 picks a free port).\n"
    "\n"
    "common flags:\n"
    "  --buffer B   bytes per send/recv call (default 256K)\n"
    "  --no-hash    skip SHA-256 (prints sha256=none), to measure the network\n"
    "               rather than the hash\n"
    "Sizes take K, M, G suffixes (binary). Exit status: 0 ok, 1 error, 2 usage.\n";

constexpr FlagSpec kFlags[] = {
    {"help", false}, {"connect", true}, {"port", true},    {"bind", true},     {"bytes", true},
    {"seed", true},  {"once", false},   {"buffer", true},  {"no-hash", false},  {"seconds", true},
};

struct Options {
  std::string mode;
  Ipv4Endpoint remote;
  Ipv4Endpoint local;  // ip 0 = any
  uint64_t bytes = 0;
  double seconds = 0;  // 0: no time limit
  uint64_t seed = 1;
  bool once = false;
  size_t buffer = 256 * 1024;
  bool hash = true;
};

// Hashes a stream unless --no-hash; prints its digest or "none".
class StreamDigest {
 public:
  explicit StreamDigest(bool enabled) {
    if (enabled) sha_.emplace();
  }
  void update(std::span<const std::byte> data) {
    if (sha_) sha_->update(data);
  }
  std::string hex() { return sha_ ? sha_->hexDigest() : "none"; }

 private:
  std::optional<Sha256> sha_;
};

struct Transfer {
  uint64_t bytes = 0;
  double seconds = 0;
  std::string sha256;
};

void printResult(const Options& o, const Transfer& t, const Ipv4Endpoint& peer) {
  const double gbps = t.seconds > 0 ? static_cast<double>(t.bytes) * 8 / t.seconds / 1e9 : 0;
  std::printf("mode=%s bytes=%" PRIu64 " seconds=%.6f gbps=%.3f sha256=%s peer=%s\n", o.mode.c_str(), t.bytes,
              t.seconds, gbps, t.sha256.c_str(), peer.toString().c_str());
  std::fflush(stdout);
}

double secondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

constexpr App kApp{"mknet-bulk"};

void reportError(std::string_view what, std::error_code ec) { kApp.reportError(what, ec); }

// Sends o.bytes of the stream, ends our side, and waits for the peer to
// close: the clock stops when the receiver has everything, not when the
// last byte entered our send buffer.
std::optional<Transfer> sendStream(Socket& socket, const Options& o) {
  std::vector<std::byte> buf(o.buffer);
  PrngStream stream(o.seed);
  StreamDigest digest(o.hash);
  const auto start = std::chrono::steady_clock::now();
  const auto deadline =
      start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(o.seconds));
  uint64_t left = o.bytes;
  while (left > 0) {
    if (o.seconds > 0 && std::chrono::steady_clock::now() >= deadline) break;
    const std::span<std::byte> chunk(buf.data(), static_cast<size_t>(std::min<uint64_t>(left, buf.size())));
    stream.fill(chunk);
    digest.update(chunk);
    if (auto r = sendAll(socket, chunk); !r) {
      reportError("send", r.error());
      return std::nullopt;
    }
    left -= chunk.size();
  }
  if (auto r = socket.shutdown(SHUT_WR); !r) {
    reportError("shutdown", r.error());
    return std::nullopt;
  }
  // The peer is a reader; anything it sends is not part of the transfer.
  while (true) {
    auto n = socket.recv(buf);
    if (!n && n.error() == std::errc::interrupted) continue;
    if (!n) {
      reportError("waiting for the receiver to close", n.error());
      return std::nullopt;
    }
    if (*n == 0) break;
  }
  return Transfer{o.bytes - left, secondsSince(start), digest.hex()};
}

// Reads until the peer ends the stream.
std::optional<Transfer> receiveStream(Socket& socket, const Options& o) {
  std::vector<std::byte> buf(o.buffer);
  StreamDigest digest(o.hash);
  const auto start = std::chrono::steady_clock::now();
  uint64_t total = 0;
  while (true) {
    auto n = socket.recv(buf);
    if (!n) {
      if (n.error() == std::errc::interrupted) continue;
      reportError("recv", n.error());
      return std::nullopt;
    }
    if (*n == 0) break;
    digest.update(std::span(buf.data(), *n));
    total += *n;
  }
  return Transfer{total, secondsSince(start), digest.hex()};
}

int runClient(const Options& o) {
  auto socket = Socket::tcp();
  if (!socket) {
    reportError("socket", socket.error());
    return 1;
  }
  if (auto r = socket->connect(o.remote); !r) {
    reportError(("connect " + o.remote.toString()).c_str(), r.error());
    return 1;
  }
  const auto t = o.mode == "send" ? sendStream(*socket, o) : receiveStream(*socket, o);
  if (!t) return 1;
  printResult(o, *t, o.remote);
  return 0;
}

int runServer(const Options& o) {
  auto listener = Listener::listen(o.local);
  if (!listener) {
    reportError(("listen on " + o.local.toString()).c_str(), listener.error());
    return 1;
  }
  auto local = listener->localEndpoint();
  if (!local) {
    reportError("getsockname", local.error());
    return 1;
  }
  std::printf("listen=%s\n", local->toString().c_str());
  std::fflush(stdout);
  while (true) {
    auto accepted = listener->accept();
    if (!accepted) {
      if (accepted.error() == std::errc::interrupted || accepted.error() == std::errc::connection_aborted) continue;
      reportError("accept", accepted.error());
      return 1;
    }
    const auto t = o.mode == "serve" ? sendStream(accepted->socket, o) : receiveStream(accepted->socket, o);
    // A failed transfer ends a --once run with an error; a repeating server
    // reports it and serves the next client.
    if (t) printResult(o, *t, accepted->peer);
    if (o.once) return t ? 0 : 1;
  }
}

int runDump(const Options& o) {
  std::vector<std::byte> buf(o.buffer);
  PrngStream stream(o.seed);
  uint64_t left = o.bytes;
  while (left > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
    stream.fill(std::span(buf.data(), n));
    size_t off = 0;
    while (off < n) {
      const ssize_t w = ::write(STDOUT_FILENO, buf.data() + off, n - off);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        reportError("write to stdout", lastError());
        return 1;
      }
      off += static_cast<size_t>(w);
    }
    left -= n;
  }
  return 0;
}

int usageError(std::string_view message) { return kApp.usageError(message); }

int run(int argc, char** argv) {
  if (argc >= 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0)) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (argc < 2) return usageError("missing mode (send, sink, serve, recv or dump)");
  Options o;
  o.mode = argv[1];
  if (o.mode != "send" && o.mode != "sink" && o.mode != "serve" && o.mode != "recv" && o.mode != "dump") {
    return usageError("unknown mode '" + o.mode + "' (want send, sink, serve, recv or dump)");
  }
  std::string error;
  const auto flags = Flags::parse(std::span(argv + 2, static_cast<size_t>(argc - 2)), kFlags, &error);
  if (!flags) return usageError(error);
  if (flags->has("help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }

  const bool isClient = o.mode == "send" || o.mode == "recv";
  const bool isServer = o.mode == "sink" || o.mode == "serve";
  const bool sends = o.mode == "send" || o.mode == "serve" || o.mode == "dump";
  // Refuse flags the mode would ignore: a silently ignored --bytes on a sink
  // is a benchmark measuring something other than what its author meant.
  auto onlyFor = [&](const char* flag, bool allowed) { return !flags->has(flag) || allowed; };
  for (const auto& [flag, allowed] : {std::pair{"connect", isClient}, std::pair{"port", isServer},
                                      std::pair{"bind", isServer}, std::pair{"once", isServer},
                                      std::pair{"bytes", sends}, std::pair{"seed", sends},
                                      std::pair{"seconds", sends && o.mode != "dump"},
                                      std::pair{"no-hash", o.mode != "dump"}}) {
    if (!onlyFor(flag, allowed)) return usageError("--" + std::string(flag) + " does not apply to " + o.mode);
  }

  if (isClient) {
    const auto v = flags->value("connect");
    if (!v) return usageError(o.mode + " needs --connect IP:PORT");
    const auto ep = Ipv4Endpoint::parse(*v);
    if (!ep || ep->port == 0) return usageError("bad --connect '" + std::string(*v) + "' (want IP:PORT)");
    o.remote = *ep;
  }
  if (isServer) {
    const auto v = flags->value("port");
    if (!v) return usageError(o.mode + " needs --port P");
    const auto port = parsePort(*v);
    if (!port) return usageError("bad --port '" + std::string(*v) + "'");
    o.local.port = *port;
    if (const auto b = flags->value("bind")) {
      const auto ip = parseIpv4(*b);
      if (!ip) return usageError("bad --bind '" + std::string(*b) + "' (want an IPv4 address)");
      o.local.ip = *ip;
    }
  }
  if (sends) {
    if (const auto t = flags->value("seconds")) {
      const auto s = parseSeconds(*t);
      if (!s) return usageError("bad --seconds '" + std::string(*t) + "'");
      o.seconds = *s;
      o.bytes = UINT64_MAX;
    }
    const auto v = flags->value("bytes");
    if (!v && o.seconds == 0) return usageError(o.mode + " needs --bytes N");
    const auto n = v ? parseCount(*v) : std::optional<uint64_t>(o.bytes);
    if (!n) return usageError("bad --bytes '" + std::string(*v) + "'");
    o.bytes = *n;
    if (const auto s = flags->value("seed")) {
      const auto seed = parseCount(*s);
      if (!seed) return usageError("bad --seed '" + std::string(*s) + "'");
      o.seed = *seed;
    }
  }
  if (const auto v = flags->value("buffer")) {
    const auto n = parseCount(*v);
    if (!n || *n == 0 || *n > (64u << 20)) return usageError("bad --buffer '" + std::string(*v) + "' (1 .. 64M)");
    o.buffer = static_cast<size_t>(*n);
  }
  o.once = flags->has("once");
  o.hash = !flags->has("no-hash");

  if (o.mode == "dump") return runDump(o);
  return isClient ? runClient(o) : runServer(o);
}

}  // namespace
}  // namespace mknet::examples

int main(int argc, char** argv) {
  // Writes to a vanished peer or a closed stdout pipe must be errors we
  // report, not a silent death by SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  return mknet::examples::run(argc, argv);
}
