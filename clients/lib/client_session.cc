#include "clients/lib/client_session.h"

#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <thread>
#include <utility>

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
  kj::Maybe<schema::Session::Client> session;              // control thread only: held for its lifetime
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop;     // ends the control loop
};

// ------------------------------------------------------------------ fork

namespace {

// Every session object of the process, and how many times it has forked.
// Leaked on purpose, like the current session below.
std::mutex* gSessionsMu = new std::mutex;
std::vector<ClientSession*>* gSessions = new std::vector<ClientSession*>;
std::mutex* gCurrentMu = new std::mutex;
std::shared_ptr<ClientSession>* gCurrent = new std::shared_ptr<ClientSession>;
std::atomic<uint32_t> gForkEpoch{0};
// A connection to the stack made just before fork() for the child: a child
// that drops privileges before it first uses mknet (nginx's workers run as
// www-data) could not connect to the stack's socket itself any more.
int gSpareFd = -1;

std::string stackSocketPath() {
  const char* p = std::getenv("MKNET_STACK_SOCKET");
  if (p != nullptr && *p != '\0') return p;
  const char* rd = std::getenv("MKNET_RUNTIME_DIR");
  return std::string(rd != nullptr && *rd != '\0' ? rd : "/run/mknet") + "/stack.sock";
}

std::atomic<SessionOpener> gOpener{nullptr};

}  // namespace

std::chrono::microseconds spinTime() {
  static const std::chrono::microseconds spin = [] {
    constexpr long kDefault = 100, kMax = 100000;
    const char* v = std::getenv("MKNET_SPIN_US");
    if (v == nullptr || *v == '\0') return std::chrono::microseconds(kDefault);
    char* end = nullptr;
    errno = 0;
    long n = std::strtol(v, &end, 10);
    if (errno != 0 || *end != '\0' || n < 0 || n > kMax) {
      std::fprintf(stderr, "libmknet: ignoring MKNET_SPIN_US='%s' (want 0..%ld microseconds); spinning %ld us\n", v,
                   kMax, kDefault);
      return std::chrono::microseconds(kDefault);
    }
    return std::chrono::microseconds(n);
  }();
  return spin;
}

// pthread_atfork handlers: the locks the child needs are taken before the
// fork, so no other thread can hold them at that instant; the child then
// forgets its parent's sessions. (Sockets of those sessions are taken over
// lazily, on first use: see ClientSocket::forThisProcess.)
struct ForkHandlers {
  static void prepare() {
    gCurrentMu->lock();
    gSessionsMu->lock();
    if (!gSessions->empty() && gOpener.load(std::memory_order_relaxed) == nullptr) {
      auto fd = ipc::RpcClient::connectFd(stackSocketPath());
      if (fd) gSpareFd = fd->release();
    }
  }
  static void parent() {
    if (gSpareFd >= 0) ::close(gSpareFd);
    gSpareFd = -1;
    gSessionsMu->unlock();
    gCurrentMu->unlock();
  }
  static void child() {
    gForkEpoch.fetch_add(1, std::memory_order_relaxed);
    for (ClientSession* s : *gSessions) s->forgetInChild();
    gSessionsMu->unlock();
    gCurrentMu->unlock();
  }
};

bool ClientSession::inherited() const { return forkEpoch_ != gForkEpoch.load(std::memory_order_relaxed); }

void ClientSession::forgetInChild() {
  // Only close(): this runs in the child of a fork, before anything else.
  if (controlFd_ >= 0) ::close(controlFd_);
  controlFd_ = -1;
  toApp_ = ipc::Doorbell();
  toStack_ = ipc::Doorbell();
  selfWake_ = ipc::Doorbell();
}

ClientSession::ClientSession()
    : ctl_(std::make_unique<Control>()), forkEpoch_(gForkEpoch.load(std::memory_order_relaxed)) {
  static std::once_flag once;
  std::call_once(once, [] { ::pthread_atfork(&ForkHandlers::prepare, &ForkHandlers::parent, &ForkHandlers::child); });
  std::lock_guard<std::mutex> g(*gSessionsMu);
  gSessions->push_back(this);
}

ClientSession::~ClientSession() {
  {
    std::lock_guard<std::mutex> g(*gSessionsMu);
    std::erase(*gSessions, this);
  }
  if (inherited()) {
    // The parent's control thread does not exist in this process, and its
    // kj objects belong to it: neither may be joined nor destroyed here.
    (void)ctl_.release();
    return;
  }
  if (ctl_->thread.joinable()) {
    if (ctl_->stop) ctl_->stop->fulfill();
    ctl_->thread.join();
  }
}

Result<std::shared_ptr<ClientSession>> ClientSession::open(const std::string& path) {
  return open(path, ipc::UniqueFd());
}

