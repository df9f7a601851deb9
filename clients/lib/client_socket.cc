#include "clients/lib/client_socket.h"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/time.h>

#include <cerrno>
#include <cstring>

namespace mknet::client {

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kForever = Clock::time_point::max();

int parseAddr(const sockaddr* addr, socklen_t len, uint32_t* ip, uint32_t* port, bool allowUnspec = false) {
  if (addr == nullptr) return -EFAULT;
  if (len < static_cast<socklen_t>(sizeof(sa_family_t))) return -EINVAL;
  if (allowUnspec && addr->sa_family == AF_UNSPEC) {
    *ip = 0;
    *port = 0;
    return 0;
  }
  if (len < static_cast<socklen_t>(sizeof(sockaddr_in))) return -EINVAL;
  if (addr->sa_family != AF_INET) return -EAFNOSUPPORT;
  sockaddr_in in;
  std::memcpy(&in, addr, sizeof in);
  *ip = ntohl(in.sin_addr.s_addr);
  *port = ntohs(in.sin_port);
  return 0;
}

void fillAddr(uint32_t ip, uint32_t port, sockaddr* addr, socklen_t* len) {
  if (addr == nullptr || len == nullptr) return;
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(ip);
  in.sin_port = htons(static_cast<uint16_t>(port));
  std::memcpy(addr, &in, std::min<size_t>(*len, sizeof in));
  *len = sizeof in;
}

size_t totalLength(const iovec* iov, int n) {
  size_t t = 0;
  for (int i = 0; i < n; ++i) t += iov[i].iov_len;
  return t;
}

}  // namespace

std::shared_ptr<ClientSocket> ClientSocket::open(std::shared_ptr<ClientSession> session, bool tcp, int* err) {
  ClientSession::Request r{ClientSession::Op::kSocket};
  r.a = tcp ? 0 : 1;
  ControlReply rep = session->call(r);
  if (rep.err != 0) {
    *err = rep.err == ECONNRESET ? ENETDOWN : rep.err;
    return nullptr;
  }
  uint32_t slot = rep.id;
  if (slot >= session->config().maxSockets) {
    *err = EPROTO;
    return nullptr;
  }
  uint32_t gen = session->region().status(slot)->generation.load(std::memory_order_acquire);
  return std::make_shared<ClientSocket>(std::move(session), slot, gen, tcp);
}

std::shared_ptr<ClientSocket> ClientSocket::forThisProcess(std::shared_ptr<ClientSocket> socket, int* err) {
  if (!socket->inherited()) return socket;
  if (socket->closed_.load() || socket->state() != ipc::SlotState::kTcpListen) {
    *err = EOPNOTSUPP;
    return nullptr;
  }
  auto session = currentSession();  // never the inherited one: that is dead() here
  if (!session) {
    *err = ENETDOWN;
    return nullptr;
  }
  ClientSession::Request r{ClientSession::Op::kShare, socket->slot_};
  uint64_t token = socket->session_->token();
  r.ip = static_cast<uint32_t>(token);
  r.port = static_cast<uint32_t>(token >> 32);
  r.b = static_cast<int>(socket->generation_);
  ControlReply rep = (*session)->call(r);
  if (rep.err != 0) {
    *err = rep.err == ECONNRESET ? ENETDOWN : rep.err;
    return nullptr;
  }
  if (rep.id >= (*session)->config().maxSockets) {
    *err = EPROTO;
    return nullptr;
  }
  uint32_t gen = (*session)->region().status(rep.id)->generation.load(std::memory_order_acquire);
  auto s = std::make_shared<ClientSocket>(*session, rep.id, gen, true);
  s->listening_ = true;
  s->nonBlocking_ = socket->nonBlocking_.load();
  s->rcvTimeout_ = socket->rcvTimeout_;
  s->sndTimeout_ = socket->sndTimeout_;
  return s;
}

