// Only this file talks netlink: <linux/tcp.h> (struct tcp_info with the byte
// counters) must not meet <netinet/tcp.h>.
#include "tests/fault/fault_util.h"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include <capnp/message.h>
#include <kj/async-io.h>

#include "ipc/rpc_client.h"
#include "ipc/schema/admin.capnp.h"

namespace mknet::ftest {

namespace {
// TCP states as sock_diag reports them (<netinet/tcp.h>'s enum, which this
// file cannot include next to <linux/tcp.h>).
constexpr uint8_t kTcpEstablished = 1;
constexpr uint8_t kTcpListen = 10;
}  // namespace

double msBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// ------------------------------------------------------------------ StackWatch

StackWatch::StackWatch(std::string socketPath, std::chrono::microseconds period)
    : path_(std::move(socketPath)), period_(period) {
  thread_ = std::thread([this] { run(); });
}

StackWatch::~StackWatch() {
  stop_ = true;
  thread_.join();
}

void StackWatch::run() {
  // One kj event loop, on this thread only.
  auto io = kj::setupAsyncIo();
  kj::Own<ipc::RpcClient> client;
  kj::Maybe<schema::Admin::Client> admin;
  while (!stop_) {
    if (client.get() == nullptr) {
      auto c = ipc::RpcClient::connect(io, path_);
      if (!c) {
        std::this_thread::sleep_for(2ms);
        continue;
      }
      client = std::move(c).value();
      admin = client->bootstrap<schema::Stack>().adminRequest().send().getAdmin();
    }
    Status m;
    bool ok = false;
    KJ_IF_MAYBE(a, admin) {
      auto result = kj::runCatchingExceptions([&] {
        auto resp = io.provider->getTimer()
                        .timeoutAfter(2 * kj::SECONDS, a->statusRequest().send())
                        .wait(io.waitScope);
        auto st = resp.getStatus();
        auto d = st.getDrivers();
        m["pid"] = st.getPid();
        m["sessions"] = st.getSessions();
        m["sockets"] = st.getSockets();
        m["pool_buffers"] = st.getPoolBuffers();
        m["pool_free"] = st.getPoolFree();
        m["driver_pid"] = d.size() > 0 ? d[0].getPid() : 0;
        m["link_up"] = d.size() > 0 && d[0].getLinkUp() ? 1 : 0;
        m["registrations"] = d.size() > 0 ? d[0].getRegistrations() : 0;
        for (auto c : st.getCounters()) m[c.getName().cStr()] = c.getValue();
      });
      ok = result == nullptr;
    }
    const auto now = Clock::now();
    if (!ok) {
      // The stack went away (or is stuck): connect again on the next round.
      admin = nullptr;
      client = nullptr;
      std::this_thread::sleep_for(2ms);
      continue;
    }
    {
      std::lock_guard<std::mutex> g(mu_);
      last_ = std::move(m);
      ++polls_;
      registrations_.emplace(last_["registrations"], now);
    }
    cv_.notify_all();
    std::this_thread::sleep_for(period_);
  }
}

std::optional<Status> StackWatch::fresh(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> g(mu_);
  // Two polls later: the second one started after this call.
  const uint64_t want = polls_ + 2;
  if (!cv_.wait_for(g, timeout, [&] { return polls_ >= want; })) return std::nullopt;
  return last_;
}

std::optional<Clock::time_point> StackWatch::waitFor(const std::function<bool(const Status&)>& pred,
                                                     std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> g(mu_);
  const uint64_t after = polls_ + 1;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (polls_ > after && pred(last_)) return Clock::now();
    if (cv_.wait_until(g, deadline) == std::cv_status::timeout && !(polls_ > after && pred(last_)))
      return std::nullopt;
  }
}

std::optional<Clock::time_point> StackWatch::registeredAt(uint64_t n, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> g(mu_);
  auto found = [&]() -> std::optional<Clock::time_point> {
    auto it = registrations_.lower_bound(n);
    if (it == registrations_.end()) return std::nullopt;
    return it->second;
  };
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (auto t = found()) return t;
    if (cv_.wait_until(g, deadline) == std::cv_status::timeout) return found();
  }
}

