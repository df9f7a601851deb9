#include "http_request.h"

#include <charconv>

namespace mknet::examples {
namespace {

bool isTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

bool isToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!isTokenChar(c)) return false;
  }
  return true;
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// True if the comma-separated header value lists `option` (case-insensitive).
bool listContains(std::string_view value, std::string_view option) {
  while (!value.empty()) {
    const size_t comma = value.find(',');
    if (equalsIgnoreCase(trimOws(value.substr(0, comma)), option)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

HttpParseResult error(int status) {
  HttpParseResult r;
  r.status = HttpParseResult::Status::kError;
  r.errorStatus = status;
  return r;
}

// Parses "METHOD SP target SP HTTP/1.x" into `request`; 0 or an error status.
int parseRequestLine(std::string_view line, HttpRequest& request) {
  const size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return 400;
  const size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return 400;
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!isToken(method) || target.empty()) return 400;
  for (char c : target) {
    // Visible ASCII only: no spaces, controls or raw 8-bit bytes.
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) return 400;
  }
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' || version[5] < '0' ||
      version[5] > '9' || version[7] < '0' || version[7] > '9') {
    return 400;
  }
  if (version[5] != '1' || (version[7] != '0' && version[7] != '1')) return 505;
  request.method = method;
  request.target = target;
  request.minorVersion = version[7] - '0';
  request.keepAlive = request.minorVersion == 1;
  return 0;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = lower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

HttpParseResult parseHttpRequest(std::string_view buffer, const HttpLimits& limits) {
  size_t pos = 0;
  // Skip empty lines before the request line (left over from a client that
  // ends bodies with an extra CRLF), but no more than the head may hold.
  while (pos < buffer.size() && (buffer[pos] == '\r' || buffer[pos] == '\n')) {
    if (++pos > limits.maxHeaderBytes) return error(400);
  }

  HttpParseResult result;
  HttpRequest& request = result.request;
  bool haveRequestLine = false;
  bool haveHost = false;
  bool haveContentLength = false;
  bool connectionClose = false;
  bool connectionKeepAlive = false;
  size_t headers = 0;
  const size_t headStart = pos;

  while (true) {
    const size_t nl = buffer.find('\n', pos);
    if (nl == std::string_view::npos) {
      // Incomplete: refuse now if the part we hold already breaks a limit, so
      // a peer cannot make us buffer an endless line.
      const size_t pending = buffer.size() - pos;
      if (!haveRequestLine && pending > limits.maxRequestLine) return error(414);
      if (buffer.size() - headStart > limits.maxHeaderBytes) return error(431);
      return result;
    }
    std::string_view line = buffer.substr(pos, nl - pos);
    pos = nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find('\r') != std::string_view::npos || line.find('\0') != std::string_view::npos) {
      return error(400);
    }

    if (!haveRequestLine) {
      if (line.size() > limits.maxRequestLine) return error(414);
      if (const int status = parseRequestLine(line, request); status != 0) return error(status);
      haveRequestLine = true;
      continue;
    }
    if (pos - headStart > limits.maxHeaderBytes) return error(431);
    if (line.empty()) break;  // end of head

    // Obsolete line folding (a line starting with whitespace) is refused:
    // RFC 9112 allows it, and the differences it causes between parsers are
    // a classic request-smuggling vector.
    if (line.front() == ' ' || line.front() == '\t') return error(400);
    if (++headers > limits.maxHeaders) return error(431);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) return error(400);
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = trimOws(line.substr(colon + 1));
    if (!isToken(name)) return error(400);

    if (equalsIgnoreCase(name, "host")) {
      if (haveHost) return error(400);
      haveHost = true;
    } else if (equalsIgnoreCase(name, "content-length")) {
      uint64_t length = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), length);
      if (value.empty() || ec != std::errc{} || end != value.data() + value.size()) return error(400);
      if (haveContentLength && length != request.contentLength) return error(400);
      haveContentLength = true;
      request.contentLength = length;
    } else if (equalsIgnoreCase(name, "transfer-encoding")) {
      return error(501);
    } else if (equalsIgnoreCase(name, "connection")) {
      connectionClose = connectionClose || listContains(value, "close");
      connectionKeepAlive = connectionKeepAlive || listContains(value, "keep-alive");
    }
  }

  if (request.minorVersion == 1 && !haveHost) return error(400);
  if (connectionClose) {
    request.keepAlive = false;
  } else if (connectionKeepAlive) {
    request.keepAlive = true;
  }
  result.status = HttpParseResult::Status::kComplete;
  result.consumed = pos;
  return result;
}

HttpTarget resolveHttpTarget(std::string_view target) {
  const HttpTarget refused{400, {}};
  // Absolute-form: drop "scheme://authority", keep the path.
  if (target.substr(0, 7) == "http://" || target.substr(0, 8) == "https://") {
    const size_t authority = target.find("//") + 2;
    const size_t slash = target.find('/', authority);
    target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
  }
  if (target.empty() || target.front() != '/') return refused;
  target = target.substr(0, target.find_first_of("?#"));

  HttpTarget out;
  std::string segment;
  // Appends the finished segment to the path; false if it climbs ("..").
  auto finishSegment = [&]() -> bool {
    if (segment == "..") return false;
    if (!segment.empty() && segment != ".") {
      if (!out.path.empty()) out.path += '/';
      out.path += segment;
    }
    segment.clear();
    return true;
  };

  for (size_t i = 0; i < target.size(); ++i) {
    char c = target[i];
    if (c == '/') {
      if (!finishSegment()) return refused;
      continue;
    }
    if (c == '%') {
      if (i + 2 >= target.size()) return refused;  // need two hex digits
      const int hi = hexValue(target[i + 1]);
      const int lo = hexValue(target[i + 2]);
      if (hi < 0 || lo < 0) return refused;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
      // An encoded '/' would smuggle a separator past the ".." check, and an
      // encoded NUL would end the path early once handed to open(); neither
      // names a file, so refuse both.
      if (c == '/' || c == '\0') return refused;
    }
    segment += c;
  }
  if (!finishSegment()) return refused;
  return out;
}

}  // namespace mknet::examples
