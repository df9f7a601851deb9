// RequestServer: the TCP server side of the request/response benchmarks
// (mknet-rtt, mknet-connrate), and the small C-API helpers they share.
//
// Header-only on purpose: it calls the mknet_* C API, so it is compiled into
// each build of each app (NAME on libmknet, NAME-kernel on Linux sockets,
// NAME-sp with the stack in-process) rather than into the backend-neutral
// support library.
//
// The server is one thread running an mknet_poll loop over non-blocking
// sockets. It echoes what each connection sends. With closeAfter = B > 0 it
// closes a connection once it has echoed B bytes (one request, one response,
// then the server closes first: the TIME_WAIT state lands on the server, so a
// client looping connect/request/close never runs out of ephemeral ports).
// It reads from a connection only while nothing is left to write to it, so a
// client that stops reading stops being read and memory stays bounded.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "flags.h"
#include "mknet/mknet.h"

namespace mknet::examples {

// "IP:PORT" -> sockaddr_in; false on anything else (port 0 included).
inline bool parseEndpoint(std::string_view s, sockaddr_in* a) {
  const auto colon = s.rfind(':');
  if (colon == std::string_view::npos) return false;
  const std::string ip(s.substr(0, colon));
  const auto port = parsePort(s.substr(colon + 1));
  *a = sockaddr_in{};
  a->sin_family = AF_INET;
  if (!port || *port == 0 || inet_pton(AF_INET, ip.c_str(), &a->sin_addr) != 1) return false;
  a->sin_port = htons(*port);
  return true;
}

// Blocking helpers: false on error or end of stream (errno tells which: 0 = EOF).
inline bool readFull(int fd, char* p, size_t n) {
  while (n > 0) {
    const ssize_t r = mknet_recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      if (r == 0) errno = 0;
      return false;
    }
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

inline bool writeFull(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t r = mknet_send(fd, p, n, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

inline void setNoDelay(int fd) {
  int one = 1;
  mknet_setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

inline bool setNonBlocking(int fd) {
  const int fl = mknet_fcntl(fd, F_GETFL);
  return fl >= 0 && mknet_fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

inline bool wouldBlockErrno() { return errno == EAGAIN || errno == EWOULDBLOCK; }

// A listening TCP socket on bind:port (bind may be empty: any address), with
// SO_REUSEADDR, and "listen=IP:PORT" printed on stdout. -1 after printing
// the reason on stderr.
inline int listenTcp(const char* app, std::string_view bind, uint16_t port, int backlog) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (!bind.empty() && inet_pton(AF_INET, std::string(bind).c_str(), &a.sin_addr) != 1) {
    std::fprintf(stderr, "%s: bad --bind '%.*s'\n", app, static_cast<int>(bind.size()), bind.data());
    return -1;
  }
  const int l = mknet_socket(AF_INET, SOCK_STREAM, 0);
  if (l < 0) {
    std::fprintf(stderr, "%s: socket: %s\n", app, std::strerror(errno));
    return -1;
  }
  int one = 1;
  mknet_setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (mknet_bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || mknet_listen(l, backlog) < 0) {
    std::fprintf(stderr, "%s: listen on port %u: %s\n", app, port, std::strerror(errno));
    mknet_close(l);
    return -1;
  }
  socklen_t len = sizeof a;
  mknet_getsockname(l, reinterpret_cast<sockaddr*>(&a), &len);
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
  std::printf("listen=%s:%u\n", ip, ntohs(a.sin_port));
  std::fflush(stdout);
  return l;
}

class RequestServer {
 public:
  struct Options {
    size_t closeAfter = 0;  // 0: echo until the client closes; B: close after echoing B bytes
    bool once = false;      // return when the last connection is gone (after at least one)
  };

  RequestServer(const char* app, int listener, Options o) : app_(app), listener_(listener), o_(o) {}
  ~RequestServer() {
    for (Conn& c : conns_) mknet_close(c.fd);
  }
  RequestServer(const RequestServer&) = delete;
  RequestServer& operator=(const RequestServer&) = delete;

  // Serves until killed (or, with once, until the last connection closes).
  // Returns the exit code: 0, or 1 if the listener failed.
  int run() {
    if (!setNonBlocking(listener_)) {
      std::fprintf(stderr, "%s: listener non-blocking: %s\n", app_, std::strerror(errno));
      return 1;
    }
    std::vector<char> buf(64 * 1024);
    std::vector<pollfd> fds;
    bool accepted = false;
    while (true) {
      if (o_.once && accepted && conns_.empty()) return 0;
      fds.clear();
      fds.push_back({listener_, POLLIN, 0});
      for (const Conn& c : conns_) {
        fds.push_back({c.fd, static_cast<short>(c.out.size() > c.outOff ? POLLOUT : POLLIN), 0});
      }
      if (mknet_poll(fds.data(), fds.size(), 1000) < 0) {
        if (errno == EINTR) continue;
        std::fprintf(stderr, "%s: poll: %s\n", app_, std::strerror(errno));
        return 1;
      }
      // Connections first (their pollfds are 1..n; the listener's accepts
      // append to conns_ after them).
      size_t keep = 0;
      for (size_t i = 0; i < conns_.size(); ++i) {
        Conn& c = conns_[i];
        const short re = fds[i + 1].revents;
        bool alive = true;
        if (re != 0) alive = service(c, buf);
        if (alive) {
          if (keep != i) conns_[keep] = std::move(c);
          ++keep;
        } else {
          mknet_close(c.fd);
        }
      }
      conns_.resize(keep);
      if ((fds[0].revents & POLLIN) != 0) {
        while (true) {
          const int c = mknet_accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK);
          if (c < 0) {
            if (wouldBlockErrno() || errno == EINTR || errno == ECONNABORTED) break;
            std::fprintf(stderr, "%s: accept: %s\n", app_, std::strerror(errno));
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) break;
            return 1;
          }
          setNoDelay(c);
          conns_.push_back(Conn{c, {}, 0, 0});
          accepted = true;
        }
      }
    }
  }

 private:
  struct Conn {
    int fd;
    std::vector<char> out;  // received, not yet echoed
    size_t outOff;
    size_t echoed;  // bytes echoed so far (for closeAfter)
  };

  // Writes what is pending, then reads and echoes; false when the connection
  // is done (closed by the client, failed, or closeAfter reached).
  bool service(Conn& c, std::vector<char>& buf) {
    if (!flush(c)) return false;
    if (c.out.size() > c.outOff) return true;  // still blocked on output
    if (o_.closeAfter > 0 && c.echoed >= o_.closeAfter) return false;
    while (true) {
      size_t want = buf.size();
      if (o_.closeAfter > 0) want = std::min(want, o_.closeAfter - c.echoed);
      const ssize_t n = mknet_recv(c.fd, buf.data(), want, 0);
      if (n < 0) return wouldBlockErrno() || errno == EINTR;
      if (n == 0) return false;
      c.out.assign(buf.data(), buf.data() + n);
      c.outOff = 0;
      if (!flush(c)) return false;
      if (o_.closeAfter > 0 && c.echoed >= o_.closeAfter && c.out.size() == c.outOff) return false;
      if (c.out.size() > c.outOff) return true;
      // Echoed in full: read again only if more is already there (one
      // request at a time is the common case; don't spin on EAGAIN).
      if (static_cast<size_t>(n) < want) return true;
    }
  }

  bool flush(Conn& c) {
    while (c.outOff < c.out.size()) {
      const ssize_t n = mknet_send(c.fd, c.out.data() + c.outOff, c.out.size() - c.outOff, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return wouldBlockErrno();
      }
      c.outOff += static_cast<size_t>(n);
      c.echoed += static_cast<size_t>(n);
    }
    c.out.clear();
    c.outOff = 0;
    return true;
  }

  const char* app_;
  int listener_;
  Options o_;
  std::vector<Conn> conns_;
};

}  // namespace mknet::examples
