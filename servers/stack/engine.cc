// The only translation unit of the stack that includes lwIP. It must not
// include system socket headers (see engine.h).
#include "servers/stack/engine.h"

#include <cassert>
#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <unistd.h>
#include <vector>

#include "ipc/byte_ring.h"

extern "C" {
#include "lwip/etharp.h"
#include "lwip/init.h"
#include "lwip/ip4.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/tcp.h"
#include "lwip/timeouts.h"
#include "lwip/udp.h"
#include "netif/ethernet.h"
}

namespace mknet::stack {

namespace {

int errnoOf(err_t e) {
  switch (e) {
    case ERR_OK: return 0;
    case ERR_MEM: return ENOMEM;
    case ERR_BUF: return ENOBUFS;
    case ERR_TIMEOUT: return ETIMEDOUT;
    case ERR_RTE: return EHOSTUNREACH;
    case ERR_INPROGRESS: return EINPROGRESS;
    case ERR_VAL: return EINVAL;
    case ERR_WOULDBLOCK: return EWOULDBLOCK;
    case ERR_USE: return EADDRINUSE;
    case ERR_ALREADY: return EALREADY;
    case ERR_ISCONN: return EISCONN;
    case ERR_CONN: return ENOTCONN;
    case ERR_IF: return EIO;
    case ERR_ABRT: return ECONNABORTED;
    case ERR_RST: return ECONNRESET;
    case ERR_CLSD: return ENOTCONN;
    case ERR_ARG: return EINVAL;
    default: return EIO;
  }
}

ip_addr_t toLwip(uint32_t hostOrderIp) {
  ip_addr_t a;
  ip_addr_set_ip4_u32_val(a, lwip_htonl(hostOrderIp));
  return a;
}

uint32_t fromLwip(const ip_addr_t& a) { return lwip_ntohl(ip4_addr_get_u32(ip_2_ip4(&a))); }

using ipc::SlotState;

// Debian's liblwip is built with TCP_SND_BUF = 64 KiB, which caps the data in
// flight to 64 KiB per round trip. The send buffer is a per-pcb field, so it
// is raised per socket; the segment queue limit compiled into the library
// (TCP_SND_QUEUELEN, ~179 segments of one pbuf each with TCP_OVERSIZE) still
// holds well above this.
constexpr tcpwnd_size_t kSendBuffer = 192 * 1024;

// lwIP would loop traffic for its own address or 127/8 through the tcpip
// thread's mailbox, which mknet does not run (it drives lwIP from its own
// loop): such traffic is refused instead of reaching that path.
bool isLocal(uint32_t ip, uint32_t own) { return ip == own || (ip >> 24) == 127; }

}  // namespace

// A received pool buffer as an lwIP custom pbuf: no copy on the way in.
struct RxPbuf {
  pbuf_custom custom;  // first member: lwIP hands us back a pbuf* to it
  Engine::Impl* engine;
  uint32_t index;
};

struct Engine::Impl {
  Impl(const EngineConfig& c, FrameSink& s) : config(c), sink(s) {}

  EngineConfig config;
  FrameSink& sink;
  netif nif{};
  std::vector<RxPbuf> rxPbufs;
  EngineCounters counters;
  uint32_t liveSockets = 0;

  static void freeRx(pbuf* p) {
    auto* r = reinterpret_cast<RxPbuf*>(p);
    r->engine->sink.releaseRxBuffer(r->index);
  }

  static err_t linkOutput(netif* n, pbuf* p) {
    auto* self = static_cast<Impl*>(n->state);
    std::span<std::byte> buf = self->sink.beginFrame();
    if (buf.empty()) {
      // No driver or no buffer: ERR_MEM keeps a TCP segment on its unsent
      // queue, so it goes out later instead of waiting for a retransmission.
      ++self->counters.txNoBuffer;
      return ERR_MEM;
    }
    if (p->tot_len > buf.size()) {
      ++self->counters.inputErrors;
      self->sink.endFrame(0);
      return ERR_BUF;
    }
    pbuf_copy_partial(p, buf.data(), p->tot_len, 0);
    self->sink.endFrame(p->tot_len);
    ++self->counters.txFrames;
    return ERR_OK;
  }

