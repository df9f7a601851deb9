// mknet-tapdrv: the user-mode NIC driver process. Wiring only: parse the
// command line, open the TAP, then let StackLink register with the stack and
// run the data plane until SIGTERM/SIGINT.
//
// Threads: this (main) thread runs the kj event loop with the control
// connection, the stats timer and the signal handling; StackLink starts one
// data-plane thread per attachment (see stack_link.h).
#include <signal.h>

#include <cstdio>
#include <span>

#include <fmt/core.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "drivers/tap/options.h"
#include "drivers/tap/stack_link.h"
#include "drivers/tap/tap_device.h"

namespace {

constexpr const char* kProgram = "mknet-tapdrv";

void printError(const std::string& message) { fmt::print(stderr, "{}: {}\n", kProgram, message); }

}  // namespace

int main(int argc, char** argv) {
  using namespace mknet;
  using namespace mknet::drivers;

  auto parsed = parseOptions(std::span<const char* const>(argv + 1, static_cast<size_t>(argc - 1)),
                             ::getenv("MKNET_RUNTIME_DIR"));
  if (!parsed) {
    printError(parsed.error().context + " (see --help)");
    return 2;
  }
  const Options& opts = *parsed;
  if (opts.help) {
    fmt::print("{}", usage());
    return 0;
  }

  auto logger = spdlog::stderr_color_mt(kProgram);
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %n[%P] %l: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(opts.logLevel));

  // Before any thread exists: the signals are blocked in every thread and
  // delivered to the event loop of this one only.
  ::signal(SIGPIPE, SIG_IGN);
  kj::UnixEventPort::captureSignal(SIGTERM);
  kj::UnixEventPort::captureSignal(SIGINT);

  net::MacAddress mac = opts.mac ? *opts.mac : randomLocalMac();
  auto tap = TapDevice::open(opts.tap, mac, opts.offload);
  if (!tap) {
    printError(tap.error().message());
    return 1;
  }
  spdlog::info("{}: attached to TAP {} (mtu {}, link {}, offload {}), station mac {}", kProgram,
               tap->name(), tap->mtu(), tap->linkUp() ? "up" : "down", tap->offload() ? "on" : "off",
               mac.toString());

  StackLinkOptions linkOptions;
  linkOptions.socketPath = opts.stackSocket;
  linkOptions.connectTimeout = opts.connectTimeout;
  linkOptions.data.spin = opts.spin;

  Result<void> outcome = ok();
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    auto io = kj::setupAsyncIo();
    StackLink link(io, *tap, linkOptions);
    auto onSignal = [](siginfo_t info) -> Result<void> {
      spdlog::info("{}: signal {}, stopping", kProgram, info.si_signo);
      return ok();
    };
    auto signals = io.unixEventPort.onSignal(SIGTERM)
                       .then(onSignal)
                       .exclusiveJoin(io.unixEventPort.onSignal(SIGINT).then(onSignal));
    outcome = link.run()
                  .then([](Error e) -> Result<void> { return e; })
                  .exclusiveJoin(kj::mv(signals))
                  .wait(io.waitScope);
  })) {
    outcome = makeError(0, std::string("control loop: ") + e->getDescription().cStr());
  }
  if (!outcome) {
    printError(outcome.error().message());
    return 1;
  }
  return 0;
}
