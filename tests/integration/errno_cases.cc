// The cases of the errno table, written once against the libmknet C API and
// built twice: mknet-itest-errno-kernel (mknet_kernel: Linux's own sockets,
// run inside the test's namespace) and mknet-itest-errno (mknet_client: the
// mknet stack). Both talk to the same mknet-itest-peer on the Linux side.
//
// Each case prints one line "NAME<TAB>RESULT", where RESULT lists the return
// value and errno of every call in order ("connect=-1 ECONNREFUSED ..."),
// so the test compares the two builds case by case. Then "done".
//
// usage: errno-cases --peer IP --hold P --rst P --fin P --closed P [--only NAME,NAME...]
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "mknet/mknet.h"

namespace {

struct Config {
  in_addr_t peer = 0;
  uint16_t hold = 0, rst = 0, fin = 0, closed = 0;
};
Config gCfg;

constexpr int kPollMs = 3000;

sockaddr_in endpoint(in_addr_t ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = ip;
  return a;
}
sockaddr_in peerAt(uint16_t port) { return endpoint(gCfg.peer, port); }
sockaddr_in anyAt(uint16_t port) { return endpoint(htonl(INADDR_ANY), port); }

std::string errName(int e) {
  const char* n = strerrorname_np(e);
  if (n != nullptr) return n;
  std::string s = "E";
  s += std::to_string(e);  // (not "E" + ...: GCC 12 -O3 warns falsely, -Wrestrict)
  return s;
}

// "-1 ENAME" or the value, for a call whose errno is read right after it.
std::string ret(long r) { return r < 0 ? "-1 " + errName(errno) : std::to_string(r); }

std::string revents(short r) {
  std::string s;
  auto add = [&](short bit, const char* name) {
    if ((r & bit) == 0) return;
    if (!s.empty()) s += '|';
    s += name;
  };
  add(POLLIN, "IN");
  add(POLLPRI, "PRI");
  add(POLLOUT, "OUT");
  add(POLLERR, "ERR");
  add(POLLHUP, "HUP");
  add(POLLNVAL, "NVAL");
  add(POLLRDHUP, "RDHUP");
  return s.empty() ? "0" : s;
}

// Accumulates "name=result" pairs for one case.
class Log {
 public:
  Log& operator()(const std::string& name, const std::string& value) {
    out_ += (out_.empty() ? "" : "; ") + name + "=" + value;
    return *this;
  }
  const std::string& str() const { return out_; }