  static err_t netifInit(netif* n) {
    auto* self = static_cast<Impl*>(n->state);
    n->name[0] = 'm';
    n->name[1] = 'k';
    n->hwaddr_len = ETH_HWADDR_LEN;
    for (int i = 0; i < 6; ++i) n->hwaddr[i] = self->config.mac[i];
    n->mtu = self->config.mtu;
    n->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET;
    n->output = etharp_output;
    n->linkoutput = linkOutput;
    return ERR_OK;
  }
};

// ---------------------------------------------------------------- TCP

class TcpSocket final : public EngineSocket {
 public:
  TcpSocket(Engine::Impl& eng, const SlotMemory& mem, SocketOwner& owner, tcp_pcb* pcb)
      : eng_(eng), mem_(mem), owner_(owner), pcb_(pcb), rx_(mem.rx, mem.ringBytes),
        tx_(mem.tx, mem.ringBytes) {
    ++eng_.liveSockets;
    attach();
  }
  ~TcpSocket() override {
    if (pcb_ != nullptr) abort();
    --eng_.liveSockets;
  }

  uint32_t slot() const override { return mem_.slot; }

  int bind(uint32_t ip, uint16_t port) override {
    if (pcb_ == nullptr) return EINVAL;
    if (pcb_->local_port != 0) return EINVAL;  // already bound
    ip_addr_t a = toLwip(ip);
    int e = errnoOf(tcp_bind(pcb_, ip == 0 ? IP4_ADDR_ANY : &a, port));
    if (e == 0) publishNames();
    return e;
  }

  int listen(int backlog) override {
    if (pcb_ == nullptr) return EINVAL;
    if (listening_) return 0;  // Linux allows listen() again (backlog change)
    if (pcb_->state != CLOSED) return EINVAL;
    if (pcb_->local_port == 0) {
      if (int e = errnoOf(tcp_bind(pcb_, IP4_ADDR_ANY, 0)); e != 0) return e;
    }
    err_t err = ERR_OK;
    if (backlog < 1) backlog = 1;
    if (backlog > 255) backlog = 255;
    tcp_pcb* l = tcp_listen_with_backlog_and_err(pcb_, static_cast<u8_t>(backlog), &err);
    if (l == nullptr) return errnoOf(err);
    pcb_ = l;  // the old pcb was freed by lwIP
    listening_ = true;
    tcp_arg(pcb_, this);
    tcp_accept(pcb_, onAccept);
    mem_.status->state.store(static_cast<uint32_t>(SlotState::kTcpListen), std::memory_order_release);
    publishNames();
    return 0;
  }

  int connect(uint32_t ip, uint16_t port) override {
    if (pcb_ == nullptr) return EINVAL;
    if (listening_) return EISCONN;
    if (pcb_->state == SYN_SENT) return EALREADY;
    if (pcb_->state != CLOSED) return EISCONN;
    if (isLocal(ip, eng_.config.ip)) return ENETUNREACH;
    ip_addr_t a = toLwip(ip);
    err_t err = tcp_connect(pcb_, &a, port, onConnected);
    if (err != ERR_OK) return errnoOf(err);
    mem_.status->state.store(static_cast<uint32_t>(SlotState::kTcpConnecting), std::memory_order_release);
    publishNames();
    connecting_ = true;
    return 0;
  }

  int shutdown(bool rd, bool wr) override {
    if (pcb_ == nullptr || listening_ || pcb_->state == CLOSED || pcb_->state == SYN_SENT) return ENOTCONN;
    if (rd) rdShut_ = true;  // further data is discarded (Linux keeps acking it)
    if (wr && !wrShutRequested_) {
      wrShutRequested_ = true;
      pump();  // the FIN follows whatever the app already wrote
    }
    return 0;
  }

  void close() override {
    closing_ = true;
    rdShut_ = true;
    if (pcb_ == nullptr) {
      finished_ = true;
      return;
    }
    if (listening_) {
      tcp_arg(pcb_, nullptr);
      tcp_accept(pcb_, nullptr);
      tcp_close(pcb_);  // a listening pcb closes at once
      pcb_ = nullptr;
      finished_ = true;
      return;
    }
    if (lingerZero_) {
      abort();
      return;
    }
    if (pcb_->state == CLOSED || pcb_->state == SYN_SENT) {
      // Never connected (or still connecting): nothing to deliver, nothing
      // to say to a peer; the pcb goes at once and its port is free again.
      tcp_pcb* p = pcb_;
      detach();
      if (tcp_close(p) != ERR_OK) tcp_abort(p);
      finished_ = true;
      return;
    }
    wrShutRequested_ = true;
    pump();
    maybeSendFin();  // also when pump() had nothing to push
  }

