@0x9df61ce39336cad8;
# Bench-local schema: the smallest possible Cap'n Proto call, to price a
# control-plane round trip next to the shared-memory rings (ipc_bench.cc).
using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("mknet::bench::schema");

interface Echo {
  # Returns its argument unchanged; the caller checks it.
  echo @0 (v :UInt64) -> (v :UInt64);
}
