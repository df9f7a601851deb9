// SessionRegion: one app's shared memory with the stack — a status block and
// a send ring and a receive ring per socket slot, plus a notification ring.
// Created by the stack (the owner), attached by libmknet in the app. No other
// app can map it: the memfd travels only over that app's control connection.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "ipc/result.h"
#include "ipc/shm_region.h"
#include "ipc/spsc_ring.h"

namespace mknet::ipc {

inline constexpr uint32_t kSessionContentVersion = 6;

struct SessionConfig {
  uint32_t maxSockets = 256;        // socket slots per app
  uint32_t ringBytes = 256 * 1024;  // each direction, per socket; power of two
  uint32_t notifyCapacity = 1024;   // app -> stack notifications; power of two >= 2 * maxSockets + kControlMailboxes
};

// What a slot is. Written by the stack only.
enum class SlotState : uint32_t {
  kFree = 0,       // not in use (the app must not touch its rings)
  kTcp = 1,        // TCP, not yet listening or connected
  kTcpListen = 2,  // listener: its rx ring carries AcceptRecords
  kTcpConnecting = 3,
  kTcpConnected = 4,
  kTcpClosed = 5,  // was connected; the connection is gone (see events/error)
  kUdp = 6,        // rx and tx rings carry DatagramHeader + payload records
};

// Event bits, set by the stack, never cleared (a socket's history only grows).
inline constexpr uint32_t kEvRxEof = 1u << 0;    // peer sent FIN: after the rx ring drains, recv() == 0
inline constexpr uint32_t kEvReset = 1u << 1;    // connection reset/aborted: `error` says why
inline constexpr uint32_t kEvTxShut = 1u << 2;   // we sent FIN (shutdown(SHUT_WR) or close)
inline constexpr uint32_t kEvConnected = 1u << 3;
inline constexpr uint32_t kEvError = 1u << 4;    // `error` holds a pending errno (SO_ERROR)

// Per-slot status. Written by the stack only; the app copies what it reads.
struct alignas(kCacheLine) SlotStatus {
  std::atomic<uint32_t> state;       // SlotState
  std::atomic<uint32_t> events;      // kEv* bits
  std::atomic<int32_t> error;        // errno for kEvError / kEvReset (ECONNREFUSED, ECONNRESET, ...)
  std::atomic<uint32_t> generation;  // bumped each time the slot is (re)opened
  std::atomic<uint32_t> localIp;     // host byte order, valid once bound/connected
  std::atomic<uint32_t> peerIp;
  std::atomic<uint32_t> localPort;   // low 16 bits
  std::atomic<uint32_t> peerPort;
};

// Per-slot flags written by the app only (notification coalescing). The
// stack reads them but trusts nothing else about them.
struct alignas(kCacheLine) SlotAppFlags {
  // App: exchange(1) after writing the tx ring or reading the rx ring; if it
  // was 0, push a Notify. Stack: store(0) before it looks at the rings, so no
  // notification is lost.
  std::atomic<uint32_t> notifyPending;
  // App: set to 1 once the process accepts on (or polls) this listener; a
  // listener nobody accepts on gets no connections (they wait in the stack).
  std::atomic<uint32_t> acceptInterest;
  // App: set to 1 when it finds the accept ring empty in accept() or poll();
  // stack: set to 0 when it hands over a connection. A listener shared by
  // several processes (fork) gets connections only while it asks, one per
  // request, as Linux gives each to whichever process calls accept().
  std::atomic<uint32_t> acceptWanted;
};

// App -> stack: "look at this slot's rings" (new tx bytes, rx space freed).
struct Notify {
  uint32_t slot;
  uint32_t generation;  // the slot's generation as the app knows it
};

// A Notify with this slot number means "control mailbox number
// `generation` holds a new request".
inline constexpr uint32_t kControlSlot = 0xffffffffu;

// Control mailboxes per session: the app's threads each take a free one, so
// up to this many socket calls are under way at once instead of queueing
// behind one another (with one mailbox, four threads opening connections
// spent most of their futex calls waiting for it).
inline constexpr uint32_t kControlMailboxes = 8;

// A Notify whose slot carries this bit means "the app closed slot
// (slot & ~kCloseBit)", for the generation it names. close() needs no
// answer (Linux's close of a socket reports nothing the app could act on),
// so it is posted, not asked: the app goes on at once, and the stack closes
// the socket in ring order, after any data the app notified before. A slot
// stays open until the stack has read its close, so the ring holds at most
// one close and one data notification per slot, plus one request per control
// mailbox: notifyCapacity >= 2 * maxSockets + kControlMailboxes keeps it from
// ever filling.
inline constexpr uint32_t kCloseBit = 0x80000000u;

// The socket operations that are not data (close aside): each is one request and one
// response through the session's ControlMailbox. They used to be Cap'n Proto
// calls (~40-70 us each here); through shared memory they cost a ring round
// trip, which is what makes opening and closing connections cheap.
enum class ControlOp : uint32_t {
  kSocket = 1,     // a = 0 TCP, 1 UDP                 -> id = slot
  kBind = 2,       // id, ip, port                     -> ip, port (as bound)
  kListen = 3,     // id, a = backlog
  kConnect = 4,    // id, ip, port
  kShutdown = 5,   // id, a = SHUT_RD/WR/RDWR
                   // 6 was close, now a posted Notify (kCloseBit)
  kSetOption = 7,  // id, a = level, b = name, value
  kGetOption = 8,  // id, a = level, b = name          -> value
  kNames = 9,      // id                               -> ip, port, peerIp, peerPort
  kShare = 10,     // id = slot in another session of this app (inherited
                   // across fork), ip/port = that session's token (low/high),
                   // b = the slot's generation            -> id = a new slot here
};
inline constexpr uint32_t kControlValueMax = 64;  // option values (int, linger, timeval) fit

struct ControlRequest {
  uint32_t op;  // ControlOp
  uint32_t id;  // the socket's slot
  int32_t a, b;
  uint32_t ip, port;  // host byte order
  uint32_t valueLength;
  uint8_t value[kControlValueMax];
};

struct ControlResponse {
  int32_t err;  // 0 or a Linux errno, handed to the application unchanged
  uint32_t id;
  uint32_t ip, port, peerIp, peerPort;
  uint32_t valueLength;
  uint8_t value[kControlValueMax];
};

// One request at a time per mailbox (libmknet gives each calling thread a
// mailbox of its own while the call lasts).
struct alignas(kCacheLine) ControlMailbox {
  // App: writes `request`, then requestSeq (release), then queues a Notify
  // {kControlSlot, this mailbox's index}. It touches neither again until
  // responseSeq matches.
  std::atomic<uint32_t> requestSeq;
  ControlRequest request;
  // Stack: copies `request` once requestSeq changed (then validates its
  // copy), writes `response`, then responseSeq = requestSeq (release).
  alignas(kCacheLine) std::atomic<uint32_t> responseSeq;
  ControlResponse response;
};

// Listener rx ring records: one per accepted connection, already given its
// own slot by the stack.
struct AcceptRecord {
  uint32_t slot;
  uint32_t generation;
};

// UDP ring records: a header, then `length` payload bytes. The producer writes
// a whole record or none; the consumer takes a record only once all of it is
// in the ring.
struct DatagramHeader {
  uint32_t length;  // payload bytes, <= kMaxDatagram
  uint32_t ip;      // peer (source on rx, destination on tx), host order
  uint32_t port;    // low 16 bits
  uint32_t reserved;
};
inline constexpr uint32_t kMaxDatagram = 65507;

// Header at the front of the session area. Who writes what is on each field.
struct alignas(kCacheLine) SessionHeader {
  // App: set before it sleeps on the toApp doorbell, after which it re-checks
  // its condition. Stack: exchange(0) after posting anything; ring if it was 1.
  std::atomic<uint32_t> appSleeping;
  // Stack: bumped after every post (data, status change). Lets an app thread
  // see that something changed while it was deciding to sleep.
  std::atomic<uint32_t> stackEpoch;
  // Stack: set to 1 when the stack closes the session (bad behaviour, shutdown).
  std::atomic<uint32_t> closed;
  // Stack, at creation: a random number naming this session in kShare
  // requests. Only processes that mapped the session (the app and its
  // forked children) can know it.
  uint64_t token;
  // Stack: makeBeat(round, cpu), written several times per round of its loop
  // while it runs (working or spinning), never while it sleeps or waits for
  // a CPU. An app thread spinning for the stack stops spinning when this
  // stands still and names the app thread's own CPU: the stack is then
  // asleep (it will ring) or waiting for that CPU, and the spin would only
  // take CPU time the stack may need (client::StackWatch). Own cache line:
  // the stack writes it constantly.
  alignas(kCacheLine) std::atomic<uint64_t> stackBeat;
};

// SessionHeader::stackBeat: the stack's round counter above the CPU it last
// ran on (kBeatNoCpu: not known).
inline constexpr unsigned kBeatCpuBits = 16;
inline constexpr uint64_t kBeatNoCpu = (uint64_t{1} << kBeatCpuBits) - 1;
inline constexpr uint64_t makeBeat(uint64_t round, int cpu) {
  const uint64_t c = cpu < 0 || static_cast<uint64_t>(cpu) >= kBeatNoCpu ? kBeatNoCpu : static_cast<uint64_t>(cpu);
  return (round << kBeatCpuBits) | c;
}
// The CPU a beat names, or -1.
inline constexpr int beatCpu(uint64_t beat) {
  const uint64_t c = beat & kBeatNoCpu;
  return c == kBeatNoCpu ? -1 : static_cast<int>(c);
}

// What a stack hands an app for a session: the region, its layout, and the
// two doorbells (over Cap'n Proto between processes, directly within one).
struct SessionOffer {
  UniqueFd region;
  SessionConfig config;
  UniqueFd toApp;    // the stack rings it
  UniqueFd toStack;  // the app rings it
};

// The views both sides build over the region. Validated once at attach.
class SessionRegion {
 public:
  static Result<SessionRegion> create(const SessionConfig& config);
  static Result<SessionRegion> attach(UniqueFd fd, const SessionConfig& config);

