// libmknet C++ API: RAII sockets over the C API in mknet/mknet.h.
//
// Header-only and backend-neutral: every call goes through mknet_*, so the
// same program runs on mknet (link mknet_client or mknet) or on the Linux
// kernel's stack (link mknet_kernel).
//
// Errors: no exceptions. Every fallible call returns mknet::Expected<T>, a T
// or a std::error_code in std::generic_category() holding the errno of the
// failing call, so `result.error() == std::errc::connection_reset` works and
// `result.error().message()` prints strerror. C++20 has no std::expected; this
// is the smallest subset of it the API needs (named in this project's
// camelCase), and a std::error_code rather than ipc/result.h's Error because
// this header is public and must not depend on the stack's internals.
//
// EINTR: one Socket method is one system call and reports EINTR like any
// other error; the loops (sendAll, recvExactly) retry it.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>

#include "mknet/mknet.h"

namespace mknet {

// The errno of the call that just failed, as an error_code.
inline std::error_code lastError() noexcept { return {errno, std::generic_category()}; }

// A T or the std::error_code of why there is none. Follows std::expected's
// shape so call sites read the same once C++23 is available.
template <class T>
class [[nodiscard]] Expected {
 public:
  Expected(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  Expected(std::error_code error) : v_(std::in_place_index<1>, error) {}

  bool hasValue() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return hasValue(); }

  // Precondition: hasValue(). Calling these on an error is a bug in the
  // caller and aborts with a message.
  T& value() & { return *checked(); }
  const T& value() const& { return *checked(); }
  T&& value() && { return std::move(*checked()); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  // The error; a default (success) error_code if there is a value.
  std::error_code error() const noexcept {
    const auto* e = std::get_if<1>(&v_);
    return e ? *e : std::error_code{};
  }

 private:
  // Checked in release builds too: reading a value that is not there is a
  // bug in the caller, and aborting with the error beats reading garbage.
  T* checked() {
    if (!hasValue()) failValue();
    return std::get_if<0>(&v_);
  }
  const T* checked() const {
    if (!hasValue()) failValue();
    return std::get_if<0>(&v_);
  }
  [[noreturn]] void failValue() const {
    std::fprintf(stderr, "mknet::Expected::value() called on an error: %s\n", error().message().c_str());
    std::abort();
  }

  std::variant<T, std::error_code> v_;
};

// Success or an error.
template <>
class [[nodiscard]] Expected<void> {
 public:
  Expected() = default;
  Expected(std::error_code error) : error_(error) {}

  bool hasValue() const noexcept { return !error_; }
  explicit operator bool() const noexcept { return hasValue(); }
  std::error_code error() const noexcept { return error_; }

 private:
  std::error_code error_;  // value 0 means success
};

// Parses a dotted-quad IPv4 address ("198.18.0.2") into host byte order.
// Strict: exactly four decimal parts of 0..255, nothing else (no octal or hex
// forms, no whitespace), so a typo never turns into a different address.
inline std::optional<uint32_t> parseIpv4(std::string_view text) {
  uint32_t ip = 0;
  for (int part = 0; part < 4; ++part) {
    if (part > 0) {
      if (text.empty() || text.front() != '.') return std::nullopt;
      text.remove_prefix(1);
    }
    if (text.empty() || text.front() < '0' || text.front() > '9') return std::nullopt;
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    const size_t digits = static_cast<size_t>(end - text.data());
    if (ec != std::errc{} || value > 255 || digits > 3) return std::nullopt;
    ip = (ip << 8) | value;
    text.remove_prefix(digits);
  }
  if (!text.empty()) return std::nullopt;
  return ip;
}

// An IPv4 address and port, both in host byte order.
struct Ipv4Endpoint {
  uint32_t ip = 0;  // host order: 127.0.0.1 is 0x7f000001
  uint16_t port = 0;

  // "198.18.0.2:80" -> endpoint; nullopt unless the text is exactly an
  // address in parseIpv4's form, a colon and a decimal port 0..65535.
  static std::optional<Ipv4Endpoint> parse(std::string_view text) {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    const auto ip = parseIpv4(text.substr(0, colon));
    const std::string_view portText = text.substr(colon + 1);
    if (!ip || portText.empty() || portText.size() > 5) return std::nullopt;
    unsigned port = 0;
    const auto [end, ec] = std::from_chars(portText.data(), portText.data() + portText.size(), port);
    if (ec != std::errc{} || end != portText.data() + portText.size() || port > 65535) return std::nullopt;
    return Ipv4Endpoint{*ip, static_cast<uint16_t>(port)};
  }

  static Ipv4Endpoint fromSockaddr(const sockaddr_in& sa) {
    return Ipv4Endpoint{ntohl(sa.sin_addr.s_addr), ntohs(sa.sin_port)};
  }

  sockaddr_in toSockaddr() const {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(ip);
    sa.sin_port = htons(port);
    return sa;
  }

