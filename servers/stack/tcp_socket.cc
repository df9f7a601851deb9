// TcpSocket: one TCP socket of an app session on an lwIP pcb (lwIP side; see engine_lwip.h).
#include "servers/stack/engine_lwip.h"

namespace mknet::stack {

using ipc::SlotState;

namespace {

class TcpSocket;

// A listening pcb and the listening sockets that share it: one normally;
// more when processes that inherited the listener across fork() each took
// their own handle (a pre-forked server's workers). Each member has its own
// slot and accept ring in its own session; accepted connections are dealt
// out among the members. The pcb closes when the last member leaves.
//
// A connection goes only to a member whose process has shown that it
// accepts (accept, poll or epoll on the listener: acceptInterest), as on
// Linux, where whoever calls accept() takes it from the one shared queue.
// Until one has, the connection waits here, parked: established in lwIP,
// its data refused (lwIP keeps it and closes the window), its FIN noted.
struct ListenGroup;
struct ParkedConnection {  // the parked pcb's callback argument
  ListenGroup* group;
  tcp_pcb* pcb;
  bool fin;
};
struct ListenGroup {
  tcp_pcb* pcb = nullptr;
  std::vector<TcpSocket*> members;
  size_t next = 0;  // round robin
  std::vector<std::unique_ptr<ParkedConnection>> parked;  // oldest first
  uint32_t backlog = 1;
};

class TcpSocket final : public EngineSocket {
 public:
  TcpSocket(Engine::Impl& eng, const SlotMemory& mem, SocketOwner& owner, tcp_pcb* pcb)
      : eng_(eng), mem_(mem), owner_(owner), pcb_(pcb), rx_(mem.rx, mem.ringBytes),
        tx_(mem.tx, mem.ringBytes) {
    ++eng_.liveSockets;
    attach();
  }
  // Another handle on `group`'s listener, for another session.
  TcpSocket(Engine::Impl& eng, const SlotMemory& mem, SocketOwner& owner, const TcpSocket& member)
      : eng_(eng), mem_(mem), owner_(owner), pcb_(member.pcb_), rx_(mem.rx, mem.ringBytes),
        tx_(mem.tx, mem.ringBytes), group_(member.group_) {
    ++eng_.liveSockets;
    listening_ = true;
    inheritOptions(member);
    reuseAddr_ = member.reuseAddr_;
    group_->members.push_back(this);
    mem_.status->state.store(static_cast<uint32_t>(SlotState::kTcpListen), std::memory_order_release);
    publishNames();
  }
  ~TcpSocket() override {
    if (pcb_ != nullptr) abort();
    --eng_.liveSockets;
  }

