// HttpRequest parsing: exact results for known heads, and a fixed-seed stream
// of random and mutated heads that must never break the parser's promises.
#include "http_request.h"

#include <gtest/gtest.h>

#include <random>

namespace mknet::examples {
namespace {

using Status = HttpParseResult::Status;

TEST(HttpRequestTest, ParsesASimpleGet) {
  const std::string head = "GET /index.html HTTP/1.1\r\nHost: example\r\nUser-Agent: t\r\n\r\nNEXT";
  const HttpParseResult r = parseHttpRequest(head);
  ASSERT_EQ(r.status, Status::kComplete);
  EXPECT_EQ(r.consumed, head.size() - 4);
  EXPECT_EQ(r.request.method, "GET");
  EXPECT_EQ(r.request.target, "/index.html");
  EXPECT_EQ(r.request.minorVersion, 1);
  EXPECT_TRUE(r.request.keepAlive);
  EXPECT_EQ(r.request.contentLength, 0u);
}

TEST(HttpRequestTest, IncompleteUntilTheBlankLine) {
  const std::string head = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  for (size_t n = 0; n < head.size(); ++n) {
    const HttpParseResult r = parseHttpRequest(std::string_view(head).substr(0, n));
    EXPECT_EQ(r.status, Status::kIncomplete) << "prefix of " << n << " bytes";
    EXPECT_EQ(r.consumed, 0u);
  }
  EXPECT_EQ(parseHttpRequest(head).status, Status::kComplete);
}

TEST(HttpRequestTest, KeepAliveFollowsVersionAndConnectionHeader) {
  struct Case {
    std::string head;
    bool keepAlive;
  };
  const Case cases[] = {
      {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", true},
      {"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nHost: x\r\nconnection: Upgrade, CLOSE\r\n\r\n", false},
      {"GET / HTTP/1.0\r\n\r\n", false},
      {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
      {"GET / HTTP/1.1\nHost: x\n\n", true},  // bare LF line ends
  };
  for (const Case& c : cases) {
    const HttpParseResult r = parseHttpRequest(c.head);
    ASSERT_EQ(r.status, Status::kComplete) << c.head;
    EXPECT_EQ(r.request.keepAlive, c.keepAlive) << c.head;
  }
}

TEST(HttpRequestTest, RefusesBadHeadsWithTheRightStatus) {
  struct Case {
    std::string head;
    int status;
  };
  const Case cases[] = {
      {"GARBAGE\r\n\r\n", 400},
      {"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400},
      {"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
      {"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505},
      {"GET / HTTX/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\n\r\n", 400},  // HTTP/1.1 requires Host
      {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
      {"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost x\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nBad Name: x\r\nHost: x\r\n\r\n", 400},
      {"GET /a\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
      {"GET /" + std::string(9000, 'a'), 414},  // refused before the line even ends
      {"GET / HTTP/1.1\r\nHost: x\r\nX: " + std::string(20000, 'v') + "\r\n\r\n", 431},
  };
  for (const Case& c : cases) {
    const HttpParseResult r = parseHttpRequest(c.head);
    EXPECT_EQ(r.status, Status::kError) << c.head.substr(0, 60);
    EXPECT_EQ(r.errorStatus, c.status) << c.head.substr(0, 60);
  }
}

TEST(HttpRequestTest, TooManyHeadersIs431) {
  std::string head = "GET / HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 120; ++i) head += "X-" + std::to_string(i) + ": v\r\n";
  head += "\r\n";
  const HttpParseResult r = parseHttpRequest(head);
  EXPECT_EQ(r.status, Status::kError);
  EXPECT_EQ(r.errorStatus, 431);
}

TEST(HttpRequestTest, ContentLengthIsReported) {
  const HttpParseResult r = parseHttpRequest("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n");
  ASSERT_EQ(r.status, Status::kComplete);
  EXPECT_EQ(r.request.contentLength, 12u);
}

TEST(HttpRequestTest, ResolvesTargetsUnderTheRoot) {
  struct Case {
    std::string target;
    std::string path;
  };
  const Case cases[] = {
      {"/", ""},
      {"/index.html", "index.html"},
      {"/a/b/c.txt?x=../../y", "a/b/c.txt"},
      {"/a//b/./c", "a/b/c"},
      {"/a%20b.txt", "a b.txt"},
      {"/%41%62", "Ab"},
      {"/a#frag", "a"},
      {"http://host:8080/x/y", "x/y"},
      {"http://host", ""},
      {"/...", "..."},
      {"/..a", "..a"},
  };
  for (const Case& c : cases) {
    const HttpTarget t = resolveHttpTarget(c.target);
    EXPECT_EQ(t.errorStatus, 0) << c.target;
    EXPECT_EQ(t.path, c.path) << c.target;
  }
}

TEST(HttpRequestTest, RefusesTraversalAndBadEscapes) {
  for (const char* target : {"/..", "/../etc/passwd", "/a/../../b", "/a/..", "/%2e%2e/x", "/%2E./x", "/.%2e",
                             "/a%2f..%2fb", "/a%2F", "/a%00b", "/%zz", "/%4", "relative", "", "*"}) {
    const HttpTarget t = resolveHttpTarget(target);
    EXPECT_EQ(t.errorStatus, 400) << target;
    EXPECT_EQ(t.path, "") << target;
  }
}

// The fuzz loop: random bytes, and valid heads with random bytes flipped,
// inserted or cut. Whatever comes in, the parser must stay within its
// contract (and ASan/UBSan builds check it reads nothing out of bounds).
TEST(HttpRequestTest, SurvivesRandomAndMutatedInput) {
  std::mt19937_64 rng(20240611);
  const std::string valid[] = {
      "GET /a/b.txt HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
      "HEAD /%41?q HTTP/1.0\r\nContent-Length: 3\r\n\r\n",
      "GET http://h/x/../y HTTP/1.1\r\nHost: h\r\n\r\n",
  };
  // A std::string literal (""s) so the embedded NUL is kept.
  using namespace std::string_literals;
  const std::string alphabet = "GET /HTP1.%2e\r\n: aZ?#\t\x00\x7f\xff"s;
  HttpLimits limits;
  limits.maxRequestLine = 64;  // small limits so the fuzz reaches them
  limits.maxHeaderBytes = 160;
  limits.maxHeaders = 4;
  for (int i = 0; i < 20000; ++i) {
    std::string input;
    if (i % 2 == 0) {
      const size_t n = rng() % 200;
      for (size_t k = 0; k < n; ++k) input += alphabet[rng() % alphabet.size()];
    } else {
      input = valid[rng() % 3];
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits && !input.empty(); ++e) {
        const size_t at = rng() % input.size();
        switch (rng() % 3) {
          case 0: input[at] = static_cast<char>(rng()); break;
          case 1: input.insert(at, 1, alphabet[rng() % alphabet.size()]); break;
          default: input.erase(at, 1 + rng() % 8); break;
        }
      }
    }
    const HttpParseResult r = parseHttpRequest(input, limits);
    // Blank lines before the request line do not count towards the head.
    const size_t leading = std::min(input.size(), input.find_first_not_of("\r\n"));
    switch (r.status) {
      case Status::kIncomplete:
        // Waiting for more is only allowed while the head is within limits.
        ASSERT_EQ(r.consumed, 0u);
        ASSERT_LE(input.size() - leading, limits.maxHeaderBytes) << "should have been refused";
        break;
      case Status::kComplete: {
        ASSERT_GT(r.consumed, leading);
        ASSERT_LE(r.consumed, input.size());
        ASSERT_LE(r.consumed - leading, limits.maxHeaderBytes);
        ASSERT_TRUE(r.request.minorVersion == 0 || r.request.minorVersion == 1);
        const HttpTarget t = resolveHttpTarget(r.request.target);
        if (t.errorStatus == 0) {
          ASSERT_TRUE(t.path.empty() || t.path.front() != '/') << t.path;
          ASSERT_EQ(t.path.find('\0'), std::string::npos);
          ASSERT_EQ(("/" + t.path + "/").find("/../"), std::string::npos) << t.path;
        } else {
          ASSERT_EQ(t.errorStatus, 400);
        }
        break;
      }
      case Status::kError: {
        const int s = r.errorStatus;
        ASSERT_TRUE(s == 400 || s == 414 || s == 431 || s == 501 || s == 505) << s;
        break;
      }
    }
  }
}

}  // namespace
}  // namespace mknet::examples