  // "198.18.0.2:80"; parse(toString()) == *this.
  std::string toString() const {
    return std::to_string(ip >> 24) + '.' + std::to_string((ip >> 16) & 0xff) + '.' +
           std::to_string((ip >> 8) & 0xff) + '.' + std::to_string(ip & 0xff) + ':' + std::to_string(port);
  }

  friend bool operator==(const Ipv4Endpoint&, const Ipv4Endpoint&) = default;
};

// What recvFrom received: `size` bytes (at most the buffer's size; a longer
// datagram is truncated, as with recvfrom(2)) from `from`.
struct Datagram {
  size_t size = 0;
  Ipv4Endpoint from;
};

// The one owner of a socket fd; closes it with mknet_close on destruction.
// Move-only, so a socket has exactly one owner; release() hands it out.
class Socket {
 public:
  Socket() = default;
  // Adopts `fd` (e.g. from mknet_socket or release()); -1 means empty.
  explicit Socket(int fd) noexcept : fd_(fd) {}
  ~Socket() { reset(); }

  Socket(Socket&& other) noexcept : fd_(other.release()) {}
  Socket& operator=(Socket&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  // New AF_INET sockets, close-on-exec. `flags` may add SOCK_NONBLOCK.
  static Expected<Socket> tcp(int flags = 0) { return open(SOCK_STREAM | flags); }
  static Expected<Socket> udp(int flags = 0) { return open(SOCK_DGRAM | flags); }

  int fd() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return valid(); }

  // Gives up ownership without closing; returns the fd (or -1).
  int release() noexcept { return std::exchange(fd_, -1); }

  // Closes now and reports close's error (e.g. a deferred write error). The
  // fd is gone afterwards even on error: like Linux close(2), never retry.
  Expected<void> close() {
    const int fd = release();
    if (fd >= 0 && mknet_close(fd) != 0) return lastError();
    return {};
  }

  Expected<void> bind(const Ipv4Endpoint& local) {
    const sockaddr_in sa = local.toSockaddr();
    return check(mknet_bind(fd_, reinterpret_cast<const sockaddr*>(&sa), sizeof sa));
  }

  Expected<void> listen(int backlog = SOMAXCONN) { return check(mknet_listen(fd_, backlog)); }

  // On a non-blocking socket, std::errc::operation_in_progress means "wait for
  // POLLOUT, then read pendingError()".
  Expected<void> connect(const Ipv4Endpoint& remote) {
    const sockaddr_in sa = remote.toSockaddr();
    return check(mknet_connect(fd_, reinterpret_cast<const sockaddr*>(&sa), sizeof sa));
  }

  // Bytes actually sent (may be fewer than offered). MSG_NOSIGNAL by default:
  // a closed peer is an EPIPE error, not a process-killing SIGPIPE.
  Expected<size_t> send(std::span<const std::byte> data, int flags = MSG_NOSIGNAL) {
    return checkSize(mknet_send(fd_, data.data(), data.size(), flags));
  }

  // Bytes received; 0 means the peer shut down its side (end of stream) when
  // the buffer is not empty. EAGAIN on a non-blocking socket with nothing to read.
  Expected<size_t> recv(std::span<std::byte> buffer, int flags = 0) {
    return checkSize(mknet_recv(fd_, buffer.data(), buffer.size(), flags));
  }

  Expected<size_t> sendTo(std::span<const std::byte> data, const Ipv4Endpoint& to, int flags = 0) {
    const sockaddr_in sa = to.toSockaddr();
    return checkSize(
        mknet_sendto(fd_, data.data(), data.size(), flags, reinterpret_cast<const sockaddr*>(&sa), sizeof sa));
  }

  Expected<Datagram> recvFrom(std::span<std::byte> buffer, int flags = 0) {
    sockaddr_in sa{};
    socklen_t len = sizeof sa;
    const ssize_t n = mknet_recvfrom(fd_, buffer.data(), buffer.size(), flags, reinterpret_cast<sockaddr*>(&sa), &len);
    if (n < 0) return lastError();
    return Datagram{static_cast<size_t>(n), Ipv4Endpoint::fromSockaddr(sa)};
  }

  // SHUT_WR sends FIN once queued data is out; SHUT_RD, SHUT_RDWR as shutdown(2).
  Expected<void> shutdown(int how = SHUT_WR) { return check(mknet_shutdown(fd_, how)); }

  Expected<void> setNonBlocking(bool on = true) {
    const int flags = mknet_fcntl(fd_, F_GETFL);
    if (flags < 0) return lastError();
    return check(mknet_fcntl(fd_, F_SETFL, on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK)));
  }

  // An int-valued socket option, as setsockopt(2)/getsockopt(2).
  Expected<void> setOption(int level, int name, int value) {
    return check(mknet_setsockopt(fd_, level, name, &value, sizeof value));
  }
  Expected<int> option(int level, int name) const {
    int value = 0;
    socklen_t len = sizeof value;
    if (mknet_getsockopt(fd_, level, name, &value, &len) != 0) return lastError();
    return value;
  }

