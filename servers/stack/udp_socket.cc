// UdpSocket: one UDP socket of an app session on an lwIP pcb (lwIP side; see engine_lwip.h).
#include "servers/stack/engine_lwip.h"

#include <algorithm>

namespace mknet::stack {

using ipc::SlotState;

namespace {

class UdpSocket final : public EngineSocket {
 public:
  static constexpr uint32_t kTxReserve = 64;  // transmit buffers UDP leaves to TCP
  UdpSocket(Engine::Impl& eng, const SlotMemory& mem, SocketOwner& owner, udp_pcb* pcb)
      : eng_(eng), mem_(mem), owner_(owner), pcb_(pcb), rx_(mem.rx, mem.ringBytes), tx_(mem.tx, mem.ringBytes) {
    ++eng_.liveSockets;
    udp_recv(pcb_, onRecv, this);
    mem_.status->state.store(static_cast<uint32_t>(SlotState::kUdp), std::memory_order_release);
  }
  ~UdpSocket() override {
    std::erase(eng_.blockedSenders, static_cast<EngineSocket*>(this));
    if (pcb_ != nullptr) udp_remove(pcb_);
    --eng_.liveSockets;
  }
  uint32_t slot() const override { return mem_.slot; }

  int bind(uint32_t ip, uint16_t port) override {
    if (pcb_->local_port != 0) return EINVAL;
    ip_addr_t a = toLwip(ip);
    int e = errnoOf(udp_bind(pcb_, ip == 0 ? IP4_ADDR_ANY : &a, port));
    if (e == 0) publishNames();
    return e;
  }
  int listen(int) override { return EOPNOTSUPP; }
  int connect(uint32_t ip, uint16_t port) override {
    if (ip == 0 && port == 0) {  // AF_UNSPEC: dissolve the association
      udp_disconnect(pcb_);
      connected_ = false;
      publishNames();
      return 0;
    }
    if (isLocal(ip, eng_.config.ip)) return ENETUNREACH;
    ip_addr_t a = toLwip(ip);
    int e = errnoOf(udp_connect(pcb_, &a, port));
    if (e == 0) {
      connected_ = true;
      publishNames();
      mem_.status->events.fetch_or(ipc::kEvConnected, std::memory_order_release);
    }
    return e;
  }
  int shutdown(bool rd, bool wr) override { return connected_ ? 0 : ENOTCONN; }
  void close() override { finished_ = true; }
  void abort() override { finished_ = true; }
  bool finished() const override { return finished_; }
  int setOption(SocketOption o, int v) override {
    if (o == SocketOption::kReuseAddr) {
      if (v) ip_set_option(pcb_, SOF_REUSEADDR);
      else ip_reset_option(pcb_, SOF_REUSEADDR);
      reuse_ = v != 0;
    }
    return 0;
  }
  int getOption(SocketOption o, int* v) const override {
    *v = o == SocketOption::kReuseAddr ? reuse_ : (o == SocketOption::kRcvBuf || o == SocketOption::kSndBuf)
                                                      ? static_cast<int>(mem_.ringBytes)
                                                      : 0;
    return 0;
  }

  std::unique_ptr<EngineSocket> share(const SlotMemory&, SocketOwner&) override { return nullptr; }

  void pump() override {
    bool moved = false;
    for (int burst = 0; burst < 64; ++burst) {
      ipc::DatagramHeader h;
      auto got = tx_.peek(std::as_writable_bytes(std::span(&h, 1)));
      if (!got) return owner_.ringBroken(mem_.slot, "send");
      if (*got < sizeof h) break;
      auto avail = tx_.available();
      if (!avail) return owner_.ringBroken(mem_.slot, "send");
      if (h.length > ipc::kMaxDatagram || h.length > mem_.ringBytes - sizeof h) {
        // A record no well-behaved library writes: the app broke the contract.
        ++eng_.counters.badTxRecords;
        return owner_.ringBroken(mem_.slot, "send (datagram length)");
      }
      if (*avail < sizeof h + h.length) break;  // the rest is still being written
      // Leave the datagram in the ring while the pool lacks the buffers for
      // its frames (IP fragments) plus a reserve for TCP: the app's send()
      // then blocks instead of the datagram being dropped.
      const uint32_t frames = (h.length + 8 + 1479) / 1480;
      if (eng_.sink.txBuffersFree() < frames + kTxReserve) {
        EngineSocket* self = this;
        if (std::find(eng_.blockedSenders.begin(), eng_.blockedSenders.end(), self) == eng_.blockedSenders.end())
          eng_.blockedSenders.push_back(self);
        break;
      }
      pbuf* p = pbuf_alloc(PBUF_TRANSPORT, static_cast<u16_t>(h.length), PBUF_RAM);
      if (p == nullptr) break;
      (void)tx_.peek(std::span<std::byte>(static_cast<std::byte*>(p->payload), h.length), sizeof h);
      (void)tx_.consume(sizeof h + h.length);
      moved = true;
      if (pcb_->local_port == 0) udp_bind(pcb_, IP4_ADDR_ANY, 0), publishNames();
      if (isLocal(h.ip, eng_.config.ip) && !(h.ip == 0 && h.port == 0)) {
        ++eng_.counters.badTxRecords;  // see isLocal()
      } else if (h.ip == 0 && h.port == 0) {
        udp_send(pcb_, p);
      } else {
        ip_addr_t a = toLwip(h.ip);
        udp_sendto(pcb_, p, &a, static_cast<u16_t>(h.port));
      }
      pbuf_free(p);
    }
    if (moved) owner_.posted();
  }

 private:
  void publishNames() {
    mem_.status->localIp.store(fromLwip(pcb_->local_ip), std::memory_order_relaxed);
    mem_.status->localPort.store(pcb_->local_port, std::memory_order_relaxed);
    mem_.status->peerIp.store(connected_ ? fromLwip(pcb_->remote_ip) : 0, std::memory_order_relaxed);
    mem_.status->peerPort.store(connected_ ? pcb_->remote_port : 0, std::memory_order_release);
  }

  static void onRecv(void* arg, udp_pcb*, pbuf* p, const ip_addr_t* addr, u16_t port) {
    auto* self = static_cast<UdpSocket*>(arg);
    auto room = self->rx_.freeSlots();
    ipc::DatagramHeader h{p->tot_len, fromLwip(*addr), port, 0};
    if (!room) self->owner_.ringBroken(self->mem_.slot, "receive");
    if (!room || *room < sizeof h + p->tot_len) {
      ++self->eng_.counters.udpRxDropped;  // like a full socket buffer on Linux
      pbuf_free(p);
      return;
    }
    (void)self->rx_.write(std::as_bytes(std::span(&h, 1)));
    for (pbuf* q = p; q != nullptr; q = q->next)
      (void)self->rx_.write(std::span<const std::byte>(static_cast<const std::byte*>(q->payload), q->len));
    pbuf_free(p);
    self->owner_.posted();
  }

  Engine::Impl& eng_;
  SlotMemory mem_;
  SocketOwner& owner_;
  udp_pcb* pcb_;
  ipc::ByteWriter rx_;
  ipc::ByteReader tx_;
  bool connected_ = false, finished_ = false, reuse_ = false;
};

}  // namespace

std::unique_ptr<EngineSocket> makeUdpSocket(Engine::Impl& eng, const SlotMemory& mem, SocketOwner& owner,
                                            udp_pcb* pcb) {
  return std::make_unique<UdpSocket>(eng, mem, owner, pcb);
}

}  // namespace mknet::stack
