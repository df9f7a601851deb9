// mknet-httpd: a static-file HTTP/1.1 server (GET and HEAD) for benchmarks.
//
// One thread runs an mknet_poll loop over non-blocking sockets. Each
// connection has a small state machine: read request heads into `in`, answer
// one request at a time through `out`, and refill `out` from the file in
// 256 KiB chunks only as the client drains it, so a 100 MB file costs 256 KiB
// of memory and a slow client only ever holds up itself. Each wake-up does a
// bounded amount of work per connection so a fast pipelining client cannot
// starve the others.
//
// Files are opened with openat2(RESOLVE_BENEATH) relative to the root, so
// neither ".." (already refused by resolveHttpTarget) nor a symlink can reach
// outside it.
#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <utility>
#include <vector>

#include "flags.h"
#include "http_request.h"
#include "mknet/socket.hpp"

namespace mknet::examples {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kUsage[] =
    "usage: mknet-httpd --port P --root DIR [--bind IP] [--log]\n"
    "                   [--idle-timeout SEC] [--max-connections N]\n"
    "\n"
    "Serves the files under DIR over HTTP/1.1 (GET and HEAD, keep-alive).\n"
    "A directory serves its index.html. Paths with '..' are refused (400),\n"
    "missing files are 404, other methods 405, over-long request lines 414.\n"
    "Prints listen=IP:PORT first (--port 0 picks a free port); with --log,\n"
    "one line per accepted connection and per request on stdout.\n"
    "  --idle-timeout SEC    close idle keep-alive connections (default 60)\n"
    "  --max-connections N   stop accepting beyond N connections (default 4096)\n"
    "Runs until killed. Exit status: 1 on a start-up error, 2 usage.\n";

constexpr FlagSpec kFlags[] = {
    {"help", false}, {"port", true},         {"root", true},           {"bind", true},
    {"log", false},  {"idle-timeout", true}, {"max-connections", true},
};

constexpr size_t kFileChunk = 256 * 1024;  // file bytes read per pread
constexpr size_t kRecvChunk = 16 * 1024;
constexpr size_t kMaxInput = 64 * 1024;    // buffered request bytes per connection
constexpr int kBurst = 16;                 // sends + requests per connection per wake-up
constexpr auto kLinger = std::chrono::seconds(2);

struct Options {
  Ipv4Endpoint local;
  std::string root;
  bool log = false;
  double idleTimeout = 60;
  uint64_t maxConnections = 4096;
};

constexpr App kApp{"mknet-httpd"};

void reportError(std::string_view what, std::error_code ec) { kApp.reportError(what, ec); }


// A plain file descriptor (the document root, an open file); closed on destruction.
class FileFd {
 public:
  FileFd() = default;
  explicit FileFd(int fd) : fd_(fd) {}
  ~FileFd() { reset(); }
  FileFd(FileFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  FileFd& operator=(FileFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

const char* reasonPhrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
  }
}

const char* contentType(std::string_view path) {
  const size_t dot = path.rfind('.');
  const size_t slash = path.rfind('/');
  if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash)) {
    return "application/octet-stream";
  }
  const std::string_view ext = path.substr(dot + 1);
  static constexpr std::pair<std::string_view, const char*> kTypes[] = {
      {"html", "text/html; charset=utf-8"}, {"htm", "text/html; charset=utf-8"},
      {"txt", "text/plain; charset=utf-8"}, {"css", "text/css"},
      {"js", "text/javascript"},            {"json", "application/json"},
      {"png", "image/png"},                 {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"},               {"gif", "image/gif"},
      {"svg", "image/svg+xml"},             {"ico", "image/x-icon"},
      {"pdf", "application/pdf"},           {"wasm", "application/wasm"},
  };
  for (const auto& [e, type] : kTypes) {
    if (e == ext) return type;
  }
  return "application/octet-stream";
}

// Opens `path` (relative, already free of "..") beneath `dirFd`. RESOLVE_BENEATH
// makes the kernel refuse any escape, including through symlinks. O_NONBLOCK
// keeps a FIFO in the tree from blocking the whole server on open.
int openBeneath(int dirFd, const std::string& path) {
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  const char* name = path.empty() ? "." : path.c_str();
  const long fd = ::syscall(SYS_openat2, dirFd, name, &how, sizeof how);
  if (fd >= 0 || errno != ENOSYS) return static_cast<int>(fd);
  // Kernels before 5.6: ".." is already refused; symlinks are followed.
  return ::openat(dirFd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
}

struct HttpConnection {
  uint64_t id = 0;
  Socket socket;
  Ipv4Endpoint peer;
  std::string in;   // received, not yet parsed
  std::string out;  // response bytes not yet sent start at outOffset
  size_t outOffset = 0;
  FileFd file;  // the body being sent, if any
  uint64_t fileOffset = 0;
  uint64_t fileRemaining = 0;
  uint64_t bodyToSkip = 0;  // request body bytes still to discard
  bool closeAfterResponse = false;
  bool peerDone = false;   // the client ended its side
  bool lingering = false;  // response sent and our side shut; draining input until close
  bool runnable = false;   // has work left that no poll event will announce
  Clock::time_point lastActivity;
  Clock::time_point lingerUntil;

  bool responding() const { return outOffset < out.size() || fileRemaining > 0; }
};

class HttpServer {
 public:
  HttpServer(Listener listener, FileFd root, Options options)
      : listener_(std::move(listener)), root_(std::move(root)), options_(std::move(options)) {}

  int run() {
    if (auto r = listener_.setNonBlocking(); !r) {
      reportError("set listener non-blocking", r.error());
      return 1;
    }
    std::vector<pollfd> fds;
    std::vector<std::byte> recvBuf(kRecvChunk);
    auto lastSweep = Clock::now();
    while (true) {
      const auto now = Clock::now();
      const bool accepting = conns_.size() < options_.maxConnections && now >= acceptPausedUntil_;
      bool anyRunnable = false;
      fds.resize(conns_.size() + 1);
      fds[0] = {listener_.fd(), static_cast<short>(accepting ? POLLIN : 0), 0};
      for (size_t i = 0; i < conns_.size(); ++i) {
        fds[i + 1] = {conns_[i].socket.fd(), interest(conns_[i]), 0};
        anyRunnable = anyRunnable || conns_[i].runnable;
      }
      const int timeout = anyRunnable ? 0 : accepting ? 1000 : 100;
      if (mknet_poll(fds.data(), fds.size(), timeout) < 0) {
        if (errno == EINTR) continue;
        reportError("poll", lastError());
        return 1;
      }
      refreshDate();

      for (size_t i = 0; i < conns_.size(); ++i) {
        const short revents = fds[i + 1].revents;
        HttpConnection& c = conns_[i];
        bool alive = true;
        if (revents != 0 || c.runnable) alive = service(c, revents, recvBuf);
        if (!alive) {
          const size_t last = conns_.size() - 1;
          if (i != last) {
            conns_[i] = std::move(conns_[last]);
            fds[i + 1] = fds[last + 1];
          }
          conns_.pop_back();
          --i;
        }
      }
      if (fds[0].revents & (POLLHUP | POLLERR)) {
        // The listener itself is gone (on mknet: the stack restarted under
        // us). Listen again on the same address, every 100 ms until the
        // network is back; existing connections fail on their own.
        relisten();
      } else if (fds[0].revents & POLLIN) {
        acceptAll();
      }

      // Idle and linger deadlines only need one-second precision.
      if (Clock::now() - lastSweep >= std::chrono::seconds(1)) {
        lastSweep = Clock::now();
        sweepIdle(lastSweep);
      }
    }
  }

 private:
  static short interest(const HttpConnection& c) {
    if (c.lingering) return POLLIN;
    short events = 0;
    if (c.outOffset < c.out.size()) events |= POLLOUT;
    if (!c.peerDone && c.in.size() < kMaxInput) events |= POLLIN;
    return events;
  }

  void relisten() {
    acceptPausedUntil_ = Clock::now() + std::chrono::milliseconds(100);
    auto l = Listener::listen(options_.local);
    if (!l) return;
    if (auto r = l->setNonBlocking(); !r) return;
    listener_ = std::move(*l);
    std::fprintf(stderr, "mknet-httpd: listening again on %s\n", options_.local.toString().c_str());
  }

  void acceptAll() {
    while (conns_.size() < options_.maxConnections) {
      auto accepted = listener_.accept(SOCK_NONBLOCK);
      if (!accepted) {
        const auto ec = accepted.error();
        if (wouldBlock(ec) || ec == std::errc::interrupted || ec == std::errc::connection_aborted) return;
        // Out of fds or memory: the listener stays readable, so pause
        // accepting briefly instead of spinning on the same error.
        reportError("accept", ec);
        acceptPausedUntil_ = Clock::now() + std::chrono::milliseconds(100);
        return;
      }
      // Responses go out in one send where possible; without NODELAY, Nagle
      // would hold a pipelined response's tail behind the client's delayed ACK.
      (void)accepted->socket.setNoDelay();
      HttpConnection& c = conns_.emplace_back();
      c.id = ++nextId_;
      c.socket = std::move(accepted->socket);
      c.peer = accepted->peer;
      c.lastActivity = Clock::now();
      if (options_.log) std::printf("conn=%" PRIu64 " accepted peer=%s\n", c.id, c.peer.toString().c_str());
    }
  }

  void sweepIdle(Clock::time_point now) {
    const auto idle = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options_.idleTimeout));
    for (size_t i = 0; i < conns_.size(); ++i) {
      const HttpConnection& c = conns_[i];
      const bool expired = c.lingering ? now >= c.lingerUntil : now - c.lastActivity >= idle;
      if (!expired) continue;
      if (options_.log) std::printf("conn=%" PRIu64 " closed idle\n", c.id);
      if (i != conns_.size() - 1) conns_[i] = std::move(conns_.back());
      conns_.pop_back();
      --i;
    }
  }

