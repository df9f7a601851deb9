// PreloadEnv: runs a program on mknet through libmknet-preload.so, for the
// preload tests.
//
// The program runs in a network namespace of its own that holds nothing but
// `lo` (mkp-<pid>-<n>): its mknet sockets reach the test's stack through the
// stack's Unix socket (a file path, which no namespace hides), while any
// socket the shim failed to take over stays in that empty namespace and
// cannot send a packet anywhere. The destructor removes the namespace; a
// later test run removes the ones a killed run left (their pid is gone).
#pragma once

#include <chrono>
#include <string>

#include "tests/integration/testbed.h"

namespace mknet::itest {

struct PreloadBin {
  static const char* lib();    // libmknet-preload.so
  static const char* probe();  // mknet-preload-probe
};

class PreloadEnv {
 public:
  // `extraEnv` entries ("NAME=value") are added to every program's environment.
  explicit PreloadEnv(const Testbed& tb, Env extraEnv = {});
  ~PreloadEnv();
  PreloadEnv(const PreloadEnv&) = delete;
  PreloadEnv& operator=(const PreloadEnv&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  const std::string& ns() const { return ns_; }

  // argv run in the isolated namespace with the shim preloaded.
  Argv onMknet(const Argv& argv, const Env& env = {}) const;
  // The same through the launcher: deploy/mknet run --runtime-dir ... -- argv.
  Argv viaLauncher(const Argv& argv) const;
  CommandResult run(const Argv& argv, std::chrono::milliseconds timeout = 60s, const Env& env = {}) const;
  Process spawn(const Argv& argv, const std::string& logName, const Env& env = {}) const;

 private:
  const Testbed& tb_;
  Env env_;
  std::string ns_, error_;
};

}  // namespace mknet::itest
