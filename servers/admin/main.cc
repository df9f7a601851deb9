// mknet-ctl: asks a running mknet-stack for its status over the admin
// interface (deploy/mknet status, tests, and people).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <kj/async-io.h>

#include "ipc/rpc_client.h"
#include "ipc/schema/admin.capnp.h"

namespace {

void usage(FILE* out) {
  std::fprintf(out,
               "usage: mknet-ctl [--socket PATH] status [--json | --counter NAME]\n"
               "Prints the status of a running mknet-stack: driver, link, sessions, sockets,\n"
               "pool buffers and every counter.\n\n"
               "  --socket PATH    the stack's control socket\n"
               "                   (default $MKNET_RUNTIME_DIR/stack.sock, MKNET_RUNTIME_DIR=/run/mknet)\n"
               "  --json           one JSON object\n"
               "  --counter NAME   print just that value (a counter, or sessions, sockets,\n"
               "                   pool_free, pool_buffers, driver_pid, link_up, registrations)\n");
}

}  // namespace

int main(int argc, char** argv) {
  const char* rd = std::getenv("MKNET_RUNTIME_DIR");
  std::string path = std::string(rd != nullptr && *rd != '\0' ? rd : "/run/mknet") + "/stack.sock";
  std::string command, counter;
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
    } else if (a == "--counter" && i + 1 < argc) {
      counter = argv[++i];
    } else if (command.empty() && a == "status") {
      command = a;
    } else {
      std::fprintf(stderr, "mknet-ctl: unexpected argument '%s' (see --help)\n", a.c_str());
      return 2;
    }
  }
  if (command.empty()) {
    usage(stderr);
    return 2;
  }
  auto io = kj::setupAsyncIo();
  auto client = mknet::ipc::RpcClient::connect(io, path);
  if (!client) {
    std::fprintf(stderr, "mknet-ctl: %s\n", client.error().message().c_str());
    return 1;
  }
  try {
    auto stack = (*client)->bootstrap<mknet::schema::Stack>();
    auto admin = stack.adminRequest().send().wait(io.waitScope).getAdmin();
    auto resp = admin.statusRequest().send().wait(io.waitScope);
    auto st = resp.getStatus();
    auto d = st.getDrivers();
    uint32_t drvPid = d.size() > 0 ? d[0].getPid() : 0;
    bool link = d.size() > 0 && d[0].getLinkUp();
    uint32_t regs = d.size() > 0 ? d[0].getRegistrations() : 0;
    if (!counter.empty()) {
      if (counter == "sessions") return std::printf("%u\n", st.getSessions()) < 0;
      if (counter == "sockets") return std::printf("%u\n", st.getSockets()) < 0;
      if (counter == "pool_free") return std::printf("%u\n", st.getPoolFree()) < 0;
      if (counter == "pool_buffers") return std::printf("%u\n", st.getPoolBuffers()) < 0;
      if (counter == "driver_pid") return std::printf("%u\n", drvPid) < 0;
      if (counter == "link_up") return std::printf("%d\n", link ? 1 : 0) < 0;
      if (counter == "registrations") return std::printf("%u\n", regs) < 0;
      for (auto c : st.getCounters()) {
        if (counter == c.getName().cStr()) return std::printf("%llu\n", (unsigned long long)c.getValue()) < 0;
      }
      std::fprintf(stderr, "mknet-ctl: no counter '%s'\n", counter.c_str());
      return 1;
    }
    if (json) {
      std::printf("{\"pid\":%u,\"uptime_ms\":%llu,\"driver\":{\"name\":\"%s\",\"pid\":%u,\"link_up\":%s,"
                  "\"registrations\":%u},\"sessions\":%u,\"sockets\":%u,\"pool_buffers\":%u,\"pool_free\":%u,"
                  "\"counters\":{",
                  st.getPid(), (unsigned long long)st.getUptimeMs(), d.size() > 0 ? d[0].getName().cStr() : "",
                  drvPid, link ? "true" : "false", regs, st.getSessions(), st.getSockets(), st.getPoolBuffers(),
                  st.getPoolFree());
      bool first = true;
      for (auto c : st.getCounters()) {
        std::printf("%s\"%s\":%llu", first ? "" : ",", c.getName().cStr(), (unsigned long long)c.getValue());
        first = false;
      }
      std::printf("}}\n");
      return 0;
    }
    std::printf("stack      pid %u, up %.1f s\n", st.getPid(), st.getUptimeMs() / 1000.0);
    std::printf("driver     %s pid %u, link %s, registrations %u\n", d.size() > 0 ? d[0].getName().cStr() : "-",
                drvPid, link ? "up" : "down", regs);
    std::printf("sessions   %u, sockets %u\n", st.getSessions(), st.getSockets());
    std::printf("pool       %u of %u buffers free\n", st.getPoolFree(), st.getPoolBuffers());
    for (auto c : st.getCounters()) {
      if (c.getValue() != 0) std::printf("  %-28s %llu\n", c.getName().cStr(), (unsigned long long)c.getValue());
    }
    return 0;
  } catch (const kj::Exception& e) {
    std::fprintf(stderr, "mknet-ctl: %s\n", e.getDescription().cStr());
    return 1;
  }
}
