// Flags: the small command-line parser shared by the example apps.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

namespace mknet::examples {

// One flag an app accepts: a switch ("--udp") or a flag with a value
// ("--port 80" or "--port=80"). `name` has no leading dashes.
struct FlagSpec {
  std::string_view name;
  bool takesValue;
};

// The flags of one command line, checked against the app's FlagSpecs so a
// typo is an error instead of a silently ignored option.
class Flags {
 public:
  // Parses `args` (the words after the program name and mode). Returns nullopt
  // and sets *error to one line for the user on an unknown flag, a missing
  // value, a repeated flag or a stray positional word.
  static std::optional<Flags> parse(std::span<char* const> args, std::span<const FlagSpec> specs,
                                    std::string* error);

  bool has(std::string_view name) const { return values_.find(name) != values_.end(); }
  // The flag's value; nullopt if it was not given (or is a switch).
  std::optional<std::string_view> value(std::string_view name) const;
  // A count flag (parseCount) in [lo, hi] into *out; *out is left alone if
  // the flag was not given. False if it was given but is not such a count.
  bool count(std::string_view name, uint64_t* out, uint64_t lo, uint64_t hi) const;

 private:
  std::map<std::string, std::string, std::less<>> values_;
};

// A byte count or other non-negative integer: decimal digits with an optional
// binary suffix K, M, G or T (256M = 256 MiB). Nullopt on anything else or
// on overflow.
std::optional<uint64_t> parseCount(std::string_view text);

// A TCP/UDP port, 0..65535 (0 asks for an ephemeral port).
std::optional<uint16_t> parsePort(std::string_view text);

// Seconds as a positive decimal number ("30", "0.5").
std::optional<double> parseSeconds(std::string_view text);

// The messages every example prints, under the app's name.
struct App {
  const char* name;
  // "NAME: WHAT: reason" on stderr.
  void reportError(std::string_view what, std::error_code ec) const;
  // "NAME: MESSAGE" and "Try 'NAME --help'." on stderr; returns 2, the exit
  // code of a bad command line.
  int usageError(std::string_view message) const;
};

// The command line of a program with a server and a client mode
// (PROGRAM server|client FLAGS...): parses the flags of the mode named
// first, answers --help (before or after the mode) with `usage`, and calls
// that mode's function. Returns the exit code.
int runServerOrClient(const App& app, int argc, char** argv, const char* usage,
                      std::span<const FlagSpec> serverFlags, std::span<const FlagSpec> clientFlags,
                      int (*server)(const Flags&), int (*client)(const Flags&));

// EAGAIN / EWOULDBLOCK: try again later, not a failure.
bool wouldBlock(std::error_code ec);

}  // namespace mknet::examples