Result<std::shared_ptr<ClientSession>> ClientSession::open(const std::string& path, ipc::UniqueFd connected) {
  std::shared_ptr<ClientSession> self(new ClientSession());
  std::promise<Result<void>> started;
  auto ready = started.get_future();
  ClientSession* s = self.get();
  // The control thread takes no signals (they belong to the app's threads,
  // where they interrupt blocking calls as on Linux): it starts with all
  // blocked. A SIGPIPE from its own writes then stays pending there, so the
  // app's SIGPIPE disposition, which kj's event loop sets to ignored, is put
  // back as it was.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  struct sigaction pipeAction {};
  sigaction(SIGPIPE, nullptr, &pipeAction);
  s->ctl_->thread = std::thread([s, path, &started, pipeAction, connected = std::move(connected)]() mutable {
    auto io = kj::setupAsyncIo();
    sigaction(SIGPIPE, &pipeAction, nullptr);
    auto client = connected ? ipc::RpcClient::fromConnectedFd(io, std::move(connected))
                            : ipc::RpcClient::connect(io, path);
    if (!client) {
      started.set_value(makeError(ENETDOWN, "mknet: cannot reach the stack at " + path + ": " +
                                                client.error().message()));
      return;
    }
    auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
    s->controlFd_ = (*client)->fd();
    try {
      auto stack = (*client)->bootstrap<schema::Stack>();
      auto factory = stack.sessionsRequest().send().wait(io.waitScope).getFactory();
      auto req = factory.openRequest();
      req.setPid(static_cast<uint32_t>(::getpid()));
      req.setName(program_invocation_short_name);
      req.setAbiVersion(schema::SESSION_ABI_VERSION);
      auto resp = req.send().wait(io.waitScope);
      auto att = resp.getAttachment();
      KJ_REQUIRE(att.getContentVersion() == ipc::kSessionContentVersion, "session layout version mismatch");
      Offer offer;
      offer.config.maxSockets = att.getMaxSockets();
      offer.config.ringBytes = att.getRingBytes();
      offer.config.notifyCapacity = att.getEventCapacity();
      auto regionFd = ipc::receiveFd(att.getRegion(), "session region").wait(io.waitScope);
      auto appFd = ipc::receiveFd(att.getToApp(), "doorbell to app").wait(io.waitScope);
      auto stackFd = ipc::receiveFd(att.getToStack(), "doorbell to stack").wait(io.waitScope);
      KJ_REQUIRE(regionFd.hasValue() && appFd.hasValue() && stackFd.hasValue(), "session fds missing");
      offer.region = std::move(regionFd).value();
      offer.toApp = std::move(appFd).value();
      offer.toStack = std::move(stackFd).value();
      if (auto a = s->attach(std::move(offer)); !a) KJ_FAIL_REQUIRE("session", a.error().message());
      s->ctl_->session = resp.getSession();
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
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  Result<void> r = ready.get();
  if (!r) {
    s->ctl_->thread.join();
    return r.error();
  }
  return self;
}

Result<std::shared_ptr<ClientSession>> ClientSession::openLocal(Offer offer) {
  std::shared_ptr<ClientSession> self(new ClientSession());
  if (auto a = self->attach(std::move(offer)); !a) return a.error();
  return self;
}

Result<void> ClientSession::attach(Offer offer) {
  const ipc::SessionConfig& cfg = offer.config;
  if (cfg.maxSockets > kMaxSockets || cfg.ringBytes > kMaxRingBytes)
    return makeError(EPROTO, "session offer too large");
  auto region = ipc::SessionRegion::attach(std::move(offer.region), cfg);
  if (!region) return region.error();
  region_ = std::make_unique<ipc::SessionRegion>(std::move(region).value());
  toApp_ = ipc::Doorbell(std::move(offer.toApp));
  toStack_ = ipc::Doorbell(std::move(offer.toStack));
  auto self = toApp_.dupFd();
  if (!self) return self.error();
  selfWake_ = ipc::Doorbell(std::move(self).value());
  notifyRing_ = std::make_unique<ipc::SpscProducer<ipc::Notify>>(region_->notifyRing(), cfg.notifyCapacity);
  for (uint32_t i = 0; i < ipc::kControlMailboxes; ++i)
    mailboxes_[i].seq = region_->control(i)->requestSeq.load(std::memory_order_relaxed);
  return ok();
}

SignalHold::SignalHold(const sigset_t* callMask) {
  sigset_t hold;
  sigfillset(&hold);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS}) sigdelset(&hold, sig);
  pthread_sigmask(SIG_BLOCK, &hold, &old_);
  sleep_ = callMask != nullptr ? *callMask : old_;
}

SignalHold::~SignalHold() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }

