// RpcServer: serves one bootstrap capability to every client of a Unix-domain
// socket, with fd passing, inside the caller's kj event loop.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <capnp/capability.h>
#include <kj/async-io.h>

#include <cstdint>
#include <string>

#include "ipc/fd_cap.h"
#include "ipc/result.h"

namespace mknet::ipc {

struct RpcServerOptions {
  // Permissions of the socket file (the umask does not apply). Connecting
  // needs write permission, so this is who may talk to the server.
  mode_t mode = 0660;
  // Fds accepted per incoming message; 0 turns receiving fds off (sending
  // them, e.g. FdCaps in results, still works).
  unsigned maxFdsPerMessage = kMaxFdsPerMessage;
  int backlog = 64;
};

// Counters for the admin interface. Plain fields: read them from the loop's
// thread, like everything else about the server.
struct RpcServerStats {
  uint64_t accepted = 0;      // connections accepted since listen()
  uint64_t open = 0;          // connections currently being served
  uint64_t peerErrors = 0;    // connections aborted because the peer broke the protocol
                              // (garbage, oversized or malformed messages)
  uint64_t acceptErrors = 0;  // failed accept() calls (EMFILE, ...), retried after a pause
};

// Listens on a Unix socket path and serves `bootstrap` to each connection
// over its own TwoPartyVatNetwork (ReaderOptions from peerReaderOptions(),
// fd passing with RpcServerOptions::maxFdsPerMessage). Connections are
// independent: a peer that sends garbage, an oversized message or a malformed
// one loses only its own connection (and bumps stats().peerErrors).
//
// Runs inside an existing kj event loop and owns none: listen() starts
// accepting, and the owner drives the loop (waitScope.poll(), promise.wait()).
// Everything happens on the loop's thread. Destroy the server before the
// kj::AsyncIoContext; destruction drops every connection and removes the
// socket file (only if it is still the one we created).
class RpcServer final : private kj::TaskSet::ErrorHandler {
 public:
  // Creates the socket file at `path` and starts accepting connections.
  //
  // An existing file at `path` is removed only if it is a stale socket (a
  // socket nobody listens on, connect gives ECONNREFUSED). Errors, never
  // thrown:
  //   EADDRINUSE    a live server already listens on `path`;
  //   EEXIST        `path` exists and is not a socket (left untouched);
  //   ENOENT        the parent directory does not exist;
  //   EACCES        no permission to create the socket in the parent directory;
  //   ENAMETOOLONG  `path` does not fit in sockaddr_un (107 bytes);
  //   others        socket/bind/chmod/listen failures with errno and context.
  static Result<kj::Own<RpcServer>> listen(kj::AsyncIoContext& io, std::string path,
                                           capnp::Capability::Client bootstrap,
                                           RpcServerOptions options = {});

  ~RpcServer() noexcept(false);
  RpcServer(const RpcServer&) = delete;
  RpcServer& operator=(const RpcServer&) = delete;

  const std::string& path() const { return path_; }
  const RpcServerStats& stats() const { return stats_; }

 private:
  class WatchedStream;
  class Connection;
  struct Token {};  // lets kj::heap construct us while keeping the constructor private

 public:
  RpcServer(Token, kj::AsyncIoContext& io, std::string path, capnp::Capability::Client bootstrap,
            RpcServerOptions options, kj::Own<kj::ConnectionReceiver> listener, dev_t dev,
            ino_t ino);

 private:
  kj::Promise<void> acceptLoop();
  void serve(kj::Own<kj::AsyncCapabilityStream> stream);
  void notePeerError(kj::StringPtr reason);
  void taskFailed(kj::Exception&& exception) override;

  kj::Timer& timer_;
  std::string path_;
  dev_t dev_;  // identity of the socket file we bound, so the destructor
  ino_t ino_;  // never unlinks a file someone else put at path_
  capnp::Capability::Client bootstrap_;
  RpcServerOptions options_;
  RpcServerStats stats_;
  struct LogLimit {
    bool allow(uint64_t* suppressed);
    int64_t lastNs = 0;
    uint64_t held = 0;
  };
  LogLimit peerLog_;    // peer errors: at most one line per second
  LogLimit acceptLog_;  // accept failures: likewise

  // Declared in teardown order (reverse): connections first, then the accept
  // loop, then the listening socket they use.
  kj::Own<kj::ConnectionReceiver> listener_;
  kj::Promise<void> acceptTask_ = nullptr;
  kj::TaskSet connections_;
};

}  // namespace mknet::ipc
