// mknet-httpd-kernel as a real process on loopback, driven by curl and by
// raw sockets: file contents, status codes, path traversal, keep-alive, and
// that neither a stalled client nor 64 busy ones hold up anybody else.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <thread>

#include "app_harness.h"
#include "mknet/socket.hpp"

namespace mknet::testing {
namespace {

const std::string kHttpd = MKNET_HTTPD_KERNEL;
constexpr size_t kBigSize = 20'000'000;

void writeFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string pseudoRandom(size_t n, uint64_t seed) {
  std::string s(n, '\0');
  uint64_t x = seed;
  for (char& c : s) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x);
  }
  return s;
}

class HttpdAppTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.valid());
    root_ = dir_.file("root");
    ASSERT_EQ(::mkdir(root_.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((root_ + "/sub").c_str(), 0755), 0);
    writeFile(root_ + "/index.html", "<h1>mknet</h1>\n");
    writeFile(root_ + "/sub/a b.txt", "spaced\n");
    writeFile(root_ + "/big.bin", pseudoRandom(kBigSize, 0x1234));
    // Outside the root: what a traversal would be after.
    writeFile(dir_.file("secret.txt"), "top secret\n");
    ASSERT_EQ(::symlink(dir_.file("secret.txt").c_str(), (root_ + "/escape.txt").c_str()), 0);

    server_ = startServer(dir_, "httpd",
                          {kHttpd, "--port", "0", "--bind", "127.0.0.1", "--root", root_, "--log"});
    ASSERT_NE(server_.port, 0) << readFile(server_.errPath);
    base_ = "http://127.0.0.1:" + std::to_string(server_.port);
  }

  void TearDown() override {
    // The server must have survived everything the test threw at it.
    EXPECT_FALSE(server_.process.wait(0ms).has_value()) << readFile(server_.errPath);
  }

  struct CurlRun {
    std::optional<int> exit;
    std::string out;  // -w output
    std::string err;  // -v output
  };
  // Runs curl with `args`, writing -w output to a file.
  CurlRun curl(std::vector<std::string> args) {
    static int runs = 0;
    const std::string out = dir_.file("curl" + std::to_string(++runs) + ".out");
    const std::string err = dir_.file("curl" + std::to_string(runs) + ".err");
    args.insert(args.begin(), {"curl", "-s", "--max-time", "20"});
    ChildProcess p = ChildProcess::startLogged(args, out, err);
    EXPECT_TRUE(p.started()) << "curl: " << std::strerror(p.spawnError());
    return CurlRun{exitCode(p.wait(25s)), readFile(out), readFile(err)};
  }

  // The HTTP status of GET (or `extra` options) on `path`, via curl.
  std::string statusOf(const std::string& path, std::vector<std::string> extra = {}) {
    extra.insert(extra.end(), {"-o", dir_.file("body"), "-w", "%{http_code}", base_ + path});
    const CurlRun run = curl(extra);
    EXPECT_EQ(run.exit, 0) << run.err;
    return run.out;
  }

  std::vector<std::string> logLines(const std::string& prefix) {
    std::vector<std::string> out;
    for (const auto& line : lines(readFile(server_.outPath))) {
      if (line.find(prefix) != std::string::npos) out.push_back(line);
    }
    return out;
  }

  TempDir dir_;
  std::string root_;
  RunningServer server_;
  std::string base_;
};

TEST_F(HttpdAppTest, Downloads20MBFileIntact) {
  const std::string file = dir_.file("download.bin");
  const CurlRun run = curl({"-o", file, "-w", "%{http_code} %{size_download}", base_ + "/big.bin"});
  ASSERT_EQ(run.exit, 0) << run.err;
  EXPECT_EQ(run.out, "200 " + std::to_string(kBigSize));

  ChildProcess sum = ChildProcess::startLogged({"sha256sum", file, root_ + "/big.bin"}, dir_.file("sum.out"),
                                               dir_.file("sum.err"));
  ASSERT_EQ(exitCode(sum.wait(20s)), 0) << readFile(dir_.file("sum.err"));
  const auto sums = lines(readFile(dir_.file("sum.out")));
  ASSERT_EQ(sums.size(), 2u);
  const std::string downloaded = sums[0].substr(0, 64);
  const std::string original = sums[1].substr(0, 64);
  EXPECT_EQ(downloaded.size(), 64u);
  EXPECT_EQ(downloaded, original);
}

