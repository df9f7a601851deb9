// FdCap: the capability that carries one file descriptor (a memfd region or
// an eventfd doorbell) over mknet's Cap'n Proto connections, plus the limits
// every such connection applies to what its peer sends.
//
// How fd passing works in Cap'n Proto 0.9: a Capability::Server that overrides
// getFd() has that fd sent with SCM_RIGHTS alongside the message that carries
// the capability, provided the connection is a TwoPartyVatNetwork over a Unix
// socket with fd passing enabled (maxFdsPerMessage > 0 on the receiving side).
// The receiver gets the fd from Capability::Client::getFd(); it belongs to the
// imported capability and is closed when that capability is dropped, so
// receiveFd() dups it. If any link on the way cannot carry fds, the capability
// still arrives and works for calls, but without its fd.
#pragma once

#include <capnp/capability.h>
#include <capnp/message.h>
#include <kj/async.h>

#include <string>

#include "ipc/result.h"
#include "ipc/schema/common.capnp.h"
#include "ipc/unique_fd.h"

namespace mknet::ipc {

// Most fds accepted from a peer in one RPC message; more are closed by the
// kernel/kj on receipt. Our messages carry at most three (a region and two
// doorbells); the bound keeps a hostile peer from filling our fd table.
inline constexpr unsigned kMaxFdsPerMessage = 8;

// The ReaderOptions for every message read from a peer: at most 8 Mi words
// (64 MiB) traversed per message and at most 64 levels of nesting. A message
// beyond either limit fails to decode and costs the peer its connection. The
// sender side of RpcClient/RpcServer refuses to send messages above the same
// size, so both ends agree on what is too big.
capnp::ReaderOptions peerReaderOptions();

// Serves FdCap for one fd it owns. The fd stays open while any client of the
// capability (local or remote) is alive, and is closed with the server.
class FdCapServer final : public schema::FdCap::Server {
 public:
  FdCapServer(UniqueFd fd, std::string what) : fd_(std::move(fd)), what_(std::move(what)) {}

  // Cap'n Proto attaches this fd to every message that carries the
  // capability over an fd-passing connection. Null when we hold no fd.
  kj::Maybe<int> getFd() override;

 protected:
  kj::Promise<void> describe(DescribeContext context) override;

 private:
  UniqueFd fd_;
  std::string what_;
};

// A capability carrying `fd`, described as `what` ("pool-region", ...).
// Takes ownership of `fd`; pass a dup (ShmRegion::dupFd, Doorbell::dupFd) to
// keep using the object yourself.
schema::FdCap::Client makeFdCap(UniqueFd fd, std::string what);

// Obtains the fd that came with `cap` and returns a close-on-exec duplicate
// the caller owns (the original belongs to the capability). `what` names the
// fd in error messages. Waits for `cap` to resolve if it is a promise (e.g. a
// pipelined field of a pending call).
//
// The promise never rejects; errors come back as the Result:
//   EPROTO       no fd came with the capability: fd passing is off on this
//                connection (maxFds == 0), a hop was not a Unix socket, or the
//                peer's server holds no fd;
//   ECONNRESET   the connection broke before the capability resolved;
//   EPROTO       the capability is broken for another reason (the call that
//                returned it failed); the message carries the description;
//   EMFILE, ...  dup failed (errno).
kj::Promise<Result<UniqueFd>> receiveFd(schema::FdCap::Client cap, std::string what);

}  // namespace mknet::ipc
