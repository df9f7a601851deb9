#include "servers/supervisor/options.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <regex>

namespace mknet::supervisor {
namespace {

Error bad(const std::string& what) { return makeError(EINVAL, what); }

bool parseMs(const std::string& s, long min, long max, std::chrono::milliseconds* out) {
  auto digit = [](unsigned char c) { return std::isdigit(c) != 0; };
  if (s.empty() || s.size() > 9 || !std::all_of(s.begin(), s.end(), digit)) return false;
  long v = std::strtol(s.c_str(), nullptr, 10);
  if (v < min || v > max) return false;
  *out = std::chrono::milliseconds(v);
  return true;
}

// Names become file names in the runtime dir and appear in logs.
bool validName(const std::string& name) {
  static const std::regex re("^[A-Za-z0-9_.-]{1,32}$");
  return std::regex_match(name, re) && name != "." && name != ".." && name != "supervisor";
}

}  // namespace

std::string usage() {
  return R"(usage: mknet-supervisor [options] --stack NAME[=CMDLINE] [--arg WORD]...
                                   [--driver NAME[=CMDLINE] [--arg WORD]...]...

Starts the stack, then each driver, as its own children; restarts whatever
dies (the first restart at once, then after 100 ms, doubling up to 2 s; a
process that ran 30 s before it died restarts at once again); logs every
death with its exit code or signal. On SIGTERM or SIGINT it stops the drivers,
then the stack (each phase: SIGTERM, up to 5 s, then SIGKILL, by PID) and
exits 0. Children get SIGKILL if the supervisor dies (PR_SET_PDEATHSIG).
Status: the Cap'n Proto `Supervisor` interface (ipc/schema/supervisor.capnp)
on RUNTIME_DIR/supervisor.sock; see mknet-supervisorctl.

Processes (at most one --stack, any number of --driver, at least one in all):
  --stack NAME[=CMDLINE]    the stack process
  --driver NAME[=CMDLINE]   a driver, started after the stack, stopped before it.
                            To run it in a network namespace, give the whole
                            command: ip netns exec NS /path/mknet-tapdrv ...
                            (ip execs the driver, so its PID is the driver's)
  --arg WORD                appends WORD, verbatim, to the command of the last
                            --stack/--driver (the first WORD is the program).
                            Use it for paths with spaces: no quoting involved.
  CMDLINE is split into words like a shell does ('...', "...", \ quoting; no
  expansion). NAME: letters, digits, '_', '.', '-' (the child's stdout and
  stderr go to RUNTIME_DIR/NAME.log, its PID to RUNTIME_DIR/NAME.pid while it
  runs).

Options:
  --runtime-dir DIR         must exist (default $MKNET_RUNTIME_DIR or /run/mknet)
  --socket PATH             admin socket (default RUNTIME_DIR/supervisor.sock)
  --no-child-logs           children inherit the supervisor's stdout/stderr
  --backoff-initial-ms N    the second restart's delay (default 100)
  --backoff-max-ms N        the cap of the delay (default 2000)
  --healthy-ms N            run time after which the delay resets (default 30000)
  --stop-timeout-ms N       SIGTERM to SIGKILL grace per phase (default 5000)
  --log-level LEVEL         trace, debug, info, warn, error (default info)
  --help                    this text

Example:
  mknet-supervisor --runtime-dir /run/mknet \
    --stack stack="/opt/mknet/mknet-stack --ip 198.18.0.2/24" \
    --driver tapdrv --arg ip --arg netns --arg exec --arg mknet \
      --arg "/opt/my build/mknet-tapdrv" --arg --tap --arg mk0
)";
}

Result<std::vector<std::string>> splitWords(const std::string& line) {
  std::vector<std::string> words;
  std::string cur;
  bool inWord = false;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (c == ' ' || c == '\t' || c == '\n') {
      if (inWord) words.push_back(std::move(cur));
      cur.clear();
      inWord = false;
    } else if (c == '\\') {
      if (i + 1 >= line.size()) return bad("trailing backslash in '" + line + "'");
      cur += line[++i];
      inWord = true;
    } else if (c == '\'') {
      size_t end = line.find('\'', i + 1);
      if (end == std::string::npos) return bad("unterminated ' in '" + line + "'");
      cur.append(line, i + 1, end - i - 1);
      i = end;
      inWord = true;
    } else if (c == '"') {
      size_t j = i + 1;
      for (;; ++j) {
        if (j >= line.size()) return bad("unterminated \" in '" + line + "'");
        if (line[j] == '"') break;
        if (line[j] == '\\' && j + 1 < line.size() &&
            (line[j + 1] == '"' || line[j + 1] == '\\' || line[j + 1] == '$' || line[j + 1] == '`'))
          ++j;
        cur += line[j];
      }
      i = j;
      inWord = true;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) words.push_back(std::move(cur));
  return words;
}

Result<Options> parseOptions(std::span<const char* const> args, const char* runtimeDirEnv) {
  Options o;
  o.runtimeDir = runtimeDirEnv != nullptr && *runtimeDirEnv != '\0' ? runtimeDirEnv : "/run/mknet";
  bool haveStack = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    std::string value;
    bool hasInline = false;
    // --flag=value works for every flag with a value: the flag ends at the
    // first '=' (so --driver=NAME=CMDLINE and --arg=WORD split right).
    if (a.rfind("--", 0) == 0 && a.find('=') != std::string::npos) {
      value = a.substr(a.find('=') + 1);
      a = a.substr(0, a.find('='));
      hasInline = true;
    }
    auto need = [&]() -> Result<std::string> {
      if (hasInline) return value;
      if (i + 1 >= args.size()) return bad(a + " needs a value");
      return std::string(args[++i]);
    };
    if (a == "--help" || a == "-h") {
      o.help = true;
      return o;
    } else if (a == "--stack" || a == "--driver") {
      auto v = need();
      if (!v) return v.error();
      ProcessSpec p;
      p.role = a == "--stack" ? Role::kStack : Role::kDriver;
      auto eq = v->find('=');
      p.name = v->substr(0, eq);
      if (!validName(p.name))
        return bad(a + ": bad name '" + p.name +
                   "' (1-32 letters, digits, '_', '.', '-'; not 'supervisor')");
      if (eq != std::string::npos) {
        auto words = splitWords(v->substr(eq + 1));
        if (!words) return bad(a + " " + p.name + ": " + words.error().context);
        p.argv = std::move(*words);
      }
      if (p.role == Role::kStack) {
        if (haveStack) return bad("--stack given twice (one stack per supervisor)");
        haveStack = true;
      }
      for (const auto& q : o.processes)
        if (q.name == p.name) return bad("two processes named '" + p.name + "'");
      o.processes.push_back(std::move(p));
    } else if (a == "--arg") {
      auto v = need();
      if (!v) return v.error();
      if (o.processes.empty()) return bad("--arg before any --stack or --driver");
      o.processes.back().argv.push_back(std::move(*v));
    } else if (a == "--runtime-dir" || a == "--socket" || a == "--log-level") {
      auto v = need();
      if (!v) return v.error();
      if (v->empty()) return bad(a + " needs a non-empty value");
      if (a == "--runtime-dir") o.runtimeDir = *v;
      if (a == "--socket") o.socketPath = *v;
      if (a == "--log-level") {
        if (spdlog::level::from_str(*v) == spdlog::level::off && *v != "off")
          return bad("bad --log-level '" + *v + "'");
        o.logLevel = *v;
      }
    } else if (a == "--backoff-initial-ms" || a == "--backoff-max-ms" || a == "--healthy-ms" ||
               a == "--stop-timeout-ms") {
      auto v = need();
      if (!v) return v.error();
      std::chrono::milliseconds ms;
      if (!parseMs(*v, 1, 3600 * 1000, &ms)) return bad("bad value for " + a + ": '" + *v + "'");
      if (a == "--backoff-initial-ms") o.backoff.initial = ms;
      if (a == "--backoff-max-ms") o.backoff.max = ms;
      if (a == "--healthy-ms") o.backoff.healthy = ms;
      if (a == "--stop-timeout-ms") o.stopTimeout = ms;
    } else if (a == "--no-child-logs" && !hasInline) {
      o.childLogs = false;
    } else {
      return bad("unknown argument '" + std::string(args[i]) + "'");
    }
  }
  if (o.processes.empty()) return bad("nothing to supervise: give --stack and/or --driver");
  for (const auto& p : o.processes)
    if (p.argv.empty() || p.argv[0].empty())
      return bad("process '" + p.name + "' has no command (NAME=CMDLINE or --arg)");
  if (o.backoff.initial > o.backoff.max)
    return bad("--backoff-initial-ms is above --backoff-max-ms");
  // The stack first, then the drivers in the order given.
  std::stable_partition(o.processes.begin(), o.processes.end(),
                        [](const ProcessSpec& p) { return p.role == Role::kStack; });
  if (o.socketPath.empty()) o.socketPath = o.runtimeDir + "/supervisor.sock";
  return o;
}

}  // namespace mknet::supervisor
