#include "clients/preload/epoll_table.h"

#include <sched.h>

#include <sys/eventfd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>

#include "clients/lib/client_session.h"
#include "clients/lib/fd_table.h"
#include "mknet/mknet.h"

namespace mknet::preload {

namespace {

using Clock = std::chrono::steady_clock;

// The poll(2)-style bits an interest can ask for (EPOLLET, EPOLLONESHOT, ...
// live above them).
constexpr uint32_t kPollable = 0xffff;
constexpr uint32_t kInSide = EPOLLIN | EPOLLRDNORM | EPOLLRDBAND | EPOLLPRI | EPOLLRDHUP;
constexpr uint32_t kOutSide = EPOLLOUT | EPOLLWRNORM | EPOLLWRBAND;
// Sleep in slices: a missed wake-up (another thread drained the doorbell
// first) costs at most one slice.
constexpr auto kSlice = std::chrono::milliseconds(100);

int fail(int e) {
  errno = e;
  return -1;
}

timespec toTimespec(std::chrono::nanoseconds d) {
  if (d.count() < 0) d = std::chrono::nanoseconds(0);
  return timespec{static_cast<time_t>(d.count() / 1000000000), static_cast<long>(d.count() % 1000000000)};
}

}  // namespace

EpollTable::Set::~Set() {
  if (kickFd >= 0) real().close(kickFd);
}

EpollTable::SetPtr EpollTable::find(int epfd) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = sets_.find(epfd);
  return it == sets_.end() ? nullptr : it->second;
}

void EpollTable::forget(int epfd) {
  std::lock_guard<std::mutex> g(mu_);
  sets_.erase(epfd);
}

void EpollTable::alias(int from, int to) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = sets_.find(from);
  if (it == sets_.end()) {
    sets_.erase(to);
    return;
  }
  SetPtr s = it->second;
  sets_[to] = std::move(s);
}

void EpollTable::lockForFork() {
  mu_.lock();
  forkLocked_.clear();
  for (auto& [fd, set] : sets_) {
    // A dup'd epoll fd shares its set: lock each set once.
    if (std::find(forkLocked_.begin(), forkLocked_.end(), set) != forkLocked_.end()) continue;
    set->mu.lock();
    forkLocked_.push_back(set);
  }
}

void EpollTable::unlockAfterFork() {
  for (auto& set : forkLocked_) set->mu.unlock();
  forkLocked_.clear();
  mu_.unlock();
}

bool EpollTable::emulated(int fd) {
  std::lock_guard<std::mutex> g(mu_);
  return sets_.count(fd) != 0;
}

int EpollTable::ctl(int epfd, int op, int fd, const epoll_event* event) {
  if (epfd == fd) return fail(EINVAL);
  // Is epfd an epoll fd at all? The kernel says so: removing an fd it never
  // held (our reserved fd is never in a kernel set) gives ENOENT on an epoll
  // fd, EINVAL on any other fd, EBADF on a closed one.
  if (real_.epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nullptr) != 0 && errno != ENOENT) return -1;
  if (op != EPOLL_CTL_ADD && op != EPOLL_CTL_MOD && op != EPOLL_CTL_DEL) return fail(EINVAL);
  if (op != EPOLL_CTL_DEL && event == nullptr) return fail(EFAULT);
  mknet_watch w{fd, 0, 0, 0, -1};
  (void)mknet_readiness_batch(&w, 1);
  if ((w.revents & POLLNVAL) != 0) return fail(EBADF);

  SetPtr set;
  {
    std::lock_guard<std::mutex> g(mu_);
    SetPtr& slot = sets_[epfd];
    if (!slot) slot = std::make_shared<Set>();
    set = slot;
  }
  std::lock_guard<std::mutex> g(set->mu);
  if (set->sleepers > 0 && set->kickFd >= 0) {
    uint64_t one = 1;
    (void)real_.write(set->kickFd, &one, sizeof one);
  }
  auto it = set->items.begin();
  for (; it != set->items.end(); ++it)
    if (it->fd == fd) break;
  if (it != set->items.end() && it->id != w.id) {
    // The fd was closed and its number now names another socket.
    set->items.erase(it);
    it = set->items.end();
  }
  switch (op) {
    case EPOLL_CTL_ADD: {
      if (it != set->items.end()) return fail(EEXIST);
      Interest in{};
      in.fd = fd;
      in.id = w.id;
      in.events = event->events;
      in.data = event->data;
      in.wakeFd = w.wake_fd;
      set->items.push_back(in);
      return 0;
    }
    case EPOLL_CTL_MOD:
      if (it == set->items.end()) return fail(ENOENT);
      if ((event->events & EPOLLEXCLUSIVE) != 0) return fail(EINVAL);
      it->events = event->events;
      it->data = event->data;
      it->disarmed = false;
      it->lastBits = 0;  // report the current level afresh, as Linux does on MOD
      return 0;
    default:  // EPOLL_CTL_DEL
      if (it == set->items.end()) return fail(ENOENT);
      set->items.erase(it);
      return 0;
  }
}

