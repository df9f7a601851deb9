// mknet-supervisorctl: asks a running mknet-supervisor for its per-process
// table over supervisor.sock (deploy/mknet status, tests, and people).
#include <kj/async-io.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "ipc/rpc_client.h"
#include "ipc/schema/supervisor.capnp.h"

namespace {

void usage(FILE* out) {
  std::fprintf(
      out,
      "usage: mknet-supervisorctl [--socket PATH] status [--json | --pid NAME]\n"
      "Prints what a running mknet-supervisor supervises: per process its state, PID,\n"
      "restarts, uptime, last exit (exit code or signal) and the next restart.\n\n"
      "  --socket PATH   the supervisor's admin socket\n"
      "                  (default $MKNET_RUNTIME_DIR/supervisor.sock, "
      "MKNET_RUNTIME_DIR=/run/mknet)\n"
      "  --json          one JSON object, with the recent starts and their backoff delays\n"
      "  --pid NAME      print just that process's PID (0 if it is not running)\n\n"
      "Exit status: 0 every process runs; 3 some process is not running (waiting to\n"
      "restart); 1 no answer from the supervisor; 2 usage.\n");
}

const char* roleName(mknet::schema::ProcessRole r) {
  return r == mknet::schema::ProcessRole::STACK ? "stack" : "driver";
}

const char* kindName(mknet::schema::ExitInfo::Kind k) {
  using K = mknet::schema::ExitInfo::Kind;
  switch (k) {
    case K::NONE:
      return "none";
    case K::EXITED:
      return "exited";
    case K::SIGNALED:
      return "signaled";
    case K::START_FAILED:
      return "start_failed";
  }
  return "unknown";
}

std::string jsonString(kj::StringPtr s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string seconds(uint64_t ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(ms) / 1000.0);
  return buf;
}

void printJson(capnp::List<mknet::schema::ProcessStatus>::Reader ps) {
  std::printf("{\"processes\":[");
  for (unsigned i = 0; i < ps.size(); ++i) {
    auto p = ps[i];
    auto e = p.getLastExit();
    std::printf(
        "%s{\"name\":%s,\"role\":\"%s\",\"pid\":%u,\"running\":%s,\"restarts\":%u,"
        "\"uptime_ms\":%llu,\"next_restart_ms\":%llu,"
        "\"last_exit\":{\"kind\":\"%s\",\"code\":%d,\"signal\":%d,\"text\":%s,\"ran_ms\":%llu,"
        "\"at_ms\":%llu},\"argv\":[",
        i == 0 ? "" : ",", jsonString(p.getName()).c_str(), roleName(p.getRole()), p.getPid(),
        p.getRunning() ? "true" : "false", p.getRestarts(),
        static_cast<unsigned long long>(p.getUptimeMs()),
        static_cast<unsigned long long>(p.getNextRestartMs()), kindName(e.getKind()), e.getCode(),
        e.getSignal(), jsonString(e.getText()).c_str(),
        static_cast<unsigned long long>(e.getRanMs()),
        static_cast<unsigned long long>(e.getAtMs()));
    auto argv = p.getArgv();
    for (unsigned j = 0; j < argv.size(); ++j)
      std::printf("%s%s", j == 0 ? "" : ",", jsonString(argv[j]).c_str());
    std::printf("],\"recent_starts\":[");
    auto starts = p.getRecentStarts();
    for (unsigned j = 0; j < starts.size(); ++j) {
      std::printf("%s{\"at_ms\":%llu,\"delay_ms\":%llu,\"pid\":%u}", j == 0 ? "" : ",",
                  static_cast<unsigned long long>(starts[j].getAtMs()),
                  static_cast<unsigned long long>(starts[j].getDelayMs()), starts[j].getPid());
    }
    std::printf("]}");
  }
  std::printf("]}\n");
}

// One line per process, "NAME: running (pid N), ..." first so scripts can grep it.
void printText(capnp::List<mknet::schema::ProcessStatus>::Reader ps) {
  for (auto p : ps) {
    auto e = p.getLastExit();
    std::string state;
    if (p.getRunning()) {
      state = "running (pid " + std::to_string(p.getPid()) + "), up " + seconds(p.getUptimeMs());
    } else if (p.getNextRestartMs() > 0) {
      state = "restarting in " + std::to_string(p.getNextRestartMs()) + " ms";
    } else {
      state = "not running";
    }
    std::string last = "-";
    if (e.getKind() != mknet::schema::ExitInfo::Kind::NONE) {
      last = e.getText().cStr();
      if (e.getKind() != mknet::schema::ExitInfo::Kind::START_FAILED)
        last += " after " + seconds(e.getRanMs());
    }
    std::printf("%s: %s, role %s, restarts %u, last exit: %s\n", p.getName().cStr(), state.c_str(),
                roleName(p.getRole()), p.getRestarts(), last.c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* rd = std::getenv("MKNET_RUNTIME_DIR");
  std::string path =
      std::string(rd != nullptr && *rd != '\0' ? rd : "/run/mknet") + "/supervisor.sock";
  std::string command, pidOf;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      usage(stdout);
      return 0;
    } else if (a == "--socket" && i + 1 < argc) {
      path = argv[++i];
    } else if (a == "--json") {
      json = true;
    } else if (a == "--pid" && i + 1 < argc) {
      pidOf = argv[++i];
    } else if (command.empty() && a == "status") {
      command = a;
    } else {
      std::fprintf(stderr, "mknet-supervisorctl: unexpected argument '%s' (see --help)\n",
                   a.c_str());
      return 2;
    }
  }
  if (command.empty() || (json && !pidOf.empty())) {
    usage(stderr);
    return 2;
  }
  auto io = kj::setupAsyncIo();
  auto client = mknet::ipc::RpcClient::connect(io, path);
  if (!client) {
    std::fprintf(stderr, "mknet-supervisorctl: %s\n", client.error().message().c_str());
    return 1;
  }
  try {
    auto sup = (*client)->bootstrap<mknet::schema::Supervisor>();
    auto resp = sup.statusRequest().send().wait(io.waitScope);
    auto ps = resp.getProcesses();
    if (!pidOf.empty()) {
      for (auto p : ps) {
        if (pidOf == p.getName().cStr()) return std::printf("%u\n", p.getPid()) < 0;
      }
      std::fprintf(stderr, "mknet-supervisorctl: no process named '%s'\n", pidOf.c_str());
      return 1;
    }
    if (json) {
      printJson(ps);
    } else {
      printText(ps);
    }
    for (auto p : ps)
      if (!p.getRunning()) return 3;
    return 0;
  } catch (const kj::Exception& e) {
    std::fprintf(stderr, "mknet-supervisorctl: %s\n", e.getDescription().cStr());
    return 1;
  }
}