ClientSocket::ClientSocket(std::shared_ptr<ClientSession> session, uint32_t slot, uint32_t generation, bool tcp)
    : session_(std::move(session)), slot_(slot), generation_(generation), tcp_(tcp),
      tx_(session_->region().txRing(slot), session_->config().ringBytes),
      rx_(session_->region().rxRing(slot), session_->config().ringBytes) {}

bool ClientSocket::connected() const {
  uint32_t ev = events();
  return (ev & ipc::kEvConnected) != 0 && (ev & ipc::kEvReset) == 0;
}

int ClientSocket::takeError() {
  if ((events() & ipc::kEvError) == 0) return 0;
  if (errorTaken_.exchange(true)) return 0;
  return status().error.load(std::memory_order_acquire);
}

Clock::time_point ClientSocket::deadline(bool send) const {
  auto t = send ? sndTimeout_ : rcvTimeout_;
  return t.count() == 0 ? kForever : Clock::now() + t;
}

int ClientSocket::sendPipeError(int flags) {
  if ((flags & MSG_NOSIGNAL) == 0) ::raise(SIGPIPE);
  return -EPIPE;
}

int ClientSocket::bind(const sockaddr* addr, socklen_t len) {
  if (inherited()) return -EOPNOTSUPP;  // the parent's (see forThisProcess)
  uint32_t ip, port;
  if (int e = parseAddr(addr, len, &ip, &port); e != 0) return e;
  ClientSession::Request r{ClientSession::Op::kBind, slot_};
  r.ip = ip;
  r.port = port;
  return -session_->call(r).err;
}

int ClientSocket::listen(int backlog) {
  if (inherited()) return -EOPNOTSUPP;  // the parent's (see forThisProcess)
  if (!tcp_) return -EOPNOTSUPP;
  if (connected() || connectStarted_) return -EINVAL;
  ClientSession::Request r{ClientSession::Op::kListen, slot_};
  r.a = backlog;
  int e = session_->call(r).err;
  if (e == 0) listening_ = true;
  return -e;
}

std::shared_ptr<ClientSocket> ClientSocket::accept(sockaddr* addr, socklen_t* len, int* err) {
  if (inherited()) {
    *err = EOPNOTSUPP;  // the parent's (see forThisProcess)
    return nullptr;
  }
  if (!tcp_) {
    *err = EOPNOTSUPP;
    return nullptr;
  }
  if (!listening_) {
    *err = EINVAL;
    return nullptr;
  }
  std::lock_guard<std::mutex> g(rxMu_);
  auto dl = deadline(false);
  for (;;) {
    auto avail = rx_.available();
    if (!avail) {
      *err = EPROTO;  // the stack broke the ring: treat the listener as dead
      return nullptr;
    }
    if (*avail >= sizeof(ipc::AcceptRecord)) {
      ipc::AcceptRecord rec;
      (void)rx_.read(std::as_writable_bytes(std::span(&rec, 1)));
      if (rec.slot >= session_->config().maxSockets) continue;
      const ipc::SlotStatus& st = *session_->region().status(rec.slot);
      if (st.generation.load(std::memory_order_acquire) != rec.generation) continue;  // already gone
      auto s = std::make_shared<ClientSocket>(session_, rec.slot, rec.generation, true);
      s->connectStarted_ = true;
      s->connectReported_ = true;
      fillAddr(st.peerIp.load(), st.peerPort.load(), addr, len);
      return s;
    }
    if (session_->dead()) {
      // The stack is gone and this listener with it. poll() reports the
      // listener with POLLHUP|POLLERR, which a server can take as "listen
      // again" (ECONNABORTED alone reads as a transient error).
      *err = ECONNABORTED;
      return nullptr;
    }
    askForConnection();  // the ring is empty: ask the stack for one
    if (nonBlocking()) {
      *err = EAGAIN;
      return nullptr;
    }
    int e = 0;
    if (!session_->wait([this] { auto a = rx_.available(); return !a || *a >= sizeof(ipc::AcceptRecord); }, dl, &e)) {
      *err = e == ETIMEDOUT ? EAGAIN : e == ECONNRESET ? ECONNABORTED : e;
      return nullptr;
    }
  }
}

