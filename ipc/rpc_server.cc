#include "ipc/rpc_server.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize-async.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>

namespace mknet::ipc {
namespace {

std::string parentDir(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Result<sockaddr_un> unixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty()) return makeError(EINVAL, "unix socket path is empty");
  if (path.size() >= sizeof(addr.sun_path))
    return makeError(ENAMETOOLONG, "unix socket path '" + path + "' is longer than " +
                                       std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// Is a server listening on the socket file at `path`? A non-blocking connect
// answers without waiting: success or EAGAIN (backlog full) means someone
// listens, ECONNREFUSED means the file is a leftover of a dead server.
// Returns true for live, false for stale, or the error that prevented probing.
Result<bool> socketIsLive(const sockaddr_un& addr, const std::string& path) {
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!probe) return errnoError("socket() to probe " + path);
  if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0)
    return true;
  switch (errno) {
    case EAGAIN:
    case EINPROGRESS:
      return true;
    case ECONNREFUSED:
      return false;
    default:
      return errnoError("probing existing socket " + path);
  }
}

// Creates, binds, chmods and listens on a Unix stream socket at `path`.
// Fills `st` with the bound file's identity.
Result<UniqueFd> bindListeningSocket(const std::string& path, mode_t mode, int backlog,
                                     struct stat* st) {
  auto addr = unixAddress(path);
  if (!addr) return addr.error();

  struct stat existing {};
  if (::lstat(path.c_str(), &existing) == 0) {
    if (!S_ISSOCK(existing.st_mode))
      return makeError(EEXIST, path + " exists and is not a socket; not removing it");
    auto live = socketIsLive(*addr, path);
    if (!live) return live.error();
    if (*live)
      return makeError(EADDRINUSE, "another server is already listening on " + path);
    // Stale: its server died without cleaning up. Someone else may remove it
    // at the same moment; that is fine.
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      return errnoError("removing stale socket " + path);
  }

  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return errnoError("socket(AF_UNIX) for " + path);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) != 0) {
    int err = errno;
    switch (err) {
      case ENOENT:
      case ENOTDIR:
        return makeError(err, "bind " + path + ": directory " + parentDir(path) +
                                  " does not exist");
      case EACCES:
      case EPERM:
      case EROFS:
        return makeError(err, "bind " + path + ": cannot create a socket in " + parentDir(path));
      case EADDRINUSE:
        return makeError(err, "bind " + path + ": the path was taken while we were starting");
      default:
        return makeError(err, "bind " + path);
    }
  }
  // From here on the file is ours: remove it again on any failure.
  auto fail = [&](const std::string& what) {
    Error e = errnoError(what);
    ::unlink(path.c_str());
    return e;
  };
  // chmod before listen(): until listen() every connect is refused, so there
  // is no moment in which the umask-derived mode lets the wrong peer in.
  if (::chmod(path.c_str(), mode) != 0) return fail("chmod " + path);
  if (::lstat(path.c_str(), st) != 0) return fail("stat " + path);
  if (::listen(fd.get(), backlog) != 0) return fail("listen on " + path);
  return fd;
}

}  // namespace

// Lets one log line through per second and counts the ones it holds back, so
// a peer (or a full fd table) cannot flood the log.
bool RpcServer::LogLimit::allow(uint64_t* suppressed) {
  int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                    std::chrono::steady_clock::now().time_since_epoch())
                    .count();
  if (lastNs != 0 && now - lastNs < 1'000'000'000) {
    ++held;
    return false;
  }
  lastNs = now;
  *suppressed = std::exchange(held, 0);
  return true;
}

// A MessageStream over the connection that watches what the RPC system sends.
// Cap'n Proto reports no reason when it drops a connection, but before it
// drops one because of the peer (undecodable, oversized or malformed message)
// it sends the peer an Abort message. Spotting that Abort is how we count and
// log peer errors; DISCONNECTED aborts are ordinary hang-ups and not counted.
class RpcServer::WatchedStream final : public capnp::MessageStream {
 public:
  WatchedStream(kj::AsyncCapabilityStream& stream, RpcServer& server)
      : inner_(stream), server_(server) {}

  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> tryReadMessage(
      kj::ArrayPtr<kj::AutoCloseFd> fdSpace, capnp::ReaderOptions options,
      kj::ArrayPtr<capnp::word> scratchSpace) override {
    return inner_.tryReadMessage(fdSpace, options, scratchSpace);
  }

  kj::Promise<void> writeMessage(
      kj::ArrayPtr<const int> fds,
      kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) override {
    noteAbort(segments);
    return inner_.writeMessage(fds, segments);
  }

  kj::Promise<void> writeMessages(
      kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) override {
    for (auto& segments : messages) noteAbort(segments);
    return inner_.writeMessages(messages);
  }

  kj::Maybe<int> getSendBufferSize() override { return inner_.getSendBufferSize(); }
  kj::Promise<void> end() override { return inner_.end(); }

 private:
  // Reads only the root's union tag (and the reason of an Abort), so the cost
  // per outgoing message is a few loads.
  void noteAbort(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) {
    if (segments.size() == 0) return;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
      capnp::SegmentArrayMessageReader reader(segments);
      auto message = reader.getRoot<capnp::rpc::Message>();
      if (!message.isAbort()) return;
      auto abort = message.getAbort();
      if (abort.getType() == capnp::rpc::Exception::Type::DISCONNECTED) return;
      server_.notePeerError(abort.getReason());
    })) {
      // Our own outgoing message failed to decode: a bug in the RPC system,
      // not the peer's fault; nothing to count.
      (void)e;
    }
  }

  capnp::AsyncCapabilityMessageStream inner_;
  RpcServer& server_;
};

