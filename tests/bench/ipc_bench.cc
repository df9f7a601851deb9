// mknet-bench-ipc: what the data plane's building blocks cost on this host.
//
// Every figure is measured between two real processes: the parent creates a
// shared-memory region (it plays the stack, the owner), forks a peer that
// attaches the region by fd like a driver or an app would, and both pin
// themselves to CPUs with sched_setaffinity. Every transfer is checked
// (sequence numbers, descriptor fields, the first and last bytes of every
// payload), so a broken ring shows up as an error, not as a fast number.
//
// Usage: mknet-bench-ipc [--json PATH] [--quick] [--help]
//
// Robustness: peers die with the parent (PR_SET_PDEATHSIG) and are reaped;
// every loop is bounded in count and in time; a stalled or failed peer ends
// the run with one clear line and a non-zero exit. A global watchdog alarm is
// the last line of defence.
//
// The harness is ipc_bench_harness.h; each comparison has its own file
// (ipc_bench_rings.cc, ipc_bench_ring_rtt.cc, ipc_bench_baselines.cc). This
// file describes the machine, reports, and runs them in order.
#include <sys/utsname.h>

#include <array>
#include <fstream>
#include <sstream>

#include "tests/bench/ipc_bench_harness.h"

namespace mknet::bench {
namespace {

// ---------------------------------------------------------------------------
// Machine description, table and JSON.

std::string cpuModel() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) {
        auto v = line.substr(colon + 1);
        v.erase(0, v.find_first_not_of(" \t"));
        return v;
      }
    }
  }
  return "unknown";
}

std::string kernelRelease() {
  struct utsname u {};
  if (uname(&u) != 0) return "unknown";
  return u.release;
}

std::string hostName() {
  char h[256] = {};
  if (gethostname(h, sizeof h - 1) != 0) return "unknown";
  return h;
}

