// HttpRequest: mknet-httpd's parser for HTTP/1.x request heads and targets.
//
// Everything here reads bytes from an untrusted peer, so it is pure (no I/O),
// bounded by explicit limits, and never asserts: bad input becomes the HTTP
// status the server should answer with.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mknet::examples {

struct HttpLimits {
  size_t maxRequestLine = 8192;   // longer request line -> 414 URI Too Long
  size_t maxHeaderBytes = 16384;  // longer head (request line + headers) -> 431
  size_t maxHeaders = 100;        // more header fields -> 431
};

// A parsed request head.
struct HttpRequest {
  std::string method;  // case-sensitive token, e.g. "GET"
  std::string target;  // raw request-target, e.g. "/a%20b.txt?x=1"
  int minorVersion = 1;  // HTTP/1.<minorVersion>; only 0 and 1 are accepted
  // Whether the connection may serve another request after this one: the
  // version's default (1.1 yes, 1.0 no) overridden by a Connection header.
  bool keepAlive = true;
  uint64_t contentLength = 0;  // body bytes that follow the head
};

struct HttpParseResult {
  enum class Status {
    kIncomplete,  // need more bytes; nothing consumed
    kComplete,    // `request` is valid; `consumed` bytes of head were used
    kError,       // answer `errorStatus` and close the connection
  };
  Status status = Status::kIncomplete;
  size_t consumed = 0;
  int errorStatus = 0;  // 400, 414, 431, 501 or 505
  HttpRequest request;
};

// Parses one request head from the front of `buffer`. Lines end in CRLF (a
// bare LF is tolerated, as RFC 9112 allows); empty lines before the request
// line are skipped. A request with Transfer-Encoding is refused with 501
// (this server takes no request bodies it would have to de-chunk), a bad or
// conflicting Content-Length and an HTTP/1.1 request without Host with 400.
HttpParseResult parseHttpRequest(std::string_view buffer, const HttpLimits& limits = {});

struct HttpTarget {
  int errorStatus = 0;  // 0 = ok; otherwise 400
  // The path relative to the document root, percent-decoded, "." and empty
  // segments removed, never containing ".." segments, NUL or a leading '/'.
  // Empty for the root itself.
  std::string path;
};

// Maps a request-target (origin-form "/a/b?q" or absolute-form
// "http://host/a/b") to a path under the document root. Any ".." segment,
// before or after percent-decoding, is refused rather than resolved: a
// request that tries to climb is an attack or a bug, not a file.
HttpTarget resolveHttpTarget(std::string_view target);

}  // namespace mknet::examples
