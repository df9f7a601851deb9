// mknet-bench-ipc, comparisons 4 and 5: the baselines a ring replaces, one
// byte over a Unix socket and a Cap'n Proto call (see ipc_bench_harness.h).
#include "tests/bench/ipc_bench_harness.h"

#include <sys/socket.h>

#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/exception.h>

#include "tests/bench/bench.capnp.h"

namespace mknet::bench {

namespace {

// ---------------------------------------------------------------------------
// 4a. A 1-byte ping-pong over socketpair(AF_UNIX, SOCK_STREAM).

Result<void> setRecvTimeout(int fd, Clock::duration d) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  struct timeval tv {
    static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)
  };
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0)
    return errnoError("setsockopt(SO_RCVTIMEO)");
  return ok();
}

// Reads exactly one byte; false on EOF (errno ECONNRESET), timeout (EAGAIN)
// or error.
bool readByte(int fd, uint8_t* c) {
  for (;;) {
    ssize_t n = ::read(fd, c, 1);
    if (n == 1) return true;
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) errno = ECONNRESET;
    return false;
  }
}
bool writeByte(int fd, uint8_t c) {
  for (;;) {
    ssize_t n = ::send(fd, &c, 1, MSG_NOSIGNAL);
    if (n == 1) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
}

int socketPeer(UniqueFd s) {
  const char* what = "unix socket RTT";
  if (auto r = setRecvTimeout(s.get(), kPeerIdleLimit); !r)
    return peerFail(what, r.error().message());
  for (uint8_t expect = 0;; ++expect) {
    uint8_t c;
    ssize_t n;
    do n = ::read(s.get(), &c, 1);
    while (n < 0 && errno == EINTR);
    if (n == 0) return 0;  // the parent closed its end: done
    if (n < 0) return peerFail(what, std::string("read: ") + strerror(errno));
    if (c != expect) return peerFail(what, "byte out of sequence");
    if (!writeByte(s.get(), static_cast<uint8_t>(c + 1)))
      return peerFail(what, std::string("send: ") + strerror(errno));
  }
}

}  // namespace

Result<Latency> unixSocketRtt(const Cpus& cpus, const Budget& bud) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return errnoError("socketpair");
  UniqueFd mine(sv[0]), theirs(sv[1]);
  if (auto r = setRecvTimeout(mine.get(), kStallLimit); !r) return r.error();
  if (auto r = pinTo(cpus.a); !r) return r.error();
  auto peer = Peer::start("unix socket RTT", *cpus.b, [&] {
    mine.reset();
    return socketPeer(std::move(theirs));
  });
  if (!peer) return peer.error();
  theirs.reset();

  const uint32_t total = bud.warmup + bud.latencySamples;
  std::vector<int64_t> ns(bud.latencySamples, 0);
  size_t kept = 0;
  Clock::time_point measureEnd{};
  for (uint32_t i = 0; i < total; ++i) {
    const auto c = static_cast<uint8_t>(i);
    uint8_t r = 0;
    const auto t0 = Clock::now();
    if (!writeByte(mine.get(), c)) return errnoError("unix socket RTT: send");
    if (!readByte(mine.get(), &r)) {
      int e = errno;
      if (auto a = peer->checkAlive(); !a) return a.error();
      if (e == EAGAIN || e == EWOULDBLOCK)
        return makeError(0, "unix socket RTT: no reply within 3 s for byte " + std::to_string(i));
      return makeError(e, "unix socket RTT: no reply for byte " + std::to_string(i));
    }
    const auto t1 = Clock::now();
    if (r != static_cast<uint8_t>(c + 1))
      return makeError(0, "unix socket RTT: wrong reply for byte " + std::to_string(i));
    if (i == bud.warmup) measureEnd = t0 + bud.socketRttTime;
    if (i >= bud.warmup) {
      ns[kept++] = nsBetween(t0, t1);
      if (t1 >= measureEnd) break;
    }
  }
  mine.reset();  // EOF tells the peer to exit
  if (auto r = peer->finish(kStallLimit); !r) return r.error();
  ns.resize(kept);
  return summarize(ns);
}

