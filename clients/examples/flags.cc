#include "flags.h"

#include <charconv>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <limits>

namespace mknet::examples {

std::optional<Flags> Flags::parse(std::span<char* const> args, std::span<const FlagSpec> specs,
                                  std::string* error) {
  Flags flags;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view word = args[i];
    if (word.size() < 3 || word.substr(0, 2) != "--") {
      *error = "unexpected argument '" + std::string(word) + "'";
      return std::nullopt;
    }
    word.remove_prefix(2);
    std::optional<std::string_view> inlineValue;
    if (const size_t eq = word.find('='); eq != std::string_view::npos) {
      inlineValue = word.substr(eq + 1);
      word = word.substr(0, eq);
    }
    const FlagSpec* spec = nullptr;
    for (const FlagSpec& s : specs) {
      if (s.name == word) spec = &s;
    }
    if (spec == nullptr) {
      *error = "unknown flag --" + std::string(word);
      return std::nullopt;
    }
    if (flags.has(word)) {
      *error = "flag --" + std::string(word) + " given twice";
      return std::nullopt;
    }
    std::string value;
    if (spec->takesValue) {
      if (inlineValue) {
        value = *inlineValue;
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        *error = "flag --" + std::string(word) + " needs a value";
        return std::nullopt;
      }
    } else if (inlineValue) {
      *error = "flag --" + std::string(word) + " takes no value";
      return std::nullopt;
    }
    flags.values_.emplace(std::string(word), std::move(value));
  }
  return flags;
}

std::optional<std::string_view> Flags::value(std::string_view name) const {
  const auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return std::string_view(it->second);
}

bool Flags::count(std::string_view name, uint64_t* out, uint64_t lo, uint64_t hi) const {
  const auto v = value(name);
  if (!v) return true;
  const auto c = parseCount(*v);
  if (!c || *c < lo || *c > hi) return false;
  *out = *c;
  return true;
}

std::optional<uint64_t> parseCount(std::string_view text) {
  unsigned shift = 0;
  if (!text.empty()) {
    switch (text.back()) {
      case 'K': case 'k': shift = 10; break;
      case 'M': case 'm': shift = 20; break;
      case 'G': case 'g': shift = 30; break;
      case 'T': case 't': shift = 40; break;
      default: break;
    }
    if (shift != 0) text.remove_suffix(1);
  }
  if (text.empty() || text.front() < '0' || text.front() > '9') return std::nullopt;
  uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  if (shift != 0 && value > (std::numeric_limits<uint64_t>::max() >> shift)) return std::nullopt;
  return value << shift;
}

std::optional<uint16_t> parsePort(std::string_view text) {
  if (text.empty() || text.size() > 5) return std::nullopt;
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value > 65535) return std::nullopt;
  return static_cast<uint16_t>(value);
}

std::optional<double> parseSeconds(std::string_view text) {
  // from_chars for double is in libstdc++ 11+, but strtod is simpler to bound.
  const std::string copy(text);
  if (copy.empty() || copy.front() < '0' || copy.front() > '9') return std::nullopt;
  char* end = nullptr;
  const double value = std::strtod(copy.c_str(), &end);
  if (end != copy.c_str() + copy.size() || !std::isfinite(value) || value <= 0) return std::nullopt;
  return value;
}

void App::reportError(std::string_view what, std::error_code ec) const {
  std::fprintf(stderr, "%s: %.*s: %s\n", name, static_cast<int>(what.size()), what.data(), ec.message().c_str());
}

int App::usageError(std::string_view message) const {
  std::fprintf(stderr, "%s: %.*s\nTry '%s --help'.\n", name, static_cast<int>(message.size()), message.data(), name);
  return 2;
}

bool wouldBlock(std::error_code ec) {
  return ec == std::errc::resource_unavailable_try_again || ec == std::errc::operation_would_block;
}

int runServerOrClient(const App& app, int argc, char** argv, const char* usage,
                      std::span<const FlagSpec> serverFlags, std::span<const FlagSpec> clientFlags,
                      int (*server)(const Flags&), int (*client)(const Flags&)) {
  if (argc < 2) return app.usageError("missing mode (server or client)");
  const std::string mode = argv[1];
  if (mode == "--help" || mode == "-h") {
    std::fputs(usage, stdout);
    return 0;
  }
  if (mode != "server" && mode != "client") return app.usageError("unknown mode '" + mode + "'");
  std::string err;
  const std::span<char* const> rest(argv + 2, static_cast<size_t>(argc - 2));
  const auto f = Flags::parse(rest, mode == "server" ? serverFlags : clientFlags, &err);
  if (!f) return app.usageError(err);
  if (f->has("help")) {
    std::fputs(usage, stdout);
    return 0;
  }
  return mode == "server" ? server(*f) : client(*f);
}

}  // namespace mknet::examples
