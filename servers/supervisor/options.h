// Options: the command line of mknet-supervisor, parsed without side effects
// so main() stays wiring and the parser can be unit-tested.
#pragma once

#include <chrono>
#include <span>
#include <string>
#include <vector>

#include "ipc/result.h"

namespace mknet::supervisor {

enum class Role { kStack, kDriver };

// One supervised process: a name (for logs, status, NAME.log and NAME.pid in
// the runtime dir), its role and the argv it is started with (argv[0] is
// looked up in PATH if it has no slash).
struct ProcessSpec {
  std::string name;
  Role role = Role::kDriver;
  std::vector<std::string> argv;
};

// When a process that died is started again: the first restart at once, then
// `initial`, doubling up to `max`; a process that ran at least `healthy`
// before it died starts over at "at once".
struct BackoffPolicy {
  std::chrono::milliseconds initial{100};
  std::chrono::milliseconds max{2000};
  std::chrono::milliseconds healthy{30000};
};

struct Options {
  std::string runtimeDir;              // supervisor.sock, NAME.log, NAME.pid
  std::string socketPath;              // default: runtimeDir/supervisor.sock
  std::vector<ProcessSpec> processes;  // the stack (if any) first, then drivers as given
  BackoffPolicy backoff;
  std::chrono::milliseconds stopTimeout{5000};  // SIGTERM -> SIGKILL grace, per phase
  bool childLogs = true;  // children's stdout+stderr to runtimeDir/NAME.log (else inherited)
  std::string logLevel = "info";
  bool help = false;
};

// Parses argv[1..]. `runtimeDirEnv` is $MKNET_RUNTIME_DIR (nullptr or empty:
// /run/mknet). Errors (EINVAL) name the offending flag or value.
Result<Options> parseOptions(std::span<const char* const> args, const char* runtimeDirEnv);

// The --help text.
std::string usage();

// Splits a command line into words the way a POSIX shell would for plain
// words and quoting only: blanks separate words; '...' is literal; "..."
// is literal except for \" \\ \$ \`; a backslash outside quotes escapes the
// next character. No expansion of any kind ($, *, ~ stay as they are).
// Errors (EINVAL): an unterminated quote or a trailing backslash.
Result<std::vector<std::string>> splitWords(const std::string& line);

}  // namespace mknet::supervisor
