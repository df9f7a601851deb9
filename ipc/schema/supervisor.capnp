@0x80432ddd1ed42c94;
# mknet-supervisor's admin interface: the bootstrap capability of
# $MKNET_RUNTIME_DIR/supervisor.sock (mknet-supervisorctl, deploy/mknet status, tests).
using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("mknet::schema");

enum ProcessRole {
  stack @0;    # started first, stopped last
  driver @1;   # started after the stack, stopped before it
}

# How one instance of a process ended.
struct ExitInfo {
  enum Kind {
    none @0;          # it has not ended yet (never died)
    exited @1;        # exit(code)
    signaled @2;      # killed by `signal`
    startFailed @3;   # fork/exec failed: `code` is the errno
  }
  kind @0 :Kind;
  code @1 :Int32;     # exit code (exited) or errno (startFailed); 0 otherwise
  signal @2 :Int32;   # signal number (signaled); 0 otherwise
  text @3 :Text;      # "exit code 3", "signal 9 (Killed)", "exec /x: No such file or directory"
  ranMs @4 :UInt64;   # how long that instance ran
  atMs @5 :UInt64;    # when it ended, ms since the supervisor started (monotonic)
}

# One start of a process (the first one or a restart).
struct StartRecord {
  atMs @0 :UInt64;      # when it was started, ms since the supervisor started (monotonic)
  delayMs @1 :UInt64;   # the backoff delay that preceded it (0: at once)
  pid @2 :UInt32;       # 0 if the start failed
}

struct ProcessStatus {
  name @0 :Text;
  role @1 :ProcessRole;
  pid @2 :UInt32;             # 0 if not running
  running @3 :Bool;
  restarts @4 :UInt32;        # starts after the first one (failed attempts included)
  lastExit @5 :ExitInfo;      # kind none if it never ended
  uptimeMs @6 :UInt64;        # age of the running instance; 0 if not running
  nextRestartMs @7 :UInt64;   # time left until the scheduled restart; 0 if running or stopping
  argv @8 :List(Text);        # the command line it runs
  recentStarts @9 :List(StartRecord);   # the last starts (at most 32), oldest first
}

interface Supervisor {
  # Every supervised process, the stack first, then the drivers in the order given.
  status @0 () -> (processes :List(ProcessStatus));
}
