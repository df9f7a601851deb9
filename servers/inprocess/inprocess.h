// The single-process arrangement: the stack, the TAP driver and the app in
// one process. StackServer runs on one thread (no event loop, no control
// socket), TapDriver on another, attached to the stack's pool directly; the
// app's libmknet gets its session from the in-process stack instead of over
// a Unix socket. Everything else — engine, driver data plane, session rings,
// control mailbox, socket library — is the code the multi-process
// arrangement runs.
#pragma once

#include <memory>
#include <string>

#include "clients/lib/client_session.h"
#include "ipc/result.h"

namespace mknet::inprocess {

struct InprocessConfig {
  std::string tap;                   // persistent TAP interface to attach to
  std::string ip = "198.18.0.2/24";  // the stack's address
  std::string mac;                   // default: 02:6d:6b + the address's last three bytes
  std::string gateway;
  uint32_t spinUs = 50;
};

// Parses "tap=NAME,ip=A.B.C.D/N[,mac=..][,gateway=..][,spin-us=N]".
Result<InprocessConfig> parseConfig(const std::string& text);

// Starts the stack and the driver threads once (later calls return the
// same), then opens a session for the calling process.
Result<std::shared_ptr<client::ClientSession>> openSession(const InprocessConfig& config);

}  // namespace mknet::inprocess