ControlReply ClientSession::call(const Request& r) {
  if (dead()) return ControlReply(ECONNRESET);
  ipc::ControlRequest q{};
  switch (r.op) {
    case Op::kSocket: q.op = static_cast<uint32_t>(ipc::ControlOp::kSocket); break;
    case Op::kBind: q.op = static_cast<uint32_t>(ipc::ControlOp::kBind); break;
    case Op::kListen: q.op = static_cast<uint32_t>(ipc::ControlOp::kListen); break;
    case Op::kConnect: q.op = static_cast<uint32_t>(ipc::ControlOp::kConnect); break;
    case Op::kShutdown: q.op = static_cast<uint32_t>(ipc::ControlOp::kShutdown); break;
    case Op::kSetOption: q.op = static_cast<uint32_t>(ipc::ControlOp::kSetOption); break;
    case Op::kGetOption: q.op = static_cast<uint32_t>(ipc::ControlOp::kGetOption); break;
    case Op::kNames: q.op = static_cast<uint32_t>(ipc::ControlOp::kNames); break;
    case Op::kShare: q.op = static_cast<uint32_t>(ipc::ControlOp::kShare); break;
  }
  q.id = r.id;
  q.a = r.a;
  q.b = r.b;
  q.ip = r.ip;
  q.port = r.port;
  if (r.value.size() > ipc::kControlValueMax) return ControlReply(EINVAL);
  q.valueLength = static_cast<uint32_t>(r.value.size());
  std::memcpy(q.value, r.value.data(), r.value.size());

  // Each thread starts at its own mailbox (handed out round-robin) and takes
  // the first free one; only when all are busy does it wait for its own.
  static std::atomic<uint32_t> nextThread{0};
  thread_local const uint32_t home = nextThread.fetch_add(1, std::memory_order_relaxed) % ipc::kControlMailboxes;
  uint32_t index = home;
  std::unique_lock<std::mutex> g;
  for (uint32_t i = 0; i < ipc::kControlMailboxes && !g.owns_lock(); ++i) {
    index = (home + i) % ipc::kControlMailboxes;
    g = std::unique_lock<std::mutex>(mailboxes_[index].mu, std::try_to_lock);
  }
  if (!g.owns_lock()) {
    index = home;
    g = std::unique_lock<std::mutex>(mailboxes_[index].mu);
  }
  ipc::ControlMailbox* box = region_->control(index);
  std::memcpy(&box->request, &q, sizeof q);
  const uint32_t seq = ++mailboxes_[index].seq;
  box->requestSeq.store(seq, std::memory_order_release);
  if (!pushNotify(ipc::Notify{ipc::kControlSlot, index})) return ControlReply(ECONNRESET);
  auto answered = [box, seq] { return box->responseSeq.load(std::memory_order_acquire) == seq; };
  int err = 0;
  // A signal does not cancel a control call half-way: the stack may already
  // have done it (a close, a connect), so wait for the answer regardless.
  while (!wait(answered, std::chrono::steady_clock::time_point::max(), &err)) {
    if (err != EINTR) return ControlReply(ECONNRESET);
  }
  ipc::ControlResponse resp;
  std::memcpy(&resp, &box->response, sizeof resp);  // our copy
  ControlReply c{resp.err, resp.id};
  c.ip = resp.ip;
  c.port = resp.port;
  c.peerIp = resp.peerIp;
  c.peerPort = resp.peerPort;
  c.value.assign(reinterpret_cast<const char*>(resp.value), std::min<uint32_t>(resp.valueLength, ipc::kControlValueMax));
  return c;
}

bool ClientSession::pushNotify(const ipc::Notify& n) {
  bool ring = false;
  {
    std::lock_guard<std::mutex> g(notifyMu_);
    auto pushed = notifyRing_->push(n);
    if (!pushed || *pushed != 1) return false;
    ring = notifyRing_->consumerNeedsWakeup();
  }
  if (ring) toStack_.ring();
  return true;
}

void ClientSession::notify(uint32_t slot, uint32_t generation) {
  ipc::SlotAppFlags* f = region_->appFlags(slot);
  if (f->notifyPending.exchange(1, std::memory_order_seq_cst) != 0) return;  // already queued
  // The ring holds one data entry per slot at most (notifyPending), one
  // close per slot and one request per control mailbox, so it is never full
  // unless the stack is gone (see ipc::kCloseBit).
  if (!pushNotify(ipc::Notify{slot, generation})) f->notifyPending.store(0, std::memory_order_relaxed);
}

void ClientSession::consumeWake() {
  toApp_.drain();
  wakeEpoch_.fetch_add(1, std::memory_order_seq_cst);
  futexWakeAll(&wakeEpoch_);
}

bool ClientSession::wait(const std::function<bool()>& ready, std::chrono::steady_clock::time_point deadline,
                         int* err) {
  using Clock = std::chrono::steady_clock;
  Spin spin(&region_->header()->stackBeat);
  do {
    if (ready()) return true;
    if (dead()) {
      *err = ECONNRESET;
      return false;
    }
  } while (spin.again());
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

namespace {

Result<std::shared_ptr<ClientSession>> openOverSocket() {
  ipc::UniqueFd spare(std::exchange(gSpareFd, -1));  // under gCurrentMu
  return ClientSession::open(stackSocketPath(), std::move(spare));
}

}  // namespace

void setSessionOpener(SessionOpener opener) { gOpener.store(opener, std::memory_order_release); }

Result<std::shared_ptr<ClientSession>> currentSession() {
  std::lock_guard<std::mutex> g(*gCurrentMu);
  if (*gCurrent && !(*gCurrent)->dead()) return *gCurrent;
  SessionOpener opener = gOpener.load(std::memory_order_acquire);
  auto s = opener != nullptr ? opener() : openOverSocket();
  if (!s) return s.error();
  *gCurrent = *s;
  return *gCurrent;
}

}  // namespace mknet::client
