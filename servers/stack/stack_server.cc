#include "servers/stack/stack_server.h"

#include <poll.h>
#include <sched.h>
#include <unistd.h>

#include <future>

#include <kj/async-unix.h>
#include <spdlog/spdlog.h>

#include "ipc/fd_cap.h"
#include "ipc/schema/admin.capnp.h"
#include "ipc/schema/driver.capnp.h"
#include "ipc/schema/session.capnp.h"

namespace mknet::stack {

namespace {

// The driver's registration. When the driver dies its connection closes,
// Cap'n Proto drops this object, and the port reclaims the driver's buffers.
class DriverSessionImpl final : public schema::DriverSession::Server {
 public:
  DriverSessionImpl(StackServer& s, uint64_t epoch) : s_(s), epoch_(epoch) {}
  ~DriverSessionImpl() noexcept(false) {
    if (s_.driverEpoch == epoch_) s_.port().detach("driver connection closed");
  }

 protected:
  kj::Promise<void> setLink(SetLinkContext context) override {
    if (s_.driverEpoch == epoch_) s_.engine().setLink(context.getParams().getUp());
    return kj::READY_NOW;
  }
  kj::Promise<void> reportStats(ReportStatsContext context) override {
    auto st = context.getParams().getStats();
    stats_ = {st.getRxFrames(), st.getRxBytes(), st.getRxDropped(), st.getTxFrames(), st.getTxBytes(),
              st.getTxErrors()};
    return kj::READY_NOW;
  }

 private:
  StackServer& s_;
  uint64_t epoch_;
  std::array<uint64_t, 6> stats_{};
};

class DriverRegistryImpl final : public schema::DriverRegistry::Server {
 public:
  explicit DriverRegistryImpl(StackServer& s) : s_(s) {}

 protected:
  kj::Promise<void> register_(RegisterContext context) override {
    auto info = context.getParams().getInfo();
    KJ_REQUIRE(info.getAbiVersion() == schema::DRIVER_ABI_VERSION, "driver ABI version mismatch",
               info.getAbiVersion());
    auto mac = info.getMac();
    KJ_REQUIRE(mac.size() == 6, "MAC must be 6 bytes");
    KJ_REQUIRE(info.getMtu() >= 576 && info.getMtu() <= 1500 + 0, "MTU out of range", info.getMtu());
    std::array<uint8_t, 6> m;
    std::copy(mac.begin(), mac.end(), m.begin());
    s_.engine().setMac(m);
    auto a = s_.port().attach(info.getName().cStr(), info.getPid());
    if (!a) KJ_FAIL_REQUIRE("attach failed", a.error().message());
    uint64_t epoch = ++s_.driverEpoch;
    auto res = context.getResults();
    auto att = res.initAttachment();
    att.setRegion(ipc::makeFdCap(std::move(a->region), "pool-region"));
    att.setContentVersion(ipc::kPoolContentVersion);
    att.setBufferCount(a->config.bufferCount);
    att.setRingCapacity(a->config.ringCapacity);
    att.setToDriver(ipc::makeFdCap(std::move(a->toDriver), "doorbell-to-driver"));
    att.setToStack(ipc::makeFdCap(std::move(a->toStack), "doorbell-to-stack"));
    res.setSession(kj::heap<DriverSessionImpl>(s_, epoch));
    if (!info.getLinkUp()) s_.engine().setLink(false);
    return kj::READY_NOW;
  }

 private:
  StackServer& s_;
};

class SessionFactoryImpl final : public schema::SessionFactory::Server {
 public:
  explicit SessionFactoryImpl(StackServer& s) : s_(s) {}

 protected:
  kj::Promise<void> open(OpenContext context) override {
    auto p = context.getParams();
    KJ_REQUIRE(p.getAbiVersion() == schema::SESSION_ABI_VERSION, "session ABI version mismatch");
    auto made = s_.newSession(p.getPid(), p.getName().cStr());
    if (!made) KJ_FAIL_REQUIRE("session", made.error().message());
    auto& [core, offer] = *made;
    auto res = context.getResults();
    auto att = res.initAttachment();
    att.setRegion(ipc::makeFdCap(std::move(offer.region), "session-region"));
    att.setContentVersion(ipc::kSessionContentVersion);
    att.setMaxSockets(offer.config.maxSockets);
    att.setRingBytes(offer.config.ringBytes);
    att.setEventCapacity(offer.config.notifyCapacity);
    att.setToApp(ipc::makeFdCap(std::move(offer.toApp), "doorbell-to-app"));
    att.setToStack(ipc::makeFdCap(std::move(offer.toStack), "doorbell-to-stack"));
    res.setSession(kj::heap<SessionCap>(core));
    return kj::READY_NOW;
  }