int EpollTable::scan(Set& set, epoll_event* events, int max) {
  const size_t n = set.items.size();
  if (n == 0 || max <= 0) return 0;
  thread_local std::vector<mknet_watch> watches;
  watches.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const Interest& in = set.items[i];
    watches[i] = mknet_watch{in.fd, static_cast<short>(in.events & kPollable), 0, in.id, -1};
  }
  (void)mknet_readiness_batch(watches.data(), n);
  int out = 0;
  bool stale = false;
  const size_t start = set.rotor % n;
  for (size_t j = 0; j < n; ++j) {
    const size_t i = (start + j) % n;
    Interest& in = set.items[i];
    const mknet_watch& w = watches[i];
    if ((w.revents & POLLNVAL) != 0) {  // closed, or the number names another socket now
      in.fd = -1;
      stale = true;
      continue;
    }
    in.wakeFd = w.wake_fd;
    if (in.disarmed || out >= max) continue;
    const uint32_t bits = static_cast<uint16_t>(w.revents) & ((in.events & kPollable) | EPOLLERR | EPOLLHUP);
    if ((in.events & EPOLLET) != 0) {
      const uint32_t reads = activity_.reads(in.fd), blocked = activity_.writesBlocked(in.fd);
      const uint32_t refresh = (reads != in.lastReads ? kInSide : 0) | (blocked != in.lastWritesBlocked ? kOutSide : 0);
      const uint32_t fresh = bits & (~in.lastBits | refresh);
      in.lastBits &= bits;  // bits that fell can rise again
      in.lastReads = reads;
      in.lastWritesBlocked = blocked;
      if (fresh == 0) continue;
      in.lastBits = bits;
    } else if (bits == 0) {
      continue;
    }
    if ((in.events & EPOLLONESHOT) != 0) in.disarmed = true;
    events[out].events = bits;
    events[out].data = in.data;
    ++out;
  }
  set.rotor = start + 1;
  if (stale) {
    std::erase_if(set.items, [](const Interest& in) { return in.fd < 0; });
  }
  return out;
}

void EpollTable::wakeFds(Set& set, std::vector<std::pair<int, int>>* out) {
  out->clear();
  for (const Interest& in : set.items) {
    if (in.wakeFd < 0) continue;
    bool seen = false;
    for (auto& p : *out) seen = seen || p.first == in.wakeFd;
    if (!seen) out->emplace_back(in.wakeFd, in.fd);
  }
}

