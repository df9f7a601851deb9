@0xc24712d09ca5d379;
# Driver registration: a NIC driver process attaches to the stack's packet pool.
using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("mknet::schema");
using Common = import "common.capnp";

const driverAbiVersion :UInt32 = 1;

struct DriverInfo {
  name @0 :Text;          # the device, e.g. the TAP interface name "mk0"
  mac @1 :Data;           # 6 bytes, the MAC the stack uses on this link
  mtu @2 :UInt32;         # largest IP packet, without the Ethernet header
  linkUp @3 :Bool;
  pid @4 :UInt32;
  abiVersion @5 :UInt32;  # must equal driverAbiVersion
}

# What the stack hands a driver: the pool region (buffers and the four rings
# rxFree, rxActive, txActive, txFree, at names fixed by the content version)
# and two doorbells. The driver checks every number against its own build.
struct PoolAttachment {
  region @0 :Common.FdCap;       # memfd, RegionKind kPacketPool
  contentVersion @1 :UInt32;
  bufferCount @2 :UInt32;
  ringCapacity @3 :UInt32;
  toDriver @4 :Common.FdCap;     # eventfd the stack rings (rxFree / txActive)
  toStack @5 :Common.FdCap;      # eventfd the driver rings (rxActive / txFree)
}

struct DriverStats {
  rxFrames @0 :UInt64;
  rxBytes @1 :UInt64;
  rxDropped @2 :UInt64;   # frames read while rxFree was empty, or oversized
  txFrames @3 :UInt64;
  txBytes @4 :UInt64;
  txErrors @5 :UInt64;
}

# The driver's registration, held by the stack for as long as the driver lives.
# The stack learns of the driver's death when this connection closes.
interface DriverSession {
  setLink @0 (up :Bool);
  reportStats @1 (stats :DriverStats);
}

interface DriverRegistry {
  # A restarted driver registers again under the same name: the stack first
  # reclaims the old instance's buffers and resets the rings.
  register @0 (info :DriverInfo) -> (attachment :PoolAttachment, session :DriverSession);
}
