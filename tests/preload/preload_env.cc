#include "tests/preload/preload_env.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <sstream>

namespace mknet::itest {

namespace {

std::atomic<int> gNext{0};

// Namespaces mkp-<pid>-<n> whose <pid> is gone were left by a killed run.
void removeStaleNamespaces() {
  static std::atomic<bool> done{false};
  if (done.exchange(true)) return;
  auto r = runCommand({"ip", "netns", "list"}, 10s);
  std::stringstream ss(r.output);
  std::string line;
  while (std::getline(ss, line)) {
    std::string name = line.substr(0, line.find(' '));
    if (name.rfind("mkp-", 0) != 0) continue;
    size_t dash = name.find('-', 4);
    if (dash == std::string::npos) continue;
    pid_t pid = static_cast<pid_t>(std::atoi(name.substr(4, dash - 4).c_str()));
    if (pid <= 0 || pid == ::getpid() || (::kill(pid, 0) != 0 && errno == ESRCH))
      runCommand({"ip", "netns", "del", name}, 10s);
  }
}

}  // namespace

const char* PreloadBin::lib() { return MKNET_PRELOAD_LIB; }
const char* PreloadBin::probe() { return MKNET_PRELOAD_PROBE_BIN; }

PreloadEnv::PreloadEnv(const Testbed& tb, Env extraEnv) : tb_(tb), env_(std::move(extraEnv)) {
  removeStaleNamespaces();
  ns_ = "mkp-" + std::to_string(::getpid()) + "-" + std::to_string(gNext.fetch_add(1));
  auto add = runCommand({"ip", "netns", "add", ns_}, 10s);
  if (!add.ok()) {
    error_ = "ip netns add " + ns_ + ": " + add.output;
    ns_.clear();
    return;
  }
  auto lo = runCommand({"ip", "-n", ns_, "link", "set", "lo", "up"}, 10s);
  if (!lo.ok()) error_ = "ip -n " + ns_ + " link set lo up: " + lo.output;
}

PreloadEnv::~PreloadEnv() {
  if (!ns_.empty()) runCommand({"ip", "netns", "del", ns_}, 10s);
}

Argv PreloadEnv::onMknet(const Argv& argv, const Env& env) const {
  Argv v = {"ip", "netns", "exec", ns_, "env", std::string("LD_PRELOAD=") + PreloadBin::lib()};
  for (const auto& e : tb_.appEnv()) v.push_back(e);
  for (const auto& e : env_) v.push_back(e);
  for (const auto& e : env) v.push_back(e);
  v.insert(v.end(), argv.begin(), argv.end());
  return v;
}

Argv PreloadEnv::viaLauncher(const Argv& argv) const {
  Argv v = {"ip", "netns", "exec", ns_, std::string(Bin::sourceDir()) + "/deploy/mknet", "run", "--runtime-dir",
            tb_.runtimeDir(), "--lib", PreloadBin::lib(), "--"};
  v.insert(v.end(), argv.begin(), argv.end());
  return v;
}

CommandResult PreloadEnv::run(const Argv& argv, std::chrono::milliseconds timeout, const Env& env) const {
  return runCommand(onMknet(argv, env), timeout);
}

Process PreloadEnv::spawn(const Argv& argv, const std::string& logName, const Env& env) const {
  return Process(onMknet(argv, env), tb_.file(logName));
}

}  // namespace mknet::itest
