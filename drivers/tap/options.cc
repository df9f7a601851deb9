#include "drivers/tap/options.h"

#include <array>
#include <charconv>
#include <random>
#include <string_view>

namespace mknet::drivers {

namespace {

constexpr std::array<std::string_view, 7> kLogLevels = {"trace", "debug", "info",    "warn",
                                                         "error", "critical", "off"};

Result<uint64_t> parseUnsigned(std::string_view flag, std::string_view text) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size())
    return makeError(EINVAL, std::string(flag) + ": '" + std::string(text) +
                                 "' is not a non-negative integer");
  return v;
}

// "10" and "10s" are seconds, "500ms" milliseconds.
Result<std::chrono::milliseconds> parseDuration(std::string_view flag, std::string_view text) {
  uint64_t scale = 1000;
  if (text.ends_with("ms")) {
    scale = 1;
    text.remove_suffix(2);
  } else if (text.ends_with("s")) {
    text.remove_suffix(1);
  }
  auto v = parseUnsigned(flag, text);
  if (!v) return v.error();
  if (*v > 24ull * 3600 * 1000) return makeError(EINVAL, std::string(flag) + ": too long");
  return std::chrono::milliseconds(*v * scale);
}

}  // namespace

Result<Options> parseOptions(std::span<const char* const> args, const char* runtimeDir) {
  Options o;
  std::string dir = runtimeDir != nullptr && *runtimeDir != '\0' ? runtimeDir : "/run/mknet";
  o.stackSocket = dir + "/stack.sock";

  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg == "--help" || arg == "-h") {
      o.help = true;
      continue;
    }
    if (arg == "--no-offload") {
      o.offload = false;
      continue;
    }
    if (!arg.starts_with("--")) return makeError(EINVAL, "unexpected argument '" + std::string(arg) + "'");
    std::string_view flag = arg;
    std::string_view value;
    bool hasValue = false;
    if (auto eq = arg.find('='); eq != std::string_view::npos) {
      flag = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      hasValue = true;
    }
    auto needValue = [&]() -> Result<std::string_view> {
      if (hasValue) return value;
      if (i + 1 >= args.size()) return makeError(EINVAL, std::string(flag) + " needs a value");
      return std::string_view(args[++i]);
    };

    if (flag == "--tap") {
      auto v = needValue();
      if (!v) return v.error();
      if (v->empty()) return makeError(EINVAL, "--tap: empty interface name");
      o.tap = *v;
    } else if (flag == "--stack-socket") {
      auto v = needValue();
      if (!v) return v.error();
      if (v->empty()) return makeError(EINVAL, "--stack-socket: empty path");
      o.stackSocket = *v;
    } else if (flag == "--mac") {
      auto v = needValue();
      if (!v) return v.error();
      auto mac = net::MacAddress::parse(*v);
      if (!mac) return makeError(EINVAL, "--mac: '" + std::string(*v) + "' is not aa:bb:cc:dd:ee:ff");
      if (mac->isMulticast() || mac->isZero())
        return makeError(EINVAL, "--mac: " + mac->toString() + " is not a unicast address");
      o.mac = *mac;
    } else if (flag == "--spin-us") {
      auto v = needValue();
      if (!v) return v.error();
      auto n = parseUnsigned(flag, *v);
      if (!n) return n.error();
      if (*n > 1'000'000) return makeError(EINVAL, "--spin-us: at most 1000000");
      o.spin = std::chrono::microseconds(*n);
    } else if (flag == "--connect-timeout") {
      auto v = needValue();
      if (!v) return v.error();
      auto d = parseDuration(flag, *v);
      if (!d) return d.error();
      o.connectTimeout = *d;
    } else if (flag == "--log-level") {
      auto v = needValue();
      if (!v) return v.error();
      bool known = false;
      for (auto l : kLogLevels) known = known || l == *v;
      if (!known)
        return makeError(EINVAL, "--log-level: '" + std::string(*v) +
                                     "' is not one of trace, debug, info, warn, error, critical, off");
      o.logLevel = *v;
    } else {
      return makeError(EINVAL, "unknown option '" + std::string(flag) + "'");
    }
  }
  return o;
}

std::string usage() {
  return R"(Usage: mknet-tapdrv [options]
The mknet NIC driver: moves Ethernet frames between a persistent TAP interface
and the packet pool of the mknet stack server. It registers with the stack,
reconnects whenever the stack goes away, and exits 0 on SIGTERM or SIGINT.

  --tap NAME              persistent TAP interface to attach to (default mk0)
  --stack-socket PATH     the stack's control socket
                          (default $MKNET_RUNTIME_DIR/stack.sock, MKNET_RUNTIME_DIR=/run/mknet)
  --mac aa:bb:cc:dd:ee:ff the MAC the stack uses on this link
                          (default: random, locally administered, new each run)
  --spin-us N             poll this long before sleeping when idle (default 50)
  --connect-timeout T     give up if the first registration has not succeeded
                          after T (10, 10s or 500ms; default 10s)
  --log-level LEVEL       trace, debug, info, warn, error, critical or off (default info)
  --no-offload            plain frames only: no virtio-net header, no TCP
                          super-frames (GSO/TSO) and no partial checksums on the
                          TAP (default: on; one write/read carries up to 64 KiB
                          of a TCP stream)
  --help                  this text
)";
}

net::MacAddress randomLocalMac() {
  std::random_device rd;  // the OS's random source (getrandom)
  std::array<uint8_t, 6> b{};
  for (auto& x : b) x = static_cast<uint8_t>(rd());
  b[0] = static_cast<uint8_t>((b[0] & 0xfc) | 0x02);  // unicast, locally administered
  return net::MacAddress(b);
}

}  // namespace mknet::drivers