  void abort() override {
    if (pcb_ != nullptr) {
      tcp_pcb* p = pcb_;
      detach();
      if (listening_)
        tcp_close(p);
      else
        tcp_abort(p);  // sends RST; with callbacks detached we are not called back
    }
    finished_ = true;
  }

  bool finished() const override { return finished_; }

  int setOption(SocketOption o, int v) override {
    switch (o) {
      case SocketOption::kReuseAddr:
        if (pcb_ != nullptr) {
          if (v) ip_set_option(pcb_, SOF_REUSEADDR);
          else ip_reset_option(pcb_, SOF_REUSEADDR);
        }
        reuseAddr_ = v != 0;
        return 0;
      case SocketOption::kKeepAlive:
        keepAlive_ = v != 0;
        if (pcb_ != nullptr) {
          if (v) ip_set_option(pcb_, SOF_KEEPALIVE);
          else ip_reset_option(pcb_, SOF_KEEPALIVE);
        }
        return 0;
      case SocketOption::kNoDelay:
        noDelay_ = v != 0;
        if (pcb_ != nullptr && !listening_) {
          if (v) tcp_nagle_disable(pcb_);
          else tcp_nagle_enable(pcb_);
        }
        return 0;
      case SocketOption::kKeepIdle:
        if (v < 1 || v > 32767) return EINVAL;
        keepIdle_ = v;
        if (pcb_ != nullptr && !listening_) pcb_->keep_idle = static_cast<u32_t>(v) * 1000;
        return 0;
      case SocketOption::kKeepIntvl:
        if (v < 1 || v > 32767) return EINVAL;
        keepIntvl_ = v;
        if (pcb_ != nullptr && !listening_) pcb_->keep_intvl = static_cast<u32_t>(v) * 1000;
        return 0;
      case SocketOption::kKeepCnt:
        if (v < 1 || v > 127) return EINVAL;
        keepCnt_ = v;
        if (pcb_ != nullptr && !listening_) pcb_->keep_cnt = static_cast<u32_t>(v);
        return 0;
      case SocketOption::kLingerOnOff: lingerOn_ = v != 0; lingerZero_ = lingerOn_ && lingerSecs_ == 0; return 0;
      case SocketOption::kLingerSeconds: lingerSecs_ = v; lingerZero_ = lingerOn_ && v == 0; return 0;
      case SocketOption::kRcvBuf: case SocketOption::kSndBuf: return 0;  // fixed ring sizes
    }
    return ENOPROTOOPT;
  }

  int getOption(SocketOption o, int* v) const override {
    switch (o) {
      case SocketOption::kReuseAddr: *v = reuseAddr_; return 0;
      case SocketOption::kKeepAlive: *v = keepAlive_; return 0;
      case SocketOption::kNoDelay: *v = noDelay_; return 0;
      case SocketOption::kKeepIdle: *v = keepIdle_; return 0;
      case SocketOption::kKeepIntvl: *v = keepIntvl_; return 0;
      case SocketOption::kKeepCnt: *v = keepCnt_; return 0;
      case SocketOption::kLingerOnOff: *v = lingerOn_; return 0;
      case SocketOption::kLingerSeconds: *v = lingerSecs_; return 0;
      case SocketOption::kRcvBuf: *v = static_cast<int>(mem_.ringBytes); return 0;
      case SocketOption::kSndBuf: *v = static_cast<int>(mem_.ringBytes); return 0;
    }
    return ENOPROTOOPT;
  }

  void pump() override {
    if (pcb_ == nullptr || listening_) return;
    releaseWindow();
    pushTx();
  }

  // Called for accepted connections once the socket is set up.
  void startAccepted() {
    applyOptions();
    mem_.status->state.store(static_cast<uint32_t>(SlotState::kTcpConnected), std::memory_order_release);
    mem_.status->events.fetch_or(ipc::kEvConnected, std::memory_order_release);
    publishNames();
  }

