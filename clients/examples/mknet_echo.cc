// mknet-echo: an echo server and a client that checks every echoed byte.
//
// The TCP server is one thread running an mknet_poll loop over non-blocking
// sockets, so hundreds of connections cost one pollfd each. It reads only
// while it has nothing left to write to that connection: a client that stops
// reading stops being read, and the server's memory stays bounded.
//
// The client opens N connections, sends each one its own PrngStream and
// compares what comes back against a second copy of the same stream, so no
// sent data is kept. It ends its side after the last byte and expects the
// server to close after echoing everything: extra bytes are mismatches too.
// In UDP mode it keeps a window of datagrams in flight, each tagged with its
// sequence number, retransmits on timeout and verifies every echo in full.
#include <poll.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "flags.h"
#include "mknet/socket.hpp"
#include "prng_stream.h"

namespace mknet::examples {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kUsage[] =
    "usage: mknet-echo server --port P [--bind IP] [--udp] [--verbose]\n"
    "       mknet-echo client --connect IP:PORT [--udp] [--connections N] [--bytes B]\n"
    "                         [--datagrams D] [--window W] [--seed S] [--timeout SEC]\n"
    "\n"
    "server: echoes every byte back on each TCP connection (or each UDP\n"
    "  datagram to its sender) until killed. Prints listen=IP:PORT first\n"
    "  (--port 0 picks a free port).\n"
    "client: TCP: sends B bytes (default 1M) of pseudo-random data on each of N\n"
    "  concurrent connections (default 1) and verifies every echoed byte.\n"
    "  UDP: sends D datagrams (default 1000) of random sizes 8..1472 bytes, at most\n"
    "  W in flight (default 16), retransmitting unanswered ones, and verifies each\n"
    "  echo. --seed S (default 1) picks the data; --timeout (default 60 s) bounds\n"
    "  the run. Prints one summary line of key=value pairs ending in result=ok or\n"
    "  result=fail.\n"
    "\n"
    "Sizes take K, M, G suffixes (binary). Exit status: 0 ok, 1 failure or\n"
    "mismatch, 2 usage.\n";

constexpr FlagSpec kFlags[] = {
    {"help", false},       {"port", true},      {"bind", true},     {"udp", false},
    {"verbose", false},    {"connect", true},   {"connections", true}, {"bytes", true},
    {"datagrams", true},   {"window", true},    {"seed", true},     {"timeout", true},
};

constexpr size_t kIoChunk = 64 * 1024;
constexpr size_t kMaxDatagram = 1472;  // the UDP payload of a 1500-byte IPv4 frame
constexpr size_t kMinDatagram = 8;     // room for the sequence number

struct Options {
  bool server = false;
  bool udp = false;
  bool verbose = false;
  Ipv4Endpoint local;
  Ipv4Endpoint remote;
  uint64_t connections = 1;
  uint64_t bytes = 1 << 20;
  uint64_t datagrams = 1000;
  uint64_t window = 16;
  uint64_t seed = 1;
  double timeout = 60;
};

constexpr App kApp{"mknet-echo"};

void reportError(std::string_view what, std::error_code ec) { kApp.reportError(what, ec); }


// A seed per connection or datagram, decorrelated from its neighbours.
uint64_t deriveSeed(uint64_t seed, uint64_t index) {
  PrngStream mix(seed ^ (index * 0xd1b54a32d192ed03ULL));
  return mix.next();
}

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// ---------------------------------------------------------------- server

struct EchoConnection {
  Socket socket;
  Ipv4Endpoint peer;
  std::vector<std::byte> pending;  // received, not yet echoed
  size_t pendingOffset = 0;
  bool peerDone = false;  // the peer ended its side; close once pending is out
};

// Echoes what is pending; false if the connection failed.
bool flushPending(EchoConnection& c) {
  while (c.pendingOffset < c.pending.size()) {
    auto n = c.socket.send(std::span(c.pending).subspan(c.pendingOffset));
    if (!n) {
      if (wouldBlock(n.error())) return true;
      if (n.error() == std::errc::interrupted) continue;
      return false;
    }
    c.pendingOffset += *n;
  }
  c.pending.clear();
  c.pendingOffset = 0;
  return true;
}

// One read and echo; false when the connection is finished or failed.
bool serviceReadable(EchoConnection& c, std::span<std::byte> buf, const Options& o) {
  auto n = c.socket.recv(buf);
  if (!n) {
    if (wouldBlock(n.error()) || n.error() == std::errc::interrupted) return true;
    if (o.verbose) reportError("recv from " + c.peer.toString(), n.error());
    return false;
  }
  if (*n == 0) {
    c.peerDone = true;
    return true;
  }
  c.pending.assign(buf.begin(), buf.begin() + static_cast<ptrdiff_t>(*n));
  c.pendingOffset = 0;
  return flushPending(c);
}

int runTcpServer(Listener& listener, const Options& o) {
  if (auto r = listener.setNonBlocking(); !r) {
    reportError("set listener non-blocking", r.error());
    return 1;
  }
  std::vector<EchoConnection> conns;
  std::vector<pollfd> fds;  // fds[0] is the listener, fds[i + 1] is conns[i]
  std::vector<std::byte> buf(kIoChunk);
  Clock::time_point acceptPausedUntil{};
  while (true) {
    const bool accepting = Clock::now() >= acceptPausedUntil;
    fds.resize(conns.size() + 1);
    fds[0] = {listener.fd(), static_cast<short>(accepting ? POLLIN : 0), 0};
    for (size_t i = 0; i < conns.size(); ++i) {
      const short events = conns[i].pending.empty() ? POLLIN : POLLOUT;
      fds[i + 1] = {conns[i].socket.fd(), events, 0};
    }
    if (mknet_poll(fds.data(), fds.size(), accepting ? -1 : 100) < 0) {
      if (errno == EINTR) continue;
      reportError("poll", lastError());
      return 1;
    }

    for (size_t i = 0; i < conns.size(); ++i) {
      EchoConnection& c = conns[i];
      const short revents = fds[i + 1].revents;
      bool alive = true;
      if (revents & POLLNVAL) {
        alive = false;
      } else if (!c.pending.empty()) {
        if (revents & (POLLOUT | POLLERR | POLLHUP)) alive = flushPending(c);
      } else if (revents & (POLLIN | POLLERR | POLLHUP)) {
        alive = serviceReadable(c, buf, o);
      }
      if (alive && c.peerDone && c.pending.empty()) alive = false;
      if (!alive) {
        if (o.verbose) std::fprintf(stderr, "closed %s\n", c.peer.toString().c_str());
        // Swap-remove: the last connection moves into slot i together with
        // its pollfd, and is serviced by the next iteration.
        const size_t last = conns.size() - 1;
        if (i != last) {
          c = std::move(conns[last]);
          fds[i + 1] = fds[last + 1];
        }
        conns.pop_back();
        --i;
      }
    }

    if (fds[0].revents & POLLIN) {
      // Take everything that is waiting, so a burst of connects costs one wake-up.
      while (true) {
        auto accepted = listener.accept(SOCK_NONBLOCK);
        if (!accepted) {
          const auto ec = accepted.error();
          if (wouldBlock(ec) || ec == std::errc::interrupted || ec == std::errc::connection_aborted) break;
          // Out of fds or memory: keep serving the connections we have and
          // pause accepting briefly, since the listener stays readable and
          // polling it now would spin on the same error.
          reportError("accept", ec);
          acceptPausedUntil = Clock::now() + std::chrono::milliseconds(100);
          break;
        }
        if (o.verbose) std::fprintf(stderr, "accepted %s\n", accepted->peer.toString().c_str());
        conns.push_back(EchoConnection{std::move(accepted->socket), accepted->peer, {}, 0, false});
      }
    }
  }
}

int runUdpServer(Socket& socket, const Options& o) {
  std::vector<std::byte> buf(65536);
  while (true) {
    auto d = socket.recvFrom(buf);
    if (!d) {
      if (d.error() == std::errc::interrupted) continue;
      reportError("recvfrom", d.error());
      return 1;
    }
    auto n = socket.sendTo(std::span(buf.data(), d->size), d->from);
    // A datagram that cannot be echoed is lost, as UDP allows; keep serving.
    if (!n && o.verbose) reportError("sendto " + d->from.toString(), n.error());
  }
}

int runServer(const Options& o) {
  if (o.udp) {
    auto socket = Socket::udp();
    if (!socket) {
      reportError("socket", socket.error());
      return 1;
    }
    if (auto r = socket->bind(o.local); !r) {
      reportError("bind " + o.local.toString(), r.error());
      return 1;
    }
    auto local = socket->localEndpoint();
    if (!local) {
      reportError("getsockname", local.error());
      return 1;
    }
    std::printf("listen=%s proto=udp\n", local->toString().c_str());
    std::fflush(stdout);
    return runUdpServer(*socket, o);
  }
  auto listener = Listener::listen(o.local);
  if (!listener) {
    reportError("listen on " + o.local.toString(), listener.error());
    return 1;
  }
  auto local = listener->localEndpoint();
  if (!local) {
    reportError("getsockname", local.error());
    return 1;
  }
  std::printf("listen=%s proto=tcp\n", local->toString().c_str());
  std::fflush(stdout);
  return runTcpServer(*listener, o);
}

// ---------------------------------------------------------------- TCP client

struct ClientConnection {
  explicit ClientConnection(uint64_t seed) : tx(seed), expected(seed) {}