namespace {

// ---------------------------------------------------------------------------
// 4b. Serial Cap'n Proto calls over a Unix socket (TwoPartyVatNetwork).

using schema::Echo;

class EchoImpl final : public Echo::Server {
 protected:
  kj::Promise<void> echo(EchoContext context) override {
    context.getResults().setV(context.getParams().getV());
    return kj::READY_NOW;
  }
};

// Tight limits: the only messages are a few words long.
capnp::ReaderOptions rpcReaderOptions() {
  capnp::ReaderOptions o;
  o.traversalLimitInWords = 64 * 1024;
  o.nestingLimit = 16;
  return o;
}

int capnpPeer(UniqueFd s) {
  auto io = kj::setupAsyncIo();
  auto stream =
      io.lowLevelProvider->wrapSocketFd(s.release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  capnp::TwoPartyVatNetwork network(*stream, capnp::rpc::twoparty::Side::SERVER,
                                    rpcReaderOptions());
  auto rpc = capnp::makeRpcServer(network, kj::heap<EchoImpl>());
  // Serve until the client hangs up; bounded in case it never does.
  io.provider->getTimer().timeoutAfter(60 * kj::SECONDS, network.onDisconnect()).wait(io.waitScope);
  return 0;
}

}  // namespace

Result<CapnpResult> capnpRtt(const Cpus& cpus, const Budget& bud) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return errnoError("socketpair");
  UniqueFd mine(sv[0]), theirs(sv[1]);
  if (auto r = pinTo(cpus.a); !r) return r.error();
  // Fork before this process creates its own event loop.
  auto peer = Peer::start("capnp RTT", *cpus.b, [&] {
    mine.reset();
    return capnpPeer(std::move(theirs));
  });
  if (!peer) return peer.error();
  theirs.reset();

  const uint32_t total = bud.warmup + bud.latencySamples;
  std::vector<int64_t> ns(bud.latencySamples, 0);
  size_t kept = 0;
  double measuredSeconds = 0;
  try {
    auto io = kj::setupAsyncIo();
    auto& timer = io.provider->getTimer();
    auto stream = io.lowLevelProvider->wrapSocketFd(mine.release(),
                                                    kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    capnp::TwoPartyVatNetwork network(*stream, capnp::rpc::twoparty::Side::CLIENT,
                                      rpcReaderOptions());
    auto rpc = capnp::makeRpcClient(network);
    capnp::MallocMessageBuilder vatIdMessage;
    auto vatId = vatIdMessage.initRoot<capnp::rpc::twoparty::VatId>();
    vatId.setSide(capnp::rpc::twoparty::Side::SERVER);
    Echo::Client echo = rpc.bootstrap(vatId).castAs<Echo>();

    Clock::time_point measureStart{}, measureEnd{}, last{};
    for (uint32_t i = 0; i < total; ++i) {
      const auto t0 = Clock::now();
      auto req = echo.echoRequest();
      req.setV(0x1234567800000000ull + i);
      // Bounded: a silent server turns into a kj exception after 3 s.
      auto resp = timer
                      .timeoutAfter(3 * kj::SECONDS,
                                    kj::Promise<capnp::Response<Echo::EchoResults>>(req.send()))
                      .wait(io.waitScope);
      const auto t1 = Clock::now();
      if (resp.getV() != 0x1234567800000000ull + i)
        return makeError(0, "capnp RTT: wrong echo for call " + std::to_string(i));
      if (i == bud.warmup) {
        measureStart = t0;
        measureEnd = t0 + bud.capnpRttTime;
      }
      if (i >= bud.warmup) {
        ns[kept++] = nsBetween(t0, t1);
        last = t1;
        if (t1 >= measureEnd) break;
      }
    }
    measuredSeconds = std::chrono::duration<double>(last - measureStart).count();
    // Leaving the scope drops the capability, the RPC system and the socket:
    // the server sees the hang-up and exits.
  } catch (const kj::Exception& e) {
    if (auto r = peer->checkAlive(); !r) return r.error();
    return makeError(0, std::string("capnp RTT: ") + e.getDescription().cStr());
  }
  if (auto r = peer->finish(kStallLimit); !r) return r.error();
  ns.resize(kept);
  CapnpResult res;
  res.rtt = summarize(ns);
  res.callsPerSecond = measuredSeconds > 0 ? static_cast<double>(kept) / measuredSeconds : 0;
  return res;
}

}  // namespace mknet::bench