  void inheritOptions(const TcpSocket& l) {
    noDelay_ = l.noDelay_;
    keepAlive_ = l.keepAlive_;
    keepIdle_ = l.keepIdle_;
    keepIntvl_ = l.keepIntvl_;
    keepCnt_ = l.keepCnt_;
  }

 private:
  void attach() {
    pcb_->snd_buf = kSendBuffer;  // nothing has been written on a new or just-accepted pcb
    tcp_arg(pcb_, this);
    tcp_recv(pcb_, onRecv);
    tcp_sent(pcb_, onSent);
    tcp_err(pcb_, onError);
    tcp_poll(pcb_, onPoll, 2);  // every second: retry a close that ran out of memory
  }
  void detach() {
    if (pcb_ == nullptr) return;
    tcp_arg(pcb_, nullptr);
    if (!listening_) {
      tcp_recv(pcb_, nullptr);
      tcp_sent(pcb_, nullptr);
      tcp_err(pcb_, nullptr);
      tcp_poll(pcb_, nullptr, 0);
    } else {
      tcp_accept(pcb_, nullptr);
    }
    pcb_ = nullptr;
  }
  void applyOptions() {
    if (noDelay_) tcp_nagle_disable(pcb_);
    if (keepAlive_) ip_set_option(pcb_, SOF_KEEPALIVE);
    pcb_->keep_idle = static_cast<u32_t>(keepIdle_) * 1000;
    pcb_->keep_intvl = static_cast<u32_t>(keepIntvl_) * 1000;
    pcb_->keep_cnt = static_cast<u32_t>(keepCnt_);
  }

  void publishNames() {
    if (pcb_ == nullptr) return;
    mem_.status->localIp.store(fromLwip(pcb_->local_ip), std::memory_order_relaxed);
    mem_.status->localPort.store(pcb_->local_port, std::memory_order_relaxed);
    if (!listening_) {
      mem_.status->peerIp.store(fromLwip(pcb_->remote_ip), std::memory_order_relaxed);
      mem_.status->peerPort.store(pcb_->remote_port, std::memory_order_release);
    }
  }

  void post() { owner_.posted(); }

  void setEvent(uint32_t ev, int error = 0) {
    if (error != 0) mem_.status->error.store(error, std::memory_order_relaxed);
    mem_.status->events.fetch_or(ev, std::memory_order_release);
  }

  // Opens the receive window by what the app has read out of the rx ring.
  void releaseWindow() {
    auto freeBytes = rx_.freeSlots();
    if (!freeBytes) return owner_.ringBroken(mem_.slot, "receive");
    uint64_t inRing = mem_.ringBytes - *freeBytes;
    uint64_t consumed = delivered_ - inRing;
    while (consumed > recved_) {
      uint64_t n = consumed - recved_;
      if (n > 0xffff) n = 0xffff;
      tcp_recved(pcb_, static_cast<u16_t>(n));
      recved_ += n;
    }
  }

  // Moves what the app wrote into lwIP, as far as lwIP's send buffer allows.
  void pushTx() {
    if (pcb_ == nullptr || pcb_->state == SYN_SENT || pcb_->state == CLOSED) return;
    bool moved = false;
    for (;;) {
      std::span<std::byte> a, b;
      auto avail = tx_.readable(a, b);
      if (!avail) {
        owner_.ringBroken(mem_.slot, "send");
        return;
      }
      if (*avail == 0) break;
      if (finSent_) {  // the app wrote after shutdown(SHUT_WR): its library should
        (void)tx_.consume(*avail);  // have refused; drop it
        break;
      }
      std::span<std::byte> run = a;
      uint32_t room = tcp_sndbuf(pcb_);
      if (room == 0 || tcp_sndqueuelen(pcb_) >= TCP_SND_QUEUELEN) break;
      uint32_t n = run.size() < room ? static_cast<uint32_t>(run.size()) : room;
      if (n > 0xffff) n = 0xffff;
      bool more = n < *avail;
      err_t e = tcp_write(pcb_, run.data(), static_cast<u16_t>(n),
                          TCP_WRITE_FLAG_COPY | (more ? TCP_WRITE_FLAG_MORE : 0));
      if (e != ERR_OK) break;  // ERR_MEM: retried from onSent
      (void)tx_.consume(n);
      moved = true;
    }
    if (moved) {
      tcp_output(pcb_);
      post();  // a sender blocked on a full ring can go on
    }
    maybeSendFin();
  }

