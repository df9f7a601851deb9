// Helpers shared by the tests that run real Debian programs on mknet.
#pragma once

#include <map>
#include <string>

#include "tests/integration/testbed.h"

namespace mknet::itest {

// Writes `bytes` random bytes to `path`; false on failure.


// Fields of an iperf3 --json result file, flattened by python3:
// sent_bytes, received_bytes, sent_bps, received_bps, and for UDP packets,
// lost_packets, lost_percent; "error" if iperf3 reported one.
std::map<std::string, std::string> iperf3Result(const std::string& jsonPath);

// wrk's summary: requests, requests_per_sec, non_2xx, socket_errors (sum of
// connect/read/write/timeout), bad_bodies (from the check script).
std::map<std::string, std::string> wrkResult(const std::string& output);

// A static site for nginx under `dir`: nginx.conf (listening on `port`, as
// one process or a master with `workers` workers), www/index.html (4 KiB of
// known text, also returned as *indexBody) and www/big.bin (random, `bigBytes`),
// and wrk-check.lua (counts responses that are not 200 with exactly that
// body; prints bad_bodies=N). Returns "" or what failed.
std::string writeNginxSite(const std::string& dir, int port, bool master, int workers, size_t bigBytes,
                           std::string* indexBody);

}  // namespace mknet::itest
