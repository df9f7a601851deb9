#include "ipc/rpc_client.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <capnp/message.h>
#include <capnp/rpc.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace mknet::ipc {

Result<kj::Own<RpcClient>> RpcClient::connect(kj::AsyncIoContext& io, const std::string& path,
                                              RpcClientOptions options) {
  auto fd = connectFd(path);
  if (!fd) return fd.error();
  return fromConnectedFd(io, std::move(fd).value(), options);
}

Result<UniqueFd> RpcClient::connectFd(const std::string& path) {
  // The POSIX calls are ours rather than kj's network API so that errors come
  // back as errno values with context instead of exceptions.
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty()) return makeError(EINVAL, "unix socket path is empty");
  if (path.size() >= sizeof(addr.sun_path))
    return makeError(ENAMETOOLONG, "unix socket path '" + path + "' is too long");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);

  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return errnoError("socket(AF_UNIX) to connect to " + path);
  // Non-blocking: a Unix stream connect either completes at once or fails
  // with EAGAIN when the backlog is full. Blocking instead could deadlock a
  // thread that also drives the server.
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    switch (err) {
      case ENOENT:
        return makeError(err, "connect to " + path + ": no such socket (is the server running?)");
      case ECONNREFUSED:
        return makeError(err, "connect to " + path + ": nobody listens there (stale socket file)");
      case EACCES:
        return makeError(err, "connect to " + path + ": no permission to use the socket");
      case EAGAIN:
        return makeError(err, "connect to " + path + ": the server's accept queue is full");
      default:
        return makeError(err, "connect to " + path);
    }
  }
  return fd;
}

Result<kj::Own<RpcClient>> RpcClient::fromConnectedFd(kj::AsyncIoContext& io, UniqueFd fd,
                                                      RpcClientOptions options) {
  if (!fd) return makeError(EBADF, "RpcClient on an invalid fd");
  // kj needs the fd non-blocking; fds made by connect() above already are,
  // inherited ones may not be.
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0)
    return errnoError("making the rpc socket non-blocking");
  int fdFlags = ::fcntl(fd.get(), F_GETFD);
  if (fdFlags < 0 || ::fcntl(fd.get(), F_SETFD, fdFlags | FD_CLOEXEC) != 0)
    return errnoError("making the rpc socket close-on-exec");

  kj::Own<RpcClient> client;
  const int number = fd.get();
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    auto stream = io.lowLevelProvider->wrapUnixSocketFd(
        fd.release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP |
                          kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC |
                          kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK);
    client = kj::heap<RpcClient>(Token{}, kj::mv(stream), options);
    client->fd_ = number;
  })) {
    return makeError(EINVAL, "setting up rpc connection: " + std::string(e->getDescription().cStr()));
  }
  return client;
}

RpcClient::RpcClient(Token, kj::Own<kj::AsyncCapabilityStream> stream, RpcClientOptions options)
    : stream_(kj::mv(stream)),
      // TwoPartyClient in 0.9 takes either fds or ReaderOptions, not both, so
      // the network and RPC system are assembled here directly.
      network_(*stream_, options.maxFdsPerMessage, capnp::rpc::twoparty::Side::CLIENT,
               peerReaderOptions()),
      rpc_(capnp::makeRpcClient(network_)) {}

capnp::Capability::Client RpcClient::bootstrapCapability() {
  capnp::word scratch[4];
  std::memset(scratch, 0, sizeof(scratch));
  capnp::MallocMessageBuilder message(scratch);
  auto vatId = message.getRoot<capnp::rpc::twoparty::VatId>();
  vatId.setSide(capnp::rpc::twoparty::Side::SERVER);
  return rpc_.bootstrap(vatId);
}

}  // namespace mknet::ipc
