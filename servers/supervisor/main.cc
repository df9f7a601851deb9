// mknet-supervisor: starts the stack and the drivers, restarts what dies,
// stops everything in order on SIGTERM/SIGINT/SIGHUP. Wiring only: parse the
// command line, take the signals, serve the admin socket, run the Supervisor.
#include <fmt/core.h>
#include <kj/async-io.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cstdio>
#include <span>

#include "ipc/rpc_server.h"
#include "servers/supervisor/options.h"
#include "servers/supervisor/supervisor.h"

namespace {

constexpr const char* kProgram = "mknet-supervisor";

void printError(const std::string& message) { fmt::print(stderr, "{}: {}\n", kProgram, message); }

}  // namespace

int main(int argc, char** argv) {
  using namespace mknet;
  using namespace mknet::supervisor;

  auto parsed = parseOptions(std::span<const char* const>(argv + 1, static_cast<size_t>(argc - 1)),
                             ::getenv("MKNET_RUNTIME_DIR"));
  if (!parsed) {
    printError(parsed.error().context + " (see --help)");
    return 2;
  }
  Options& opts = *parsed;
  if (opts.help) {
    fmt::print("{}", usage());
    return 0;
  }

  auto logger = spdlog::stderr_color_mt(kProgram);
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %n[%P] %l: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(opts.logLevel));

  struct stat st {};
  if (::stat(opts.runtimeDir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    printError("runtime dir " + opts.runtimeDir + " does not exist or is not a directory");
    return 1;
  }

  // Before anything else exists: SIGCHLD and the stop signals are blocked and
  // read from a signalfd in the event loop. SIGPIPE: a status client that
  // hangs up must not kill us (children get it back as default).
  ::signal(SIGPIPE, SIG_IGN);
  auto signalFd = Supervisor::openSignalFd();
  if (!signalFd) {
    printError(signalFd.error().message());
    return 1;
  }

  int rc = 0;
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                 auto io = kj::setupAsyncIo();
                 Supervisor supervisor(io, opts, std::move(*signalFd));
                 // The socket first: if another supervisor serves this runtime dir, fail
                 // before starting a second set of children.
                 auto server = ipc::RpcServer::listen(io, opts.socketPath,
                                                      kj::heap<SupervisorService>(supervisor));
                 if (!server) {
                   printError(server.error().message());
                   rc = 1;
                   return;
                 }
                 spdlog::info("{} serving status on {}; supervising {} processes", kProgram,
                              opts.socketPath, opts.processes.size());
                 supervisor.run().wait(io.waitScope);
               })) {
    printError(std::string("event loop: ") + e->getDescription().cStr());
    return 1;
  }
  return rc;
}
