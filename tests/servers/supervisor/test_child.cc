// mknet-supervisor-test-child: a stand-in for the stack or a driver in the
// supervisor's tests. It records what happens to it, with CLOCK_MONOTONIC
// times (one clock for every process), so a test can check the order in which
// processes were stopped from data rather than from sleeps.
//
//   --name N            how it names itself in the record (default "child")
//   --record FILE       append "N EVENT MONOTONIC_NS PID" lines: start, term, exit
//   --exit-after-ms T   exit by itself after T ms ...
//   --exit-code C       ... with code C (default 0)
//   --term-delay-ms D   on SIGTERM, take D ms to exit (default 0)
//   --ignore-term       ignore SIGTERM (only SIGKILL ends it)
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

volatile sig_atomic_t gTerm = 0;
void onTerm(int) { gTerm = 1; }

std::string gName = "child", gRecord;

void record(const char* event) {
  if (gRecord.empty()) return;
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  char line[256];
  int n = std::snprintf(line, sizeof line, "%s %s %lld %d\n", gName.c_str(), event,
                        static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec,
                        static_cast<int>(::getpid()));
  int fd = ::open(gRecord.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  ssize_t w = ::write(fd, line, static_cast<size_t>(n));  // one write: lines never interleave
  (void)w;
  ::close(fd);
}

void sleepMs(long ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1000000L};
  while (::nanosleep(&ts, &ts) != 0 && !gTerm) {
  }
}

}  // namespace

int main(int argc, char** argv) {
  long exitAfter = -1, termDelay = 0;
  int exitCode = 0;
  bool ignoreTerm = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "test-child: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--name")
      gName = value();
    else if (a == "--record")
      gRecord = value();
    else if (a == "--exit-after-ms")
      exitAfter = std::atol(value().c_str());
    else if (a == "--exit-code")
      exitCode = std::atoi(value().c_str());
    else if (a == "--term-delay-ms")
      termDelay = std::atol(value().c_str());
    else if (a == "--ignore-term")
      ignoreTerm = true;
    else {
      std::fprintf(stderr, "test-child: unknown argument '%s'\n", a.c_str());
      return 2;
    }
  }
  struct sigaction sa {};
  sa.sa_handler = ignoreTerm ? SIG_IGN : onTerm;
  ::sigaction(SIGTERM, &sa, nullptr);
  record("start");
  std::printf("%s: started, pid %d\n", gName.c_str(), static_cast<int>(::getpid()));
  std::fflush(stdout);

  timespec start{};
  ::clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    if (gTerm) {
      record("term");
      gTerm = 0;
      sleepMs(termDelay);
      record("exit");
      return 0;
    }
    if (exitAfter >= 0) {
      timespec now{};
      ::clock_gettime(CLOCK_MONOTONIC, &now);
      long elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
      if (elapsed >= exitAfter) {
        record("exit");
        return exitCode;
      }
    }
    sleepMs(10);
  }
}
