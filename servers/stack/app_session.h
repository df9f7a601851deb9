// AppSession: one application's session with the stack — its shared memory,
// its sockets, and the Cap'n Proto Session interface for the rare control
// operations. Lives exactly as long as the app's capability: when the app
// dies its connection closes, Cap'n Proto drops the capability, and the
// destructor aborts every connection (RST to peers) and frees the memory.
#pragma once

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
  uint64_t badNotify = 0;  // notifications naming a slot that isn't open
  uint64_t corruptRings = 0;
};

class AppSession final : public schema::Session::Server, public SocketOwner {
 public:
  AppSession(SessionRegistry& registry, Engine& engine, ipc::SessionRegion region, ipc::Doorbell toApp,
             uint32_t pid, std::string name);
  ~AppSession() override;

  // Data plane: handles the app's notifications (bounded), reaps sockets
  // that finished closing. Returns the work found.
  uint32_t poll(uint32_t budget);
  // Before the stack sleeps: false if notifications arrived meanwhile.
  bool prepareSleep();
  void cancelSleep();
  // After a loop round: wakes the app if something was posted and it sleeps.
  void flushWakeup();

  // SocketOwner
  void posted() override { posted_ = true; }
  std::optional<SlotMemory> allocateSlot() override;
  void adopt(std::unique_ptr<EngineSocket> socket) override;

  uint32_t openSockets() const { return openSockets_; }
  uint32_t pid() const { return pid_; }
  const std::string& name() const { return name_; }
  const SessionCounters& counters() const { return counters_; }

 protected:
  kj::Promise<void> socket(SocketContext context) override;
  kj::Promise<void> bind(BindContext context) override;
  kj::Promise<void> listen(ListenContext context) override;
  kj::Promise<void> connect(ConnectContext context) override;
  kj::Promise<void> shutdown(ShutdownContext context) override;
  kj::Promise<void> close(CloseContext context) override;
  kj::Promise<void> setOption(SetOptionContext context) override;
  kj::Promise<void> getOption(GetOptionContext context) override;
  kj::Promise<void> names(NamesContext context) override;

 private:
  enum class SlotUse : uint8_t { kFree, kOpen, kClosing };
  SlotMemory memoryOf(uint32_t slot);
  EngineSocket* open(uint32_t id);  // nullptr unless the slot is open
  void freeSlot(uint32_t slot);

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
  uint32_t openSockets_ = 0, closing_ = 0;
  bool posted_ = false;
  bool broken_ = false;  // the app broke its notify ring: no more polling
  SessionCounters counters_;
};

// The set of live sessions, for the stack's loop and the admin interface.
class SessionRegistry {
 public:
  void add(AppSession* s) { sessions_.push_back(s); }
  void remove(AppSession* s);
  const std::vector<AppSession*>& sessions() const { return sessions_; }
  uint64_t opened = 0, closed = 0;

 private:
  std::vector<AppSession*> sessions_;
};

}  // namespace mknet::stack