 private:
  std::string out_;
};

int tcp(int flags = 0) { return mknet_socket(AF_INET, SOCK_STREAM | flags, 0); }

int connectTo(int fd, uint16_t port) {
  sockaddr_in a = peerAt(port);
  return mknet_connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
}

int bindAny(int fd, uint16_t port) {
  sockaddr_in a = anyAt(port);
  return mknet_bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
}

std::string pollOne(int fd, short events) {
  pollfd p{fd, events, 0};
  int n = mknet_poll(&p, 1, kPollMs);
  if (n < 0) return ret(n);
  return std::to_string(n) + " " + revents(p.revents);
}

std::string soError(int fd) {
  int err = -12345;
  socklen_t len = sizeof err;
  int r = mknet_getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (r < 0) return ret(r);
  return err == 0 ? "0" : errName(err);
}

// Whether a SIGPIPE is pending (SIGPIPE is blocked in main), consuming it.
std::string takeSigpipe() {
  sigset_t pending;
  sigpending(&pending);
  if (!sigismember(&pending, SIGPIPE)) return "no";
  sigset_t only;
  sigemptyset(&only);
  sigaddset(&only, SIGPIPE);
  timespec zero{0, 0};
  sigtimedwait(&only, nullptr, &zero);
  return "yes";
}

const char kByte = 'x';

// ---------------------------------------------------------------- cases

std::string connectClosedPort() {
  Log log;
  int s = tcp();
  log("connect", ret(connectTo(s, gCfg.closed)));
  log("so_error", soError(s));
  mknet_close(s);
  return log.str();
}

std::string connectNonBlocking() {
  Log log;
  int s = tcp(SOCK_NONBLOCK);
  log("connect", ret(connectTo(s, gCfg.hold)));
  log("poll_out", pollOne(s, POLLOUT));
  log("so_error", soError(s));
  log("connect_again", ret(connectTo(s, gCfg.hold)));
  mknet_close(s);
  return log.str();
}

std::string connectNonBlockingRefused() {
  Log log;
  int s = tcp(SOCK_NONBLOCK);
  log("connect", ret(connectTo(s, gCfg.closed)));
  log("poll_out", pollOne(s, POLLOUT));
  log("so_error", soError(s));
  log("so_error_again", soError(s));
  mknet_close(s);
  return log.str();
}

std::string peerReset() {
  Log log;
  int s = tcp();
  log("connect", ret(connectTo(s, gCfg.rst)));
  log("poll_in", pollOne(s, POLLIN));
  char buf[16];
  log("recv", ret(mknet_recv(s, buf, sizeof buf, 0)));
  log("send", ret(mknet_send(s, &kByte, 1, MSG_NOSIGNAL)));
  log("sigpipe", takeSigpipe());
  log("recv_again", ret(mknet_recv(s, buf, sizeof buf, 0)));
  log("close", ret(mknet_close(s)));
  return log.str();
}

std::string peerFin() {
  Log log;
  int s = tcp();
  log("connect", ret(connectTo(s, gCfg.fin)));
  log("poll_in", pollOne(s, POLLIN));
  char buf[16];
  log("recv", ret(mknet_recv(s, buf, sizeof buf, 0)));
  log("recv_again", ret(mknet_recv(s, buf, sizeof buf, 0)));
  log("close", ret(mknet_close(s)));
  return log.str();
}

std::string badFd() {
  Log log;
  int s = tcp();
  log("close", ret(mknet_close(s)));
  char buf[4];
  sockaddr_in a = peerAt(gCfg.hold);
  socklen_t len = sizeof a;
  log("send", ret(mknet_send(s, &kByte, 1, MSG_NOSIGNAL)));
  log("recv", ret(mknet_recv(s, buf, sizeof buf, MSG_DONTWAIT)));
  log("connect", ret(mknet_connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a)));
  log("getsockname", ret(mknet_getsockname(s, reinterpret_cast<sockaddr*>(&a), &len)));
  log("close_again", ret(mknet_close(s)));
  log("send_negative_fd", ret(mknet_send(-1, &kByte, 1, MSG_NOSIGNAL)));
  return log.str();
}

// Every socket call on an fd that is not a socket.
void notSocketCalls(Log& log, int fd) {
  char buf[4];
  sockaddr_in a = peerAt(gCfg.hold);
  socklen_t len = sizeof a;
  int one = 1;
  socklen_t olen = sizeof one;
  log("connect", ret(mknet_connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a)));
  log("bind", ret(bindAny(fd, 0)));
  log("listen", ret(mknet_listen(fd, 1)));
  log("accept", ret(mknet_accept(fd, nullptr, nullptr)));
  log("send", ret(mknet_send(fd, &kByte, 1, MSG_NOSIGNAL)));
  log("recv", ret(mknet_recv(fd, buf, sizeof buf, MSG_DONTWAIT)));
  log("shutdown", ret(mknet_shutdown(fd, SHUT_RDWR)));
  log("getsockname", ret(mknet_getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len)));
  log("getpeername", ret(mknet_getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len)));
  log("setsockopt", ret(mknet_setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one)));
  log("getsockopt", ret(mknet_getsockopt(fd, SOL_SOCKET, SO_ERROR, &one, &olen)));
}

std::string notSocketFile() {
  Log log;
  char path[] = "/tmp/mknet-itest-errno-XXXXXX";
  int fd = ::mkstemp(path);
  ::unlink(path);
  notSocketCalls(log, fd);
  ::close(fd);
  return log.str();
}

std::string notSocketPipe() {
  Log log;
  int p[2];
  if (::pipe(p) != 0) return "pipe failed";
  notSocketCalls(log, p[0]);
  log("send_write_end", ret(mknet_send(p[1], &kByte, 1, MSG_NOSIGNAL)));
  ::close(p[0]);
  ::close(p[1]);
  return log.str();
}

std::string listenOnConnected() {
  Log log;
  int s = tcp();
  log("connect", ret(connectTo(s, gCfg.hold)));
  log("listen", ret(mknet_listen(s, 4)));
  mknet_close(s);
  return log.str();
}

