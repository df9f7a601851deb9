// The fd table of libmknet's C API: which fds of the process are mknet
// sockets, and what the fds naming one socket share (dup). Each socket
// reserves a real kernel fd (an eventfd), so numbers never collide with the
// kernel's. Also takes over sockets inherited across fork on first use.
#pragma once

#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "clients/lib/client_socket.h"

namespace mknet::client {

using SocketPtr = std::shared_ptr<ClientSocket>;

// What the fds naming one socket share (Linux's "open file description"):
// dup'd fds share the socket and its O_NONBLOCK (kept in ClientSocket), and
// the socket is closed when the last of them is.
struct OpenSocket {
  OpenSocket(SocketPtr s, uint64_t i) : sock(std::move(s)), id(i) {}
  SocketPtr sock;
  const uint64_t id;  // unique in the process: an fd number may be reused, this is not
  int fds = 0;        // guarded by the table's mutex
  std::mutex hintMu;
  std::map<std::pair<int, int>, int> hints;  // kHintOptions values set
};
using OpenPtr = std::shared_ptr<OpenSocket>;

// Each mknet socket holds a real kernel fd (an eventfd nobody signals), so
// its number is unique in the process and fits FD_SETSIZE like any other.
class SocketTable {
 public:
  static constexpr size_t kChunkBits = 12, kChunkSize = size_t{1} << kChunkBits, kChunks = 1024;
  static constexpr size_t kMaxFds = kChunkSize * kChunks;  // 4 Mi, above Linux's default nr_open

  // A new reserved fd for `s`; -errno on failure.
  int add(SocketPtr s, bool cloexec) {
    int fd = ::eventfd(0, EFD_NONBLOCK | (cloexec ? EFD_CLOEXEC : 0));
    if (fd < 0) return -errno;
    if (static_cast<size_t>(fd) >= kMaxFds) {
      ::syscall(SYS_close, fd);  // the kernel's close: the shim interposes close()
      return -EMFILE;
    }
    auto open = std::make_shared<OpenSocket>(std::move(s), nextId_.fetch_add(1) + 1);
    std::lock_guard<std::mutex> g(mu_);
    put(fd, std::move(open));
    return fd;
  }

  // Makes `fd` (a kernel dup of a reserved fd) name `open` too. Returns the
  // socket `fd` named before if that was its last fd (the caller closes it).
  OpenPtr alias(int fd, OpenPtr open) {
    std::lock_guard<std::mutex> g(mu_);
    OpenPtr old = take(fd);
    put(fd, std::move(open));
    return old;
  }

  // Fast, lock-free: is `fd` an mknet socket? (The kernel-fd path of every
  // interposed call in the shim starts here.)
  bool contains(int fd) const {
    if (fd < 0 || static_cast<size_t>(fd) >= kMaxFds) return false;
    const std::atomic<uint8_t>* c = chunks_[static_cast<size_t>(fd) >> kChunkBits].load(std::memory_order_acquire);
    return c != nullptr && c[static_cast<size_t>(fd) & (kChunkSize - 1)].load(std::memory_order_acquire) != 0;
  }

  OpenPtr get(int fd) {
    if (!contains(fd)) return nullptr;
    OpenPtr o;
    {
      std::lock_guard<std::mutex> g(mu_);
      if (static_cast<size_t>(fd) < table_.size()) o = table_[static_cast<size_t>(fd)];
    }
    if (o) adoptAfterFork(*o);
    return o;
  }

  // In a forked child, the first use of a socket inherited from the parent:
  // a listener gets the child's own handle (both processes accept); other
  // sockets stay the parent's and fail here with EOPNOTSUPP (ClientSocket).
  // Outside the table's lock: it may open the child's session.
  void adoptAfterFork(OpenSocket& o) {
    SocketPtr cur;
    {
      std::lock_guard<std::mutex> g(mu_);
      cur = o.sock;
    }
    if (!cur->inherited()) return;
    int err = 0;
    SocketPtr mine = ClientSocket::forThisProcess(cur, &err);
    if (!mine) return;
    std::lock_guard<std::mutex> g(mu_);
    if (o.sock == cur) o.sock = std::move(mine);
  }

