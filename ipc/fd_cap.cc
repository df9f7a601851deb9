#include "ipc/fd_cap.h"

#include <fcntl.h>

#include <cerrno>
#include <utility>

namespace mknet::ipc {

capnp::ReaderOptions peerReaderOptions() {
  capnp::ReaderOptions options;
  // Spelled out rather than relying on the library defaults (which happen to
  // match today), so a Cap'n Proto upgrade cannot silently loosen them.
  options.traversalLimitInWords = 8 * 1024 * 1024;
  options.nestingLimit = 64;
  return options;
}

kj::Maybe<int> FdCapServer::getFd() {
  if (!fd_.valid()) return nullptr;
  return fd_.get();
}

kj::Promise<void> FdCapServer::describe(DescribeContext context) {
  context.getResults().setWhat(what_);
  return kj::READY_NOW;
}

schema::FdCap::Client makeFdCap(UniqueFd fd, std::string what) {
  return kj::heap<FdCapServer>(std::move(fd), std::move(what));
}

kj::Promise<Result<UniqueFd>> receiveFd(schema::FdCap::Client cap, std::string what) {
  auto promise = cap.getFd();
  // `cap` rides along in the continuation: the fd getFd() reports belongs to
  // the capability and must stay open until we have duplicated it.
  return promise
      .then([cap = kj::mv(cap), what](kj::Maybe<int> maybeFd) mutable -> Result<UniqueFd> {
        KJ_IF_MAYBE(fd, maybeFd) {
          int copy = ::fcntl(*fd, F_DUPFD_CLOEXEC, 0);
          if (copy < 0) return errnoError("dup fd of capability '" + what + "'");
          return UniqueFd(copy);
        }
        return makeError(EPROTO, "capability '" + what +
                                     "' arrived without its file descriptor (fd passing is off "
                                     "on this connection, maxFds == 0, or a hop is not a Unix "
                                     "socket)");
      })
      .catch_([what](kj::Exception&& e) -> Result<UniqueFd> {
        int code = e.getType() == kj::Exception::Type::DISCONNECTED ? ECONNRESET : EPROTO;
        return makeError(code, "capability '" + what +
                                   "' did not resolve: " + std::string(e.getDescription().cStr()));
      });
}

}  // namespace mknet::ipc