  Expected<void> setNoDelay(bool on = true) { return setOption(IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0); }
  Expected<void> setReuseAddr(bool on = true) { return setOption(SOL_SOCKET, SO_REUSEADDR, on ? 1 : 0); }
  Expected<void> setKeepAlive(bool on = true) { return setOption(SOL_SOCKET, SO_KEEPALIVE, on ? 1 : 0); }

  // SO_ERROR: the pending error (0 if none), cleared by reading it. After a
  // non-blocking connect polls writable, 0 means connected.
  Expected<int> pendingError() const { return option(SOL_SOCKET, SO_ERROR); }

  Expected<Ipv4Endpoint> localEndpoint() const { return endpoint(mknet_getsockname); }
  Expected<Ipv4Endpoint> peerEndpoint() const { return endpoint(mknet_getpeername); }

 private:
  static Expected<Socket> open(int type) {
    const int fd = mknet_socket(AF_INET, type | SOCK_CLOEXEC, 0);
    if (fd < 0) return lastError();
    return Socket(fd);
  }

  static Expected<void> check(int rc) {
    if (rc != 0) return lastError();
    return {};
  }

  static Expected<size_t> checkSize(ssize_t n) {
    if (n < 0) return lastError();
    return static_cast<size_t>(n);
  }

  Expected<Ipv4Endpoint> endpoint(int (*query)(int, sockaddr*, socklen_t*)) const {
    sockaddr_in sa{};
    socklen_t len = sizeof sa;
    if (query(fd_, reinterpret_cast<sockaddr*>(&sa), &len) != 0) return lastError();
    if (sa.sin_family != AF_INET) return std::make_error_code(std::errc::address_family_not_supported);
    return Ipv4Endpoint::fromSockaddr(sa);
  }

  void reset(int fd = -1) noexcept {
    // Errors from an implicit close have nowhere to go; call close() to see them.
    if (fd_ >= 0) mknet_close(fd_);
    fd_ = fd;
  }

  int fd_ = -1;
};

// A connection accepted by a Listener and the address it came from.
struct Accepted {
  Socket socket;
  Ipv4Endpoint peer;
};

// A listening TCP socket.
class Listener {
 public:
  Listener() = default;
  // Adopts a socket that is already listening.
  explicit Listener(Socket socket) noexcept : socket_(std::move(socket)) {}

  // Socket + SO_REUSEADDR (so a restarted server can rebind at once while old
  // connections sit in TIME_WAIT) + bind + listen. Port 0 picks an ephemeral
  // port; localEndpoint() tells which. A backend without SO_REUSEADDR
  // (ENOPROTOOPT) still gets a listener: the option only speeds up restarts.
  static Expected<Listener> listen(const Ipv4Endpoint& local, int backlog = SOMAXCONN, int flags = 0) {
    auto socket = Socket::tcp(flags);
    if (!socket) return socket.error();
    if (auto r = socket->setReuseAddr(); !r && r.error() != std::errc::no_protocol_option) return r.error();
    if (auto r = socket->bind(local); !r) return r.error();
    if (auto r = socket->listen(backlog); !r) return r.error();
    return Listener(std::move(*socket));
  }

  // The next connection, close-on-exec; `flags` may add SOCK_NONBLOCK. On a
  // non-blocking listener, EAGAIN means no connection is waiting.
  Expected<Accepted> accept(int flags = 0) {
    sockaddr_in sa{};
    socklen_t len = sizeof sa;
    const int fd = mknet_accept4(socket_.fd(), reinterpret_cast<sockaddr*>(&sa), &len, flags | SOCK_CLOEXEC);
    if (fd < 0) return lastError();
    return Accepted{Socket(fd), Ipv4Endpoint::fromSockaddr(sa)};
  }

  Expected<Ipv4Endpoint> localEndpoint() const { return socket_.localEndpoint(); }
  Expected<void> setNonBlocking(bool on = true) { return socket_.setNonBlocking(on); }
  int fd() const noexcept { return socket_.fd(); }
  Socket& socket() noexcept { return socket_; }
  Expected<void> close() { return socket_.close(); }

 private:
  Socket socket_;
};

// Sends all of `data` on a blocking socket, retrying short sends and EINTR.
// On error, some prefix of `data` may have been sent.
inline Expected<void> sendAll(Socket& socket, std::span<const std::byte> data) {
  while (!data.empty()) {
    auto n = socket.send(data);
    if (!n) {
      if (n.error() == std::errc::interrupted) continue;
      return n.error();
    }
    data = data.subspan(*n);
  }
  return {};
}

// Fills `buffer` from a blocking socket, retrying short reads and EINTR.
// Returns the bytes received: buffer.size(), or fewer only if the peer ended
// the stream first (so a short count is how end-of-stream shows).
inline Expected<size_t> recvExactly(Socket& socket, std::span<std::byte> buffer) {
  size_t got = 0;
  while (got < buffer.size()) {
    auto n = socket.recv(buffer.subspan(got));
    if (!n) {
      if (n.error() == std::errc::interrupted) continue;
      return n.error();
    }
    if (*n == 0) break;
    got += *n;
  }
  return got;
}

}  // namespace mknet