TEST_F(HttpdAppTest, ServesIndexHeadAndPercentEncodedNames) {
  EXPECT_EQ(statusOf("/"), "200");
  EXPECT_EQ(readFile(dir_.file("body")), "<h1>mknet</h1>\n");
  EXPECT_EQ(statusOf("/sub/a%20b.txt?query=ignored"), "200");
  EXPECT_EQ(readFile(dir_.file("body")), "spaced\n");

  const CurlRun head = curl({"-I", base_ + "/big.bin"});
  ASSERT_EQ(head.exit, 0) << head.err;
  EXPECT_EQ(head.out.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << head.out;
  EXPECT_NE(head.out.find("Content-Length: " + std::to_string(kBigSize) + "\r\n"), std::string::npos) << head.out;
}

TEST_F(HttpdAppTest, AnswersErrorsWithTheRightStatus) {
  EXPECT_EQ(statusOf("/missing.html"), "404");
  EXPECT_EQ(statusOf("/sub/"), "404");  // a directory without index.html
  EXPECT_EQ(statusOf("/", {"-X", "POST"}), "405");
  EXPECT_EQ(statusOf("/", {"-X", "DELETE"}), "405");
  EXPECT_EQ(statusOf("/" + std::string(9000, 'a')), "414");
}

TEST_F(HttpdAppTest, RefusesPathTraversal) {
  // --path-as-is stops curl from resolving the ".." itself.
  for (const std::string path : {"/../secret.txt", "/sub/../../secret.txt", "/%2e%2e/secret.txt",
                                 "/sub/%2E%2E/%2e%2e/secret.txt", "/..%2fsecret.txt"}) {
    EXPECT_EQ(statusOf(path, {"--path-as-is"}), "400") << path;
    EXPECT_EQ(readFile(dir_.file("body")).find("top secret"), std::string::npos) << path;
  }
  // A symlink inside the root that points outside it is not followed out.
  EXPECT_EQ(statusOf("/escape.txt"), "404");
  EXPECT_EQ(readFile(dir_.file("body")).find("top secret"), std::string::npos);
}

TEST_F(HttpdAppTest, KeepAliveServesTwoRequestsOnOneConnection) {
  const size_t acceptsBefore = logLines(" accepted ").size();
  const CurlRun run = curl({"-v", "-o", dir_.file("one"), "-o", dir_.file("two"), base_ + "/index.html",
                            base_ + "/sub/a%20b.txt"});
  ASSERT_EQ(run.exit, 0) << run.err;
  EXPECT_EQ(readFile(dir_.file("one")), "<h1>mknet</h1>\n");
  EXPECT_EQ(readFile(dir_.file("two")), "spaced\n");
  EXPECT_NE(run.err.find("Re-using existing connection"), std::string::npos) << run.err;

  // And from the server's side: one new connection carried both requests.
  const auto accepts = logLines(" accepted ");
  ASSERT_EQ(accepts.size(), acceptsBefore + 1) << readFile(server_.outPath);
  const std::string conn = accepts.back().substr(0, accepts.back().find(' '));
  const auto requests = logLines(conn + " peer=");
  ASSERT_EQ(requests.size(), 2u) << readFile(server_.outPath);
  EXPECT_NE(requests[0].find("\"GET /index.html HTTP/1.1\" 200"), std::string::npos);
  EXPECT_NE(requests[1].find("\"GET /sub/a%20b.txt HTTP/1.1\" 200"), std::string::npos);
}

// A blocking TCP connection to the server under test.
Expected<Socket> connectTo(uint16_t port) {
  auto socket = Socket::tcp();
  if (!socket) return socket.error();
  if (auto r = socket->connect(Ipv4Endpoint{0x7f000001, port}); !r) return r.error();
  return socket;
}

TEST_F(HttpdAppTest, AStalledClientDoesNotBlockOthers) {
  // This client asks for 20 MB and never reads: the server's send buffer
  // fills and stays full.
  auto stalled = connectTo(server_.port);
  ASSERT_TRUE(stalled) << stalled.error().message();
  const std::string request = "GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n";
  ASSERT_TRUE(sendAll(*stalled, std::as_bytes(std::span(request))));
  std::this_thread::sleep_for(200ms);

  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(statusOf("/index.html"), "200");
    EXPECT_EQ(readFile(dir_.file("body")), "<h1>mknet</h1>\n");
  }
}

