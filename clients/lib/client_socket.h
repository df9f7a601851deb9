// ClientSocket: one mknet socket inside the app — its slot in the session's
// shared memory, its rings, and the Linux semantics of every call on it.
// Every method returns the result, or -errno.
#pragma once

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>

#include "clients/lib/client_session.h"
#include "ipc/byte_ring.h"

namespace mknet::client {

class ClientSocket {
 public:
  // Opens a TCP or UDP socket in `session`; -errno on failure.
  static std::shared_ptr<ClientSocket> open(std::shared_ptr<ClientSession> session, bool tcp, int* err);
  ClientSocket(std::shared_ptr<ClientSession> session, uint32_t slot, uint32_t generation, bool tcp);

  // After fork(), in the child: the socket as this process may use it. A
  // socket of a session the parent had (inherited) is re-opened in this
  // process's own session if it is a listener: both processes then accept
  // on it, each connection going to one of them. Other sockets stay the
  // parent's: nullptr with *err = EOPNOTSUPP (the child may only close its
  // descriptor, which leaves the parent's socket alone). Sockets that are
  // this process's own come back unchanged.
  static std::shared_ptr<ClientSocket> forThisProcess(std::shared_ptr<ClientSocket> socket, int* err);
  bool inherited() const { return session_->inherited(); }

  int bind(const sockaddr* addr, socklen_t len);
  int listen(int backlog);
  // Accepts one connection; the new socket's slot comes from the listener's ring.
  std::shared_ptr<ClientSocket> accept(sockaddr* addr, socklen_t* len, int* err);
  int connect(const sockaddr* addr, socklen_t len);
  int shutdown(int how);
  int close();

  ssize_t send(const iovec* iov, int iovcnt, int flags, const sockaddr* to, socklen_t tolen);
  ssize_t recv(const iovec* iov, int iovcnt, int flags, sockaddr* from, socklen_t* fromlen);

  int setOption(int level, int name, const void* value, socklen_t len);
  int getOption(int level, int name, void* value, socklen_t* len);
  int localName(sockaddr* addr, socklen_t* len);
  int peerName(sockaddr* addr, socklen_t* len);

  // poll(2) revents for `events`, from shared memory only (no syscall).
  short readiness(short events);

  bool nonBlocking() const { return nonBlocking_.load(std::memory_order_relaxed); }
  void setNonBlocking(bool v) { nonBlocking_.store(v, std::memory_order_relaxed); }
  bool isTcp() const { return tcp_; }
  ClientSession& session() { return *session_; }

 private:
  const ipc::SlotStatus& status() const { return *session_->region().status(slot_); }
  uint32_t events() const { return status().events.load(std::memory_order_acquire); }
  ipc::SlotState state() const { return static_cast<ipc::SlotState>(status().state.load(std::memory_order_acquire)); }
  bool connected() const;
  // The error a reset/failed connection reports once (then EPIPE / 0).
  int takeError();
  std::chrono::steady_clock::time_point deadline(bool send) const;
  int sendPipeError(int flags);
  // Tells the stack this process wants a connection from the listener, if
  // its accept ring is empty (see SlotAppFlags::acceptWanted).
  void askForConnection();
  ssize_t sendTcp(const iovec* iov, int iovcnt, int flags);
  ssize_t sendUdp(const iovec* iov, int iovcnt, int flags, const sockaddr* to, socklen_t tolen);
  ssize_t recvTcp(const iovec* iov, int iovcnt, int flags);
  ssize_t recvUdp(const iovec* iov, int iovcnt, int flags, sockaddr* from, socklen_t* fromlen);

  std::shared_ptr<ClientSession> session_;
  const uint32_t slot_, generation_;
  const bool tcp_;
  std::mutex txMu_, rxMu_;  // one sender / one receiver at a time (SPSC rings)
  ipc::ByteWriter tx_;
  ipc::ByteReader rx_;
  std::atomic<bool> nonBlocking_{false};
  std::atomic<bool> listening_{false}, connectStarted_{false}, shutRd_{false}, shutWr_{false};
  std::atomic<bool> errorTaken_{false}, closed_{false};
  std::atomic<bool> connectReported_{false};  // a connect() call has returned 0
  std::chrono::microseconds rcvTimeout_{0}, sndTimeout_{0};  // 0: none
  bool udpConnected_ = false;
};

}  // namespace mknet::client