  // Removes `fd`; returns its socket if that was the socket's last fd.
  OpenPtr remove(int fd, bool* wasSocket) {
    std::lock_guard<std::mutex> g(mu_);
    *wasSocket = fd >= 0 && static_cast<size_t>(fd) < table_.size() && table_[static_cast<size_t>(fd)] != nullptr;
    return take(fd);
  }

  // Every socket still open (for the exit handler).
  std::vector<SocketPtr> all() {
    std::lock_guard<std::mutex> g(mu_);
    std::vector<SocketPtr> v;
    for (auto& o : table_)
      if (o && std::find(v.begin(), v.end(), o->sock) == v.end()) v.push_back(o->sock);
    return v;
  }

  size_t live() const { return live_.load(std::memory_order_relaxed); }

  // Calls fn(fd, open or nullptr) for each of `fds` under one lock.
  template <typename Fn>
  void withEach(const int* fds, size_t n, Fn fn) {
    std::vector<OpenPtr> open(n);
    bool inherited = false;
    {
      std::lock_guard<std::mutex> g(mu_);
      for (size_t i = 0; i < n; ++i) {
        int fd = fds[i];
        if (fd >= 0 && static_cast<size_t>(fd) < table_.size()) open[i] = table_[static_cast<size_t>(fd)];
        inherited = inherited || (open[i] && open[i]->sock->inherited());
      }
    }
    if (inherited) {
      for (auto& o : open)
        if (o) adoptAfterFork(*o);
    }
    std::lock_guard<std::mutex> g(mu_);
    for (size_t i = 0; i < n; ++i) fn(i, open[i].get());
  }

  std::vector<int> fds() {
    std::lock_guard<std::mutex> g(mu_);
    std::vector<int> v;
    for (size_t i = 0; i < table_.size(); ++i)
      if (table_[i]) v.push_back(static_cast<int>(i));
    return v;
  }

  // fork(): the child must not inherit the mutex locked by another thread.
  void lockForFork() { mu_.lock(); }
  void unlockAfterFork() { mu_.unlock(); }

 private:
  void setFlag(int fd, uint8_t v) {
    auto& slot = chunks_[static_cast<size_t>(fd) >> kChunkBits];
    std::atomic<uint8_t>* c = slot.load(std::memory_order_acquire);
    if (c == nullptr) {
      c = new std::atomic<uint8_t>[kChunkSize]();  // never freed: readers hold no lock
      slot.store(c, std::memory_order_release);     // writers hold mu_, so no race here
    }
    c[static_cast<size_t>(fd) & (kChunkSize - 1)].store(v, std::memory_order_release);
  }
  void put(int fd, OpenPtr open) {
    if (static_cast<size_t>(fd) >= table_.size()) table_.resize(static_cast<size_t>(fd) + 64);
    ++open->fds;
    table_[static_cast<size_t>(fd)] = std::move(open);
    setFlag(fd, 1);
    live_.fetch_add(1, std::memory_order_relaxed);
  }
  OpenPtr take(int fd) {
    if (fd < 0 || static_cast<size_t>(fd) >= table_.size() || !table_[static_cast<size_t>(fd)]) return nullptr;
    OpenPtr o = std::move(table_[static_cast<size_t>(fd)]);
    setFlag(fd, 0);
    live_.fetch_sub(1, std::memory_order_relaxed);
    return --o->fds == 0 ? o : nullptr;
  }

  std::mutex mu_;
  std::vector<OpenPtr> table_;
  std::atomic<std::atomic<uint8_t>*> chunks_[kChunks] = {};
  std::atomic<uint64_t> nextId_{0};
  std::atomic<size_t> live_{0};
};

// The process's table (leaked: used until the very end of the process).
SocketTable& table();

}  // namespace mknet::client
