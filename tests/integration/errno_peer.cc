// mknet-itest-peer: the Linux-side peer of the errno table test. Runs on the
// kernel's sockets (inside the test's namespace) and listens on three ports
// with distinct behaviours:
//   --hold P  accepts and keeps the connection open, reading and discarding
//             whatever arrives, until the client closes;
//   --rst P   accepts, waits 100 ms, then closes with SO_LINGER {1, 0}: RST;
//   --fin P   accepts, waits 100 ms, then closes normally: FIN.
// The 100 ms let the client's connect() return before the close arrives, on
// both stacks. Prints "ready" once listening; runs until killed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

enum class Kind { kHold, kRst, kFin };

int listenOn(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 128) != 0) {
    std::fprintf(stderr, "mknet-itest-peer: port %u: %s\n", port, std::strerror(errno));
    std::exit(1);
  }
  return fd;
}

struct Pending {
  int fd;
  Kind kind;
  Clock::time_point due;
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::pair<int, Kind>> listeners;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    auto port = static_cast<uint16_t>(std::atoi(argv[i + 1]));
    Kind k = flag == "--hold" ? Kind::kHold : flag == "--rst" ? Kind::kRst : Kind::kFin;
    if (flag != "--hold" && flag != "--rst" && flag != "--fin") {
      std::fprintf(stderr, "usage: mknet-itest-peer --hold P --rst P --fin P\n");
      return 2;
    }
    listeners.emplace_back(listenOn(port), k);
  }
  std::printf("ready\n");
  std::fflush(stdout);

  std::vector<int> held;
  std::vector<Pending> pending;
  for (;;) {
    std::vector<pollfd> fds;
    for (auto& [fd, kind] : listeners) fds.push_back({fd, POLLIN, 0});
    for (int fd : held) fds.push_back({fd, POLLIN, 0});
    int timeout = -1;
    auto now = Clock::now();
    for (auto& p : pending) {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(p.due - now).count();
      int t = ms < 0 ? 0 : static_cast<int>(ms) + 1;
      if (timeout < 0 || t < timeout) timeout = t;
    }
    ::poll(fds.data(), fds.size(), timeout);

    std::vector<int> polled = std::move(held);  // fds[listeners.size() + i] is polled[i]
    held.clear();
    for (size_t i = 0; i < listeners.size(); ++i) {
      if ((fds[i].revents & POLLIN) == 0) continue;
      int c = ::accept4(listeners[i].first, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      if (listeners[i].second == Kind::kHold)
        held.push_back(c);
      else
        pending.push_back({c, listeners[i].second, Clock::now() + std::chrono::milliseconds(100)});
    }
    for (size_t i = 0; i < polled.size(); ++i) {
      const pollfd& p = fds[listeners.size() + i];
      if (p.revents != 0) {
        char buf[4096];
        ssize_t n = ::recv(polled[i], buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
          ::close(polled[i]);
          continue;
        }
      }
      held.push_back(polled[i]);
    }
    now = Clock::now();
    std::vector<Pending> later;
    for (auto& p : pending) {
      if (p.due > now) {
        later.push_back(p);
        continue;
      }
      if (p.kind == Kind::kRst) {
        linger l{1, 0};
        ::setsockopt(p.fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      }
      ::close(p.fd);
    }
    pending = std::move(later);
  }
}