int ClientSocket::connect(const sockaddr* addr, socklen_t len) {
  if (inherited()) return -EOPNOTSUPP;  // the parent's (see forThisProcess)
  uint32_t ip, port;
  if (int e = parseAddr(addr, len, &ip, &port, !tcp_); e != 0) return e;
  if (!tcp_) {
    ClientSession::Request r{ClientSession::Op::kConnect, slot_};
    r.ip = ip;
    r.port = port;
    int e = session_->call(r).err;
    if (e == 0) udpConnected_ = !(ip == 0 && port == 0);
    return -e;
  }
  if (listening_) return -EISCONN;
  if (connected()) {
    // Linux: the first connect() after a non-blocking connect completed
    // reports success; later ones EISCONN.
    if (connectStarted_ && !connectReported_.exchange(true)) return 0;
    return -EISCONN;
  }
  if (connectStarted_) {
    uint32_t ev = events();
    if ((ev & (ipc::kEvReset | ipc::kEvError)) != 0) {
      int e = takeError();
      return e != 0 ? -e : -ECONNABORTED;
    }
    if (nonBlocking()) return -EALREADY;
  } else {
    if (ip == 0) ip = INADDR_LOOPBACK;  // Linux connects 0.0.0.0 to the local host
    ClientSession::Request r{ClientSession::Op::kConnect, slot_};
    r.ip = ip;
    r.port = port;
    int e = session_->call(r).err;
    if (e != 0) return -(e == ECONNRESET ? ENETDOWN : e);
    connectStarted_ = true;
    if (nonBlocking()) return -EINPROGRESS;
  }
  int e = 0;
  bool ok = session_->wait([this] { return (events() & (ipc::kEvConnected | ipc::kEvReset | ipc::kEvError)) != 0; },
                           deadline(true), &e);
  if (!ok) return e == ETIMEDOUT ? -EINPROGRESS : -e;
  if (connected()) {
    connectReported_ = true;
    return 0;
  }
  int err = takeError();
  return err != 0 ? -err : -ECONNREFUSED;
}

int ClientSocket::shutdown(int how) {
  if (inherited()) return -EOPNOTSUPP;  // the parent's (see forThisProcess)
  if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR) return -EINVAL;
  if (tcp_ && !connected() && (events() & ipc::kEvConnected) == 0) return -ENOTCONN;
  if (!tcp_ && !udpConnected_) return -ENOTCONN;
  if (how != SHUT_WR) shutRd_ = true;
  if (how != SHUT_RD) shutWr_ = true;
  ClientSession::Request r{ClientSession::Op::kShutdown, slot_};
  r.a = how;
  int e = session_->call(r).err;
  return e == ECONNRESET ? 0 : -e;  // a dead stack: the socket is shut anyway
}

int ClientSocket::close() {
  if (closed_.exchange(true)) return -EBADF;
  if (!session_->dead()) session_->postClose(slot_, generation_);
  return 0;
}

ssize_t ClientSocket::send(const iovec* iov, int iovcnt, int flags, const sockaddr* to, socklen_t tolen) {
  if (inherited()) return -EOPNOTSUPP;  // the parent's (see forThisProcess)
  if (iovcnt < 0 || iovcnt > IOV_MAX) return -EINVAL;
  return tcp_ ? sendTcp(iov, iovcnt, flags) : sendUdp(iov, iovcnt, flags, to, tolen);
}

ssize_t ClientSocket::recv(const iovec* iov, int iovcnt, int flags, sockaddr* from, socklen_t* fromlen) {
  if (inherited()) return -EOPNOTSUPP;  // the parent's (see forThisProcess)
  if (iovcnt < 0 || iovcnt > IOV_MAX) return -EINVAL;
  return tcp_ ? recvTcp(iov, iovcnt, flags) : recvUdp(iov, iovcnt, flags, from, fromlen);
}