TEST_F(HttpdAppTest, SixtyFourKeepAliveConnectionsWithPipelining) {
  constexpr int kConnections = 64;
  constexpr int kRequests = 20;
  std::vector<std::string> failures(kConnections);
  std::vector<std::thread> threads;
  const std::string want = "<h1>mknet</h1>\n";
  for (int t = 0; t < kConnections; ++t) {
    threads.emplace_back([&, t] {
      auto socket = connectTo(server_.port);
      if (!socket) {
        failures[t] = "connect: " + socket.error().message();
        return;
      }
      // Two requests per write, so pipelined requests are exercised too.
      std::string pair;
      for (int i = 0; i < 2; ++i) pair += "GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n";
      std::string received;
      std::vector<std::byte> buf(16384);
      int responses = 0;
      while (responses < kRequests) {
        if (!sendAll(*socket, std::as_bytes(std::span(pair)))) {
          failures[t] = "send failed";
          return;
        }
        while (true) {
          // Count complete responses: head + body of known length.
          size_t pos = 0;
          int complete = 0;
          while (true) {
            const size_t end = received.find("\r\n\r\n", pos);
            if (end == std::string::npos || received.size() < end + 4 + want.size()) break;
            if (received.compare(pos, 17, "HTTP/1.1 200 OK\r\n") != 0 ||
                received.compare(end + 4, want.size(), want) != 0) {
              failures[t] = "bad response: " + received.substr(pos, 80);
              return;
            }
            pos = end + 4 + want.size();
            ++complete;
          }
          if (complete == 2) {
            received.erase(0, pos);
            responses += 2;
            break;
          }
          pollfd pfd{socket->fd(), POLLIN, 0};
          if (mknet_poll(&pfd, 1, 10000) != 1) {
            failures[t] = "timed out waiting for a response";
            return;
          }
          auto n = socket->recv(buf);
          if (!n || *n == 0) {
            failures[t] = "connection ended early";
            return;
          }
          received.append(reinterpret_cast<const char*>(buf.data()), *n);
        }
      }
      if (!received.empty()) failures[t] = "unexpected extra bytes";
    });
  }
  for (auto& t : threads) t.join();
  for (int t = 0; t < kConnections; ++t) EXPECT_EQ(failures[t], "") << "connection " << t;
  EXPECT_EQ(logLines("\"GET /index.html HTTP/1.1\" 200").size(), static_cast<size_t>(kConnections * kRequests));
}

TEST_F(HttpdAppTest, MalformedRequestGets400AndTheConnectionCloses) {
  auto socket = connectTo(server_.port);
  ASSERT_TRUE(socket) << socket.error().message();
  const std::string request = "NOT HTTP AT ALL\r\n\r\n";
  ASSERT_TRUE(sendAll(*socket, std::as_bytes(std::span(request))));
  std::string reply;
  std::vector<std::byte> buf(4096);
  while (true) {
    pollfd pfd{socket->fd(), POLLIN, 0};
    ASSERT_EQ(mknet_poll(&pfd, 1, 10000), 1) << "no reply and no close";
    auto n = socket->recv(buf);
    ASSERT_TRUE(n) << n.error().message();
    if (*n == 0) break;  // the server closed: required after a framing error
    reply.append(reinterpret_cast<const char*>(buf.data()), *n);
  }
  EXPECT_EQ(reply.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << reply;
  EXPECT_NE(reply.find("Connection: close\r\n"), std::string::npos) << reply;
}

TEST_F(HttpdAppTest, BadCommandLinesExitWithUsageStatus) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
    int exit;
  };
  const Case cases[] = {
      {{"--root", "/tmp"}, "missing --port", 2},
      {{"--port", "0"}, "missing --root", 2},
      {{"--port", "x", "--root", "/tmp"}, "bad --port", 2},
      {{"--port", "0", "--root", "/tmp", "--verbose"}, "unknown flag --verbose", 2},
      {{"--port", "0", "--root", "/nonexistent/dir"}, "open --root /nonexistent/dir", 1},
  };
  int i = 0;
  for (const Case& c : cases) {
    std::vector<std::string> argv{kHttpd};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    const std::string err = dir_.file("usage" + std::to_string(++i) + ".err");
    ChildProcess p = ChildProcess::startLogged(argv, dir_.file("usage.out"), err);
    const auto status = p.wait(10s);
    EXPECT_EQ(exitCode(status), c.exit) << c.message << ": " << describeStatus(status);
    EXPECT_NE(readFile(err).find(c.message), std::string::npos) << readFile(err);
  }
}

}  // namespace
}  // namespace mknet::testing