  // Handles one connection's events and runs its state machine; false when
  // the connection should be closed.
  bool service(HttpConnection& c, short revents, std::span<std::byte> recvBuf) {
    if (revents & POLLNVAL) return false;
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
      if (!readInput(c, recvBuf)) return false;
    }
    if (c.lingering) return !c.peerDone;
    return pump(c);
  }

  // One recv; false if the connection failed.
  bool readInput(HttpConnection& c, std::span<std::byte> recvBuf) {
    if (c.peerDone) return true;
    if (!c.lingering) {
      const size_t room = kMaxInput - std::min(kMaxInput, c.in.size());
      if (room == 0) return true;
      recvBuf = recvBuf.first(std::min(room, recvBuf.size()));
    }
    auto n = c.socket.recv(recvBuf);
    if (!n) return wouldBlock(n.error()) || n.error() == std::errc::interrupted;
    c.lastActivity = Clock::now();
    if (*n == 0) {
      c.peerDone = true;
    } else if (!c.lingering) {
      c.in.append(reinterpret_cast<const char*>(recvBuf.data()), *n);
    }
    return true;
  }

  // Advances the connection as far as it can go without blocking, within
  // kBurst steps; false when it should be closed.
  bool pump(HttpConnection& c) {
    c.runnable = false;
    for (int step = 0; step < kBurst; ++step) {
      if (c.outOffset < c.out.size()) {
        auto n = c.socket.send(std::span(reinterpret_cast<const std::byte*>(c.out.data()), c.out.size())
                                   .subspan(c.outOffset));
        if (!n) {
          if (wouldBlock(n.error()) || n.error() == std::errc::interrupted) return true;
          return false;
        }
        c.outOffset += *n;
        c.lastActivity = Clock::now();
        if (c.outOffset < c.out.size()) continue;
      }
      if (c.fileRemaining > 0) {
        if (!refill(c)) return false;
        continue;
      }
      // The response is complete.
      c.out.clear();
      c.outOffset = 0;
      c.file.reset();
      if (c.closeAfterResponse) return startLinger(c);
      if (c.bodyToSkip > 0) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(c.bodyToSkip, c.in.size()));
        c.in.erase(0, n);
        c.bodyToSkip -= n;
        if (c.bodyToSkip > 0) return !c.peerDone;
      }
      const HttpParseResult parsed = parseHttpRequest(c.in);
      switch (parsed.status) {
        case HttpParseResult::Status::kIncomplete:
          // A client that ended its side mid-request gets nothing more.
          return !c.peerDone;
        case HttpParseResult::Status::kError:
          // The byte stream can no longer be trusted to frame requests.
          c.in.clear();
          respondError(c, parsed.errorStatus, /*keepAlive=*/false, /*head=*/false, "-");
          break;
        case HttpParseResult::Status::kComplete:
          c.in.erase(0, parsed.consumed);
          respond(c, parsed.request);
          break;
      }
    }
    c.runnable = true;  // burst used up with work left
    return true;
  }

  // Appends up to one chunk of the file to `out`.
  bool refill(HttpConnection& c) {
    c.out.erase(0, c.outOffset);
    c.outOffset = 0;
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kFileChunk, c.fileRemaining));
    const size_t old = c.out.size();
    c.out.resize(old + want);
    ssize_t n;
    do {
      n = ::pread(c.file.get(), c.out.data() + old, want, static_cast<off_t>(c.fileOffset));
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
      // The file shrank or failed under us; the Content-Length already sent
      // cannot be honoured, so the connection must end.
      std::fprintf(stderr, "mknet-httpd: conn=%" PRIu64 ": file read failed or ended early\n", c.id);
      return false;
    }
    c.out.resize(old + static_cast<size_t>(n));
    c.fileOffset += static_cast<uint64_t>(n);
    c.fileRemaining -= static_cast<uint64_t>(n);
    return true;
  }

  // Response sent on a connection we will not reuse: end our side and
  // drain the client's for a while before closing, so unread request bytes
  // do not make the kernel reset the connection and discard the response.
  bool startLinger(HttpConnection& c) {
    if (c.peerDone) return false;
    if (!c.socket.shutdown(SHUT_WR)) return false;
    c.lingering = true;
    c.lingerUntil = Clock::now() + kLinger;
    c.in.clear();
    return true;
  }

  void respond(HttpConnection& c, const HttpRequest& request) {
    const bool head = request.method == "HEAD";
    const std::string line = request.method + " " + request.target + " HTTP/1." +
                             std::to_string(request.minorVersion);
    c.bodyToSkip = request.contentLength;
    const bool keepAlive = request.keepAlive;
    const int version = request.minorVersion;
    if (request.method != "GET" && !head) {
      respondError(c, 405, keepAlive, false, line, version);
      return;
    }
    const HttpTarget target = resolveHttpTarget(request.target);
    if (target.errorStatus != 0) {
      respondError(c, target.errorStatus, keepAlive, head, line, version);
      return;
    }

    std::string path = target.path;
    FileFd file(openBeneath(root_.get(), path));
    struct stat st {};
    if (file.get() >= 0 && ::fstat(file.get(), &st) == 0 && S_ISDIR(st.st_mode)) {
      path = path.empty() ? "index.html" : path + "/index.html";
      file = FileFd(openBeneath(root_.get(), path));
    }
    if (file.get() < 0) {
      const int err = errno;
      const int status = err == EACCES || err == EPERM ? 403 : err == ENAMETOOLONG ? 414
                         : (err == ENOENT || err == ENOTDIR || err == ELOOP || err == EXDEV) ? 404 : 500;
      if (status == 500) reportError("open " + path, std::error_code(err, std::generic_category()));
      respondError(c, status, keepAlive, head, line, version);
      return;
    }
    if (::fstat(file.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
      respondError(c, 404, keepAlive, head, line, version);
      return;
    }

    const uint64_t size = static_cast<uint64_t>(st.st_size);
    appendHead(c, 200, keepAlive, version, contentType(path), size, "");
    if (!head && size > 0) {
      c.file = std::move(file);
      c.fileOffset = 0;
      c.fileRemaining = size;
    }
    logRequest(c, line, 200, head ? 0 : size);
  }

  void respondError(HttpConnection& c, int status, bool keepAlive, bool head, const std::string& line,
                    int version = 1) {
    const std::string body = "<html><body><h1>" + std::to_string(status) + " " + reasonPhrase(status) +
                             "</h1></body></html>\n";
    appendHead(c, status, keepAlive, version, "text/html; charset=utf-8", body.size(),
               status == 405 ? "Allow: GET, HEAD\r\n" : "");
    if (!head) c.out += body;
    logRequest(c, line, status, head ? 0 : body.size());
  }

  void appendHead(HttpConnection& c, int status, bool keepAlive, int version, const char* type, uint64_t length,
                  const char* extra) {
    c.closeAfterResponse = !keepAlive;
    c.out += "HTTP/1.1 " + std::to_string(status) + " " + reasonPhrase(status) + "\r\n";
    c.out += "Server: mknet-httpd\r\nDate: " + date_ + "\r\nContent-Type: ";
    c.out += type;
    c.out += "\r\nContent-Length: " + std::to_string(length) + "\r\n";
    c.out += extra;
    // HTTP/1.1 keeps connections open by default; 1.0 clients must be told.
    if (!keepAlive) {
      c.out += "Connection: close\r\n";
    } else if (version == 0) {
      c.out += "Connection: keep-alive\r\n";
    }
    c.out += "\r\n";
  }

  void logRequest(const HttpConnection& c, const std::string& line, int status, uint64_t bytes) {
    if (!options_.log) return;
    std::printf("conn=%" PRIu64 " peer=%s \"%s\" %d %" PRIu64 "\n", c.id, c.peer.toString().c_str(), line.c_str(),
                status, bytes);
  }

  void refreshDate() {
    const std::time_t now = std::time(nullptr);
    if (now == dateSecond_) return;
    dateSecond_ = now;
    std::tm tm{};
    ::gmtime_r(&now, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    date_ = buf;
  }

  Listener listener_;
  FileFd root_;
  Options options_;
  std::vector<HttpConnection> conns_;
  uint64_t nextId_ = 0;
  Clock::time_point acceptPausedUntil_{};
  std::time_t dateSecond_ = 0;
  std::string date_;
};

int usageError(std::string_view message) { return kApp.usageError(message); }

int run(int argc, char** argv) {
  std::string error;
  const auto flags = Flags::parse(std::span(argv + 1, static_cast<size_t>(argc - 1)), kFlags, &error);
  if (!flags) return usageError(error);
  if (flags->has("help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  Options o;
  const auto port = flags->value("port");
  if (!port) return usageError("missing --port P");
  const auto p = parsePort(*port);
  if (!p) return usageError("bad --port '" + std::string(*port) + "'");
  o.local.port = *p;
  if (const auto b = flags->value("bind")) {
    const auto ip = parseIpv4(*b);
    if (!ip) return usageError("bad --bind '" + std::string(*b) + "' (want an IPv4 address)");
    o.local.ip = *ip;
  }
  const auto root = flags->value("root");
  if (!root || root->empty()) return usageError("missing --root DIR");
  o.root = *root;
  o.log = flags->has("log");
  if (const auto t = flags->value("idle-timeout")) {
    const auto s = parseSeconds(*t);
    if (!s) return usageError("bad --idle-timeout '" + std::string(*t) + "' (want seconds > 0)");
    o.idleTimeout = *s;
  }
  if (const auto m = flags->value("max-connections")) {
    const auto n = parseCount(*m);
    if (!n || *n == 0) return usageError("bad --max-connections '" + std::string(*m) + "'");
    o.maxConnections = *n;
  }

  FileFd rootFd(::open(o.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (rootFd.get() < 0) {
    reportError("open --root " + o.root, lastError());
    return 1;
  }
  auto listener = Listener::listen(o.local);
  if (!listener) {
    reportError("listen on " + o.local.toString(), listener.error());
    return 1;
  }
  auto local = listener->localEndpoint();
  if (!local) {
    reportError("getsockname", local.error());
    return 1;
  }
  // Line-buffered so the listen line and the --log lines reach a pipe at once.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::printf("listen=%s\n", local->toString().c_str());
  HttpServer server(std::move(*listener), std::move(rootFd), std::move(o));
  return server.run();
}

}  // namespace
}  // namespace mknet::examples

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  return mknet::examples::run(argc, argv);
}