// ------------------------------------------------------------------ TcpDiag

TcpDiag::TcpDiag(const Testbed& tb) {
  fd_ = tb.socketInNs(AF_NETLINK, SOCK_DGRAM, NETLINK_SOCK_DIAG);
  if (fd_ >= 0) {
    timeval tv{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
}

TcpDiag::~TcpDiag() {
  if (fd_ >= 0) ::close(fd_);
}

std::optional<std::vector<TcpConn>> TcpDiag::dump() {
  struct {
    nlmsghdr nh;
    inet_diag_req_v2 req;
  } msg{};
  msg.nh.nlmsg_len = sizeof msg;
  msg.nh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.nh.nlmsg_seq = ++seq_;
  msg.req.sdiag_family = AF_INET;
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = ~0u;
  msg.req.idiag_ext = 1u << (INET_DIAG_INFO - 1);
  sockaddr_nl nl{};
  nl.nl_family = AF_NETLINK;
  if (::sendto(fd_, &msg, sizeof msg, 0, reinterpret_cast<sockaddr*>(&nl), sizeof nl) < 0) return std::nullopt;

  std::vector<TcpConn> out;
  alignas(nlmsghdr) static thread_local char buf[64 * 1024];
  for (;;) {
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_seq != seq_) continue;
      if (h->nlmsg_type == NLMSG_DONE) return out;
      if (h->nlmsg_type == NLMSG_ERROR) return std::nullopt;
      if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
      auto* d = static_cast<inet_diag_msg*>(NLMSG_DATA(h));
      TcpConn c;
      c.localPort = ntohs(d->id.idiag_sport);
      c.remotePort = ntohs(d->id.idiag_dport);
      c.state = d->idiag_state;
      int alen = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof *d));
      for (auto* a = reinterpret_cast<rtattr*>(d + 1); RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
        if (a->rta_type != INET_DIAG_INFO) continue;
        tcp_info ti{};
        std::memcpy(&ti, RTA_DATA(a), std::min<size_t>(RTA_PAYLOAD(a), sizeof ti));
        c.bytesAcked = ti.tcpi_bytes_acked;
        c.bytesReceived = ti.tcpi_bytes_received;
      }
      out.push_back(c);
    }
  }
}

// ------------------------------------------------------------------ ProgressWatch

ProgressWatch::ProgressWatch(const Testbed& tb, uint16_t port, std::chrono::microseconds period)
    : port_(port), period_(period), diag_(tb) {
  if (diag_.ok()) thread_ = std::thread([this] { run(); });
}

ProgressWatch::~ProgressWatch() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void ProgressWatch::run() {
  while (!stop_) {
    auto conns = diag_.dump();
    const auto now = Clock::now();
    if (conns) {
      std::lock_guard<std::mutex> g(mu_);
      size_t est = 0;
      for (const auto& c : *conns) {
        if (c.localPort != port_ && c.remotePort != port_) continue;
        if (c.state == kTcpListen) continue;
        if (c.state == kTcpEstablished) ++est;
        const std::string key = std::to_string(c.localPort) + ":" + std::to_string(c.remotePort);
        uint64_t& seen = perConn_[key];
        const uint64_t v = c.bytesAcked + c.bytesReceived;
        if (v > seen) {
          total_ += v - seen;
          seen = v;
        }
      }
      established_ = est;
      if (changes_.empty() || changes_.back().second != total_) changes_.emplace_back(now, total_);
    }
    std::this_thread::sleep_for(period_);
  }
}

uint64_t ProgressWatch::bytes() const {
  std::lock_guard<std::mutex> g(mu_);
  return total_;
}

size_t ProgressWatch::established() const {
  std::lock_guard<std::mutex> g(mu_);
  return established_;
}

