#include "servers/stack/app_session.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include <spdlog/spdlog.h>

namespace mknet::stack {

AppSession* SessionRegistry::add(std::unique_ptr<AppSession> s) {
  AppSession* p = s.get();
  owned_.push_back(std::move(s));
  view_.push_back(p);
  ++opened;
  return p;
}

void SessionRegistry::reap() {
  for (size_t i = 0; i < owned_.size();) {
    if (owned_[i]->reapable()) {
      retired.badNotify += owned_[i]->counters().badNotify;
      retired.staleNotify += owned_[i]->counters().staleNotify;
      retired.corruptRings += owned_[i]->counters().corruptRings;
      retired.badControl += owned_[i]->counters().badControl;
      view_.erase(std::remove(view_.begin(), view_.end(), owned_[i].get()), view_.end());
      owned_.erase(owned_.begin() + static_cast<long>(i));
      ++closed;
    } else {
      ++i;
    }
  }
}

AppSession* SessionRegistry::byToken(uint64_t token) const {
  for (AppSession* s : view_)
    if (s->token() == token) return s;
  return nullptr;
}

size_t SessionRegistry::liveApps() const {
  size_t n = 0;
  for (AppSession* s : view_) n += !s->reapable();
  return n;
}

AppSession::AppSession(SessionRegistry& registry, Engine& engine, ipc::SessionRegion region,
                       ipc::Doorbell toApp, uint32_t pid, std::string name)
    : registry_(registry), engine_(engine), region_(std::move(region)), toApp_(std::move(toApp)), pid_(pid),
      name_(std::move(name)),
      notify_(region_.notifyRing(), region_.config().notifyCapacity),
      sockets_(region_.config().maxSockets), use_(region_.config().maxSockets, SlotUse::kFree) {
  for (uint32_t i = region_.config().maxSockets; i > 0; --i) freeSlots_.push_back(i - 1);
  // Unguessable (and never 0), so only processes that mapped this region can name it.
  while (token_ == 0) {
    if (::getrandom(&token_, sizeof token_, 0) != sizeof token_) token_ = 0;
  }
  region_.header()->token = token_;
  spdlog::info("session opened: {} (pid {})", name_, pid_);
}

AppSession::~AppSession() {
  for (auto& s : sockets_) {
    if (s) s->abort();
  }
}

void AppSession::appGone() {
  if (gone_) return;
  gone_ = true;
  // What the app posted before it went still counts: a close() it made
  // just before exit is a close, not a reset (close needs no answer, so
  // the app may be gone before the stack has read it).
  if (!broken_) (void)takeNotifications(region_.config().notifyCapacity);
  // Connections the app still had open are reset, so the peers learn at
  // once; closed ones keep draining what the app wrote before it went.
  uint32_t aborted = 0;
  for (uint32_t i = 0; i < use_.size(); ++i) {
    if (use_[i] == SlotUse::kOpen && sockets_[i]) {
      sockets_[i]->abort();
      freeSlot(i);
      ++aborted;
    }
  }
  region_.header()->closed.store(1, std::memory_order_release);
  spdlog::info("session closed: {} (pid {}), {} connections reset, {} still draining", name_, pid_, aborted,
               closing_.size());
}

SlotMemory AppSession::memoryOf(uint32_t slot) {
  return SlotMemory{slot, region_.status(slot), region_.appFlags(slot), region_.rxRing(slot),
                    region_.txRing(slot), region_.config().ringBytes};
}

std::optional<SlotMemory> AppSession::allocateSlot() {
  if (freeSlots_.empty()) return std::nullopt;
  uint32_t slot = freeSlots_.back();
  freeSlots_.pop_back();
  region_.resetSlot(slot);
  region_.status(slot)->generation.fetch_add(1, std::memory_order_relaxed);
  use_[slot] = SlotUse::kOpen;
  ++openSockets_;
  return memoryOf(slot);
}

void AppSession::adopt(std::unique_ptr<EngineSocket> socket) {
  uint32_t slot = socket->slot();
  sockets_[slot] = std::move(socket);
}

void AppSession::freeSlot(uint32_t slot) {
  sockets_[slot].reset();
  if (use_[slot] == SlotUse::kClosing) std::erase(closing_, slot);
  if (use_[slot] != SlotUse::kFree) --openSockets_;
  use_[slot] = SlotUse::kFree;
  region_.status(slot)->state.store(static_cast<uint32_t>(ipc::SlotState::kFree), std::memory_order_release);
  freeSlots_.push_back(slot);
}

void AppSession::closeNotified(uint32_t slot, uint32_t generation) {
  if (slot >= use_.size()) {
    ++counters_.badNotify;  // no well-behaved library names a slot that doesn't exist
    return;
  }
  EngineSocket* s = open(slot);
  if (s == nullptr || generation != region_.status(slot)->generation.load(std::memory_order_relaxed)) {
    ++counters_.staleNotify;  // closed twice, or a socket of an earlier generation: nothing to do
    return;
  }
  s->close();
  if (s->finished()) {
    freeSlot(slot);
  } else {
    use_[slot] = SlotUse::kClosing;  // drains in the background; reaped by poll()
    closing_.push_back(slot);
  }
}

EngineSocket* AppSession::openSocket(uint32_t slot, uint32_t generation) {
  EngineSocket* s = open(slot);
  if (s == nullptr || region_.status(slot)->generation.load(std::memory_order_relaxed) != generation) return nullptr;
  return s;
}

EngineSocket* AppSession::open(uint32_t id) {
  if (broken_) return nullptr;
  if (id >= use_.size() || use_[id] != SlotUse::kOpen) return nullptr;
  return sockets_[id].get();
}

void AppSession::ringBroken(uint32_t slot, const char* which) {
  ++counters_.corruptRings;
  if (broken_) return;
  broken_ = true;
  spdlog::warn("session {} (pid {}): the app broke the {} ring of socket {}; closing its session", name_, pid_,
               which, slot);
}

void AppSession::tearDown() {
  // An app that breaks the contract loses its whole session: every
  // connection is reset, nothing more is read from its memory, and the
  // library sees `closed`. The memory itself goes when the app's
  // capability does.
  torn_ = true;
  region_.header()->closed.store(1, std::memory_order_release);
  for (uint32_t i = 0; i < use_.size(); ++i) {
    if (use_[i] != SlotUse::kFree) {
      if (sockets_[i]) sockets_[i]->abort();
      freeSlot(i);
    }
  }
  posted_ = true;
}

void AppSession::beat(uint64_t n) { region_.header()->stackBeat.store(n, std::memory_order_relaxed); }

uint32_t AppSession::poll(uint32_t budget) {
  if (broken_) {
    if (!torn_) tearDown();
    return 0;
  }
  uint32_t work = takeNotifications(budget);
  if (torn_) return work;
  // Sockets the app closed that still drain: only they are visited, not
  // every slot (the list is short; a copy, as freeSlot() edits it).
  if (!closing_.empty()) {
    for (uint32_t i : std::vector<uint32_t>(closing_)) {
      sockets_[i]->pump();
      if (sockets_[i]->finished()) freeSlot(i);
    }
  }
  return work;
}

uint32_t AppSession::takeNotifications(uint32_t budget) {
  uint32_t work = 0;
  std::array<ipc::Notify, 64> burst;
  while (work < budget) {
    auto got = notify_.pop(burst);
    if (!got) {
      ringBroken(0, "notify");
      tearDown();
      return work;
    }
    if (*got == 0) break;
    work += *got;
    for (uint32_t k = 0; k < *got; ++k) {
      const ipc::Notify n = burst[k];  // our copy; validated here
      if (n.slot == ipc::kControlSlot) {
        if (n.generation >= ipc::kControlMailboxes) {
          ++counters_.badNotify;  // no such mailbox
        } else if (!gone_) {
          serveControl(n.generation);  // nobody waits for the answer of an app that is gone
        }
        continue;
      }
      if ((n.slot & ipc::kCloseBit) != 0) {
        closeNotified(n.slot & ~ipc::kCloseBit, n.generation);
        continue;
      }
      if (n.slot >= use_.size()) {
        ++counters_.badNotify;  // no well-behaved library names a slot that doesn't exist
        continue;
      }
      // The app is gone: its open sockets are about to be reset, and a closed
      // one's close pumps it anyway, so new data is not moved into lwIP.
      if (gone_) continue;
      if (use_[n.slot] == SlotUse::kFree || !sockets_[n.slot] ||
          n.generation != region_.status(n.slot)->generation.load(std::memory_order_relaxed)) {
        // Stale: the app closed the socket (and the slot may be reused)
        // after it queued this. Normal, not a fault.
        ++counters_.staleNotify;
        continue;
      }
      region_.appFlags(n.slot)->notifyPending.store(0, std::memory_order_seq_cst);
      sockets_[n.slot]->pump();
    }
  }
  return work;
}

bool AppSession::prepareSleep() { return broken_ || notify_.prepareSleep(); }
void AppSession::cancelSleep() {
  if (!broken_) notify_.cancelSleep();
}

void AppSession::flushWakeup() {
  if (!posted_) return;
  posted_ = false;
  ipc::SessionHeader* h = region_.header();
  h->stackEpoch.fetch_add(1, std::memory_order_seq_cst);
  if (h->appSleeping.load(std::memory_order_seq_cst) != 0 && h->appSleeping.exchange(0) != 0) toApp_.ring();
}

// ------------------------------------------------------------ control plane

namespace {

// Maps a Linux (level, name) to what the engine implements. Options that
// libmknet answers itself (SO_ERROR, SO_TYPE, timeouts) never get here.
std::optional<SocketOption> optionOf(int level, int name) {
  if (level == SOL_SOCKET) {
    switch (name) {
      case SO_REUSEADDR: return SocketOption::kReuseAddr;
      case SO_KEEPALIVE: return SocketOption::kKeepAlive;
      case SO_RCVBUF: return SocketOption::kRcvBuf;
      case SO_SNDBUF: return SocketOption::kSndBuf;
    }
  } else if (level == IPPROTO_TCP) {
    switch (name) {
      case TCP_NODELAY: return SocketOption::kNoDelay;
      case TCP_KEEPIDLE: return SocketOption::kKeepIdle;
      case TCP_KEEPINTVL: return SocketOption::kKeepIntvl;
      case TCP_KEEPCNT: return SocketOption::kKeepCnt;
    }
  }
  return std::nullopt;
}

}  // namespace

void AppSession::serveControl(uint32_t mailbox) {
  ipc::ControlMailbox* box = region_.control(mailbox);
  uint32_t seq = box->requestSeq.load(std::memory_order_acquire);
  if (seq == controlSeq_[mailbox] || broken_) return;  // nothing new (a duplicate notification)
  ipc::ControlRequest request;
  std::memcpy(&request, &box->request, sizeof request);  // our copy; the app may scribble on its own
  ipc::ControlResponse response = control(request);
  std::memcpy(&box->response, &response, sizeof response);
  box->responseSeq.store(seq, std::memory_order_release);
  controlSeq_[mailbox] = seq;
  posted_ = true;  // wakes the app if it sleeps waiting for the answer
}

ipc::ControlResponse AppSession::control(const ipc::ControlRequest& q) {
  ipc::ControlResponse r{};
  auto fail = [&r](int err) {
    r.err = err;
    return r;
  };
  using Op = ipc::ControlOp;
  const auto op = static_cast<Op>(q.op);
  if (op == Op::kSocket) {
    if (q.a != 0 && q.a != 1) return fail(EINVAL);
    auto mem = allocateSlot();
    if (!mem) return fail(EMFILE);
    auto s = engine_.openSocket(q.a == 0 ? SocketKind::kTcp : SocketKind::kUdp, *mem, *this);
    if (!s) {
      freeSlot(mem->slot);
      return fail(ENOMEM);
    }
    sockets_[mem->slot] = std::move(s);
    r.id = mem->slot;
    return r;
  }
  if (op == Op::kShare) {
    // A forked child takes its own handle on a socket of its parent's
    // session. Only listeners can be shared (EOPNOTSUPP otherwise); the
    // parent keeps its handle.
    AppSession* from = registry_.byToken(uint64_t{q.ip} | uint64_t{q.port} << 32);
    EngineSocket* src = from != nullptr ? from->openSocket(q.id, static_cast<uint32_t>(q.b)) : nullptr;
    if (src == nullptr) return fail(EBADF);
    auto mem = allocateSlot();
    if (!mem) return fail(EMFILE);
    auto shared = src->share(*mem, *this);
    if (!shared) {
      freeSlot(mem->slot);
      return fail(EOPNOTSUPP);
    }
    sockets_[mem->slot] = std::move(shared);
    r.id = mem->slot;
    return r;
  }
  EngineSocket* s = open(q.id);
  if (s == nullptr) return fail(EBADF);
  const ipc::SlotStatus* st = region_.status(q.id);
  switch (op) {
    case Op::kBind:
      r.err = s->bind(q.ip, q.port);
      r.ip = st->localIp.load(std::memory_order_relaxed);
      r.port = st->localPort.load(std::memory_order_relaxed);
      return r;
    case Op::kListen: return fail(s->listen(q.a));
    case Op::kConnect:
      r.err = s->connect(q.ip, q.port);
      posted_ = true;
      return r;
    case Op::kShutdown:
      if (q.a < 0 || q.a > 2) return fail(EINVAL);
      return fail(s->shutdown(q.a == SHUT_RD || q.a == SHUT_RDWR, q.a == SHUT_WR || q.a == SHUT_RDWR));
    case Op::kSetOption: {
      if (q.valueLength > ipc::kControlValueMax) return fail(EINVAL);
      if (q.a == SOL_SOCKET && q.b == SO_LINGER) {
        struct linger l {};
        if (q.valueLength < sizeof l) return fail(EINVAL);
        std::memcpy(&l, q.value, sizeof l);
        s->setOption(SocketOption::kLingerSeconds, l.l_linger);
        return fail(s->setOption(SocketOption::kLingerOnOff, l.l_onoff));
      }
      auto o = optionOf(q.a, q.b);
      if (!o) return fail(ENOPROTOOPT);
      int v = 0;
      if (q.valueLength < sizeof v) return fail(EINVAL);
      std::memcpy(&v, q.value, sizeof v);
      return fail(s->setOption(*o, v));
    }
    case Op::kGetOption: {
      if (q.a == SOL_SOCKET && q.b == SO_LINGER) {
        struct linger l {};
        s->getOption(SocketOption::kLingerOnOff, &l.l_onoff);
        s->getOption(SocketOption::kLingerSeconds, &l.l_linger);
        std::memcpy(r.value, &l, sizeof l);
        r.valueLength = sizeof l;
        return r;
      }
      auto o = optionOf(q.a, q.b);
      if (!o) return fail(ENOPROTOOPT);
      int v = 0;
      r.err = s->getOption(*o, &v);
      if (r.err == 0) {
        std::memcpy(r.value, &v, sizeof v);
        r.valueLength = sizeof v;
      }
      return r;
    }
    case Op::kNames:
      r.ip = st->localIp.load(std::memory_order_relaxed);
      r.port = st->localPort.load(std::memory_order_relaxed);
      r.peerIp = st->peerIp.load(std::memory_order_relaxed);
      r.peerPort = st->peerPort.load(std::memory_order_relaxed);
      return r;
    case Op::kSocket:
    case Op::kShare: break;  // handled above
  }
  ++counters_.badControl;  // no well-behaved library sends an unknown operation
  return fail(EINVAL);
}

}  // namespace mknet::stack