std::string isoDate() {
  time_t now = time(nullptr);
  struct tm tm {};
  gmtime_r(&now, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// First line of a sysfs/procfs file, or "" if it can't be read.
std::string readLine(const char* path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

// The guest's idle driver decides what a cross-CPU wake-up costs: with
// haltpoll and guest_halt_poll_ns=0 every idle CPU halts (a VM exit), and the
// eventfd wake-up needs the host to reschedule the vCPU.
std::string cpuidleDriver() { return readLine("/sys/devices/system/cpu/cpuidle/current_driver"); }
std::string guestHaltPollNs() {
  return readLine("/sys/module/haltpoll/parameters/guest_halt_poll_ns");
}

double loadAverage1m() {
  double l = -1;
  if (FILE* f = fopen("/proc/loadavg", "r")) {
    if (fscanf(f, "%lf", &l) != 1) l = -1;
    fclose(f);
  }
  return l;
}

// How many other tasks want a CPU right now: /proc/stat's procs_running
// (which counts this process too), averaged over ~200 ms. Anything well
// above 0 means the figures below share the CPUs with someone else.
double otherRunnable() {
  double sum = 0;
  int n = 0;
  for (int i = 0; i < 20; ++i) {
    std::ifstream f("/proc/stat");
    std::string key;
    long v = 0;
    while (f >> key) {
      if (key == "procs_running" && (f >> v)) {
        sum += static_cast<double>(v - 1);
        ++n;
        break;
      }
      f.ignore(1 << 20, '\n');
    }
    usleep(10'000);
  }
  return n == 0 ? -1 : sum / n;
}

std::string jsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char b[8];
      snprintf(b, sizeof b, "\\u%04x", c);
      out += b;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string jsonNumber(std::optional<double> v) {
  if (!v) return "null";
  char b[64];
  snprintf(b, sizeof b, "%.6g", *v);
  return b;
}

std::string fmt(const char* f, double a) {
  char b[64];
  snprintf(b, sizeof b, f, a);
  return b;
}
std::string fmt2(const char* f, double a, double c) {
  char b[96];
  snprintf(b, sizeof b, f, a, c);
  return b;
}

struct Report {
  std::vector<std::pair<std::string, std::optional<double>>> metrics;
  std::vector<std::pair<std::string, std::optional<Latency>>> latency;

  static void row(const std::string& metric, const std::string& value, const std::string& target,
                  const std::string& detail) {
    printf("%-38s %-20s %-22s %s\n", metric.c_str(), value.c_str(), target.c_str(), detail.c_str());
    fflush(stdout);
  }
  static std::string verdict(bool ok) { return ok ? "  ok" : "  MISS"; }
  static std::string latencyValue(const Latency& l) {
    return l.p50 < 10 && l.p99 < 10 ? fmt2("%.2f/%.2f us", l.p50, l.p99)
                                    : fmt2("%.1f/%.1f us", l.p50, l.p99);
  }
  static std::string latencyDetail(const Latency& l) {
    char b[128];
    snprintf(b, sizeof b, "mean %.2f, p99.9 %.1f, max %.0f us, n=%zu", l.mean, l.p999, l.max,
             l.samples);
    return b;
  }
  void addLatency(const std::string& key, const std::string& label, const std::optional<Latency>& l,
                  const std::string& target, std::optional<double> p50Limit,
                  const std::string& skipReason = "") {
    latency.emplace_back(key, l);
    if (!l) {
      row(label, "n/a", target, skipReason);
      return;
    }
    std::string t = target;
    if (p50Limit) t += verdict(l->p50 <= *p50Limit);
    row(label, latencyValue(*l), t, latencyDetail(*l));
  }

  // Machine load seen before and after the run (see otherRunnable()).
  double loadBefore = -1, othersBefore = -1, othersAfter = -1;

  std::string json(const Cpus& cpus, bool quick) const {
    std::ostringstream o;
    o << "{\n  \"machine\": {\"cpus\": " << sysconf(_SC_NPROCESSORS_ONLN)
      << ", \"cpus_usable\": " << cpus.usable << ", \"kernel\": " << jsonString(kernelRelease())
      << ", \"cpu_model\": " << jsonString(cpuModel()) << ", \"host\": " << jsonString(hostName())
      << ", \"cpuidle_driver\": " << jsonString(cpuidleDriver())
      << ", \"guest_halt_poll_ns\": " << jsonString(guestHaltPollNs())
      << ", \"loadavg_1m\": " << jsonNumber(loadBefore)
      << ", \"other_runnable_before\": " << jsonNumber(othersBefore)
      << ", \"other_runnable_after\": " << jsonNumber(othersAfter) << "},\n";
    o << "  \"date\": " << jsonString(isoDate()) << ",\n";
    o << "  \"quick\": " << (quick ? "true" : "false") << ",\n";
    o << "  \"pinning\": {\"parent_cpu\": " << cpus.a
      << ", \"peer_cpu\": " << (cpus.b ? std::to_string(*cpus.b) : "null") << "},\n";
    o << "  \"metrics\": {";
    for (size_t i = 0; i < metrics.size(); ++i)
      o << (i ? ",\n" : "\n") << "    " << jsonString(metrics[i].first) << ": "
        << jsonNumber(metrics[i].second);
    o << "\n  },\n  \"latency\": {";
    for (size_t i = 0; i < latency.size(); ++i) {
      o << (i ? ",\n" : "\n") << "    " << jsonString(latency[i].first) << ": ";
      const auto& l = latency[i].second;
      if (!l) {
        o << "null";
        continue;
      }
      o << "{\"p50\": " << jsonNumber(l->p50) << ", \"p99\": " << jsonNumber(l->p99)
        << ", \"p999\": " << jsonNumber(l->p999) << ", \"mean\": " << jsonNumber(l->mean)
        << ", \"min\": " << jsonNumber(l->min) << ", \"max\": " << jsonNumber(l->max)
        << ", \"samples\": " << l->samples << "}";
    }
    o << "\n  }\n}\n";
    return o.str();
  }
};

// The --json output: opened at start-up, written once at the end, removed if
// the run fails in between.
class JsonFile {
 public:
  JsonFile() = default;
  JsonFile(const JsonFile&) = delete;
  JsonFile& operator=(const JsonFile&) = delete;
  ~JsonFile() {
    if (f_ != nullptr) {
      fclose(f_);
      unlink(path_.c_str());
    }
  }
  Result<void> open(const std::string& path) {
    f_ = fopen(path.c_str(), "w");
    if (f_ == nullptr) return errnoError(path);
    path_ = path;
    if (path.size() < sizeof gJsonPath) memcpy(gJsonPath, path.c_str(), path.size() + 1);
    return ok();
  }
  bool isOpen() const { return f_ != nullptr; }
  Result<void> commit(const std::string& text) {
    bool ok = fwrite(text.data(), 1, text.size(), f_) == text.size();
    ok = (fclose(std::exchange(f_, nullptr)) == 0) && ok;
    gJsonPath[0] = '\0';
    if (!ok) return errnoError(path_);
    return mknet::ok();
  }

 private:
  FILE* f_ = nullptr;
  std::string path_;
};

// ---------------------------------------------------------------------------

void usage(FILE* f) {
  fprintf(f,
          "usage: %s [--json PATH] [--quick] [--help]\n"
          "Measures mknet's IPC building blocks between two forked processes pinned to CPUs:\n"
          "ring descriptors/s (polled), 1500 B payloads through pool+rings, ring round trips\n"
          "(polled, eventfd doorbell across CPUs and on one CPU, doorbell after a 20 us spin),\n"
          "and for comparison a Unix socket and a Cap'n Proto call round trip.\n"
          "  --json PATH  also write the figures as JSON to PATH\n"
          "  --quick      shorter runs (100k samples, < 10 s in all)\n"
          "Build it Release (-O2); run it on an otherwise idle machine.\n",
          kProg);
}

// Prints the one line main() ends with; `what` is left out when the message
// already starts with it.
int fail(const char* what, const Error& e) {
  std::string m = e.message();
  if (m.rfind(what, 0) == 0)
    fprintf(stderr, "%s: %s\n", kProg, m.c_str());
  else
    fprintf(stderr, "%s: %s: %s\n", kProg, what, m.c_str());
  return 1;
}

}  // namespace

int run(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      usage(stdout);
      return 0;
    } else if (a == "--quick") {
      opt.quick = true;
    } else if (a == "--json" && i + 1 < argc) {
      opt.jsonPath = argv[++i];
    } else if (a.rfind("--json=", 0) == 0) {
      opt.jsonPath = a.substr(7);
    } else {
      fprintf(stderr, "%s: unknown or incomplete argument '%s'\n", kProg, a.c_str());
      usage(stderr);
      return 2;
    }
  }
  // Open the JSON file first, so a bad path fails before the 20 s of runs;
  // a run that fails later removes it rather than leave an empty file.
  JsonFile json;
  if (!opt.jsonPath.empty()) {
    if (auto r = json.open(opt.jsonPath); !r) return fail("write JSON", r.error());
  }
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = onWatchdog;
  sigaction(SIGALRM, &sa, nullptr);
  alarm(kWatchdogSeconds);
  setPhase(kStartup);

  const Budget bud = budgetFor(opt);
  const Cpus cpus = pickCpus();
  const std::string noSecondCpu = "skipped: needs 2 usable CPUs";
  const std::string cross =
      cpus.b ? "CPU " + std::to_string(cpus.a) + " <-> " + std::to_string(*cpus.b) : "";
  Report rep;

  printf("mknet bench ipc  (%s, %ld CPUs, %s)%s\n", hostName().c_str(),
         sysconf(_SC_NPROCESSORS_ONLN), isoDate().c_str(), opt.quick ? "  --quick" : "");
  const std::string idle = cpuidleDriver(), haltPoll = guestHaltPollNs();
  printf("%s, kernel %s, cpuidle %s%s; parent on CPU %d, peer on CPU %s\n", cpuModel().c_str(),
         kernelRelease().c_str(), idle.empty() ? "?" : idle.c_str(),
         haltPoll.empty() ? "" : (" (guest_halt_poll_ns " + haltPoll + ")").c_str(), cpus.a,
         cpus.b ? std::to_string(*cpus.b).c_str() : "-");
  rep.loadBefore = loadAverage1m();
  rep.othersBefore = otherRunnable();
  if (rep.othersBefore > 0.2)
    printf(
        "WARNING: %.1f other tasks runnable on average (load %.2f): the figures below share\n"
        "         the CPUs with them and will be noisy; run on an idle machine.\n",
        rep.othersBefore, rep.loadBefore);
  Report::row("metric", "value", "target / reference", "detail");

  // 1. ring throughput
  setPhase(kRingTp);
  if (cpus.b) {
    auto r = ringThroughput(cpus, bud);
    if (!r) return fail("ring throughput", r.error());
    rep.metrics.emplace_back("ring_desc_per_s_polled", r->perSecond);
    rep.metrics.emplace_back("ring_desc_per_s_polled_window_min", r->windowMin);
    rep.metrics.emplace_back("ring_desc_per_s_polled_window_max", r->windowMax);
    Report::row(
        "ring descriptors/s (polled)", fmt("%.1f M/s", r->perSecond / 1e6),
        ">= 4 M/s" + Report::verdict(r->perSecond >= 4e6),
        fmt2("windows %.0f-%.0f M/s; ", r->windowMin / 1e6, r->windowMax / 1e6) +
            fmt2("%.0f M checked in %.2f s", static_cast<double>(r->count) / 1e6, r->seconds));
  } else {
    rep.metrics.emplace_back("ring_desc_per_s_polled", std::nullopt);
    Report::row("ring descriptors/s (polled)", "n/a", ">= 4 M/s", noSecondCpu);
  }

  // 2. pool + rings, 1500-byte payloads
  setPhase(kPoolTp);
  if (cpus.b) {
    auto r = poolThroughput(cpus, bud);
    if (!r) return fail("pool throughput", r.error());
    rep.metrics.emplace_back("pool_ring_gbps_1500", r->gbps);
    rep.metrics.emplace_back("pool_ring_mdesc_per_s_1500", r->tp.perSecond / 1e6);
    rep.metrics.emplace_back("pool_ring_mdesc_per_s_1500_window_min", r->tp.windowMin / 1e6);
    rep.metrics.emplace_back("pool_ring_mdesc_per_s_1500_window_max", r->tp.windowMax / 1e6);
    Report::row("pool+ring 1500 B payload", fmt("%.1f Gbit/s", r->gbps), "ref 3.6-4.7 M/s",
                fmt("%.2f M desc/s ", r->tp.perSecond / 1e6) +
                    fmt2("(windows %.2f-%.2f); ", r->tp.windowMin / 1e6, r->tp.windowMax / 1e6) +
                    fmt("%.1f M checked", static_cast<double>(r->tp.count) / 1e6));
  } else {
    rep.metrics.emplace_back("pool_ring_gbps_1500", std::nullopt);
    rep.metrics.emplace_back("pool_ring_mdesc_per_s_1500", std::nullopt);
    Report::row("pool+ring 1500 B payload", "n/a", "", noSecondCpu);
  }

  // 3. ring round trips
  setPhase(kRingRtt);
  struct RttCase {
    const char* key;
    const char* label;
    bool crossCpu;
    WaitPolicy policy;
    Clock::duration budget;
    const char* target;
    std::optional<double> p50Limit;
  };
  const RttCase cases[] = {
      {"rtt_polled_us",
       "RTT polled, across CPUs     p50/p99",
       true,
       {WaitMode::kPoll},
       bud.ringRttTime,
       "<= 2 us p50",
       2.0},
      {"rtt_doorbell_cross_cpu_us",
       "RTT doorbell, across CPUs   p50/p99",
       true,
       {WaitMode::kSleep},
       bud.doorbellRttTime,
       "ref ~16 us",
       std::nullopt},
      {"rtt_doorbell_same_cpu_us",
       "RTT doorbell, same CPU      p50/p99",
       false,
       {WaitMode::kSleep},
       bud.doorbellRttTime,
       "ref ~4 us",
       std::nullopt},
      {"rtt_doorbell_spin20us_cross_cpu_us",
       "RTT 20us spin+doorbell, across p50/p99",
       true,
       {WaitMode::kSpinSleep, 20us},
       bud.ringRttTime,
       "~ polled",
       std::nullopt},
  };
  for (const RttCase& c : cases) {
    if (c.crossCpu && !cpus.b) {
      rep.addLatency(c.key, c.label, std::nullopt, c.target, std::nullopt, noSecondCpu);
      continue;
    }
    auto r = ringRtt(cpus.a, c.crossCpu ? *cpus.b : cpus.a, c.policy, bud, c.budget);
    if (!r) return fail(c.key, r.error());
    rep.addLatency(c.key, c.label, *r, c.target, c.p50Limit);
  }

  // 4. comparison: Unix socket and Cap'n Proto
  setPhase(kSocketRtt);
  if (cpus.b) {
    auto r = unixSocketRtt(cpus, bud);
    if (!r) return fail("unix socket RTT", r.error());
    rep.addLatency("unix_socket_rtt_us", "unix socket 1 B, across CPUs p50/p99", *r, "-",
                   std::nullopt);
  } else {
    rep.addLatency("unix_socket_rtt_us", "unix socket 1 B, across CPUs p50/p99", std::nullopt, "-",
                   std::nullopt, noSecondCpu);
  }
  setPhase(kCapnpRtt);
  if (cpus.b) {
    auto r = capnpRtt(cpus, bud);
    if (!r) return fail("capnp RTT", r.error());
    rep.addLatency("capnp_call_rtt_us", "capnp call, across CPUs     p50/p99", r->rtt,
                   "ref 40-70 us", std::nullopt);
    rep.metrics.emplace_back("capnp_calls_per_s", r->callsPerSecond);
    Report::row("capnp calls/s (serial)", fmt("%.1f k/s", r->callsPerSecond / 1e3), "ref 13-23 k/s",
                "one call in flight, TwoPartyVatNetwork over socketpair");
  } else {
    rep.addLatency("capnp_call_rtt_us", "capnp call, across CPUs     p50/p99", std::nullopt,
                   "ref 40-70 us", std::nullopt, noSecondCpu);
    rep.metrics.emplace_back("capnp_calls_per_s", std::nullopt);
  }

  setPhase(kReport);
  rep.othersAfter = otherRunnable();
  if (rep.othersAfter > 0.2 && rep.othersBefore <= 0.2)
    printf("WARNING: %.1f other tasks became runnable during the run: figures may be noisy.\n",
           rep.othersAfter);
  if (json.isOpen()) {
    if (auto r = json.commit(rep.json(cpus, opt.quick)); !r) return fail("write JSON", r.error());
    printf("JSON written to %s\n", opt.jsonPath.c_str());
  }
  alarm(0);
  return 0;
}

}  // namespace mknet::bench

int main(int argc, char** argv) { return mknet::bench::run(argc, argv); }
