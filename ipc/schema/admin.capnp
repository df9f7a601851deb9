@0xc2756c9b33547fec;
# Administration: status and counters for `deploy/mknet status` and tests.
using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("mknet::schema");
using Common = import "common.capnp";
using Driver = import "driver.capnp";
using Session = import "session.capnp";

struct DriverStatus {
  name @0 :Text;
  pid @1 :UInt32;
  linkUp @2 :Bool;
  registrations @3 :UInt32;   # how often a driver registered under this name
  stats @4 :Driver.DriverStats;
}

struct StackStatus {
  pid @0 :UInt32;
  uptimeMs @1 :UInt64;
  drivers @2 :List(DriverStatus);
  sessions @3 :UInt32;
  sockets @4 :UInt32;
  poolBuffers @5 :UInt32;
  poolFree @6 :UInt32;
  counters @7 :List(Common.Counter);   # drops by reason, errors, ...
}

interface Admin {
  status @0 () -> (status :StackStatus);
}

# The bootstrap capability of $MKNET_RUNTIME_DIR/stack.sock.
interface Stack {
  drivers @0 () -> (registry :Driver.DriverRegistry);
  sessions @1 () -> (factory :Session.SessionFactory);
  admin @2 () -> (admin :Admin);
}