ssize_t ClientSocket::sendTcp(const iovec* iov, int iovcnt, int flags) {
  if (shutWr_) return sendPipeError(flags);
  if (listening_) return -ENOTCONN;
  std::lock_guard<std::mutex> g(txMu_);
  const bool nb = nonBlocking() || (flags & MSG_DONTWAIT) != 0;
  const size_t total = totalLength(iov, iovcnt);
  if (total == 0) return 0;
  auto dl = deadline(true);
  size_t done = 0;
  int i = 0;
  size_t off = 0;
  for (;;) {
    uint32_t ev = events();
    if ((ev & ipc::kEvReset) != 0 || session_->dead()) {
      if (done > 0) return static_cast<ssize_t>(done);
      int e = takeError();
      if (e != 0 && e != ETIMEDOUT) return -e;
      return sendPipeError(flags);
    }
    if (!connected()) {
      if (!connectStarted_) return sendPipeError(flags);
      if (nb) return -EAGAIN;
    } else {
      size_t wrote = 0;
      while (i < iovcnt) {
        size_t len = iov[i].iov_len - off;
        auto n = tx_.write(std::span<const std::byte>(static_cast<const std::byte*>(iov[i].iov_base) + off,
                                                      len > UINT32_MAX ? UINT32_MAX : len));
        if (!n) return -EIO;  // our own ring corrupted: nothing sane is left
        wrote += *n;
        off += *n;
        if (off == iov[i].iov_len) {
          ++i;
          off = 0;
        } else {
          break;  // ring full
        }
      }
      if (wrote > 0) {
        done += wrote;
        session_->notify(slot_, generation_);
      }
      if (done == total) return static_cast<ssize_t>(done);
      if (nb) return done > 0 ? static_cast<ssize_t>(done) : -EAGAIN;
    }
    int e = 0;
    if (!session_->wait(
            [this] {
              auto f = tx_.freeSlots();
              return !f || *f > 0 || (events() & (ipc::kEvReset | ipc::kEvConnected)) == ipc::kEvReset ||
                     ((events() & ipc::kEvConnected) != 0 && !connected());
            },
            dl, &e)) {
      if (e == ECONNRESET) continue;  // handled at the top of the loop
      if (done > 0) return static_cast<ssize_t>(done);
      return e == ETIMEDOUT ? -EAGAIN : -e;
    }
  }
}

ssize_t ClientSocket::recvTcp(const iovec* iov, int iovcnt, int flags) {
  if (listening_) return -ENOTCONN;
  std::lock_guard<std::mutex> g(rxMu_);
  const bool nb = nonBlocking() || (flags & MSG_DONTWAIT) != 0;
  const bool peek = (flags & MSG_PEEK) != 0;
  const size_t total = totalLength(iov, iovcnt);
  if (total == 0) return 0;
  auto dl = deadline(false);
  size_t done = 0;
  for (;;) {
    size_t got = 0;
    if (peek) {
      uint32_t offset = 0;
      for (int i = 0; i < iovcnt; ++i) {
        auto n = rx_.peek(std::span<std::byte>(static_cast<std::byte*>(iov[i].iov_base), iov[i].iov_len), offset);
        if (!n) return -EIO;
        offset += *n;
        if (*n < iov[i].iov_len) break;
      }
      got = offset;
    } else {
      // Fill the caller's buffers from where the last round stopped.
      size_t skip = done;
      for (int i = 0; i < iovcnt; ++i) {
        if (skip >= iov[i].iov_len) {
          skip -= iov[i].iov_len;
          continue;
        }
        size_t len = iov[i].iov_len - skip;
        auto n = rx_.read(std::span<std::byte>(static_cast<std::byte*>(iov[i].iov_base) + skip,
                                               len > UINT32_MAX ? UINT32_MAX : len));
        skip = 0;
        if (!n) return -EIO;
        got += *n;
        if (*n < len) break;
      }
    }
    if (got > 0) {
      if (!peek) session_->notify(slot_, generation_);  // the stack re-opens the window
      done += got;
      if (peek || (flags & MSG_WAITALL) == 0 || done == total) return static_cast<ssize_t>(done);
    }
    uint32_t ev = events();
    if (rx_.empty()) {
      if ((ev & ipc::kEvReset) != 0) {
        if (done > 0) return static_cast<ssize_t>(done);
        int e = takeError();
        return e != 0 && e != ETIMEDOUT ? -e : e == ETIMEDOUT ? -ETIMEDOUT : 0;
      }
      if ((ev & ipc::kEvRxEof) != 0 || shutRd_) return static_cast<ssize_t>(done);
      if (session_->dead()) return done > 0 ? static_cast<ssize_t>(done) : -ECONNRESET;
      if (!connectStarted_ && !connected()) return -ENOTCONN;
      if (nb) return done > 0 ? static_cast<ssize_t>(done) : -EAGAIN;
    }
    int e = 0;
    if (!session_->wait(
            [this] { return !rx_.empty() || (events() & (ipc::kEvRxEof | ipc::kEvReset)) != 0 || shutRd_; }, dl,
            &e)) {
      if (e == ECONNRESET) continue;  // drained above on the next round
      if (done > 0) return static_cast<ssize_t>(done);
      return e == ETIMEDOUT ? -EAGAIN : -e;
    }
  }
}

