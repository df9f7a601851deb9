#include "servers/inprocess/inprocess.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "drivers/tap/tap_device.h"
#include "drivers/tap/tap_driver.h"
#include "ipc/pool_region.h"
#include "servers/stack/stack_server.h"

namespace mknet::inprocess {

namespace {

bool parseIpv4(const std::string& s, uint32_t* out) {
  in_addr a{};
  if (inet_pton(AF_INET, s.c_str(), &a) != 1) return false;
  *out = ntohl(a.s_addr);
  return true;
}

// Everything the arrangement runs. Made once and never destroyed: the app's
// exit handlers and other threads may use sockets until the very end.
struct Runtime {
  std::unique_ptr<stack::StackServer> stack;
  std::unique_ptr<drivers::TapDevice> tap;
  std::unique_ptr<ipc::PoolRegion> pool;
  ipc::Doorbell toDriver, toStack, control;
  std::unique_ptr<drivers::TapDriver> driver;
  std::thread stackThread, driverThread;
};

Result<stack::StackConfig> stackConfig(const InprocessConfig& c, net::MacAddress* mac) {
  stack::StackConfig cfg;
  auto slash = c.ip.find('/');
  unsigned long prefix = 24;
  if (slash != std::string::npos) {
    char* end = nullptr;
    prefix = std::strtoul(c.ip.c_str() + slash + 1, &end, 10);
    if (*end != '\0' || prefix < 1 || prefix > 32) return makeError(EINVAL, "bad ip '" + c.ip + "' (want A.B.C.D/N)");
  }
  if (!parseIpv4(c.ip.substr(0, slash), &cfg.engine.ip)) return makeError(EINVAL, "bad ip '" + c.ip + "'");
  cfg.engine.netmask = prefix == 32 ? 0xffffffffu : ~((1u << (32 - prefix)) - 1);
  if (!c.gateway.empty() && !parseIpv4(c.gateway, &cfg.engine.gateway))
    return makeError(EINVAL, "bad gateway '" + c.gateway + "'");
  if (c.mac.empty()) {
    uint32_t ip = cfg.engine.ip;
    *mac = net::MacAddress({0x02, 0x6d, 0x6b, static_cast<uint8_t>(ip >> 16), static_cast<uint8_t>(ip >> 8),
                            static_cast<uint8_t>(ip)});
  } else {
    auto m = net::MacAddress::parse(c.mac);
    if (!m) return makeError(EINVAL, "bad mac '" + c.mac + "'");
    *mac = *m;
  }
  cfg.engine.mac = mac->bytes();
  cfg.engine.mtu = 1500;
  // The same sizes mknet-stack uses by default.
  uint32_t ringCap = 1;
  while (ringCap < cfg.pool.bufferCount) ringCap *= 2;
  cfg.pool.ringCapacity = ringCap;
  while (cfg.session.notifyCapacity < 2 * cfg.session.maxSockets + mknet::ipc::kControlMailboxes)
    cfg.session.notifyCapacity *= 2;
  cfg.spin = std::chrono::microseconds(c.spinUs);
  cfg.socketPath.clear();
  return cfg;
}

Result<Runtime*> start(const InprocessConfig& c) {
  net::MacAddress mac;
  auto cfg = stackConfig(c, &mac);
  if (!cfg) return cfg.error();
  auto rt = std::make_unique<Runtime>();
  auto server = stack::StackServer::create(*cfg, nullptr);
  if (!server) return server.error();
  rt->stack = std::move(server).value();

  auto tap = drivers::TapDevice::open(c.tap, mac);
  if (!tap) return tap.error();
  rt->tap = std::make_unique<drivers::TapDevice>(std::move(tap).value());
  // What a driver's registration does in mknet-stack, done directly.
  rt->stack->engine().setMac(mac.bytes());
  auto att = rt->stack->port().attach("inprocess:" + c.tap, static_cast<uint32_t>(::getpid()));
  if (!att) return att.error();
  auto pool = ipc::PoolRegion::attach(std::move(att->region), att->config);
  if (!pool) return pool.error();
  rt->pool = std::make_unique<ipc::PoolRegion>(std::move(pool).value());
  rt->toDriver = ipc::Doorbell(std::move(att->toDriver));
  rt->toStack = ipc::Doorbell(std::move(att->toStack));
  auto control = ipc::Doorbell::create();
  if (!control) return control.error();
  rt->control = std::move(control).value();
  rt->stack->engine().setLink(rt->tap->linkUp());
  drivers::TapDriverOptions dopt;
  dopt.spin = std::chrono::microseconds(c.spinUs);
  rt->driver = std::make_unique<drivers::TapDriver>(*rt->tap, *rt->pool, rt->toDriver, rt->toStack, rt->control, dopt);

  // The threads take no signals: they belong to the app, as on Linux, where
  // the stack never runs a program's handlers either.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  Runtime* r = rt.get();
  r->stackThread = std::thread([r] {
    ::pthread_setname_np(::pthread_self(), "mknet-stack");
    r->stack->run();
  });
  r->driverThread = std::thread([r] {
    ::pthread_setname_np(::pthread_self(), "mknet-tapdrv");
    drivers::TapDriverStop why = r->driver->run();
    if (why != drivers::TapDriverStop::kStopped)
      spdlog::error("mknet single-process: the driver stopped: {}", drivers::toString(why));
  });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return rt.release();  // see Runtime
}

// What a sender expects of Linux at exit: data it wrote before close() is
// still delivered, and the peer learns of the close. Here the stack (and the
// driver) are threads of the exiting process, so the exit waits (bounded)
// until the stack has finished every closed connection and the peers have
// acknowledged all that was sent, FINs included: a FIN still in the driver's
// ring when the process ends is never sent, and a peer that waits for it
// (a sender reading for the end of the stream) waits forever.
void drainAtExit();

Runtime* gRuntime = nullptr;
std::mutex gMu;

void drainAtExit() {
  Runtime* rt = gRuntime;
  if (rt == nullptr) return;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    std::promise<bool> p;
    auto f = p.get_future();
    rt->stack->post([&] {
      bool busy = false;
      for (stack::AppSession* a : rt->stack->sessions().sessions()) busy = busy || a->draining();
      p.set_value(busy || rt->stack->engine().unacknowledged());
    });
    if (!f.get()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

}  // namespace

Result<InprocessConfig> parseConfig(const std::string& text) {
  InprocessConfig c;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    std::string item = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? text.size() + 1 : comma + 1;
    if (item.empty()) continue;
    auto eq = item.find('=');
    if (eq == std::string::npos) return makeError(EINVAL, "'" + item + "' is not KEY=VALUE");
    std::string k = item.substr(0, eq), v = item.substr(eq + 1);
    if (k == "tap") {
      c.tap = v;
    } else if (k == "ip") {
      c.ip = v;
    } else if (k == "mac") {
      c.mac = v;
    } else if (k == "gateway") {
      c.gateway = v;
    } else if (k == "spin-us") {
      char* end = nullptr;
      unsigned long n = std::strtoul(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n > 1000000) return makeError(EINVAL, "bad spin-us '" + v + "'");
      c.spinUs = static_cast<uint32_t>(n);
    } else {
      return makeError(EINVAL, "unknown key '" + k + "' (tap, ip, mac, gateway, spin-us)");
    }
  }
  if (c.tap.empty()) return makeError(EINVAL, "tap=NAME is required");
  return c;
}

Result<std::shared_ptr<client::ClientSession>> openSession(const InprocessConfig& config) {
  {
    std::lock_guard<std::mutex> g(gMu);
    if (gRuntime == nullptr) {
      auto rt = start(config);
      if (!rt) return rt.error();
      gRuntime = *rt;
      std::atexit(drainAtExit);
    }
  }
  auto offer = gRuntime->stack->openLocalSession(static_cast<uint32_t>(::getpid()), program_invocation_short_name);
  if (!offer) return offer.error();
  return client::ClientSession::openLocal(std::move(offer).value());
}

namespace {

// libmknet asks this for its session instead of dialling mknet-stack. The
// configuration comes from the environment because the app's main() is the
// app's own: this hook is the whole of the single-process wiring's access to
// it (set at load time; see CMakeLists.txt, linked whole).
Result<std::shared_ptr<client::ClientSession>> openFromEnvironment() {
  const char* text = std::getenv("MKNET_INPROCESS");
  if (text == nullptr || *text == '\0')
    return makeError(ENETDOWN, "mknet single-process: MKNET_INPROCESS is not set (want tap=NAME,ip=A.B.C.D/N)");
  auto cfg = parseConfig(text);
  if (!cfg) {
    std::fprintf(stderr, "mknet single-process: MKNET_INPROCESS: %s\n", cfg.error().message().c_str());
    return makeError(ENETDOWN, "bad MKNET_INPROCESS");
  }
  auto s = openSession(*cfg);
  if (!s) std::fprintf(stderr, "mknet single-process: %s\n", s.error().message().c_str());
  return s;
}

[[maybe_unused]] const bool gInstalled = [] {
  client::setSessionOpener(&openFromEnvironment);
  return true;
}();

}  // namespace

}  // namespace mknet::inprocess