  const SessionConfig& config() const { return config_; }
  ShmRegion& region() { return region_; }
  SessionHeader* header() const { return header_; }
  SlotStatus* status(uint32_t slot) const { return &status_[slot]; }
  SlotAppFlags* appFlags(uint32_t slot) const { return &appFlags_[slot]; }
  RingControl* rxRing(uint32_t slot) const { return rx_[slot]; }  // stack -> app bytes
  RingControl* txRing(uint32_t slot) const { return tx_[slot]; }  // app -> stack bytes
  RingControl* notifyRing() const { return notify_; }
  // Mailbox `i` < kControlMailboxes.
  ControlMailbox* control(uint32_t i) const { return &control_[i]; }

  // Stack only, while the app cannot be using the slot: empties its rings and
  // flags before the slot is handed out again.
  void resetSlot(uint32_t slot);

 private:
  SessionRegion(ShmRegion region, SessionConfig config) : region_(std::move(region)), config_(config) {}
  Result<void> locate(bool create);

  ShmRegion region_;
  SessionConfig config_;
  SessionHeader* header_ = nullptr;
  SlotStatus* status_ = nullptr;
  SlotAppFlags* appFlags_ = nullptr;
  std::vector<RingControl*> rx_, tx_;
  RingControl* notify_ = nullptr;
  ControlMailbox* control_ = nullptr;
};

}  // namespace mknet::ipc