ssize_t ClientSocket::sendUdp(const iovec* iov, int iovcnt, int flags, const sockaddr* to, socklen_t tolen) {
  uint32_t ip = 0, port = 0;
  if (to != nullptr) {
    if (int e = parseAddr(to, tolen, &ip, &port); e != 0) return e;
    if (ip == 0 && port == 0) return -EINVAL;
  } else if (!udpConnected_) {
    return -EDESTADDRREQ;
  }
  if (shutWr_) return sendPipeError(flags);
  const size_t len = totalLength(iov, iovcnt);
  const size_t need = sizeof(ipc::DatagramHeader) + len;
  if (len > ipc::kMaxDatagram || need > session_->config().ringBytes) return -EMSGSIZE;
  std::lock_guard<std::mutex> g(txMu_);
  const bool nb = nonBlocking() || (flags & MSG_DONTWAIT) != 0;
  auto dl = deadline(true);
  for (;;) {
    if (session_->dead()) return -ENETDOWN;
    auto room = tx_.freeSlots();
    if (!room) return -EIO;
    if (*room >= need) {
      ipc::DatagramHeader h{static_cast<uint32_t>(len), ip, port, 0};
      (void)tx_.write(std::as_bytes(std::span(&h, 1)));
      for (int i = 0; i < iovcnt; ++i)
        (void)tx_.write(std::span<const std::byte>(static_cast<const std::byte*>(iov[i].iov_base), iov[i].iov_len));
      session_->notify(slot_, generation_);
      return static_cast<ssize_t>(len);
    }
    if (nb) return -EAGAIN;
    int e = 0;
    if (!session_->wait([this, need] { auto f = tx_.freeSlots(); return !f || *f >= need; }, dl, &e))
      return e == ETIMEDOUT ? -EAGAIN : -e;
  }
}