  std::unique_ptr<EngineSocket> share(const SlotMemory& mem, SocketOwner& owner) override {
    if (!listening_ || !group_) return nullptr;
    return std::make_unique<TcpSocket>(eng_, mem, owner, *this);
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
    group_ = std::make_shared<ListenGroup>();
    group_->pcb = l;
    group_->backlog = static_cast<uint32_t>(backlog);
    group_->members.push_back(this);
    tcp_arg(pcb_, group_.get());
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
      leaveGroup();
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
    if (listening_) {
      leaveGroup();
    } else if (pcb_ != nullptr) {
      tcp_pcb* p = pcb_;
      detach();
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
    if (listening_) {
      // The app may have just shown that it accepts: hand it what waits.
      if (group_ && !group_->parked.empty()) deliverParked(*group_);
      return;
    }
    if (pcb_ == nullptr) return;
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
  void detach() {  // connections only; listeners leaveGroup()
    if (pcb_ == nullptr) return;
    tcp_arg(pcb_, nullptr);
    tcp_recv(pcb_, nullptr);
    tcp_sent(pcb_, nullptr);
    tcp_err(pcb_, nullptr);
    tcp_poll(pcb_, nullptr, 0);
    pcb_ = nullptr;
  }
  // The listener's pcb closes (at once) with its last member.
  void leaveGroup() {
    pcb_ = nullptr;
    if (!group_) return;
    std::erase(group_->members, this);
    if (group_->members.empty()) {
      for (auto& c : group_->parked) {
        tcp_arg(c->pcb, nullptr);
        tcp_recv(c->pcb, nullptr);
        tcp_err(c->pcb, nullptr);
        tcp_abort(c->pcb);  // RST, as Linux resets what waits in a closed listener's queue
      }
      group_->parked.clear();
    }
    if (group_->members.empty() && group_->pcb != nullptr) {
      tcp_arg(group_->pcb, nullptr);
      tcp_accept(group_->pcb, nullptr);
      tcp_close(group_->pcb);
      group_->pcb = nullptr;
    }
    group_.reset();
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
    if (consumed > recved_) {
      openWindow(static_cast<uint32_t>(consumed - recved_));
      recved_ = consumed;
    }
  }

  // The largest receive window: with window scaling agreed (shift
  // kRcvScale), the socket's receive ring, so that whatever the window lets
  // in always has room there; without, lwIP's TCP_WND (64 KiB).
  tcpwnd_size_t maxWindow() const {
    if ((pcb_->flags & TF_WND_SCALE) == 0) return TCPWND16(TCP_WND);
    return std::min<tcpwnd_size_t>(mem_.ringBytes, tcpwnd_size_t{0xffff} << pcb_->rcv_scale);
  }
  // tcp_recved() with a larger ceiling. Debian's lwIP is built with
  // TCP_WND = 64 KiB, which caps a receiver at 64 KiB per round trip (2 Gbit/s
  // at the ~250 us a loaded 2-CPU machine needs). mknet keeps rcv_wnd up to
  // maxWindow() itself and lets lwIP announce it as tcp_recved() would.
  void openWindow(uint32_t n) {
    const tcpwnd_size_t max = maxWindow();
    tcpwnd_size_t w = pcb_->rcv_wnd + n;
    pcb_->rcv_wnd = w > max || w < pcb_->rcv_wnd ? max : w;
    if (tcp_update_rcv_ann_wnd(pcb_) >= TCP_WND_UPDATE_THRESHOLD) {
      tcp_ack_now(pcb_);
      tcp_output(pcb_);
    }
  }
  // Once connected: the window beyond lwIP's TCP_WND, when scaling was agreed.
  void widenWindow() {
    if (pcb_ != nullptr && (pcb_->flags & TF_WND_SCALE) != 0 && maxWindow() > TCP_WND) {
      openWindow(maxWindow() - TCP_WND);
      wide_ = true;
    }
  }
  // Before tcp_close(): lwIP resets (RST) a connection closed while its
  // rcv_wnd is not TCP_WND, taking that as data the app never read — which
  // is what Linux does too. Put rcv_wnd where lwIP expects it when all was
  // read, and below it when not. "All read" is our own count (every byte
  // delivered to the ring consumed), not rcv_wnd == maxWindow(): lwIP gives
  // back the sequence number a FIN takes from rcv_wnd only if rcv_wnd is not
  // TCP_WND at that moment, and a widened window can be exactly there (a
  // FIN behind maxWindow() - 64 KiB of unread bytes), which left it one
  // short for good and turned the close of a fully read stream into a RST.
  void unwidenWindow() {
    if (!wide_) return;
    releaseWindow();
    const tcpwnd_size_t full = TCP_WND_MAX(pcb_);
    pcb_->rcv_wnd = recved_ == delivered_ ? full : full - 1;
    wide_ = false;
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
    if (closing_) unwidenWindow();
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
      self->openWindow(p->tot_len);
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

  // The shift our SYN or SYN-ACK announced (see kRcvScale), in force from
  // the end of the handshake; lwIP set TCP_RCV_SCALE.
  static void useAnnouncedScale(tcp_pcb* pcb) {
    if ((pcb->flags & TF_WND_SCALE) != 0) pcb->rcv_scale = kRcvScale;
  }

  static err_t onConnected(void* arg, tcp_pcb* pcb, err_t err) {
    if (pcb != nullptr) useAnnouncedScale(pcb);
    auto* self = static_cast<TcpSocket*>(arg);
    if (self == nullptr) return ERR_OK;
    self->mem_.status->state.store(static_cast<uint32_t>(SlotState::kTcpConnected), std::memory_order_relaxed);
    self->publishNames();
    self->applyOptions();
    self->widenWindow();
    self->setEvent(ipc::kEvConnected);
    self->post();
    self->pushTx();
    return ERR_OK;
  }

  static err_t onAccept(void* arg, tcp_pcb* newpcb, err_t err);
  static err_t onParkedRecv(void* arg, tcp_pcb* pcb, pbuf* p, err_t err);
  static void onParkedError(void* arg, err_t err);
  // A member to hand a connection to (interested, with room), round robin.
  static TcpSocket* pickMember(ListenGroup& g);
  static void deliverParked(ListenGroup& g);
  // Gives this listener member the connection `pcb`: a slot, a socket, an
  // accept record. False if its session has no free slot.
  bool deliver(tcp_pcb* pcb, bool fin);

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
  std::shared_ptr<ListenGroup> group_;  // listeners only
  bool wide_ = false;                    // rcv_wnd may exceed TCP_WND (widenWindow)
};

TcpSocket* TcpSocket::pickMember(ListenGroup& g) {
  const size_t n = g.members.size();
  for (size_t i = 0; i < n; ++i) {
    TcpSocket* m = g.members[(g.next + i) % n];
    // Alone, a listener takes connections ahead of accept() (into its ring)
    // once its process accepts at all; shared, only a process asking now.
    const ipc::SlotAppFlags& f = *m->mem_.appFlags;
    if (n == 1 ? f.acceptInterest.load(std::memory_order_relaxed) == 0
               : f.acceptWanted.load(std::memory_order_relaxed) == 0)
      continue;
    auto room = m->rx_.freeSlots();
    if (!room) {
      m->owner_.ringBroken(m->mem_.slot, "accept");
      continue;
    }
    if (*room < sizeof(ipc::AcceptRecord)) continue;
    g.next = (g.next + i + 1) % n;
    return m;
  }
  return nullptr;
}

bool TcpSocket::deliver(tcp_pcb* pcb, bool fin) {
  std::optional<SlotMemory> mem = owner_.allocateSlot();
  if (!mem) {
    ++eng_.counters.acceptNoSlot;
    return false;
  }
  auto sock = std::make_unique<TcpSocket>(eng_, *mem, owner_, pcb);
  TcpSocket* raw = sock.get();
  sock->inheritOptions(*this);
  sock->startAccepted();
  sock->widenWindow();
  ipc::AcceptRecord rec{};
  rec.slot = mem->slot;
  rec.generation = mem->status->generation.load(std::memory_order_relaxed);
  (void)rx_.write(std::as_bytes(std::span(&rec, 1)));
  mem_.appFlags->acceptWanted.store(0, std::memory_order_relaxed);  // asked once, served once
  owner_.adopt(std::move(sock));
  if (fin) raw->setEvent(ipc::kEvRxEof);
  if (pcb->refused_data != nullptr) tcp_process_refused_data(pcb);  // what arrived while parked
  post();
  return true;
}

void TcpSocket::deliverParked(ListenGroup& g) {
  while (!g.parked.empty()) {
    TcpSocket* m = pickMember(g);
    if (m == nullptr) return;
    std::unique_ptr<ParkedConnection> c = std::move(g.parked.front());
    g.parked.erase(g.parked.begin());
    if (!m->deliver(c->pcb, c->fin)) {
      tcp_arg(c->pcb, nullptr);
      tcp_recv(c->pcb, nullptr);
      tcp_err(c->pcb, nullptr);
      tcp_abort(c->pcb);
    }
  }
}

err_t TcpSocket::onParkedRecv(void* arg, tcp_pcb*, pbuf* p, err_t) {
  if (p != nullptr) return ERR_MEM;  // refused: lwIP keeps it until delivery
  static_cast<ParkedConnection*>(arg)->fin = true;  // the peer closed already
  return ERR_OK;
}

void TcpSocket::onParkedError(void* arg, err_t) {
  // lwIP freed the pcb (reset by the peer): forget it.
  auto* c = static_cast<ParkedConnection*>(arg);
  std::erase_if(c->group->parked, [c](const auto& p) { return p.get() == c; });
}

err_t TcpSocket::onAccept(void* arg, tcp_pcb* newpcb, err_t err) {
  if (newpcb != nullptr) useAnnouncedScale(newpcb);
  auto* group = static_cast<ListenGroup*>(arg);
  if (group == nullptr || err != ERR_OK || newpcb == nullptr || group->members.empty()) return ERR_VAL;
  if (!group->parked.empty()) deliverParked(*group);  // first come, first served
  if (group->parked.empty()) {
    if (TcpSocket* m = pickMember(*group)) {
      if (m->deliver(newpcb, false)) return ERR_OK;
      tcp_abort(newpcb);
      return ERR_ABRT;
    }
  }
  if (group->parked.size() >= group->backlog) {
    ++group->members.front()->eng_.counters.acceptNoSlot;
    tcp_abort(newpcb);
    return ERR_ABRT;
  }
  group->parked.push_back(std::make_unique<ParkedConnection>(ParkedConnection{group, newpcb, false}));
  tcp_arg(newpcb, group->parked.back().get());
  tcp_recv(newpcb, onParkedRecv);
  tcp_err(newpcb, onParkedError);
  return ERR_OK;
}

}  // namespace

std::unique_ptr<EngineSocket> makeTcpSocket(Engine::Impl& eng, const SlotMemory& mem, SocketOwner& owner,
                                            tcp_pcb* pcb) {
  return std::make_unique<TcpSocket>(eng, mem, owner, pcb);
}

}  // namespace mknet::stack
