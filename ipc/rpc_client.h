// RpcClient: one Cap'n Proto connection to an RpcServer's Unix socket, with
// fd passing, inside the caller's kj event loop.
#pragma once

#include <capnp/capability.h>
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <string>

#include "ipc/fd_cap.h"
#include "ipc/result.h"
#include "ipc/unique_fd.h"

namespace mknet::ipc {

struct RpcClientOptions {
  // Fds accepted per incoming message; 0 turns fd passing off, so FdCaps
  // arrive without their fds (receiveFd() then reports EPROTO).
  unsigned maxFdsPerMessage = kMaxFdsPerMessage;
};

// The connection and its RPC system. Messages from the server are read with
// peerReaderOptions(). Use it from the thread whose kj event loop `io`
// belongs to, and destroy it (and every capability obtained from it) before
// that loop; dropping it closes the connection.
class RpcClient {
 public:
  // Connects to the server listening on `path`. The connect is non-blocking
  // (the server may be driven by this very thread), so it never waits.
  // Errors, never thrown:
  //   ENOENT        no socket file at `path` (server not started);
  //   ECONNREFUSED  a socket file, but no server listening (stale file);
  //   EACCES        no write permission on the socket or no search permission
  //                 on a directory on the way;
  //   EAGAIN        the server's accept backlog is full; try again later;
  //   ENAMETOOLONG  `path` does not fit in sockaddr_un;
  //   others        socket()/connect() failures with errno.
  static Result<kj::Own<RpcClient>> connect(kj::AsyncIoContext& io, const std::string& path,
                                            RpcClientOptions options = {});

  // Only the connection (same errors as connect()): a connected, close-on-exec
  // socket to wrap later with fromConnectedFd(), possibly in another process.
  static Result<UniqueFd> connectFd(const std::string& path);
  // Builds a client on an already connected Unix stream socket (e.g. one end
  // of a socketpair, or an fd inherited from a supervisor). Takes ownership.
  static Result<kj::Own<RpcClient>> fromConnectedFd(kj::AsyncIoContext& io, UniqueFd fd,
                                                    RpcClientOptions options = {});

  // The server's bootstrap capability, as interface T. Calls on it are
  // pipelined: they can be made before the server has answered.
  template <typename T>
  typename T::Client bootstrap() {
    return bootstrapCapability().castAs<T>();
  }
  capnp::Capability::Client bootstrapCapability();

  // Resolves when the connection is gone (server closed it, aborted it, or
  // exited). Calls in flight and later calls fail with DISCONNECTED.
  kj::Promise<void> onDisconnect() { return network_.onDisconnect(); }

  // The connection's fd number. For a forked child, which must close its
  // copy so the server still sees the connection close when the parent dies.
  int fd() const { return fd_; }

 private:
  struct Token {};  // lets kj::heap construct us while keeping the constructor private

 public:
  RpcClient(Token, kj::Own<kj::AsyncCapabilityStream> stream, RpcClientOptions options);
  RpcClient(const RpcClient&) = delete;
  RpcClient& operator=(const RpcClient&) = delete;

 private:
  int fd_ = -1;
  kj::Own<kj::AsyncCapabilityStream> stream_;
  capnp::TwoPartyVatNetwork network_;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc_;
};

}  // namespace mknet::ipc