ssize_t ClientSocket::recvUdp(const iovec* iov, int iovcnt, int flags, sockaddr* from, socklen_t* fromlen) {
  std::lock_guard<std::mutex> g(rxMu_);
  const bool nb = nonBlocking() || (flags & MSG_DONTWAIT) != 0;
  auto dl = deadline(false);
  for (;;) {
    ipc::DatagramHeader h;
    auto got = rx_.peek(std::as_writable_bytes(std::span(&h, 1)));
    if (!got) return -EIO;
    if (*got == sizeof h) {
      if (h.length > ipc::kMaxDatagram || sizeof h + h.length > session_->config().ringBytes) return -EIO;
      auto avail = rx_.available();
      if (avail && *avail >= sizeof h + h.length) {
        size_t copied = 0;
        for (int i = 0; i < iovcnt && copied < h.length; ++i) {
          size_t want = std::min<size_t>(iov[i].iov_len, h.length - copied);
          (void)rx_.peek(std::span<std::byte>(static_cast<std::byte*>(iov[i].iov_base), want),
                         static_cast<uint32_t>(sizeof h + copied));
          copied += want;
        }
        if ((flags & MSG_PEEK) == 0) {
          (void)rx_.consume(static_cast<uint32_t>(sizeof h + h.length));
          session_->notify(slot_, generation_);
        }
        fillAddr(h.ip, h.port, from, fromlen);
        return static_cast<ssize_t>((flags & MSG_TRUNC) != 0 ? h.length : copied);
      }
      // The stack writes a record in two pieces: the rest is on its way.
    } else {
      if (shutRd_) return 0;
      if (session_->dead()) return -ENETDOWN;
      if (nb) return -EAGAIN;
    }
    int e = 0;
    if (!session_->wait([this] { auto a = rx_.available(); return !a || *a >= sizeof(ipc::DatagramHeader); }, dl, &e))
      return e == ETIMEDOUT ? -EAGAIN : -e;
  }
}

int ClientSocket::setOption(int level, int name, const void* value, socklen_t len) {
  if (inherited()) return -EOPNOTSUPP;  // the parent's (see forThisProcess)
  if (value == nullptr && len > 0) return -EFAULT;
  if (level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO)) {
    if (len < static_cast<socklen_t>(sizeof(timeval))) return -EINVAL;
    timeval tv;
    std::memcpy(&tv, value, sizeof tv);
    if (tv.tv_usec < 0 || tv.tv_usec >= 1000000 || tv.tv_sec < 0) return -EDOM;
    auto t = std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec);
    (name == SO_RCVTIMEO ? rcvTimeout_ : sndTimeout_) = t;
    return 0;
  }
  if (level == SOL_SOCKET && (name == SO_ERROR || name == SO_TYPE || name == SO_ACCEPTCONN || name == SO_DOMAIN ||
                              name == SO_PROTOCOL))
    return -ENOPROTOOPT;
  if (level == IPPROTO_TCP && !tcp_) return -ENOPROTOOPT;
  if (level == SOL_SOCKET && name == SO_LINGER) {
    if (len < static_cast<socklen_t>(sizeof(linger))) return -EINVAL;
  } else if (len < static_cast<socklen_t>(sizeof(int))) {
    return -EINVAL;
  }
  ClientSession::Request r{ClientSession::Op::kSetOption, slot_};
  r.a = level;
  r.b = name;
  r.value.assign(static_cast<const char*>(value), name == SO_LINGER && level == SOL_SOCKET ? sizeof(linger) : sizeof(int));
  int e = session_->call(r).err;
  return -e;
}

int ClientSocket::getOption(int level, int name, void* value, socklen_t* len) {
  if (inherited()) return -EOPNOTSUPP;  // the parent's (see forThisProcess)
  if (value == nullptr || len == nullptr) return -EFAULT;
  auto putInt = [&](int v) {
    socklen_t n = std::min<socklen_t>(*len, sizeof v);
    std::memcpy(value, &v, n);
    *len = n;
    return 0;
  };
  if (level == SOL_SOCKET) {
    switch (name) {
      case SO_ERROR: return putInt(takeError());
      case SO_TYPE: return putInt(tcp_ ? SOCK_STREAM : SOCK_DGRAM);
      case SO_DOMAIN: return putInt(AF_INET);
      case SO_PROTOCOL: return putInt(tcp_ ? IPPROTO_TCP : IPPROTO_UDP);
      case SO_ACCEPTCONN: return putInt(listening_ ? 1 : 0);
      case SO_RCVTIMEO:
      case SO_SNDTIMEO: {
        auto t = name == SO_RCVTIMEO ? rcvTimeout_ : sndTimeout_;
        timeval tv{static_cast<time_t>(t.count() / 1000000), static_cast<suseconds_t>(t.count() % 1000000)};
        socklen_t n = std::min<socklen_t>(*len, sizeof tv);
        std::memcpy(value, &tv, n);
        *len = n;
        return 0;
      }
    }
  }
  if (level == IPPROTO_TCP && !tcp_) return -ENOPROTOOPT;
  ClientSession::Request r{ClientSession::Op::kGetOption, slot_};
  r.a = level;
  r.b = name;
  ControlReply rep = session_->call(r);
  if (rep.err != 0) return -rep.err;
  socklen_t n = std::min<socklen_t>(*len, static_cast<socklen_t>(rep.value.size()));
  std::memcpy(value, rep.value.data(), n);
  *len = n;
  return 0;
}

