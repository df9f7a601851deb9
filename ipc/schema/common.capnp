@0x9c4d99c13602ed2a;
# Types shared by every mknet control interface.
using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("mknet::schema");

# A capability that carries one file descriptor (a memfd region or an eventfd
# doorbell). Cap'n Proto passes the fd along with the capability over a Unix
# socket (TwoPartyVatNetwork with maxFds > 0); the receiver obtains it with
# Capability::Client::getFd() and dups it, because the fd belongs to the
# capability and is closed when the capability is dropped.
interface FdCap {
  # What the fd is ("pool-region", "doorbell-to-stack", ...), for logs.
  describe @0 () -> (what :Text);
}

struct Counter {
  name @0 :Text;
  value @1 :UInt64;
}