int EpollTable::wait(int epfd, epoll_event* events, int maxEvents, const timespec* timeout,
                     const sigset_t* sigmask, bool pwait2) {
  SetPtr set = find(epfd);
  bool empty = true;
  if (set) {
    std::lock_guard<std::mutex> g(set->mu);
    empty = set->items.empty();
  }
  if (empty) {
    // No mknet socket in this set: the kernel call the program made.
    if (pwait2 && real_.epoll_pwait2 != nullptr) return real_.epoll_pwait2(epfd, events, maxEvents, timeout, sigmask);
    int ms = -1;
    if (timeout != nullptr) {
      long long t = static_cast<long long>(timeout->tv_sec) * 1000 + (timeout->tv_nsec + 999999) / 1000000;
      ms = t > INT_MAX ? INT_MAX : static_cast<int>(t);
    }
    return real_.epoll_pwait(epfd, events, maxEvents, ms, sigmask);
  }
  if (maxEvents <= 0) return fail(EINVAL);
  if (events == nullptr) return fail(EFAULT);
  if (timeout != nullptr && (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= 1000000000))
    return fail(EINVAL);
  const bool forever = timeout == nullptr;
  const bool once = !forever && timeout->tv_sec == 0 && timeout->tv_nsec == 0;
  const auto deadline = forever ? Clock::time_point::max()
                                : Clock::now() + std::chrono::seconds(timeout->tv_sec) +
                                      std::chrono::nanoseconds(timeout->tv_nsec);
  std::vector<std::pair<int, int>> wakes;  // wake fd, a socket fd of its session
  std::vector<pollfd> pfds;
  bool sleeping = false;  // counted in set->sleepers
  int kickFd = -1;
  auto wokeUp = [&] {
    if (!sleeping) return;
    std::lock_guard<std::mutex> g(set->mu);
    --set->sleepers;
    sleeping = false;
  };
  // Ready mknet sockets first (rotating), then what the kernel set has.
  auto collect = [&](bool announce) {
    int n;
    {
      std::lock_guard<std::mutex> g(set->mu);
      n = scan(*set, events, maxEvents);
      if (n == 0 && announce) {
        if (set->kickFd < 0) set->kickFd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        ++set->sleepers;
        sleeping = true;
        kickFd = set->kickFd;
        wakeFds(*set, &wakes);
        for (auto& w : wakes) (void)mknet_prepare_sleep(w.second);
        n = scan(*set, events, maxEvents);  // re-check after announcing: no wake-up is lost
      }
    }
    if (n < maxEvents) {
      int k = real_.epoll_wait(epfd, events + n, maxEvents - n, 0);
      if (k < 0) return n > 0 ? n : -1;
      n += k;
    }
    return n;
  };
  // From here on a signal must not fall between two scans (SignalHold).
  std::optional<mknet::client::SignalHold> held;
  if (!once) held.emplace(sigmask);
  // Spin a little before sleeping, as libmknet's blocking calls do
  // (mknet::client::Spin: while the stack runs, up to spinTime()): the stack
  // usually answers within that, a sleep costs a cross-CPU wake-up. The
  // kernel set is looked at every 8th round (a syscall).
  if (!once) {
    // The first mknet socket of the set names the session whose heartbeat
    // the spin watches; holding it keeps that session mapped meanwhile.
    mknet::client::OpenPtr watched;
    {
      std::lock_guard<std::mutex> g(set->mu);
      for (const Interest& in : set->items)
        if ((watched = mknet::client::table().get(in.fd))) break;
    }
    mknet::client::Spin spin(watched ? watched->sock->session().stackBeat() : nullptr, deadline);
    for (uint32_t i = 1;; ++i) {
      int n;
      {
        std::lock_guard<std::mutex> g(set->mu);
        n = scan(*set, events, maxEvents);
      }
      // The kernel set every few rounds while nothing is ready, and always
      // before returning events (room permitting): a kernel fd must not
      // starve behind mknet sockets that are always ready.
      if (n < maxEvents && (n > 0 || (i & 7) == 0)) {
        int k = real_.epoll_wait(epfd, events + n, maxEvents - n, 0);
        if (k < 0) return n > 0 ? n : -1;
        n += k;
      }
      if (n != 0) return n;  // events, or -1 with errno from the kernel
      if (!spin.again()) break;
    }
  }
  for (;;) {
    int n = collect(!once);
    if (n != 0 || once) {
      wokeUp();
      return n;
    }
    auto now = Clock::now();
    if (now >= deadline) {
      wokeUp();
      return 0;
    }
    auto slice = forever ? std::chrono::nanoseconds(kSlice)
                         : std::min<std::chrono::nanoseconds>(kSlice, deadline - now);
    pfds.clear();
    pfds.push_back(pollfd{epfd, POLLIN, 0});
    if (kickFd >= 0) pfds.push_back(pollfd{kickFd, POLLIN, 0});
    for (auto& w : wakes) pfds.push_back(pollfd{w.first, POLLIN, 0});
    timespec ts = toTimespec(slice);
    int r = real_.ppoll(pfds.data(), pfds.size(), &ts, held ? held->sleepMask() : sigmask);
    wokeUp();
    if (r < 0) return -1;  // EINTR: epoll_wait is never restarted, as on Linux
    size_t first = 1;
    if (kickFd >= 0) {
      if ((pfds[1].revents & POLLIN) != 0) {
        uint64_t v;
        (void)real_.read(kickFd, &v, sizeof v);
      }
      first = 2;
    }
    for (size_t i = first; i < pfds.size(); ++i)
      if ((pfds[i].revents & POLLIN) != 0) (void)mknet_after_wake(wakes[i - first].second);
    if (!forever && Clock::now() >= deadline) return collect(false);
  }
}

}  // namespace mknet::preload
