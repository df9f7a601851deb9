@0xd9c6ec3292edf9fa;
# App sessions: the control plane between libmknet and the stack. Data never
# crosses here: it moves through the session's shared-memory rings.
using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("mknet::schema");
using Common = import "common.capnp";

const sessionAbiVersion :UInt32 = 1;

enum SocketType {
  tcp @0;
  udp @1;
}

struct SockAddr {
  ip @0 :UInt32;     # IPv4, host byte order
  port @1 :UInt16;   # host byte order
}

# Every call answers with `err`: 0 on success, else a Linux errno value, so
# libmknet can hand it to the application unchanged.
interface Session {
  socket @0 (type :SocketType) -> (err :Int32, id :UInt32, slot :UInt32);
  bind @1 (id :UInt32, addr :SockAddr) -> (err :Int32, bound :SockAddr);
  listen @2 (id :UInt32, backlog :Int32) -> (err :Int32);
  connect @3 (id :UInt32, addr :SockAddr) -> (err :Int32);
  shutdown @4 (id :UInt32, how :Int32) -> (err :Int32);
  close @5 (id :UInt32) -> (err :Int32);
  setOption @6 (id :UInt32, level :Int32, name :Int32, value :Data) -> (err :Int32);
  getOption @7 (id :UInt32, level :Int32, name :Int32) -> (err :Int32, value :Data);
  names @8 (id :UInt32) -> (err :Int32, local :SockAddr, peer :SockAddr);
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