 private:
  StackServer& s_;
};

class AdminImpl final : public schema::Admin::Server {
 public:
  explicit AdminImpl(StackServer& s) : s_(s) {}

 protected:
  kj::Promise<void> status(StatusContext context) override {
    auto st = context.getResults().initStatus();
    st.setPid(static_cast<uint32_t>(::getpid()));
    st.setUptimeMs(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                             std::chrono::steady_clock::now() - s_.started())
                                             .count()));
    DriverPort& port = s_.port();
    auto drivers = st.initDrivers(1);
    drivers[0].setName(port.driverName());
    drivers[0].setPid(port.attached() ? port.driverPid() : 0);
    drivers[0].setLinkUp(port.attached() && s_.engine().linkUp());
    drivers[0].setRegistrations(port.registrations());
    uint32_t sockets = 0;
    for (AppSession* a : s_.sessions().sessions()) sockets += a->openSockets();
    st.setSessions(static_cast<uint32_t>(s_.sessions().liveApps()));
    st.setSockets(sockets);
    st.setPoolBuffers(port.bufferCount());
    st.setPoolFree(port.freeBuffers());

    // Two parallel vectors: GCC 12 warns falsely (-Warray-bounds) on a vector of pairs here.
    std::vector<std::string> names;
    std::vector<uint64_t> values;
    struct {
      std::vector<std::string>& n;
      std::vector<uint64_t>& v;
      void emplace_back(std::string name, uint64_t value) {
        n.push_back(std::move(name));
        v.push_back(value);
      }
    } c{names, values};
    const DriverPortCounters& pc = port.counters();
    c.emplace_back("rx_frames", pc.rxFrames);
    c.emplace_back("rx_bytes", pc.rxBytes);
    c.emplace_back("tx_frames", pc.txFrames);
    c.emplace_back("tx_bytes", pc.txBytes);
    c.emplace_back("bad_descriptors", pc.badDescriptors);
    c.emplace_back("rx_drop_martian", pc.rxMartian);
    c.emplace_back("rx_l4_checksum_by_driver", pc.rxL4ChecksumByDriver);
    c.emplace_back("corrupt_rings", pc.corruptRings);
    c.emplace_back("tx_dropped_no_driver", pc.txDroppedNoDriver);
    c.emplace_back("tx_requeued", pc.txRequeued);
    c.emplace_back("driver_attaches", pc.attaches);
    c.emplace_back("driver_detaches", pc.detaches);
    for (size_t i = 0; i < net::kFrameErrorCount; ++i)
      c.emplace_back(std::string("rx_drop_") + net::frameErrorName(static_cast<net::FrameError>(i)), pc.rxBad[i]);
    const EngineCounters& ec = s_.engine().counters();
    c.emplace_back("engine_rx_frames", ec.rxFrames);
    c.emplace_back("engine_tx_frames", ec.txFrames);
    c.emplace_back("engine_tx_no_buffer", ec.txNoBuffer);
    c.emplace_back("engine_input_errors", ec.inputErrors);
    c.emplace_back("engine_rx_copied", ec.rxCopied);
    c.emplace_back("engine_connections_kicked", ec.kicked);
    c.emplace_back("engine_timewait_recycled", ec.timeWaitRecycled);
    c.emplace_back("engine_timewait_trimmed", ec.timeWaitTrimmed);
    c.emplace_back("accept_no_slot", ec.acceptNoSlot);
    c.emplace_back("udp_rx_dropped", ec.udpRxDropped);
    c.emplace_back("bad_tx_records", ec.badTxRecords);
    c.emplace_back("engine_sockets", s_.engine().liveSockets());
    c.emplace_back("sessions_opened", s_.sessions().opened);
    c.emplace_back("sessions_closed", s_.sessions().closed);
    uint64_t badNotify = s_.sessions().retired.badNotify, corrupt = s_.sessions().retired.corruptRings;
    uint64_t stale = s_.sessions().retired.staleNotify, badControl = s_.sessions().retired.badControl;
    for (AppSession* a : s_.sessions().sessions()) {
      badNotify += a->counters().badNotify;
      badControl += a->counters().badControl;
      corrupt += a->counters().corruptRings;
      stale += a->counters().staleNotify;
    }
    c.emplace_back("session_stale_notify", stale);
    if (const ipc::RpcServerStats* rs = s_.rpcStats()) {
      c.emplace_back("rpc_connections_accepted", rs->accepted);
      c.emplace_back("rpc_connections_open", rs->open);
      c.emplace_back("rpc_peer_errors", rs->peerErrors);  // garbage, oversized or malformed messages
    }
    c.emplace_back("session_bad_notify", badNotify);
    c.emplace_back("session_corrupt_rings", corrupt);
    c.emplace_back("session_bad_control", badControl);
    auto list = st.initCounters(static_cast<unsigned>(names.size()));
    for (size_t i = 0; i < names.size(); ++i) {
      list[i].setName(names[i]);
      list[i].setValue(values[i]);
    }
    return kj::READY_NOW;
  }

