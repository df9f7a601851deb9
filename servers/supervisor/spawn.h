// spawnProcess: fork/exec of a supervised child, and how a child ended, in words.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "ipc/result.h"

namespace mknet::supervisor {

// Starts argv (argv[0] searched in PATH when it has no slash) as a child of
// the calling process. In the child, before exec:
//  - PR_SET_PDEATHSIG = SIGKILL, so it dies with the supervisor (also if the
//    supervisor is SIGKILLed); it exits at once if the supervisor is already
//    gone. The death signal follows the forking *thread*: call this from the
//    thread that lives as long as the supervisor (its main thread).
//  - its own process group, so a Ctrl-C on the supervisor's terminal reaches
//    only the supervisor, which then stops the children in order;
//  - an empty signal mask and default dispositions (the supervisor blocks
//    SIGCHLD/SIGTERM/SIGINT for its signalfd and ignores SIGPIPE; exec keeps
//    both, and a child must not inherit them);
//  - stdin from /dev/null; stdout and stderr to `outFd` if >= 0, else inherited;
//  - every other fd above 2 close-on-exec.
// Returns the child's PID once exec has succeeded. If exec (or a step before
// it) failed, the child has already been reaped and the error carries the
// errno with context ("exec /x/mknet-tapdrv: No such file or directory").
Result<pid_t> spawnProcess(const std::vector<std::string>& argv, int outFd);

// A waitpid() status in words: "exit code 3", "signal 9 (Killed)".
std::string describeWaitStatus(int status);

}  // namespace mknet::supervisor