int ClientSocket::localName(sockaddr* addr, socklen_t* len) {
  if (inherited()) return -EOPNOTSUPP;  // the parent's (see forThisProcess)
  if (addr == nullptr || len == nullptr) return -EFAULT;
  fillAddr(status().localIp.load(), status().localPort.load(), addr, len);
  return 0;
}

int ClientSocket::peerName(sockaddr* addr, socklen_t* len) {
  if (inherited()) return -EOPNOTSUPP;  // the parent's (see forThisProcess)
  if (addr == nullptr || len == nullptr) return -EFAULT;
  if (tcp_ ? !connected() : !udpConnected_) return -ENOTCONN;
  fillAddr(status().peerIp.load(), status().peerPort.load(), addr, len);
  return 0;
}

void ClientSocket::askForConnection() {
  // Only when the ring is empty: what is in it is this process's already.
  auto avail = rx_.available();
  if (!avail || *avail >= sizeof(ipc::AcceptRecord)) return;
  ipc::SlotAppFlags* f = session_->region().appFlags(slot_);
  bool first = f->acceptInterest.load(std::memory_order_relaxed) == 0;
  if (first) f->acceptInterest.store(1, std::memory_order_relaxed);
  bool asked = f->acceptWanted.exchange(1, std::memory_order_seq_cst) == 0;
  // Connections may be waiting in the stack for a taker: tell it.
  if (first || asked) session_->notify(slot_, generation_);
}

short ClientSocket::readiness(short want) {
  if (inherited()) return POLLNVAL;  // the parent's: nothing of it may be read here
  short r = 0;
  uint32_t ev = events();
  bool dead = session_->dead();
  if (!tcp_) {
    auto a = rx_.available();
    if (!a || *a >= sizeof(ipc::DatagramHeader)) r |= POLLIN;
    auto f = tx_.freeSlots();
    if (!f || *f >= 2048) r |= POLLOUT;
    if (dead) r |= POLLERR;
  } else if (listening_) {
    if ((want & POLLIN) != 0) askForConnection();
    auto a = rx_.available();
    if (!a || *a >= sizeof(ipc::AcceptRecord) || dead) r |= POLLIN;
    if (dead) r |= POLLERR | POLLHUP;
  } else {
    if (!rx_.empty() || (ev & (ipc::kEvRxEof | ipc::kEvReset)) != 0 || shutRd_) r |= POLLIN | POLLRDNORM;
    if ((ev & ipc::kEvRxEof) != 0) r |= POLLRDHUP;
    if (connected()) {
      auto f = tx_.freeSlots();
      if (!f || *f > 0) r |= POLLOUT | POLLWRNORM;
    }
    if ((ev & ipc::kEvReset) != 0 || dead) r |= POLLIN | POLLOUT | POLLHUP;
    if ((ev & ipc::kEvError) != 0 && !errorTaken_) r |= POLLERR;
    if ((ev & ipc::kEvRxEof) != 0 && shutWr_) r |= POLLHUP;
    if (!connectStarted_ && !connected()) r |= POLLOUT | POLLHUP;  // a fresh socket, as Linux reports it
  }
  return static_cast<short>(r & (want | POLLERR | POLLHUP | POLLNVAL));
}

}  // namespace mknet::client