bool ProgressWatch::waitEstablished(size_t n, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (established() >= n) return true;
    std::this_thread::sleep_for(2ms);
  }
  return established() >= n;
}

std::optional<Clock::time_point> ProgressWatch::progressAfter(Clock::time_point t) const {
  std::lock_guard<std::mutex> g(mu_);
  auto it = std::upper_bound(changes_.begin(), changes_.end(), t,
                             [](Clock::time_point x, const auto& c) { return x < c.first; });
  if (it == changes_.end()) return std::nullopt;
  return it->first;
}

Clock::time_point ProgressWatch::lastProgress() const {
  std::lock_guard<std::mutex> g(mu_);
  return changes_.empty() ? Clock::time_point{} : changes_.back().first;
}

double ProgressWatch::longestGapMs(Clock::time_point from, Clock::time_point to) const {
  std::lock_guard<std::mutex> g(mu_);
  double gap = 0;
  Clock::time_point prev = from;
  for (const auto& [t, v] : changes_) {
    if (t <= from) continue;
    if (t > to) break;
    gap = std::max(gap, msBetween(prev, t));
    prev = t;
  }
  return std::max(gap, msBetween(prev, to));
}

// ------------------------------------------------------------------ driver kills

itest::Process spawnDriver(const Testbed& tb) {
  return itest::Process(
      tb.inNs({itest::Bin::tapdrv(), "--tap", tb.tap(), "--stack-socket", tb.stackSocket(), "--mac", tb.mac()}),
      tb.file("tapdrv.log"));
}

DriverKiller::DriverKiller(Testbed& tb, StackWatch& watch, uint32_t seed, int minMs, int maxMs)
    : tb_(tb), watch_(watch), rng_(seed), interval_(minMs, maxMs) {}

std::chrono::milliseconds DriverKiller::nextInterval() { return std::chrono::milliseconds(interval_(rng_)); }

bool DriverKiller::killAndRestart(KillRecord* out, std::string* err) {
  if (registrations_ == 0) {
    auto st = watch_.fresh();
    if (!st) {
      *err = "the stack does not answer";
      return false;
    }
    registrations_ = (*st)["registrations"];
  }
  const pid_t old = tb_.driver().pid();
  out->killedAt = Clock::now();
  tb_.driver().kill();  // SIGKILL by PID, reaped: its TAP fd is closed now
  tb_.driver() = spawnDriver(tb_);
  ++kills_;
  if (tb_.driver().pid() == 0) {
    *err = "cannot start mknet-tapdrv";
    return false;
  }
  auto at = watch_.registeredAt(registrations_ + 1, 10s);
  if (!at) {
    *err = "the driver started after killing pid " + std::to_string(old) + " did not register within 10 s:\n" +
           tb_.logTails(15);
    return false;
  }
  ++registrations_;
  out->restartMs = msBetween(out->killedAt, *at);
  return true;
}

std::vector<KillRecord> killWhileRunning(DriverKiller& killer, itest::Process& app, ProgressWatch* progress,
                                         uint64_t maxKills, std::chrono::milliseconds limit, std::string* err,
                                         const std::function<bool()>& keepGoing) {
  std::vector<KillRecord> kills;
  const auto deadline = Clock::now() + limit;
  while (kills.size() < maxKills && Clock::now() < deadline && (!keepGoing || keepGoing())) {
    const auto next = Clock::now() + killer.nextInterval();
    bool running = true;
    while (Clock::now() < next && (running = app.running())) std::this_thread::sleep_for(2ms);
    if (!running || !app.running()) break;
    KillRecord k;
    if (!killer.killAndRestart(&k, err)) {
      kills.push_back(k);
      break;
    }
    kills.push_back(k);
  }
  // Stall of each kill: the longest time without progress from the kill
  // to the next kill (the last one: up to 1 s, or the end of the data).
  if (progress != nullptr) {
    if (!kills.empty()) {
      const auto until = Clock::now() + 10s;
      while (app.running() && Clock::now() < until && Clock::now() < kills.back().killedAt + 1s)
        std::this_thread::sleep_for(5ms);
    }
    const auto lastData = progress->lastProgress();
    for (size_t i = 0; i < kills.size(); ++i) {
      auto& k = kills[i];
      auto to = i + 1 < kills.size() ? kills[i + 1].killedAt : std::min(k.killedAt + 1s, lastData);
      if (to <= k.killedAt || !progress->progressAfter(k.killedAt)) continue;  // no data after it
      k.stallMs = progress->longestGapMs(k.killedAt, to);
    }
  }
  return kills;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  if (rank == 0) rank = 1;
  return v[std::min(rank, v.size()) - 1];
}