  Socket socket;
  PrngStream tx;        // what we send
  PrngStream expected;  // the same stream, advanced as echoes arrive
  std::vector<std::byte> txBuf;
  size_t txOffset = 0;
  uint64_t sent = 0;      // bytes handed to send(), including txBuf's sent part
  uint64_t received = 0;  // bytes echoed and verified
  bool shutDown = false;
  bool done = false;
  bool mismatch = false;  // failed because the echo differed from what was sent
  std::string failure;    // empty unless this connection failed
};

int runTcpClient(const Options& o) {
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.timeout));
  std::vector<ClientConnection> conns;
  conns.reserve(o.connections);
  for (uint64_t i = 0; i < o.connections; ++i) {
    ClientConnection& c = conns.emplace_back(deriveSeed(o.seed, i));
    auto socket = Socket::tcp();
    if (!socket) {
      reportError("socket", socket.error());
      return 1;
    }
    // A blocking connect keeps set-up simple; the data phase is non-blocking.
    if (auto r = socket->connect(o.remote); !r) {
      reportError("connect " + o.remote.toString() + " (connection " + std::to_string(i) + ")", r.error());
      return 1;
    }
    if (auto r = socket->setNonBlocking(); !r) {
      reportError("set non-blocking", r.error());
      return 1;
    }
    c.socket = std::move(*socket);
  }

  std::vector<std::byte> rxBuf(kIoChunk);
  std::vector<std::byte> expectBuf(kIoChunk);
  std::vector<pollfd> fds(conns.size());
  std::vector<size_t> index(conns.size());  // fds[k] belongs to conns[index[k]]
  size_t remaining = conns.size();

  auto fail = [&](ClientConnection& c, std::string why, bool mismatch = false) {
    c.failure = std::move(why);
    c.mismatch = mismatch;
    c.done = true;
    (void)c.socket.close();  // the connection is over; a close error adds nothing
    --remaining;
  };

  while (remaining > 0) {
    const auto now = Clock::now();
    if (now >= deadline) break;
    size_t k = 0;
    for (size_t i = 0; i < conns.size(); ++i) {
      ClientConnection& c = conns[i];
      // Everything sent: end our side so the server closes once it has
      // echoed it all (done here, not after a POLLOUT, so --bytes 0 works).
      if (!c.done && c.sent == o.bytes && !c.shutDown) {
        if (auto r = c.socket.shutdown(SHUT_WR); !r) {
          fail(c, "shutdown: " + r.error().message());
        } else {
          c.shutDown = true;
        }
      }
      if (c.done) continue;
      short events = POLLIN;
      if (c.sent < o.bytes) events |= POLLOUT;
      fds[k] = {c.socket.fd(), events, 0};
      index[k++] = i;
    }
    if (k == 0) continue;
    const auto waitMs = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
    const int ready = mknet_poll(fds.data(), k, static_cast<int>(std::min<int64_t>(waitMs, 1000)));
    if (ready < 0) {
      if (errno == EINTR) continue;
      reportError("poll", lastError());
      return 1;
    }
    for (size_t j = 0; j < k; ++j) {
      ClientConnection& c = conns[index[j]];
      const short revents = fds[j].revents;
      if (revents == 0) continue;

      if ((revents & (POLLOUT | POLLERR | POLLHUP)) && c.sent < o.bytes) {
        while (c.sent < o.bytes) {
          if (c.txOffset == c.txBuf.size()) {
            const size_t n = static_cast<size_t>(std::min<uint64_t>(kIoChunk, o.bytes - c.sent));
            c.txBuf.resize(n);
            c.tx.fill(c.txBuf);
            c.txOffset = 0;
          }
          auto n = c.socket.send(std::span(c.txBuf).subspan(c.txOffset));
          if (!n) {
            if (!wouldBlock(n.error()) && n.error() != std::errc::interrupted) {
              fail(c, "send: " + n.error().message());
            }
            break;
          }
          c.txOffset += *n;
          c.sent += *n;
        }
        if (c.done) continue;
      }

      if (revents & (POLLIN | POLLERR | POLLHUP)) {
        auto n = c.socket.recv(rxBuf);
        if (!n) {
          if (!wouldBlock(n.error()) && n.error() != std::errc::interrupted) {
            fail(c, "recv: " + n.error().message());
          }
          continue;
        }
        if (*n == 0) {
          if (c.received == o.bytes) {
            c.done = true;
            (void)c.socket.close();  // every byte is verified; nothing left to lose
            --remaining;
          } else {
            fail(c, "server closed after " + std::to_string(c.received) + " of " + std::to_string(o.bytes) +
                        " bytes");
          }
          continue;
        }
        if (c.received + *n > o.bytes) {
          fail(c, "server echoed " + std::to_string(c.received + *n - o.bytes) + " bytes more than were sent",
               true);
          continue;
        }
        const std::span<std::byte> want(expectBuf.data(), *n);
        c.expected.fill(want);
        if (std::memcmp(want.data(), rxBuf.data(), *n) != 0) {
          size_t at = 0;
          while (want[at] == rxBuf[at]) ++at;
          fail(c, "echo differs from what was sent at byte " + std::to_string(c.received + at), true);
          continue;
        }
        c.received += *n;
      }
    }
  }

  const double seconds = secondsSince(start);
  uint64_t ok = 0;
  uint64_t failed = 0;
  uint64_t mismatches = 0;
  uint64_t verified = 0;
  uint64_t sent = 0;
  for (size_t i = 0; i < conns.size(); ++i) {
    const ClientConnection& c = conns[i];
    sent += c.sent;
    verified += c.received;
    if (!c.done) {
      ++failed;
      std::fprintf(stderr, "mknet-echo: connection %zu: timed out after %.1f s (%" PRIu64 " sent, %" PRIu64
                           " verified)\n", i, o.timeout, c.sent, c.received);
    } else if (!c.failure.empty()) {
      ++failed;
      if (c.mismatch) ++mismatches;
      std::fprintf(stderr, "mknet-echo: connection %zu: %s\n", i, c.failure.c_str());
    } else {
      ++ok;
    }
  }
  const double gbps = seconds > 0 ? static_cast<double>(verified) * 8 / seconds / 1e9 : 0;
  std::printf("mode=tcp connections=%" PRIu64 " ok=%" PRIu64 " failed=%" PRIu64 " mismatches=%" PRIu64
              " bytes_sent=%" PRIu64 " bytes_verified=%" PRIu64 " seconds=%.6f gbps=%.3f result=%s\n",
              o.connections, ok, failed, mismatches, sent, verified, seconds, gbps, failed == 0 ? "ok" : "fail");
  return failed == 0 ? 0 : 1;
}

