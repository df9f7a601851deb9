// Engine: lwIP as mknet's protocol engine, behind an interface free of lwIP
// types. Only engine.cc, tcp_socket.cc and udp_socket.cc (via engine_lwip.h) include lwIP: Debian's lwIP must never share
// a translation unit with system socket headers (<netinet/tcp.h> redefines
// TCP_MSS; see DESIGN.md's dependency traps).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>

#include "ipc/session_region.h"

namespace mknet::stack {

struct EngineConfig {
  uint32_t ip = 0;       // host byte order
  uint32_t netmask = 0;
  uint32_t gateway = 0;  // 0: none
  std::array<uint8_t, 6> mac{};
  uint16_t mtu = 1500;
  uint32_t rxBuffers = 0;  // pool buffers input() may be given (indices 0..rxBuffers-1)
};

// Where the engine's outgoing frames go and its received buffers return; the
// driver port implements it.
class FrameSink {
 public:
  virtual ~FrameSink() = default;
  // A pool buffer to build one outgoing frame in; empty when no driver is
  // attached or no buffer is free (the frame is then dropped and counted;
  // TCP retransmits).
  virtual std::span<std::byte> beginFrame() = 0;
  // Queues the frame built in the buffer from the last beginFrame().
  virtual void endFrame(size_t length) = 0;
  // lwIP let go of a received buffer (its pbuf was freed).
  virtual void releaseRxBuffer(uint32_t index) = 0;
  // Buffers beginFrame() could hand out now (for UDP flow control); a large
  // number when frames are dropped anyway (no driver).
  virtual uint32_t txBuffersFree() const = 0;
};

struct EngineCounters {
  uint64_t rxFrames = 0, txFrames = 0, txNoBuffer = 0, inputErrors = 0;
  uint64_t rxCopied = 0;  // frames copied out of the pool because it ran low
  uint64_t kicked = 0;    // connections prompted to retransmit after a link outage
  uint64_t acceptNoSlot = 0, udpRxDropped = 0, badTxRecords = 0;
  uint64_t timeWaitRecycled = 0;  // TIME_WAIT connections ended early by a new SYN (see engine.cc)
  uint64_t timeWaitTrimmed = 0;   // ...or because more than kMaxTimeWait were waiting
};

class EngineSocket;

// One memory slot of an app session a socket lives in.
struct SlotMemory {
  uint32_t slot = 0;
  ipc::SlotStatus* status = nullptr;
  ipc::SlotAppFlags* appFlags = nullptr;
  ipc::RingControl* rx = nullptr;  // stack -> app
  ipc::RingControl* tx = nullptr;  // app -> stack
  uint32_t ringBytes = 0;
};

// What a socket needs from the session that owns it.
class SocketOwner {
 public:
  virtual ~SocketOwner() = default;
  // Something was posted for the app (data, status): wake it if it sleeps.
  virtual void posted() = 0;
  // A listener accepted a connection: a fresh slot for it, or nothing if the
  // session has none free (the connection is then reset).
  virtual std::optional<SlotMemory> allocateSlot() = 0;
  // Takes ownership of a socket created for an accepted connection.
  virtual void adopt(std::unique_ptr<EngineSocket> socket) = 0;
  // The app broke one of the socket's rings (an index out of range): the
  // owner closes the app's session at its next turn (not from inside this
  // call, which may come from an lwIP callback of the socket itself).
  virtual void ringBroken(uint32_t slot, const char* which) = 0;
};

enum class SocketKind { kTcp, kUdp };

// Socket options the engine implements (the session maps Linux constants).
enum class SocketOption {
  kReuseAddr, kKeepAlive, kNoDelay, kKeepIdle, kKeepIntvl, kKeepCnt,
  kLingerOnOff, kLingerSeconds, kRcvBuf, kSndBuf,
};

// Every method that can fail returns 0 or a Linux errno value.
class EngineSocket {
 public:
  virtual ~EngineSocket() = default;
  virtual int bind(uint32_t ip, uint16_t port) = 0;
  virtual int listen(int backlog) = 0;
  // Starts connecting (TCP) or sets the default peer (UDP). 0 if started;
  // completion is posted in the slot status (kEvConnected or kEvError).
  virtual int connect(uint32_t ip, uint16_t port) = 0;
  virtual int shutdown(bool rd, bool wr) = 0;
  // Graceful close: data still in the tx ring is sent, then FIN. The socket
  // finishes in the background; finished() says when its slot may be reused.
  virtual void close() = 0;
  // Abortive close (SO_LINGER 0, app death): RST, done at once.
  virtual void abort() = 0;
  virtual bool finished() const = 0;
  virtual int setOption(SocketOption o, int value) = 0;
  virtual int getOption(SocketOption o, int* value) const = 0;
  // The app wrote to the tx ring or read from the rx ring.
  virtual void pump() = 0;
  // A handle on the same socket for another session (a process that
  // inherited it across fork), in that session's slot `mem`; nullptr if this
  // kind of socket cannot be shared (only listeners can).
  virtual std::unique_ptr<EngineSocket> share(const SlotMemory& mem, SocketOwner& owner) = 0;
  virtual uint32_t slot() const = 0;
};

class Engine {
 public:
  // Starts lwIP (once per process) with one Ethernet netif on `sink`.
  Engine(const EngineConfig& config, FrameSink& sink);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // A received frame in pool buffer `index` (already validated by the caller:
  // length within the buffer). lwIP holds the buffer until it frees the pbuf,
  // then sink.releaseRxBuffer(index) is called.
  void input(uint32_t index, std::byte* data, uint32_t length, uint32_t bufferSize);
  // The same for a frame the engine must copy (the caller keeps its buffer):
  // used when the pool runs low, so out-of-order segments and refused data
  // held by lwIP can never starve the driver of receive buffers.
  void inputCopy(const std::byte* data, uint32_t length);
  void setLink(bool up);
  bool linkUp() const;
  // The link came back after an outage: every connection resends what is
  // unacknowledged and prompts its peer to do the same (see engine.cc).
  void kickConnections();
  uint32_t ip() const;  // host byte order
  // The MAC the netif answers ARP with (the driver's, from its registration).
  void setMac(const std::array<uint8_t, 6>& mac);
  // Runs due lwIP timers; returns ms until the next one.
  uint32_t runTimers();
  // UDP senders that stopped for want of transmit buffers try again; call
  // after transmit buffers came back. Returns how many were retried.
  uint32_t retryBlockedSenders();

  std::unique_ptr<EngineSocket> openSocket(SocketKind kind, const SlotMemory& mem, SocketOwner& owner);

  const EngineCounters& counters() const;
  uint32_t liveSockets() const;
  // True while a TCP connection has data or a FIN its peer has not yet
  // acknowledged (lwIP still owes it a transmission or a retransmission).
  bool unacknowledged() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace mknet::stack