std::string shutdownBadHow() {
  Log log;
  int s = tcp();
  log("connect", ret(connectTo(s, gCfg.hold)));
  log("shutdown_3", ret(mknet_shutdown(s, 3)));
  log("shutdown_minus_1", ret(mknet_shutdown(s, -1)));
  mknet_close(s);
  return log.str();
}

std::string shutdownUnconnected() {
  Log log;
  int s = tcp();
  log("shutdown_rdwr", ret(mknet_shutdown(s, SHUT_RDWR)));
  log("shutdown_wr", ret(mknet_shutdown(s, SHUT_WR)));
  mknet_close(s);
  return log.str();
}

std::string addressInUse() {
  Log log;
  int a = tcp(), b = tcp(), c = tcp();
  log("bind_a", ret(bindAny(a, 0)));
  sockaddr_in name{};
  socklen_t len = sizeof name;
  mknet_getsockname(a, reinterpret_cast<sockaddr*>(&name), &len);
  uint16_t port = ntohs(name.sin_port);
  log("port_assigned", port != 0 ? "yes" : "no");
  log("bind_b_same_port", ret(bindAny(b, port)));
  log("listen_a", ret(mknet_listen(a, 4)));
  log("bind_c_same_port", ret(bindAny(c, port)));
  mknet_close(a);
  mknet_close(b);
  mknet_close(c);
  return log.str();
}

std::string bindTwice() {
  Log log;
  int s = tcp();
  log("bind", ret(bindAny(s, 0)));
  log("bind_again", ret(bindAny(s, 0)));
  mknet_close(s);
  return log.str();
}

// A port a closed, never connected socket was bound to is free again at once.
std::string rebindAfterClose() {
  Log log;
  int a = tcp();
  log("bind", ret(bindAny(a, 0)));
  sockaddr_in name{};
  socklen_t len = sizeof name;
  mknet_getsockname(a, reinterpret_cast<sockaddr*>(&name), &len);
  const uint16_t port = ntohs(name.sin_port);
  log("close", ret(mknet_close(a)));
  int b = tcp();
  log("bind_same_port", ret(bindAny(b, port)));
  log("listen", ret(mknet_listen(b, 4)));
  mknet_close(b);
  return log.str();
}

std::string connectTwice() {
  Log log;
  int s = tcp();
  log("connect", ret(connectTo(s, gCfg.hold)));
  log("connect_again", ret(connectTo(s, gCfg.hold)));
  log("connect_elsewhere", ret(connectTo(s, gCfg.fin)));
  mknet_close(s);
  return log.str();
}

std::string notConnected() {
  Log log;
  int s = tcp();
  char buf[4];
  sockaddr_in a{};
  socklen_t len = sizeof a;
  log("recv", ret(mknet_recv(s, buf, sizeof buf, 0)));
  log("read", ret(mknet_read(s, buf, sizeof buf)));
  log("getpeername", ret(mknet_getpeername(s, reinterpret_cast<sockaddr*>(&a), &len)));
  log("send", ret(mknet_send(s, &kByte, 1, MSG_NOSIGNAL)));
  log("sigpipe", takeSigpipe());
  mknet_close(s);
  return log.str();
}

std::string acceptNotListening() {
  Log log;
  int s = tcp();
  log("accept", ret(mknet_accept(s, nullptr, nullptr)));
  log("bind", ret(bindAny(s, 0)));
  log("accept_bound", ret(mknet_accept(s, nullptr, nullptr)));
  mknet_close(s);
  int l = tcp(SOCK_NONBLOCK);
  log("listen_bind", ret(bindAny(l, 0)));
  log("listen", ret(mknet_listen(l, 4)));
  log("accept_nonblocking_empty", ret(mknet_accept(l, nullptr, nullptr)));
  mknet_close(l);
  return log.str();
}

std::string readAfterShutRd() {
  Log log;
  int s = tcp();
  char buf[16];
  log("connect", ret(connectTo(s, gCfg.hold)));
  log("shutdown_rd", ret(mknet_shutdown(s, SHUT_RD)));
  log("recv", ret(mknet_recv(s, buf, sizeof buf, 0)));
  log("recv_again", ret(mknet_recv(s, buf, sizeof buf, 0)));
  log("read", ret(mknet_read(s, buf, sizeof buf)));
  log("poll_in", pollOne(s, POLLIN));
  log("send_still_works", ret(mknet_send(s, &kByte, 1, MSG_NOSIGNAL)));
  mknet_close(s);
  return log.str();
}