std::string joinMs(const std::vector<double>& v) {
  std::string s;
  char b[32];
  for (double x : v) {
    std::snprintf(b, sizeof b, "%s%.1f", s.empty() ? "" : ",", x);
    s += b;
  }
  return s;
}

// ------------------------------------------------------------------ HoldServer

HoldServer::HoldServer(const Testbed& tb, uint16_t port, bool read) : read_(read) {
  int fd = tb.socketInNs(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    error_ = std::string("socket in the namespace: ") + std::strerror(errno);
    return;
  }
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 1024) != 0) {
    error_ = std::string("bind/listen: ") + std::strerror(errno);
    ::close(fd);
    return;
  }
  listenFd_ = fd;
  wakeFd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  thread_ = std::thread([this] { run(); });
}

HoldServer::~HoldServer() {
  stop_ = true;
  if (wakeFd_ >= 0) {
    uint64_t one = 1;
    (void)!::write(wakeFd_, &one, sizeof one);
  }
  if (thread_.joinable()) thread_.join();
  for (int c : conns_) ::close(c);
  if (listenFd_ >= 0) ::close(listenFd_);
  if (wakeFd_ >= 0) ::close(wakeFd_);
}

void HoldServer::run() {
  std::vector<pollfd> pfds;
  std::vector<char> buf(64 * 1024);
  while (!stop_) {
    pfds.clear();
    pfds.push_back({wakeFd_, POLLIN, 0});
    pfds.push_back({listenFd_, POLLIN, 0});
    if (read_) {
      std::lock_guard<std::mutex> g(mu_);
      for (int c : conns_) pfds.push_back({c, POLLIN, 0});
    }
    if (::poll(pfds.data(), pfds.size(), 200) <= 0) continue;
    if (pfds[1].revents & POLLIN) {
      int c = ::accept4(listenFd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (c >= 0) {
        std::lock_guard<std::mutex> g(mu_);
        conns_.push_back(c);
        ++counts_.accepted;
        ++counts_.open;
      }
    }
    for (size_t i = 2; i < pfds.size(); ++i) {
      if (pfds[i].revents == 0) continue;
      const int c = pfds[i].fd;
      ssize_t n;
      do {
        n = ::recv(c, buf.data(), buf.size(), 0);
      } while (n > 0);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      const int err = errno;
      std::lock_guard<std::mutex> g(mu_);
      if (n == 0) ++counts_.eofs;
      else if (err == ECONNRESET) ++counts_.resets;
      else ++counts_.otherErrors;
      --counts_.open;
      conns_.erase(std::find(conns_.begin(), conns_.end(), c));
      ::close(c);
    }
  }
}

HoldServer::Counts HoldServer::counts() const {
  std::lock_guard<std::mutex> g(mu_);
  return counts_;
}

bool HoldServer::waitFor(const std::function<bool(const Counts&)>& pred, std::chrono::milliseconds timeout) const {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (pred(counts())) return true;
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
}

std::string HoldServer::describe() const {
  Counts c = counts();
  return "accepted=" + std::to_string(c.accepted) + " open=" + std::to_string(c.open) +
         " resets=" + std::to_string(c.resets) + " eofs=" + std::to_string(c.eofs) +
         " other_errors=" + std::to_string(c.otherErrors);
}

}  // namespace mknet::ftest
