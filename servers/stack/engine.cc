// The engine: lwIP's initialisation, the netif on the driver port, input,
// timers, and socket creation. With tcp_socket.cc and udp_socket.cc the only
// files that include lwIP (through engine_lwip.h); they must not include
// system socket headers (see engine.h).
#include "servers/stack/engine_lwip.h"

#include "libnet/checksum.h"

// lwIP sums every checksum it checks or makes (each received TCP/UDP segment,
// each segment it sends: LWIP_CHECKSUM_ON_COPY) with lwip_standard_chksum(),
// a 16-bit-at-a-time loop that was 4-6 % of all CPU in bulk receive. Debian's
// liblwip calls it through its PLT, so this definition in the program takes
// its place for the whole library (ELF interposition, as a program's malloc
// replaces libc's); lwIP has no other hook for it in a prebuilt library
// (LWIP_CHKSUM is a compile-time macro). Same contract: the folded one's-
// complement sum of len bytes in network byte order, not complemented.
// libnet's Checksum adds 8 bytes per step (tests/servers/stack/
// lwip_checksum_test checks it against a byte-pair reference and lwIP's own
// pseudo-header checksum of real segments).
extern "C" u16_t lwip_standard_chksum(const void* dataptr, int len) {
  if (len <= 0) return 0;
  mknet::net::Checksum c;
  c.add(mknet::net::ConstBytes(static_cast<const uint8_t*>(dataptr), static_cast<size_t>(len)));
  return lwip_htons(c.sum());
}

namespace mknet::stack {

using ipc::SlotState;

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

namespace {

// A SYN for a connection that is in TIME_WAIT here. lwIP answers such a SYN
// with an ACK and ignores the peer's RST (RFC 1337), so the peer's connect()
// hangs until TIME_WAIT ends (2 MSL, 2 minutes in lwIP). Linux, whose
// clients reuse ports quickly when they were not the side that closed,
// accepts a new SYN on a TIME_WAIT connection when its timestamps or
// sequence number show a new incarnation; mknet does the same by dropping
// the TIME_WAIT pcb before lwIP sees the SYN (the old connection is over;
// on a link between two hosts no delayed duplicate of it survives 2 MSL
// anyway). Without this a server closing first stalls after a few thousand
// short connections from one client.
// lwIP keeps TIME_WAIT connections in one list that tcp_input() walks for
// every segment not of an active connection (every SYN) and keeps each for 2
// minutes, so a server doing thousands of short connections a second would
// walk a list of hundreds of thousands. Like Linux's tcp_max_tw_buckets (but
// lower: Linux hashes, lwIP walks), mknet keeps at most this many and ends
// the oldest early.
constexpr size_t kMaxTimeWait = 256;

// Returns how many TIME_WAIT pcbs it ended (recycled for this SYN or over the cap).
uint32_t recycleTimeWait(const std::byte* frame, uint32_t length, uint64_t* recycled, uint64_t* trimmed) {
  const auto* b = reinterpret_cast<const uint8_t*>(frame);
  if (length < 14 + 20 + 20 || b[12] != 0x08 || b[13] != 0x00) return 0;
  const uint32_t ihl = (b[14] & 0x0fu) * 4u;
  if (b[23] != 6 || ihl < 20 || length < 14 + ihl + 20) return 0;
  const uint8_t* tcp = b + 14 + ihl;
  if ((tcp[13] & (0x02 | 0x10 | 0x04)) != 0x02) return 0;  // SYN alone
  const uint32_t srcIp = uint32_t{b[26]} << 24 | uint32_t{b[27]} << 16 | uint32_t{b[28]} << 8 | b[29];
  const uint16_t srcPort = static_cast<uint16_t>(tcp[0] << 8 | tcp[1]);
  const uint16_t dstPort = static_cast<uint16_t>(tcp[2] << 8 | tcp[3]);
  // New TIME_WAIT pcbs go to the front of the list, so past kMaxTimeWait
  // are the oldest. Each connection's SYN passes here once, so checking on
  // SYNs keeps the list within one of the cap.
  tcp_pcb* match = nullptr;
  tcp_pcb* over[4];
  size_t n = 0, nOver = 0;
  for (tcp_pcb* pcb = tcp_tw_pcbs; pcb != nullptr; pcb = pcb->next, ++n) {
    if (match == nullptr && pcb->local_port == dstPort && pcb->remote_port == srcPort &&
        fromLwip(pcb->remote_ip) == srcIp) {
      match = pcb;
    } else if (n >= kMaxTimeWait && nOver < std::size(over)) {
      over[nOver++] = pcb;
    }
  }
  // tcp_abort() of a TIME_WAIT pcb only unlinks and frees it: no RST.
  if (match != nullptr) tcp_abort(match);
  for (size_t i = 0; i < nOver; ++i) tcp_abort(over[i]);
  *recycled += match != nullptr;
  *trimmed += nOver;
  return (match != nullptr) + static_cast<uint32_t>(nOver);
}

}  // namespace

void Engine::input(uint32_t index, std::byte* data, uint32_t length, uint32_t bufferSize) {
  if (tcp_tw_pcbs != nullptr)
    recycleTimeWait(data, length, &impl_->counters.timeWaitRecycled, &impl_->counters.timeWaitTrimmed);
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
  if (tcp_tw_pcbs != nullptr)
    recycleTimeWait(data, length, &impl_->counters.timeWaitRecycled, &impl_->counters.timeWaitTrimmed);
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

uint32_t Engine::retryBlockedSenders() {
  if (impl_->blockedSenders.empty()) return 0;
  std::vector<EngineSocket*> retry;
  retry.swap(impl_->blockedSenders);  // pump() may block and re-add them
  for (EngineSocket* s : retry) s->pump();
  return static_cast<uint32_t>(retry.size());
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

bool Engine::unacknowledged() const {
  for (const tcp_pcb* p = tcp_active_pcbs; p != nullptr; p = p->next) {
    if (p->unsent != nullptr || p->unacked != nullptr || p->state == FIN_WAIT_1 || p->state == CLOSING ||
        p->state == LAST_ACK)
      return true;
  }
  return false;
}

uint32_t Engine::runTimers() {
  sys_check_timeouts();
  return sys_timeouts_sleeptime();
}

std::unique_ptr<EngineSocket> Engine::openSocket(SocketKind kind, const SlotMemory& mem, SocketOwner& owner) {
  if (kind == SocketKind::kTcp) {
    tcp_pcb* pcb = tcp_new_ip_type(IPADDR_TYPE_V4);
    if (pcb == nullptr) return nullptr;
    mem.status->state.store(static_cast<uint32_t>(SlotState::kTcp), std::memory_order_release);
    return makeTcpSocket(*impl_, mem, owner, pcb);
  }
  udp_pcb* pcb = udp_new_ip_type(IPADDR_TYPE_V4);
  if (pcb == nullptr) return nullptr;
  return makeUdpSocket(*impl_, mem, owner, pcb);
}

const EngineCounters& Engine::counters() const { return impl_->counters; }
uint32_t Engine::liveSockets() const { return impl_->liveSockets; }

}  // namespace mknet::stack