  // Sends our FIN once the app's last byte is in lwIP: tcp_shutdown for
  // shutdown(SHUT_WR), tcp_close for close() (also after an earlier
  // shutdown, which sent the FIN already). After tcp_close lwIP owns the pcb
  // and finishes the handshake and TIME_WAIT on its own.
  void maybeSendFin() {
    if (!wrShutRequested_ || pcb_ == nullptr) return;
    if (finSent_ && !closing_) return;
    auto left = tx_.available();
    if (!left) return owner_.ringBroken(mem_.slot, "send");
    if (*left != 0) return;  // FIN after the last byte the app wrote
    err_t e = closing_ ? tcp_close(pcb_) : tcp_shutdown(pcb_, 0, 1);
    if (e != ERR_OK) return;  // out of memory: onPoll retries
    if (!finSent_) {
      finSent_ = true;
      setEvent(ipc::kEvTxShut);
      post();
    }
    if (closing_) {
      detach();
      finished_ = true;
    }
  }

  static err_t onRecv(void* arg, tcp_pcb* pcb, pbuf* p, err_t err) {
    auto* self = static_cast<TcpSocket*>(arg);
    if (self == nullptr) {
      if (p != nullptr) {
        tcp_recved(pcb, p->tot_len);
        pbuf_free(p);
      }
      return ERR_OK;
    }
    if (p == nullptr) {  // FIN from the peer
      self->setEvent(ipc::kEvRxEof);
      self->post();
      if (self->finSent_) {
        // Both sides are done: lwIP keeps the pcb in TIME_WAIT and frees it
        // without telling anyone, so let go of it now.
        self->mem_.status->state.store(static_cast<uint32_t>(SlotState::kTcpClosed), std::memory_order_relaxed);
        self->detach();
        if (self->closing_) self->finished_ = true;
      }
      return ERR_OK;
    }
    if (self->rdShut_) {
      tcp_recved(pcb, p->tot_len);
      pbuf_free(p);
      return ERR_OK;
    }
    auto room = self->rx_.freeSlots();
    if (!room) {
      self->owner_.ringBroken(self->mem_.slot, "receive");
      return ERR_MEM;  // lwIP keeps the data until the session is torn down
    }
    if (*room < p->tot_len) return ERR_MEM;  // cannot happen while the window fits the ring
    for (pbuf* q = p; q != nullptr; q = q->next)
      (void)self->rx_.write(std::span<const std::byte>(static_cast<const std::byte*>(q->payload), q->len));
    self->delivered_ += p->tot_len;
    pbuf_free(p);
    self->post();
    return ERR_OK;
  }

  static err_t onSent(void* arg, tcp_pcb*, u16_t) {
    auto* self = static_cast<TcpSocket*>(arg);
    if (self != nullptr) self->pushTx();
    return ERR_OK;
  }

  static err_t onPoll(void* arg, tcp_pcb*) {
    auto* self = static_cast<TcpSocket*>(arg);
    if (self != nullptr) self->pump();
    return ERR_OK;
  }

  static void onError(void* arg, err_t err) {
    auto* self = static_cast<TcpSocket*>(arg);
    if (self == nullptr) return;
    self->pcb_ = nullptr;  // lwIP already freed it
    if (err == ERR_CLSD) {
      // Not an error: our FIN after the peer's was acknowledged (LAST_ACK).
      self->mem_.status->state.store(static_cast<uint32_t>(SlotState::kTcpClosed), std::memory_order_relaxed);
      if (self->closing_) self->finished_ = true;
      self->post();
      return;
    }
    int e;
    if (self->connecting_ && !(self->mem_.status->events.load() & ipc::kEvConnected))
      e = err == ERR_RST ? ECONNREFUSED : ETIMEDOUT;
    else
      e = err == ERR_RST ? ECONNRESET : err == ERR_ABRT ? ETIMEDOUT : errnoOf(err);
    self->mem_.status->state.store(static_cast<uint32_t>(SlotState::kTcpClosed), std::memory_order_relaxed);
    self->setEvent(ipc::kEvReset | ipc::kEvError, e);
    if (self->closing_) self->finished_ = true;
    self->post();
  }