// ---------------------------------------------------------------- UDP client

// Datagram `seq`: the sequence number (8 bytes, little-endian) then payload,
// size and payload drawn from the datagram's own stream.
std::vector<std::byte> makeDatagram(uint64_t seed, uint64_t seq) {
  PrngStream stream(deriveSeed(seed, seq));
  const size_t size = kMinDatagram + static_cast<size_t>(stream.next() % (kMaxDatagram - kMinDatagram + 1));
  std::vector<std::byte> d(size);
  for (int i = 0; i < 8; ++i) d[i] = static_cast<std::byte>(seq >> (8 * i));
  stream.fill(std::span(d).subspan(8));
  return d;
}

int runUdpClient(const Options& o) {
  // Loopback and LAN round trips are far below this; a datagram unanswered
  // for this long is presumed lost and sent again.
  constexpr auto kRetransmitAfter = std::chrono::milliseconds(200);
  constexpr int kMaxAttempts = 10;

  auto socket = Socket::udp(SOCK_NONBLOCK);
  if (!socket) {
    reportError("socket", socket.error());
    return 1;
  }
  struct InFlight {
    std::vector<std::byte> data;
    Clock::time_point sentAt;
    int attempts = 0;
  };
  std::map<uint64_t, InFlight> inFlight;
  uint64_t nextSeq = 0;
  uint64_t verified = 0;
  uint64_t bytesVerified = 0;
  uint64_t mismatches = 0;
  uint64_t duplicates = 0;
  uint64_t strangers = 0;
  uint64_t retransmits = 0;
  uint64_t lost = 0;
  std::vector<std::byte> buf(65536);

  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.timeout));
  auto transmit = [&](uint64_t seq, InFlight& f) -> bool {
    auto n = socket->sendTo(f.data, o.remote);
    f.sentAt = Clock::now();
    ++f.attempts;
    // A full send buffer (EAGAIN) or an ICMP error is just a lost datagram;
    // the retransmit timer handles it like one lost on the wire.
    if (!n && !wouldBlock(n.error()) && n.error() != std::errc::connection_refused) {
      reportError("sendto " + o.remote.toString() + " (datagram " + std::to_string(seq) + ")", n.error());
      return false;
    }
    return true;
  };

  bool hardError = false;
  while ((nextSeq < o.datagrams || !inFlight.empty()) && !hardError) {
    auto now = Clock::now();
    if (now >= deadline) break;
    while (nextSeq < o.datagrams && inFlight.size() < o.window) {
      InFlight& f = inFlight[nextSeq];
      f.data = makeDatagram(o.seed, nextSeq);
      if (!transmit(nextSeq, f)) hardError = true;
      ++nextSeq;
    }
    for (auto it = inFlight.begin(); it != inFlight.end();) {
      if (now - it->second.sentAt < kRetransmitAfter) {
        ++it;
        continue;
      }
      if (it->second.attempts >= kMaxAttempts) {
        std::fprintf(stderr, "mknet-echo: datagram %" PRIu64 ": no echo after %d attempts\n", it->first,
                     it->second.attempts);
        ++lost;
        it = inFlight.erase(it);
        continue;
      }
      ++retransmits;
      if (!transmit(it->first, it->second)) hardError = true;
      ++it;
    }
    if (inFlight.empty()) continue;

    pollfd pfd{socket->fd(), POLLIN, 0};
    const int ready = mknet_poll(&pfd, 1, 50);
    if (ready < 0) {
      if (errno == EINTR) continue;
      reportError("poll", lastError());
      return 1;
    }
    // Drain what arrived; never more than one window's worth per wake-up, so
    // a flood of strangers cannot stall the retransmit timer.
    for (uint64_t burst = 0; burst <= o.window; ++burst) {
      auto d = socket->recvFrom(buf);
      if (!d) {
        if (!wouldBlock(d.error()) && d.error() != std::errc::interrupted &&
            d.error() != std::errc::connection_refused) {
          reportError("recvfrom", d.error());
          hardError = true;
        }
        break;
      }
      if (d->from != o.remote) {
        ++strangers;
        continue;
      }
      uint64_t seq = 0;
      if (d->size >= 8) {
        for (int i = 0; i < 8; ++i) seq |= static_cast<uint64_t>(buf[i]) << (8 * i);
      }
      const auto it = d->size >= 8 ? inFlight.find(seq) : inFlight.end();
      if (it == inFlight.end()) {
        // An echo of a datagram already verified (we retransmitted it) is a
        // duplicate if it is intact; anything else is corruption.
        if (d->size >= 8 && seq < nextSeq) {
          const auto original = makeDatagram(o.seed, seq);
          if (original.size() == d->size && std::memcmp(original.data(), buf.data(), d->size) == 0) {
            ++duplicates;
            continue;
          }
        }
        std::fprintf(stderr, "mknet-echo: unexpected %zu-byte datagram (not an echo of anything sent)\n", d->size);
        ++mismatches;
        continue;
      }
      if (it->second.data.size() != d->size || std::memcmp(it->second.data.data(), buf.data(), d->size) != 0) {
        std::fprintf(stderr, "mknet-echo: datagram %" PRIu64 ": echo differs (%zu bytes sent, %zu received)\n",
                     seq, it->second.data.size(), d->size);
        ++mismatches;
        inFlight.erase(it);
        continue;
      }
      ++verified;
      bytesVerified += d->size;
      inFlight.erase(it);
    }
  }

  const double seconds = secondsSince(start);
  const uint64_t unanswered = lost + inFlight.size() + (o.datagrams - nextSeq);
  const bool ok = !hardError && mismatches == 0 && unanswered == 0 && verified == o.datagrams;
  if (!inFlight.empty() || nextSeq < o.datagrams) {
    std::fprintf(stderr, "mknet-echo: timed out after %.1f s with %" PRIu64 " datagrams unanswered\n", o.timeout,
                 unanswered);
  }
  std::printf("mode=udp datagrams=%" PRIu64 " verified=%" PRIu64 " bytes_verified=%" PRIu64 " mismatches=%" PRIu64
              " lost=%" PRIu64 " retransmits=%" PRIu64 " duplicates=%" PRIu64 " strangers=%" PRIu64
              " seconds=%.6f result=%s\n",
              o.datagrams, verified, bytesVerified, mismatches, unanswered, retransmits, duplicates, strangers,
              seconds, ok ? "ok" : "fail");
  return ok ? 0 : 1;
}

