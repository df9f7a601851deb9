// mknet-bench-faults: what a driver crash costs. Runs bulk transfers
// (mknet-bulk on mknet, mknet-bulk-kernel on the Linux side of a fresh test
// namespace; SHA-256 on both ends) alternately in both directions while the
// driver is SIGKILLed every 200-500 ms (fixed seed) and restarted at once,
// until --kills kills were made (spread evenly over the directions); the
// transfer running at the last kill is completed. Prints a summary and, with
// --json, writes:
//   kills              driver kills made
//   transfers          transfers run (each --bytes long)
//   connections_reset  transfers where an end failed (goal 0)
//   bytes_lost         bytes a receiver did not get (goal 0)
//   corrupt_streams    transfers with all bytes but a different SHA-256 (goal 0)
//   restart_ms         {p50, p99, max}: kill -> the stack counted the new
//                      driver's registration
//   stall_ms           {p50, p99, max}: the longest time the receiver made no
//                      progress, from a kill to the next one (Linux end's
//                      tcp_info bytes_received / bytes_acked over sock_diag)
// Needs root (network namespace, TAP). Built from tests/fault/CMakeLists.txt
// (it links the integration fixture); `deploy/mknet bench faults` runs it.
#include <signal.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "tests/fault/fault_util.h"

namespace {

using namespace mknet::ftest;
using mknet::itest::Bin;
using mknet::itest::Process;

volatile sig_atomic_t gStop = 0;

struct Options {
  uint64_t kills = 200;
  uint64_t bytes = 1ull << 30;
  uint32_t seed = 20240611;
  std::string json;
};

constexpr char kUsage[] =
    "usage: mknet-bench-faults [--kills N] [--json PATH] [--bytes B] [--seed S]\n"
    "  --kills N   driver kills to make (default 200), half in each direction\n"
    "  --json P    also write the results as JSON to P\n"
    "  --bytes B   bytes per transfer (default 1073741824)\n"
    "  --seed S    seed of the kill intervals (default 20240611)\n"
    "Needs root. Prints kills, connections_reset, bytes_lost, corrupt_streams,\n"
    "restart_ms and stall_ms percentiles.\n";

struct Totals {
  uint64_t kills = 0, transfers = 0, resets = 0, bytesLost = 0, corrupt = 0;
  std::vector<double> restart, stall;
};

uint64_t toU64(const std::string& s) { return s.empty() ? 0 : std::strtoull(s.c_str(), nullptr, 10); }

// One transfer under kills; adds its outcome to `t`. False if the testbed
// broke (a driver that does not come back): then the run stops.
bool transfer(Testbed& tb, DriverKiller& killer, bool out, uint64_t killsWanted, uint16_t port, uint64_t seed,
              const Options& o, Totals* t) {
  const std::string bytes = std::to_string(o.bytes), tag = (out ? "out-" : "in-") + std::to_string(port);
  ProgressWatch progress(tb, port);
  Process linuxEnd = out ? tb.spawnInNs({Bin::bulkKernel(), "sink", "--port", std::to_string(port), "--once"},
                                        tag + "-linux.log")
                         : tb.spawnInNs({Bin::bulkKernel(), "serve", "--port", std::to_string(port), "--bytes",
                                         bytes, "--seed", std::to_string(seed), "--once"},
                                        tag + "-linux.log");
  if (!linuxEnd.waitForLine("listen=", 10s)) {
    std::fprintf(stderr, "mknet-bench-faults: the Linux end did not start: %s\n", linuxEnd.output().c_str());
    return false;
  }
  const std::string to = tb.linuxIp() + ":" + std::to_string(port);
  Process app = out ? tb.spawnApp({Bin::bulk(), "send", "--connect", to, "--bytes", bytes, "--seed",
                                   std::to_string(seed)},
                                  tag + "-mknet.log")
                    : tb.spawnApp({Bin::bulk(), "recv", "--connect", to}, tag + "-mknet.log");
  progress.waitEstablished(1, 10s);
  std::string err;
  auto kills = killWhileRunning(killer, app, &progress, killsWanted, 600s, &err, [] { return gStop == 0; });
  // A transfer must end on its own; a generous bound for a stuck one.
  auto appSt = app.wait(120s);
  if (!appSt) app.kill();
  auto linuxSt = linuxEnd.wait(10s);
  if (!linuxSt) linuxEnd.kill();
  auto s = mknet::itest::parseKeyValues(mknet::itest::lastLineWith(out ? app.output() : linuxEnd.output(), "mode="));
  auto r = mknet::itest::parseKeyValues(mknet::itest::lastLineWith(out ? linuxEnd.output() : app.output(), "mode="));
  const uint64_t got = toU64(r["bytes"]);
  const bool failed = appSt != std::optional<int>(0) || linuxSt != std::optional<int>(0);
  ++t->transfers;
  t->kills += kills.size();
  if (failed) ++t->resets;
  if (got < o.bytes) t->bytesLost += o.bytes - got;
  if (!failed && got == o.bytes && (s["sha256"].size() != 64 || s["sha256"] != r["sha256"])) ++t->corrupt;
  for (const auto& k : kills) {
    if (k.restartMs >= 0) t->restart.push_back(k.restartMs);
    if (k.stallMs >= 0) t->stall.push_back(k.stallMs);
  }
  std::printf("transfer %-8s kills=%-3zu %s bytes=%" PRIu64 " gbps=%s sha_equal=%d restart_ms_p50=%.1f "
              "stall_ms_p50=%.1f\n",
              tag.c_str(), kills.size(), failed ? "FAILED" : "ok", got, r["gbps"].c_str(),
              s["sha256"] == r["sha256"] ? 1 : 0, [&] {
                std::vector<double> v;
                for (const auto& k : kills) v.push_back(k.restartMs);
                return percentile(v, 50);
              }(),
              [&] {
                std::vector<double> v;
                for (const auto& k : kills)
                  if (k.stallMs >= 0) v.push_back(k.stallMs);
                return percentile(v, 50);
              }());
  std::fflush(stdout);
  if (failed) {
    std::printf("  mknet end: %s\n  Linux end: %s\n", mknet::itest::tail(app.output(), 400).c_str(),
                mknet::itest::tail(linuxEnd.output(), 400).c_str());
  }
  if (!err.empty()) {
    std::fprintf(stderr, "mknet-bench-faults: %s\n", err.c_str());
    return false;
  }
  return true;
}

int run(const Options& o) {
  if (::geteuid() != 0) {
    std::fprintf(stderr, "mknet-bench-faults: needs root (network namespace, TAP)\n");
    return 1;
  }
  Testbed tb;
  if (!tb.ok()) {
    std::fprintf(stderr, "mknet-bench-faults: testbed: %s\n", tb.error().c_str());
    return 1;
  }
  StackWatch watch(tb.stackSocket());
  if (!watch.fresh()) {
    std::fprintf(stderr, "mknet-bench-faults: the stack does not answer\n");
    return 1;
  }
  DriverKiller killer(tb, watch, o.seed);
  Totals t;
  uint64_t perDir[2] = {0, 0};
  const uint64_t want[2] = {o.kills - o.kills / 2, o.kills / 2};  // out, in
  uint16_t port = 5400;
  bool healthy = true;
  for (int i = 0; healthy && !gStop && (perDir[0] < want[0] || perDir[1] < want[1]); ++i) {
    // Alternate out and in while both want kills, then the one that still does.
    const int d = perDir[0] >= want[0] ? 1 : perDir[1] >= want[1] ? 0 : i % 2;
    const uint64_t before = t.kills;
    healthy = transfer(tb, killer, d == 0, want[d] - perDir[d], port++, 1000 + static_cast<uint64_t>(i), o, &t);
    perDir[d] += t.kills - before;
    if (t.kills == before && healthy) {
      std::fprintf(stderr, "mknet-bench-faults: a transfer ended before the first kill; use larger --bytes\n");
      healthy = false;
    }
  }
  const double r50 = percentile(t.restart, 50), r99 = percentile(t.restart, 99), rMax = percentile(t.restart, 100);
  const double s50 = percentile(t.stall, 50), s99 = percentile(t.stall, 99), sMax = percentile(t.stall, 100);
  const std::string leftovers = healthy ? tb.leftovers() : "not checked";
  std::printf("kills=%" PRIu64 " (out %" PRIu64 ", in %" PRIu64 ") transfers=%" PRIu64 " connections_reset=%" PRIu64
              " bytes_lost=%" PRIu64 " corrupt_streams=%" PRIu64 "\n",
              t.kills, perDir[0], perDir[1], t.transfers, t.resets, t.bytesLost, t.corrupt);
  std::printf("restart_ms p50=%.1f p99=%.1f max=%.1f\nstall_ms   p50=%.1f p99=%.1f max=%.1f\n", r50, r99, rMax,
              s50, s99, sMax);
  std::printf("leak check: %s\n", leftovers.empty() ? "ok" : leftovers.c_str());
  std::fflush(stdout);
  if (!o.json.empty()) {
    std::ofstream f(o.json);
    char buf[1024];
    std::snprintf(buf, sizeof buf,
                  "{\"kills\":%" PRIu64 ",\"kills_out\":%" PRIu64 ",\"kills_in\":%" PRIu64 ",\"transfers\":%" PRIu64
                  ",\"bytes_per_transfer\":%" PRIu64 ",\"connections_reset\":%" PRIu64 ",\"bytes_lost\":%" PRIu64
                  ",\"corrupt_streams\":%" PRIu64
                  ",\"restart_ms\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f}"
                  ",\"stall_ms\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f},\"leak_check_ok\":%s}\n",
                  t.kills, perDir[0], perDir[1], t.transfers, o.bytes, t.resets, t.bytesLost, t.corrupt, r50, r99,
                  rMax, s50, s99, sMax, leftovers.empty() ? "true" : "false");
    f << buf;
    if (!f) {
      std::fprintf(stderr, "mknet-bench-faults: cannot write %s\n", o.json.c_str());
      return 1;
    }
  }
  return healthy && t.resets == 0 && t.bytesLost == 0 && t.corrupt == 0 && leftovers.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "mknet-bench-faults: %s needs a value\n%s", a.c_str(), kUsage);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--kills") {
      o.kills = std::strtoull(value().c_str(), nullptr, 10);
    } else if (a == "--json") {
      o.json = value();
    } else if (a == "--bytes") {
      o.bytes = std::strtoull(value().c_str(), nullptr, 10);
    } else if (a == "--seed") {
      o.seed = static_cast<uint32_t>(std::strtoul(value().c_str(), nullptr, 10));
    } else {
      std::fprintf(stderr, "mknet-bench-faults: unknown argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (o.kills == 0 || o.bytes == 0) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  // Ctrl-C / SIGTERM: stop killing, finish the transfer, clean up (the
  // namespace and the processes go with the Testbed).
  struct sigaction sa {};
  sa.sa_handler = [](int) { gStop = 1; };
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  return run(o);
}