// One accepted client: its stream, the two-party network over it and the RPC
// system serving the bootstrap capability. Lives in RpcServer::connections_
// until the peer disconnects (or is disconnected).
class RpcServer::Connection {
 public:
  Connection(RpcServer& server, kj::Own<kj::AsyncCapabilityStream> stream)
      : server_(server),
        stream_(kj::mv(stream)),
        watched_(*stream_, server),
        // TwoPartyServer/TwoPartyClient in 0.9 cannot take ReaderOptions, so
        // the network and RPC system are assembled here directly.
        network_(watched_, server.options_.maxFdsPerMessage, capnp::rpc::twoparty::Side::SERVER,
                 peerReaderOptions()),
        rpc_(capnp::makeRpcServer(network_, server.bootstrap_)) {
    ++server_.stats_.open;
  }
  ~Connection() { --server_.stats_.open; }

  kj::Promise<void> onDisconnect() { return network_.onDisconnect(); }

 private:
  RpcServer& server_;
  kj::Own<kj::AsyncCapabilityStream> stream_;
  WatchedStream watched_;
  capnp::TwoPartyVatNetwork network_;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc_;
};

Result<kj::Own<RpcServer>> RpcServer::listen(kj::AsyncIoContext& io, std::string path,
                                             capnp::Capability::Client bootstrap,
                                             RpcServerOptions options) {
  struct stat st {};
  auto fd = bindListeningSocket(path, options.mode, options.backlog, &st);
  if (!fd) return fd.error();

  kj::Own<RpcServer> server;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    auto listener = io.lowLevelProvider->wrapListenSocketFd(
        fd->release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP |
                           kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC |
                           kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK);
    server = kj::heap<RpcServer>(Token{}, io, path, kj::mv(bootstrap), options,
                                 kj::mv(listener), st.st_dev, st.st_ino);
  })) {
    // Only reachable through a kj-internal failure (e.g. no event loop on
    // this thread); the listening fd has been closed by now.
    ::unlink(path.c_str());
    return makeError(EINVAL, "serving " + path + ": " + std::string(e->getDescription().cStr()));
  }
  return server;
}

RpcServer::RpcServer(Token, kj::AsyncIoContext& io, std::string path,
                     capnp::Capability::Client bootstrap, RpcServerOptions options,
                     kj::Own<kj::ConnectionReceiver> listener, dev_t dev, ino_t ino)
    : timer_(io.provider->getTimer()),
      path_(std::move(path)),
      dev_(dev),
      ino_(ino),
      bootstrap_(kj::mv(bootstrap)),
      options_(options),
      listener_(kj::mv(listener)),
      connections_(*this) {
  acceptTask_ = acceptLoop().eagerlyEvaluate(nullptr);
}

RpcServer::~RpcServer() noexcept(false) {
  // Members go down in reverse order: connections, accept loop, listener.
  // Unlink first is also fine: new connects are refused either way.
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == dev_ &&
      st.st_ino == ino_) {
    ::unlink(path_.c_str());
  }
}

kj::Promise<void> RpcServer::acceptLoop() {
  return listener_->accept().then(
      [this](kj::Own<kj::AsyncIoStream>&& stream) {
        // kj's Unix listener hands out AsyncStreamFd, which is an
        // AsyncCapabilityStream (the same cast TwoPartyServer relies on).
        serve(stream.downcast<kj::AsyncCapabilityStream>());
        return acceptLoop();
      },
      [this](kj::Exception&& e) -> kj::Promise<void> {
        // kj already retries transient errors (ECONNABORTED, EINTR...). What
        // reaches us is EMFILE/ENFILE/ENOMEM: pause instead of spinning, the
        // condition may clear when connections close.
        ++stats_.acceptErrors;
        uint64_t suppressed = 0;
        if (acceptLog_.allow(&suppressed)) {
          spdlog::warn("rpc server {}: accept failed ({} times in total), retrying every 100 ms: {}",
                       path_, stats_.acceptErrors, e.getDescription().cStr());
        }
        return timer_.afterDelay(100 * kj::MILLISECONDS).then([this]() { return acceptLoop(); });
      });
}

void RpcServer::serve(kj::Own<kj::AsyncCapabilityStream> stream) {
  ++stats_.accepted;
  auto connection = kj::heap<Connection>(*this, kj::mv(stream));
  auto done = connection->onDisconnect();
  connections_.add(done.attach(kj::mv(connection)));
}

void RpcServer::notePeerError(kj::StringPtr reason) {
  ++stats_.peerErrors;
  uint64_t suppressed = 0;
  if (!peerLog_.allow(&suppressed)) return;
  if (suppressed == 0) {
    spdlog::warn("rpc server {}: dropped a client that broke the protocol: {}", path_,
                 reason.cStr());
  } else {
    spdlog::warn("rpc server {}: dropped a client that broke the protocol ({} more since the "
                 "last report): {}",
                 path_, suppressed, reason.cStr());
  }
}

void RpcServer::taskFailed(kj::Exception&& exception) {
  // onDisconnect() does not reject in practice; if it ever does, the
  // connection is gone all the same and the server carries on.
  spdlog::warn("rpc server {}: connection ended with an error: {}", path_,
               exception.getDescription().cStr());
}

}  // namespace mknet::ipc
