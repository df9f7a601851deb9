// Options: the command line of mknet-tapdrv, parsed without side effects so
// main() stays a list of wiring steps and the parser can be unit-tested.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "ipc/result.h"
#include "libnet/ethernet.h"

namespace mknet::drivers {

struct Options {
  std::string tap = "mk0";
  std::string stackSocket;              // default: $MKNET_RUNTIME_DIR/stack.sock
  std::optional<net::MacAddress> mac;   // default: a random locally administered one
  std::chrono::microseconds spin{50};
  std::chrono::milliseconds connectTimeout{10000};
  std::string logLevel = "info";        // an spdlog level name
  // virtio-net header offloads on the TAP: TCP super-frames both ways and
  // partial checksums (--no-offload turns them off: plain frames only).
  bool offload = true;
  bool help = false;
};

// Parses argv[1..] ("--flag value" or "--flag=value"). `runtimeDir` is
// $MKNET_RUNTIME_DIR (nullptr or empty: /run/mknet). Errors (EINVAL) name the
// offending flag or value.
Result<Options> parseOptions(std::span<const char* const> args, const char* runtimeDir);

// The --help text.
std::string usage();

// A random unicast MAC with the locally administered bit set (x2:, x6:, xa:,
// xe:...), from the OS's random source.
net::MacAddress randomLocalMac();

}  // namespace mknet::drivers
