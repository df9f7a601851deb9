// EpollTable: epoll for mknet sockets, in the LD_PRELOAD shim.
//
// An mknet socket's fd is a reserved eventfd that is never readable, so the
// kernel's epoll cannot watch it. Each epoll fd the program creates stays a
// real kernel epoll instance holding the program's kernel fds (pipes,
// eventfds, Unix sockets); this table keeps, per epoll fd, the interest list
// of the mknet sockets added to it. epoll_wait scans those (shared memory, no
// syscall), takes what the kernel instance has ready (timeout 0), and when
// neither has anything sleeps in ppoll on the epoll fd itself plus the
// sessions' wake fds (the stack rings those once a sleep is announced), then
// goes round again. The program's kernel epoll instance never sees an fd of
// ours, so it stays exactly what the program made it.
//
// Semantics: level- and edge-triggered (EPOLLET, see FdActivity), EPOLLONESHOT
// (disarmed after one report until EPOLL_CTL_MOD), EPOLLRDHUP, EPOLLERR and
// EPOLLHUP always. EPOLLEXCLUSIVE and EPOLLWAKEUP are accepted and ignored.
// An mknet socket leaves the interest lists when its fd is closed (or names
// another socket): Linux keeps it while a dup of the fd is open.
// After fork() the child has its own copy of the interest lists (Linux
// shares the epoll instance between parent and child).
#pragma once

#include <sys/epoll.h>

#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "clients/preload/fd_activity.h"
#include "clients/preload/real_libc.h"

namespace mknet::preload {

class EpollTable {
 public:
  EpollTable(const RealLibc& real, const FdActivity& activity) : real_(real), activity_(activity) {}

  // epoll_ctl for an mknet socket `fd`; 0 or -1 with errno as Linux's.
  int ctl(int epfd, int op, int fd, const epoll_event* event);

  // epoll_wait / epoll_pwait / epoll_pwait2. `timeout` null: forever.
  // `pwait2` says which kernel call the fast path (no mknet socket in the
  // set) uses, so a program sees the same call it made.
  int wait(int epfd, epoll_event* events, int maxEvents, const timespec* timeout, const sigset_t* sigmask,
           bool pwait2);

  // epfd was closed, or replaced by dup2: forget its interest list.
  void forget(int epfd);
  // `to` is a dup of epoll fd `from`: both name one interest list.
  void alias(int from, int to);
  // True if `fd` is an epoll fd with mknet sockets in its interest list.
  bool emulated(int fd);

  // fork(): no lock of this table may be held by another thread in the
  // child. The shim's fork() takes them all before libc's fork (so before
  // libmknet's pthread_atfork handlers take the socket table's lock: the
  // order epoll_wait takes them in) and releases them in parent and child.
  void lockForFork();
  void unlockAfterFork();

 private:
  struct Interest {
    int fd;
    unsigned long long id;  // mknet_socket_id: the fd number may be reused
    uint32_t events;
    epoll_data_t data;
    bool disarmed = false;  // EPOLLONESHOT after its report
    uint32_t lastBits = 0;  // EPOLLET: the level last reported (bits since cleared when they fell)
    uint32_t lastReads = 0, lastWritesBlocked = 0;
    int wakeFd = -1;  // the socket's session's wake fd, from the last scan
  };
  struct Set {
    ~Set();
    std::mutex mu;
    std::vector<Interest> items;
    size_t rotor = 0;  // where the next scan starts, so no socket starves
    // Rung by epoll_ctl so a thread already asleep in epoll_wait on this set
    // scans the changed interest list at once (Linux wakes it too). An
    // eventfd made on first use; after fork parent and child share it, which
    // costs at most a spurious scan.
    int kickFd = -1;
    int sleepers = 0;
  };
  using SetPtr = std::shared_ptr<Set>;

  SetPtr find(int epfd);
  // Fills events with ready mknet sockets (at most max); drops closed ones.
  int scan(Set& set, epoll_event* events, int max);
  // The distinct wake fds of the set, each with one socket fd of its session.
  void wakeFds(Set& set, std::vector<std::pair<int, int>>* out);

  const RealLibc& real_;
  const FdActivity& activity_;
  std::mutex mu_;
  std::unordered_map<int, SetPtr> sets_;
  std::vector<SetPtr> forkLocked_;  // between lockForFork and unlockAfterFork
};

}  // namespace mknet::preload