// ---------------------------------------------------------------- flags

int usageError(std::string_view message) { return kApp.usageError(message); }

int run(int argc, char** argv) {
  if (argc >= 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0)) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (argc < 2) return usageError("missing mode (server or client)");
  const std::string mode = argv[1];
  if (mode != "server" && mode != "client") return usageError("unknown mode '" + mode + "' (want server or client)");
  std::string error;
  const auto flags = Flags::parse(std::span(argv + 2, static_cast<size_t>(argc - 2)), kFlags, &error);
  if (!flags) return usageError(error);
  if (flags->has("help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }

  Options o;
  o.server = mode == "server";
  o.udp = flags->has("udp");
  static constexpr const char* kServerOnly[] = {"port", "bind", "verbose"};
  static constexpr const char* kClientOnly[] = {"connect", "connections", "bytes", "datagrams",
                                                "window",  "seed",        "timeout"};
  for (const char* f : o.server ? std::span<const char* const>(kClientOnly) : std::span<const char* const>(kServerOnly)) {
    if (flags->has(f)) return usageError("--" + std::string(f) + " does not apply to " + mode);
  }
  if (o.udp && (flags->has("connections") || flags->has("bytes"))) {
    return usageError("--connections and --bytes are for TCP; UDP takes --datagrams and --window");
  }
  if (!o.udp && (flags->has("datagrams") || flags->has("window"))) {
    return usageError("--datagrams and --window need --udp");
  }

  auto count = [&](const char* name, uint64_t min, uint64_t max, uint64_t& out) -> bool {
    const auto v = flags->value(name);
    if (!v) return true;
    const auto n = parseCount(*v);
    if (!n || *n < min || *n > max) {
      error = "bad --" + std::string(name) + " '" + std::string(*v) + "' (want " + std::to_string(min) + ".." +
              std::to_string(max) + ")";
      return false;
    }
    out = *n;
    return true;
  };

  if (o.server) {
    const auto v = flags->value("port");
    if (!v) return usageError("server needs --port P");
    const auto port = parsePort(*v);
    if (!port) return usageError("bad --port '" + std::string(*v) + "'");
    o.local.port = *port;
    if (const auto b = flags->value("bind")) {
      const auto ip = parseIpv4(*b);
      if (!ip) return usageError("bad --bind '" + std::string(*b) + "' (want an IPv4 address)");
      o.local.ip = *ip;
    }
    o.verbose = flags->has("verbose");
    return runServer(o);
  }

  const auto v = flags->value("connect");
  if (!v) return usageError("client needs --connect IP:PORT");
  const auto ep = Ipv4Endpoint::parse(*v);
  if (!ep || ep->port == 0) return usageError("bad --connect '" + std::string(*v) + "' (want IP:PORT)");
  o.remote = *ep;
  if (!count("connections", 1, 100000, o.connections) || !count("bytes", 0, uint64_t{1} << 50, o.bytes) ||
      !count("datagrams", 1, uint64_t{1} << 32, o.datagrams) || !count("window", 1, 4096, o.window) ||
      !count("seed", 0, UINT64_MAX, o.seed)) {
    return usageError(error);
  }
  if (const auto t = flags->value("timeout")) {
    const auto s = parseSeconds(*t);
    if (!s) return usageError("bad --timeout '" + std::string(*t) + "' (want seconds > 0)");
    o.timeout = *s;
  }
  return o.udp ? runUdpClient(o) : runTcpClient(o);
}

}  // namespace
}  // namespace mknet::examples

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  return mknet::examples::run(argc, argv);
}
