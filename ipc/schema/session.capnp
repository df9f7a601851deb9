@0xd9c6ec3292edf9fa;
# App sessions: how libmknet opens a session with the stack. Neither data nor
# socket operations cross here: both go through the session's shared memory.
using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("mknet::schema");
using Common = import "common.capnp";

const sessionAbiVersion :UInt32 = 3;

# The app's session. It has no methods: socket operations go through the
# control mailbox in the session's shared memory (ipc/session_region.h),
# data through its rings. The capability lives as long as the app's
# connection, so when the app dies the stack learns it from the hang-up.
interface Session {
}

struct SessionAttachment {
  region @0 :Common.FdCap;      # memfd, RegionKind kSession
  contentVersion @1 :UInt32;
  maxSockets @2 :UInt32;
  ringBytes @3 :UInt32;         # capacity of each socket's send and receive ring
  eventCapacity @4 :UInt32;
  toApp @5 :Common.FdCap;       # eventfd the stack rings
  toStack @6 :Common.FdCap;     # eventfd the app rings
}

interface SessionFactory {
  open @0 (pid :UInt32, name :Text, abiVersion :UInt32)
      -> (attachment :SessionAttachment, session :Session);
}