 private:
  StackServer& s_;
};

class StackImpl final : public schema::Stack::Server {
 public:
  explicit StackImpl(StackServer& s) : s_(s) {}

 protected:
  kj::Promise<void> drivers(DriversContext context) override {
    context.getResults().setRegistry(kj::heap<DriverRegistryImpl>(s_));
    return kj::READY_NOW;
  }
  kj::Promise<void> sessions(SessionsContext context) override {
    context.getResults().setFactory(kj::heap<SessionFactoryImpl>(s_));
    return kj::READY_NOW;
  }
  kj::Promise<void> admin(AdminContext context) override {
    context.getResults().setAdmin(kj::heap<AdminImpl>(s_));
    return kj::READY_NOW;
  }

 private:
  StackServer& s_;
};

}  // namespace

StackServer::StackServer(const StackConfig& config, kj::AsyncIoContext* io, ipc::Doorbell bell)
    : config_(config), io_(io), bell_(std::move(bell)), started_(std::chrono::steady_clock::now()) {}

StackServer::~StackServer() {
  rpc_ = nullptr;  // closes the control socket and drops every session first
  // The doorbell's observer goes before the doorbell (declared after it):
  // its destructor unregisters the eventfd from epoll, which fails (and kj
  // throws from a destructor: std::terminate) once the eventfd is closed.
  bellObserver_ = nullptr;
}

Result<std::unique_ptr<StackServer>> StackServer::create(const StackConfig& config, kj::AsyncIoContext* io) {
  auto bell = ipc::Doorbell::create();
  if (!bell) return bell.error();
  std::unique_ptr<StackServer> s(new StackServer(config, io, std::move(bell).value()));
  auto port = DriverPort::create(config.pool, s->bell_);
  if (!port) return port.error();
  s->port_ = std::move(port).value();
  EngineConfig ec = config.engine;
  ec.rxBuffers = config.pool.bufferCount;
  s->engine_ = std::make_unique<Engine>(ec, *s->port_);
  s->port_->setEngine(s->engine_.get());
  s->engine_->setLink(false);  // up when a driver registers
  if (io != nullptr) {
    auto rpc = ipc::RpcServer::listen(*io, config.socketPath, kj::heap<StackImpl>(*s));
    if (!rpc) return rpc.error();
    s->rpc_ = std::move(rpc).value();
  }
  return s;
}

Result<std::pair<AppSession*, ipc::SessionOffer>> StackServer::newSession(uint32_t pid, const std::string& name) {
  const ipc::SessionConfig& cfg = config_.session;
  auto region = ipc::SessionRegion::create(cfg);
  if (!region) return region.error();
  auto toApp = ipc::Doorbell::create();
  if (!toApp) return toApp.error();
  auto regionFd = region->region().dupFd();
  if (!regionFd) return regionFd.error();
  auto appFd = toApp->dupFd();
  if (!appFd) return appFd.error();
  auto stackFd = bell_.dupFd();
  if (!stackFd) return stackFd.error();
  AppSession* core = sessions_.add(std::make_unique<AppSession>(sessions_, *engine_, std::move(region).value(),
                                                                std::move(toApp).value(), pid, name));
  return std::make_pair(core, ipc::SessionOffer{std::move(regionFd).value(), cfg, std::move(appFd).value(),
                                                std::move(stackFd).value()});
}

Result<ipc::SessionOffer> StackServer::openLocalSession(uint32_t pid, const std::string& name) {
  std::promise<Result<ipc::SessionOffer>> done;
  auto answer = done.get_future();
  post([&] {
    auto made = newSession(pid, name);
    if (!made) {
      done.set_value(made.error());
    } else {
      done.set_value(std::move(made->second));
    }
  });
  return answer.get();
}

