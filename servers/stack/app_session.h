// AppSession: one application's session with the stack — its shared memory,
// its sockets, and the handler of its control mailbox (socket, bind,
// connect, close...). When the app dies its capability (SessionCap) is
// dropped and appGone() resets every connection the app still had open (RST
// to the peers). Sockets the app had already closed finish sending what it wrote,
// as on Linux; the registry frees the session once they are done.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ipc/doorbell.h"
#include "ipc/schema/session.capnp.h"
#include "ipc/session_region.h"
#include "servers/stack/engine.h"

namespace mknet::stack {

class SessionRegistry;

struct SessionCounters {
  uint64_t badNotify = 0;    // notifications naming a slot that doesn't exist
  uint64_t staleNotify = 0;  // for a socket closed since (normal)
  uint64_t corruptRings = 0;
  uint64_t badControl = 0;   // control requests with an unknown operation
};

class AppSession final : public SocketOwner {
 public:
  AppSession(SessionRegistry& registry, Engine& engine, ipc::SessionRegion region, ipc::Doorbell toApp,
             uint32_t pid, std::string name);
  ~AppSession() override;

  // The app's capability was dropped (the app died or let go).
  void appGone();
  // True once the app is gone and nothing of it is left to finish.
  bool reapable() const { return gone_ && closing_.empty(); }
  // True while sockets the app closed still have data to deliver.
  bool draining() const { return !closing_.empty(); }

  // Data plane: handles the app's notifications (bounded), reaps sockets
  // that finished closing. Returns the work found.
  uint32_t poll(uint32_t budget);
  // Publishes the stack's loop counter (SessionHeader::stackBeat).
  void beat(uint64_t n);
  // Before the stack sleeps: false if notifications arrived meanwhile.
  bool prepareSleep();
  void cancelSleep();
  // After a loop round: wakes the app if something was posted and it sleeps.
  void flushWakeup();

  // SocketOwner
  void posted() override { posted_ = true; }
  std::optional<SlotMemory> allocateSlot() override;
  void adopt(std::unique_ptr<EngineSocket> socket) override;
  void ringBroken(uint32_t slot, const char* which) override;

  uint32_t openSockets() const { return openSockets_; }
  uint64_t token() const { return token_; }
  // The open socket in `slot` if its generation is `generation` (for kShare
  // from a forked child's session); nullptr otherwise.
  EngineSocket* openSocket(uint32_t slot, uint32_t generation);
  uint32_t pid() const { return pid_; }
  const std::string& name() const { return name_; }
  const SessionCounters& counters() const { return counters_; }

  // Control mailbox `mailbox` (< kControlMailboxes): handles the app's
  // pending request there, if any.
  void serveControl(uint32_t mailbox);
  // One control request (our copy, not yet validated) -> its response.
  ipc::ControlResponse control(const ipc::ControlRequest& request);

 private:
  enum class SlotUse : uint8_t { kFree, kOpen, kClosing };
  SlotMemory memoryOf(uint32_t slot);
  EngineSocket* open(uint32_t id);  // nullptr unless the slot is open
  // The app's posted close (a Notify with kCloseBit) of `slot`.
  void closeNotified(uint32_t slot, uint32_t generation);
  void freeSlot(uint32_t slot);
  // Handles up to `budget` of the app's notifications (data, posted
  // closes, control requests); a corrupt ring tears the session down.
  uint32_t takeNotifications(uint32_t budget);

  SessionRegistry& registry_;
  Engine& engine_;
  ipc::SessionRegion region_;
  ipc::Doorbell toApp_;
  uint32_t pid_;
  std::string name_;
  ipc::SpscConsumer<ipc::Notify> notify_;
  std::vector<std::unique_ptr<EngineSocket>> sockets_;
  std::vector<SlotUse> use_;
  std::vector<uint32_t> freeSlots_;
  uint32_t openSockets_ = 0;
  std::vector<uint32_t> closing_;  // slots in SlotUse::kClosing
  bool posted_ = false;
  bool gone_ = false;
  void tearDown();
  bool broken_ = false;  // the app broke a ring: its session is being closed
  bool torn_ = false;    // ...and has been
  SessionCounters counters_;
  std::array<uint32_t, ipc::kControlMailboxes> controlSeq_{};  // per mailbox, the last request served
  uint64_t token_ = 0;
};

// The Cap'n Proto face of an AppSession: it carries no calls (socket
// operations go through the shared-memory control mailbox) and exists for
// its lifetime: when the app dies its connection closes, Cap'n Proto drops
// this capability, and the session learns that the app is gone.
class SessionCap final : public schema::Session::Server {
 public:
  explicit SessionCap(AppSession* core) : core_(core) {}
  ~SessionCap() noexcept(false) { core_->appGone(); }

 private:
  AppSession* core_;
};

// Owns every session, live or finishing, for the stack's loop and the admin
// interface.
class SessionRegistry {
 public:
  AppSession* add(std::unique_ptr<AppSession> s);
  // Frees sessions whose app is gone and whose sockets finished.
  void reap();
  const std::vector<AppSession*>& sessions() const { return view_; }
  AppSession* byToken(uint64_t token) const;
  size_t liveApps() const;
  uint64_t opened = 0, closed = 0;
  SessionCounters retired;  // counters of sessions already freed

 private:
  std::vector<std::unique_ptr<AppSession>> owned_;
  std::vector<AppSession*> view_;
};

}  // namespace mknet::stack