std::string writeAfterShutWr() {
  Log log;
  int s = tcp();
  log("connect", ret(connectTo(s, gCfg.hold)));
  log("shutdown_wr", ret(mknet_shutdown(s, SHUT_WR)));
  log("send_nosignal", ret(mknet_send(s, &kByte, 1, MSG_NOSIGNAL)));
  log("sigpipe", takeSigpipe());
  log("send", ret(mknet_send(s, &kByte, 1, 0)));
  log("sigpipe", takeSigpipe());
  log("write", ret(mknet_write(s, &kByte, 1)));
  log("sigpipe", takeSigpipe());
  mknet_close(s);
  return log.str();
}

std::string recvWouldBlock() {
  Log log;
  int s = tcp();
  char buf[16];
  log("connect", ret(connectTo(s, gCfg.hold)));
  log("recv_dontwait", ret(mknet_recv(s, buf, sizeof buf, MSG_DONTWAIT)));
  log("fcntl_nonblock", ret(mknet_fcntl(s, F_SETFL, mknet_fcntl(s, F_GETFL) | O_NONBLOCK)));
  log("recv_nonblocking", ret(mknet_recv(s, buf, sizeof buf, 0)));
  mknet_close(s);
  int u = mknet_socket(AF_INET, SOCK_DGRAM, 0);
  log("udp_bind", ret(bindAny(u, 0)));
  log("udp_recv_dontwait", ret(mknet_recv(u, buf, sizeof buf, MSG_DONTWAIT)));
  mknet_close(u);
  return log.str();
}

const std::vector<std::pair<std::string, std::function<std::string()>>>& cases() {
  static const std::vector<std::pair<std::string, std::function<std::string()>>> all = {
      {"connect_closed_port", connectClosedPort},
      {"connect_nonblocking", connectNonBlocking},
      {"connect_nonblocking_refused", connectNonBlockingRefused},
      {"peer_reset", peerReset},
      {"peer_fin", peerFin},
      {"bad_fd", badFd},
      {"not_socket_file", notSocketFile},
      {"not_socket_pipe", notSocketPipe},
      {"listen_on_connected", listenOnConnected},
      {"shutdown_bad_how", shutdownBadHow},
      {"shutdown_unconnected", shutdownUnconnected},
      {"address_in_use", addressInUse},
      {"bind_twice", bindTwice},
      {"rebind_after_close", rebindAfterClose},
      {"connect_twice", connectTwice},
      {"not_connected", notConnected},
      {"accept_not_listening", acceptNotListening},
      {"read_after_shut_rd", readAfterShutRd},
      {"write_after_shut_wr", writeAfterShutWr},
      {"would_block", recvWouldBlock},
  };
  return all;
}

}  // namespace

int main(int argc, char** argv) {
  std::string only;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string f = argv[i], v = argv[i + 1];
    if (f == "--peer")
      gCfg.peer = ::inet_addr(v.c_str());
    else if (f == "--hold")
      gCfg.hold = static_cast<uint16_t>(std::atoi(v.c_str()));
    else if (f == "--rst")
      gCfg.rst = static_cast<uint16_t>(std::atoi(v.c_str()));
    else if (f == "--fin")
      gCfg.fin = static_cast<uint16_t>(std::atoi(v.c_str()));
    else if (f == "--closed")
      gCfg.closed = static_cast<uint16_t>(std::atoi(v.c_str()));
    else if (f == "--only")
      only = v;
    else {
      std::fprintf(stderr, "usage: errno-cases --peer IP --hold P --rst P --fin P --closed P [--only NAME]\n");
      return 2;
    }
  }
  // SIGPIPE stays pending instead of killing us, so a case can tell whether
  // a call raised it. Threads libmknet starts later inherit the mask.
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  sigprocmask(SIG_BLOCK, &pipe, nullptr);

  for (const auto& [name, run] : cases()) {
    if (!only.empty() && ("," + only + ",").find("," + name + ",") == std::string::npos) continue;
    std::string result = run();
    std::printf("%s\t%s\n", name.c_str(), result.c_str());
    std::fflush(stdout);
  }
  std::printf("done\n");
  return 0;
}
