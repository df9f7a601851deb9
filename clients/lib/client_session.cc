#include "clients/lib/client_session.h"

#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <future>
#include <thread>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include "ipc/fd_cap.h"
#include "ipc/rpc_client.h"
#include "ipc/schema/admin.capnp.h"
#include "ipc/schema/session.capnp.h"

namespace mknet::client {

namespace {

// Limits this library accepts from the stack's session offer.
constexpr uint32_t kMaxSockets = 65536;
constexpr uint32_t kMaxRingBytes = 64u << 20;

// How long a blocked thread sleeps at most before it re-checks on its own:
// a safety net only; wake-ups normally come through the doorbell.
constexpr auto kSleepSlice = std::chrono::milliseconds(100);
// Spin before sleeping: a wake-up across CPUs costs ~10 us here.
constexpr auto kSpin = std::chrono::microseconds(100);

long futexWait(std::atomic<uint32_t>* word, uint32_t expected, std::chrono::nanoseconds timeout) {
  struct timespec ts {};
  ts.tv_sec = static_cast<time_t>(timeout.count() / 1000000000);
  ts.tv_nsec = static_cast<long>(timeout.count() % 1000000000);
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, &ts, nullptr, 0);
}
void futexWakeAll(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

}  // namespace

struct ClientSession::Control {
  std::thread thread;
  kj::Own<const kj::Executor> executor;  // refcounted: calls after the loop exits throw DISCONNECTED
  kj::Maybe<schema::Session::Client> session;              // control thread only
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop;     // ends the control loop
};

ClientSession::ClientSession() : ctl_(std::make_unique<Control>()) {}

ClientSession::~ClientSession() {
  if (ctl_->thread.joinable()) {
    if (ctl_->stop) ctl_->stop->fulfill();
    ctl_->thread.join();
  }
}

Result<std::shared_ptr<ClientSession>> ClientSession::open(const std::string& path) {
  std::shared_ptr<ClientSession> self(new ClientSession());
  std::promise<Result<void>> started;
  auto ready = started.get_future();
  ClientSession* s = self.get();
  s->ctl_->thread = std::thread([s, path, &started] {
    auto io = kj::setupAsyncIo();
    auto client = ipc::RpcClient::connect(io, path);
    if (!client) {
      started.set_value(makeError(ENETDOWN, "mknet: cannot reach the stack at " + path + ": " +
                                                client.error().message()));
      return;
    }
    auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
    try {
      auto stack = (*client)->bootstrap<schema::Stack>();
      auto factory = stack.sessionsRequest().send().wait(io.waitScope).getFactory();
      auto req = factory.openRequest();
      req.setPid(static_cast<uint32_t>(::getpid()));
      req.setName(program_invocation_short_name);
      req.setAbiVersion(schema::SESSION_ABI_VERSION);
      auto resp = req.send().wait(io.waitScope);
      auto att = resp.getAttachment();
      ipc::SessionConfig cfg;
      cfg.maxSockets = att.getMaxSockets();
      cfg.ringBytes = att.getRingBytes();
      cfg.notifyCapacity = att.getEventCapacity();
      KJ_REQUIRE(att.getContentVersion() == ipc::kSessionContentVersion, "session layout version mismatch");
      KJ_REQUIRE(cfg.maxSockets <= kMaxSockets && cfg.ringBytes <= kMaxRingBytes, "session offer too large");
      auto regionFd = ipc::receiveFd(att.getRegion(), "session region").wait(io.waitScope);
      auto appFd = ipc::receiveFd(att.getToApp(), "doorbell to app").wait(io.waitScope);
      auto stackFd = ipc::receiveFd(att.getToStack(), "doorbell to stack").wait(io.waitScope);
      KJ_REQUIRE(regionFd.hasValue() && appFd.hasValue() && stackFd.hasValue(), "session fds missing");
      auto region = ipc::SessionRegion::attach(std::move(regionFd).value(), cfg);
      if (!region) KJ_FAIL_REQUIRE("session region", region.error().message());
      s->region_ = std::make_unique<ipc::SessionRegion>(std::move(region).value());
      s->toApp_ = ipc::Doorbell(std::move(appFd).value());
      s->toStack_ = ipc::Doorbell(std::move(stackFd).value());
      auto self = s->toApp_.dupFd();
      KJ_REQUIRE(self.hasValue(), "dup doorbell");
      s->selfWake_ = ipc::Doorbell(std::move(self).value());
      s->notifyRing_ = std::make_unique<ipc::SpscProducer<ipc::Notify>>(s->region_->notifyRing(), cfg.notifyCapacity);
      s->ctl_->session = resp.getSession();
      s->ctl_->executor = kj::getCurrentThreadExecutor().addRef();
      s->ctl_->stop = kj::mv(paf.fulfiller);
    } catch (const kj::Exception& e) {
      started.set_value(makeError(ENETDOWN, std::string("mknet: opening a session failed: ") +
                                                e.getDescription().cStr()));
      return;
    }
    started.set_value(ok());
    // Serve until the stack goes away or the session is dropped.
    try {
      (*client)->onDisconnect().exclusiveJoin(kj::mv(paf.promise)).wait(io.waitScope);
    } catch (const kj::Exception&) {
    }
    s->dead_.store(true, std::memory_order_release);
    s->selfWake_.ring();  // every blocked thread re-checks and sees dead()
    s->ctl_->session = nullptr;
  });
  Result<void> r = ready.get();
  if (!r) {
    s->ctl_->thread.join();
    return r.error();
  }
  return self;
}

ControlReply ClientSession::call(const Request& r) {
  if (dead() || !ctl_->executor) return ControlReply(ECONNRESET);
  try {
    return ctl_->executor->executeSync([this, &r]() -> kj::Promise<ControlReply> {
      KJ_IF_MAYBE(cap, ctl_->session) {
        schema::Session::Client& s = *cap;
        switch (r.op) {
          case Op::kSocket: {
            auto q = s.socketRequest();
            q.setType(r.a == 0 ? schema::SocketType::TCP : schema::SocketType::UDP);
            return q.send().then([](auto p) { return ControlReply(p.getErr(), p.getId()); });
          }
          case Op::kBind: {
            auto q = s.bindRequest();
            q.setId(r.id);
            q.initAddr().setIp(r.ip);
            q.getAddr().setPort(static_cast<uint16_t>(r.port));
            return q.send().then([](auto p) {
              ControlReply c{p.getErr()};
              c.ip = p.getBound().getIp();
              c.port = p.getBound().getPort();
              return c;
            });
          }
          case Op::kListen: {
            auto q = s.listenRequest();
            q.setId(r.id);
            q.setBacklog(r.a);
            return q.send().then([](auto p) { return ControlReply(p.getErr()); });
          }
          case Op::kConnect: {
            auto q = s.connectRequest();
            q.setId(r.id);
            q.initAddr().setIp(r.ip);
            q.getAddr().setPort(static_cast<uint16_t>(r.port));
            return q.send().then([](auto p) { return ControlReply(p.getErr()); });
          }
          case Op::kShutdown: {
            auto q = s.shutdownRequest();
            q.setId(r.id);
            q.setHow(r.a);
            return q.send().then([](auto p) { return ControlReply(p.getErr()); });
          }
          case Op::kClose: {
            auto q = s.closeRequest();
            q.setId(r.id);
            return q.send().then([](auto p) { return ControlReply(p.getErr()); });
          }
          case Op::kSetOption: {
            auto q = s.setOptionRequest();
            q.setId(r.id);
            q.setLevel(r.a);
            q.setName(r.b);
            q.setValue(kj::arrayPtr(reinterpret_cast<const kj::byte*>(r.value.data()), r.value.size()));
            return q.send().then([](auto p) { return ControlReply(p.getErr()); });
          }
          case Op::kGetOption: {
            auto q = s.getOptionRequest();
            q.setId(r.id);
            q.setLevel(r.a);
            q.setName(r.b);
            return q.send().then([](auto p) {
              ControlReply c{p.getErr()};
              auto v = p.getValue();
              c.value.assign(reinterpret_cast<const char*>(v.begin()), v.size());
              return c;
            });
          }
          case Op::kNames: {
            auto q = s.namesRequest();
            q.setId(r.id);
            return q.send().then([](auto p) {
              ControlReply c{p.getErr()};
              c.ip = p.getLocal().getIp();
              c.port = p.getLocal().getPort();
              c.peerIp = p.getPeer().getIp();
              c.peerPort = p.getPeer().getPort();
              return c;
            });
          }
        }
      }
      return ControlReply(ECONNRESET);
    });
  } catch (const kj::Exception&) {
    // The connection or the control loop is gone: the stack died.
    dead_.store(true, std::memory_order_release);
    return ControlReply(ECONNRESET);
  }
}

void ClientSession::notify(uint32_t slot, uint32_t generation) {
  ipc::SlotAppFlags* f = region_->appFlags(slot);
  if (f->notifyPending.exchange(1, std::memory_order_seq_cst) != 0) return;  // already queued
  bool ring = false;
  {
    std::lock_guard<std::mutex> g(notifyMu_);
    ipc::Notify n{slot, generation};
    auto pushed = notifyRing_->push(n);
    // The ring holds one entry per slot at most (notifyPending), so it is
    // never full unless the stack is gone.
    if (pushed && *pushed == 1) ring = notifyRing_->consumerNeedsWakeup();
    else f->notifyPending.store(0, std::memory_order_relaxed);
  }
  if (ring) toStack_.ring();
}

void ClientSession::consumeWake() {
  toApp_.drain();
  wakeEpoch_.fetch_add(1, std::memory_order_seq_cst);
  futexWakeAll(&wakeEpoch_);
}

bool ClientSession::wait(const std::function<bool()>& ready, std::chrono::steady_clock::time_point deadline,
                         int* err) {
  using Clock = std::chrono::steady_clock;
  auto spinEnd = Clock::now() + kSpin;
  for (uint32_t i = 0;; ++i) {
    if (ready()) return true;
    if (dead()) {
      *err = ECONNRESET;
      return false;
    }
    if ((i & 15) == 15 && Clock::now() >= spinEnd) break;
    // Yield rather than pause: on a small machine the stack or the driver we
    // wait for may need this very CPU.
    sched_yield();
  }
  ipc::SessionHeader* h = region_->header();
  for (;;) {
    uint32_t epoch = wakeEpoch_.load(std::memory_order_seq_cst);
    h->appSleeping.store(1, std::memory_order_seq_cst);
    if (ready()) return true;
    if (dead()) {
      *err = ECONNRESET;
      return false;
    }
    auto now = Clock::now();
    if (now >= deadline) {
      *err = ETIMEDOUT;
      return false;
    }
    auto slice = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now);
    if (slice > kSleepSlice) slice = kSleepSlice;
    bool interrupted = false;
    if (!leader_.exchange(true, std::memory_order_acq_rel)) {
      // The leader sleeps on the doorbell and wakes everyone else after.
      struct pollfd p {toApp_.fd(), POLLIN, 0};
      struct timespec ts {};
      ts.tv_sec = static_cast<time_t>(slice.count() / 1000000000);
      ts.tv_nsec = static_cast<long>(slice.count() % 1000000000);
      int r = ::ppoll(&p, 1, &ts, nullptr);
      interrupted = r < 0 && errno == EINTR;
      leader_.store(false, std::memory_order_release);
      consumeWake();
    } else {
      long r = futexWait(&wakeEpoch_, epoch, slice);
      interrupted = r < 0 && errno == EINTR;
    }
    if (ready()) return true;
    if (interrupted) {
      *err = EINTR;
      return false;
    }
  }
}

Result<std::shared_ptr<ClientSession>> currentSession() {
  // Leaked on purpose: sockets may be used from atexit handlers and other
  // threads while static destructors run.
  static std::mutex* mu = new std::mutex;
  static std::shared_ptr<ClientSession>* current = new std::shared_ptr<ClientSession>;
  std::lock_guard<std::mutex> g(*mu);
  if (*current && !(*current)->dead()) return *current;
  const char* p = std::getenv("MKNET_STACK_SOCKET");
  std::string path;
  if (p != nullptr && *p != '\0') {
    path = p;
  } else {
    const char* rd = std::getenv("MKNET_RUNTIME_DIR");
    path = std::string(rd != nullptr && *rd != '\0' ? rd : "/run/mknet") + "/stack.sock";
  }
  auto s = ClientSession::open(path);
  if (!s) return s.error();
  *current = *s;
  return *current;
}

}  // namespace mknet::client