  static err_t onConnected(void* arg, tcp_pcb*, err_t err) {
    auto* self = static_cast<TcpSocket*>(arg);
    if (self == nullptr) return ERR_OK;
    self->mem_.status->state.store(static_cast<uint32_t>(SlotState::kTcpConnected), std::memory_order_relaxed);
    self->publishNames();
    self->applyOptions();
    self->setEvent(ipc::kEvConnected);
    self->post();
    self->pushTx();
    return ERR_OK;
  }

  static err_t onAccept(void* arg, tcp_pcb* newpcb, err_t err);

  Engine::Impl& eng_;
  SlotMemory mem_;
  SocketOwner& owner_;
  tcp_pcb* pcb_;
  ipc::ByteWriter rx_;
  ipc::ByteReader tx_;
  uint64_t delivered_ = 0, recved_ = 0;
  bool listening_ = false, connecting_ = false, closing_ = false, finished_ = false;
  bool rdShut_ = false, wrShutRequested_ = false, finSent_ = false;
  bool reuseAddr_ = false, keepAlive_ = false, noDelay_ = false;
  int keepIdle_ = 7200, keepIntvl_ = 75, keepCnt_ = 9;
  bool lingerOn_ = false, lingerZero_ = false;
  int lingerSecs_ = 0;
};

err_t TcpSocket::onAccept(void* arg, tcp_pcb* newpcb, err_t err) {
  auto* self = static_cast<TcpSocket*>(arg);
  if (self == nullptr || err != ERR_OK || newpcb == nullptr) return ERR_VAL;
  ipc::AcceptRecord rec{};
  auto room = self->rx_.freeSlots();
  if (!room) self->owner_.ringBroken(self->mem_.slot, "accept");
  std::optional<SlotMemory> mem = room ? self->owner_.allocateSlot() : std::nullopt;
  if (!mem || !room || *room < sizeof rec) {
    ++self->eng_.counters.acceptNoSlot;
    tcp_abort(newpcb);
    return ERR_ABRT;
  }
  auto sock = std::make_unique<TcpSocket>(self->eng_, *mem, self->owner_, newpcb);
  sock->inheritOptions(*self);
  sock->startAccepted();
  rec.slot = mem->slot;
  rec.generation = mem->status->generation.load(std::memory_order_relaxed);
  (void)self->rx_.write(std::as_bytes(std::span(&rec, 1)));
  self->owner_.adopt(std::move(sock));
  self->post();
  return ERR_OK;
}

// ---------------------------------------------------------------- UDP

class UdpSocket final : public EngineSocket {
 public:
  UdpSocket(Engine::Impl& eng, const SlotMemory& mem, SocketOwner& owner, udp_pcb* pcb)
      : eng_(eng), mem_(mem), owner_(owner), pcb_(pcb), rx_(mem.rx, mem.ringBytes), tx_(mem.tx, mem.ringBytes) {
    ++eng_.liveSockets;
    udp_recv(pcb_, onRecv, this);
    mem_.status->state.store(static_cast<uint32_t>(SlotState::kUdp), std::memory_order_release);
  }
  ~UdpSocket() override {
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

// ---------------------------------------------------------------- Engine

Engine::Engine(const EngineConfig& config, FrameSink& sink) : impl_(std::make_unique<Impl>(config, sink)) {
  impl_->rxPbufs.resize(config.rxBuffers);
  [[maybe_unused]] static bool initialised = false;
  assert(!initialised && "one Engine per process: lwIP has global state");
  initialised = true;
  std::srand(static_cast<unsigned>(::getpid()) ^ static_cast<unsigned>(std::time(nullptr)));
  lwip_init();
  ip4_addr_t ip, mask, gw;
  ip4_addr_set_u32(&ip, lwip_htonl(config.ip));
  ip4_addr_set_u32(&mask, lwip_htonl(config.netmask));
  ip4_addr_set_u32(&gw, lwip_htonl(config.gateway));
  netif_add(&impl_->nif, &ip, &mask, &gw, impl_.get(), Impl::netifInit, ethernet_input);
  netif_set_default(&impl_->nif);
  netif_set_up(&impl_->nif);
}

Engine::~Engine() { netif_remove(&impl_->nif); }

void Engine::input(uint32_t index, std::byte* data, uint32_t length, uint32_t bufferSize) {
  // rxPbufs was sized once for the whole pool: lwIP holds pointers into it
  // (out-of-order segments), so it must never move.
  assert(index < impl_->rxPbufs.size() && "buffer index beyond the pool the engine was built for");
  RxPbuf& r = impl_->rxPbufs[index];
  r.engine = impl_.get();
  r.index = index;
  r.custom.custom_free_function = Impl::freeRx;
  pbuf* p = pbuf_alloced_custom(PBUF_RAW, static_cast<u16_t>(length), PBUF_REF, &r.custom, data,
                                static_cast<u16_t>(bufferSize));
  if (p == nullptr) {
    impl_->sink.releaseRxBuffer(index);
    ++impl_->counters.inputErrors;
    return;
  }
  ++impl_->counters.rxFrames;
  if (impl_->nif.input(p, &impl_->nif) != ERR_OK) {
    ++impl_->counters.inputErrors;
    pbuf_free(p);  // -> releaseRxBuffer
  }
}

void Engine::inputCopy(const std::byte* data, uint32_t length) {
  pbuf* p = pbuf_alloc(PBUF_RAW, static_cast<u16_t>(length), PBUF_RAM);
  if (p == nullptr) {
    ++impl_->counters.inputErrors;
    return;
  }
  pbuf_take(p, data, static_cast<u16_t>(length));
  ++impl_->counters.rxFrames;
  ++impl_->counters.rxCopied;
  if (impl_->nif.input(p, &impl_->nif) != ERR_OK) {
    ++impl_->counters.inputErrors;
    pbuf_free(p);
  }
}

void Engine::kickConnections() {
  // After the link was down (a driver died), frames were lost both ways. Do
  // not wait for retransmission timeouts (lwIP's start at 1 s and back off,
  // Linux's at 200 ms): resend what is unacknowledged now, and send three
  // duplicate ACKs so the peer's fast retransmit resends what it sent into
  // the void. Duplicates are harmless; TCP discards them.
  for (tcp_pcb* pcb = tcp_active_pcbs; pcb != nullptr; pcb = pcb->next) {
    if (pcb->state != ESTABLISHED && pcb->state != CLOSE_WAIT && pcb->state != FIN_WAIT_1 &&
        pcb->state != FIN_WAIT_2 && pcb->state != CLOSING && pcb->state != LAST_ACK)
      continue;
    if (pcb->unacked != nullptr) tcp_rexmit_rto(pcb);
    for (int i = 0; i < 3; ++i) tcp_send_empty_ack(pcb);
    tcp_output(pcb);
    ++impl_->counters.kicked;
  }
}

void Engine::setLink(bool up) {
  if (up) netif_set_link_up(&impl_->nif);
  else netif_set_link_down(&impl_->nif);
}

void Engine::setMac(const std::array<uint8_t, 6>& mac) {
  impl_->config.mac = mac;
  for (int i = 0; i < 6; ++i) impl_->nif.hwaddr[i] = mac[i];
}

uint32_t Engine::ip() const { return impl_->config.ip; }

bool Engine::linkUp() const { return netif_is_link_up(&impl_->nif); }

uint32_t Engine::runTimers() {
  sys_check_timeouts();
  return sys_timeouts_sleeptime();
}

std::unique_ptr<EngineSocket> Engine::openSocket(SocketKind kind, const SlotMemory& mem, SocketOwner& owner) {
  if (kind == SocketKind::kTcp) {
    tcp_pcb* pcb = tcp_new_ip_type(IPADDR_TYPE_V4);
    if (pcb == nullptr) return nullptr;
    mem.status->state.store(static_cast<uint32_t>(SlotState::kTcp), std::memory_order_release);
    return std::make_unique<TcpSocket>(*impl_, mem, owner, pcb);
  }
  udp_pcb* pcb = udp_new_ip_type(IPADDR_TYPE_V4);
  if (pcb == nullptr) return nullptr;
  return std::make_unique<UdpSocket>(*impl_, mem, owner, pcb);
}

const EngineCounters& Engine::counters() const { return impl_->counters; }
uint32_t Engine::liveSockets() const { return impl_->liveSockets; }

}  // namespace mknet::stack