void StackServer::post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> g(postedMu_);
    posted_.push_back(std::move(task));
    hasPosted_.store(true, std::memory_order_release);
  }
  bell_.ring();
}

void StackServer::runPosted() {
  if (!hasPosted_.load(std::memory_order_acquire)) return;
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard<std::mutex> g(postedMu_);
    tasks.swap(posted_);
    hasPosted_.store(false, std::memory_order_relaxed);
  }
  for (auto& t : tasks) t();
}

void StackServer::sleep(int64_t ms) {
  if (io_ != nullptr) {
    bellObserver_->whenBecomesReadable()
        .exclusiveJoin(io_->provider->getTimer().afterDelay(ms * kj::MILLISECONDS))
        .wait(io_->waitScope);
  } else {
    struct pollfd p {bell_.fd(), POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(ms));
  }
}

void StackServer::stop() {
  stopping_ = 1;
  bell_.ring();  // async-signal-safe: write() on an eventfd
}

void StackServer::run() {
  using Clock = std::chrono::steady_clock;
  if (io_ != nullptr)
    bellObserver_ = kj::heap<kj::UnixEventPort::FdObserver>(io_->unixEventPort, bell_.fd(),
                                                            kj::UnixEventPort::FdObserver::OBSERVE_READ);
  auto lastWork = Clock::now();
  auto nextTimer = Clock::now();
  uint32_t round = 0;
  uint64_t beat = 0;
  auto publishBeat = [&] {
    // sched_getcpu() reads the rseq area glibc keeps: no system call.
    const uint64_t b = ipc::makeBeat(++beat, sched_getcpu());
    for (AppSession* a : sessions_.sessions()) a->beat(b);
  };
  while (!stopping_) {
    publishBeat();
    uint32_t work = 0;
    // The driver's frames in quarter bursts, with a beat between: an app
    // spinning for us reads a beat that stands still for long as "the
    // stack is off its CPU" (SessionHeader::stackBeat).
    for (uint32_t q = 0; q < 4; ++q) {
      uint32_t w = port_->poll(config_.burst / 4 > 0 ? config_.burst / 4 : 1);
      work += w;
      if (w < config_.burst / 4) break;
      publishBeat();
    }
    engine_->retryBlockedSenders();  // not work: the loop may sleep; txFree wakes it
    for (AppSession* a : sessions_.sessions()) work += a->poll(config_.burst);
    publishBeat();
    auto now = Clock::now();
    if (now >= nextTimer) {
      uint32_t ms = engine_->runTimers();
      nextTimer = now + std::chrono::milliseconds(ms > 250 ? 250 : ms);
    }
    for (AppSession* a : sessions_.sessions()) a->flushWakeup();
    runPosted();
    // Control plane: a non-blocking turn of the event loop. It costs an
    // epoll_wait syscall, so it runs every 32nd round (busy or spinning),
    // and always before the loop sleeps.
    if (io_ != nullptr && (++round & 31) == 0) io_->waitScope.poll();
    for (AppSession* a : sessions_.sessions()) a->flushWakeup();
    sessions_.reap();
    if (work != 0) {
      lastWork = now;
      continue;
    }
    if (now - lastWork < config_.spin) {
      // Spin, but let another runnable process (the driver, an app, the
      // peer) have this CPU: on two CPUs a pure spin starves exactly the
      // process whose work we are waiting for.
      sched_yield();
      continue;
    }

    if (io_ != nullptr) io_->waitScope.poll();
    runPosted();
    // Idle: drain the doorbell, announce the sleep on every ring, re-check,
    // and sleep until rung, a timer is due, or a control message arrives.
    bell_.drain();
    bool maySleep = port_->prepareSleep() && !hasPosted_.load(std::memory_order_acquire);
    for (AppSession* a : sessions_.sessions()) maySleep = a->prepareSleep() && maySleep;
    if (maySleep && !stopping_) {
      auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(nextTimer - Clock::now()).count();
      sleep(delay < 1 ? 1 : delay);
    }
    port_->cancelSleep();
    for (AppSession* a : sessions_.sessions()) a->cancelSleep();
    lastWork = Clock::now();  // spin again after waking
  }
  spdlog::info("stack stopping");
}

}  // namespace mknet::stack
