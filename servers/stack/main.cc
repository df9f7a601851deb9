// mknet-stack: the protocol-stack server. Builds its parts from the command
// line, hands them to each other, and runs the loop until SIGTERM.
#include <arpa/inet.h>
#include <signal.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <kj/async-io.h>
#include <spdlog/spdlog.h>

#include "libnet/ethernet.h"
#include "servers/stack/stack_server.h"

namespace {

mknet::stack::StackServer* gServer = nullptr;  // for the signal handler only

void onSignal(int) {
  if (gServer != nullptr) gServer->stop();
}

void usage(FILE* out) {
  std::fprintf(out,
               "usage: mknet-stack [options]\n"
               "The mknet protocol-stack server: lwIP on a packet pool shared with a NIC driver,\n"
               "serving app sessions on a Unix socket.\n\n"
               "  --ip A.B.C.D/N        address of the stack (default 198.18.0.2/24)\n"
               "  --gateway A.B.C.D     default gateway (default: none)\n"
               "  --mac XX:XX:..        MAC until a driver registers its own (default 02:6d:6b:00:00:02)\n"
               "  --runtime-dir DIR     where stack.sock lives (default $MKNET_RUNTIME_DIR or /run/mknet)\n"
               "  --socket PATH         control socket path (default RUNTIME_DIR/stack.sock)\n"
               "  --pool-buffers N      2 KiB packet buffers shared with the driver (default 4096)\n"
               "  --max-sockets N       sockets per app session (default 256)\n"
               "  --ring-kib N          per-socket send/receive ring size in KiB, power of two (default 256)\n"
               "  --spin-us N           busy-poll this long before sleeping (default 50)\n"
               "  --log-level LEVEL     trace, debug, info, warn, error (default info)\n"
               "  --help                this text\n");
}

bool parseIpv4(const std::string& s, uint32_t* out) {
  in_addr a{};
  if (inet_pton(AF_INET, s.c_str(), &a) != 1) return false;
  *out = ntohl(a.s_addr);
  return true;
}

bool parseUint(const std::string& s, uint32_t min, uint32_t max, uint32_t* out) {
  char* end = nullptr;
  errno = 0;
  unsigned long v = std::strtoul(s.c_str(), &end, 10);
  if (errno != 0 || end == s.c_str() || *end != '\0' || v < min || v > max) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using mknet::stack::StackConfig;
  StackConfig cfg;
  const char* rd = std::getenv("MKNET_RUNTIME_DIR");
  std::string runtimeDir = rd != nullptr && *rd != '\0' ? rd : "/run/mknet";
  std::string socketPath, ip = "198.18.0.2/24", mac = "02:6d:6b:00:00:02", level = "info";
  uint32_t ringKib = 256, spinUs = 50;
  cfg.engine.mtu = 1500;

  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto need = [&](const char* what) -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "mknet-stack: %s needs a value\n", what);
        std::exit(2);
      }
      return argv[++i];
    };
    auto bad = [&](const std::string& v) {
      std::fprintf(stderr, "mknet-stack: bad value for %s: '%s'\n", a.c_str(), v.c_str());
      return 2;
    };
    if (a == "--help" || a == "-h") {
      usage(stdout);
      return 0;
    } else if (a == "--ip") {
      ip = need("--ip");
    } else if (a == "--gateway") {
      std::string v = need("--gateway");
      if (!parseIpv4(v, &cfg.engine.gateway)) return bad(v);
    } else if (a == "--mac") {
      mac = need("--mac");
    } else if (a == "--runtime-dir") {
      runtimeDir = need("--runtime-dir");
    } else if (a == "--socket") {
      socketPath = need("--socket");
    } else if (a == "--pool-buffers") {
      std::string v = need("--pool-buffers");
      if (!parseUint(v, 256, 1u << 20, &cfg.pool.bufferCount)) return bad(v);
    } else if (a == "--max-sockets") {
      std::string v = need("--max-sockets");
      if (!parseUint(v, 1, 65536, &cfg.session.maxSockets)) return bad(v);
    } else if (a == "--ring-kib") {
      std::string v = need("--ring-kib");
      if (!parseUint(v, 64, 65536, &ringKib) || (ringKib & (ringKib - 1)) != 0) return bad(v);
    } else if (a == "--spin-us") {
      std::string v = need("--spin-us");
      if (!parseUint(v, 0, 1000000, &spinUs)) return bad(v);
    } else if (a == "--log-level") {
      level = need("--log-level");
    } else {
      std::fprintf(stderr, "mknet-stack: unknown option '%s' (see --help)\n", a.c_str());
      return 2;
    }
  }

  auto slash = ip.find('/');
  uint32_t prefix = 24;
  if (!parseIpv4(ip.substr(0, slash), &cfg.engine.ip) ||
      (slash != std::string::npos && !parseUint(ip.substr(slash + 1), 1, 32, &prefix))) {
    std::fprintf(stderr, "mknet-stack: bad --ip '%s' (want A.B.C.D/N)\n", ip.c_str());
    return 2;
  }
  cfg.engine.netmask = prefix == 32 ? 0xffffffffu : ~((1u << (32 - prefix)) - 1);
  auto m = mknet::net::MacAddress::parse(mac);
  if (!m) {
    std::fprintf(stderr, "mknet-stack: bad --mac '%s'\n", mac.c_str());
    return 2;
  }
  cfg.engine.mac = m->bytes();
  cfg.session.ringBytes = ringKib * 1024;
  cfg.session.notifyCapacity = 1024;
  while (cfg.session.notifyCapacity < 2 * cfg.session.maxSockets + mknet::ipc::kControlMailboxes)
    cfg.session.notifyCapacity *= 2;
  uint32_t ringCap = 1;
  while (ringCap < cfg.pool.bufferCount) ringCap *= 2;
  cfg.pool.ringCapacity = ringCap;
  cfg.spin = std::chrono::microseconds(spinUs);
  cfg.socketPath = socketPath.empty() ? runtimeDir + "/stack.sock" : socketPath;
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    std::fprintf(stderr, "mknet-stack: bad --log-level '%s'\n", level.c_str());
    return 2;
  }
  spdlog::set_level(lvl);
  signal(SIGPIPE, SIG_IGN);

  auto io = kj::setupAsyncIo();
  auto server = mknet::stack::StackServer::create(cfg, &io);
  if (!server) {
    std::fprintf(stderr, "mknet-stack: %s\n", server.error().message().c_str());
    return 1;
  }
  gServer = server->get();
  struct sigaction sa {};
  sa.sa_handler = onSignal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  spdlog::info("mknet-stack serving on {} as {}", cfg.socketPath, ip);
  (*server)->run();
  gServer = nullptr;
  return 0;
}
