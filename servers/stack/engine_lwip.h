// The lwIP side of the engine, shared by engine.cc, tcp_socket.cc and
// udp_socket.cc — the only files that include lwIP. Never include this from a
// file that includes system socket headers (<netinet/tcp.h> redefines
// TCP_MSS; see DESIGN.md's dependency traps).
#pragma once

#include "servers/stack/engine.h"

#include <cassert>
#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <unistd.h>
#include <vector>

#include "ipc/byte_ring.h"
#include "libnet/frame.h"

extern "C" {
#include "lwip/etharp.h"
#include "lwip/inet_chksum.h"
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

inline int errnoOf(err_t e) {
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

inline ip_addr_t toLwip(uint32_t hostOrderIp) {
  ip_addr_t a;
  ip_addr_set_ip4_u32_val(a, lwip_htonl(hostOrderIp));
  return a;
}

inline uint32_t fromLwip(const ip_addr_t& a) { return lwip_ntohl(ip4_addr_get_u32(ip_2_ip4(&a))); }


// Debian's liblwip is built with TCP_SND_BUF = 64 KiB, which caps the data in
// flight to 64 KiB per round trip. The send buffer is a per-pcb field, so it
// is raised per socket; the segment queue limit compiled into the library
// (TCP_SND_QUEUELEN, ~179 segments of one pbuf each with TCP_OVERSIZE) still
// holds well above this.
inline constexpr tcpwnd_size_t kSendBuffer = 192 * 1024;

// The receive-window shift mknet announces (RFC 7323). Debian's lwIP is
// built with TCP_RCV_SCALE 1, which caps a receive window at 128 KiB: at the
// ~200 us a frame takes from the peer through driver, stack and app and back
// as an ACK on this 2-CPU machine, that caps a connection near 5 Gbit/s with
// CPU to spare. lwIP writes TCP_RCV_SCALE into every SYN and SYN-ACK it
// sends and has no option to change it, so the engine rewrites that byte on
// the way out (linkOutput, net::setSynWindowScale) and sets the pcb's
// rcv_scale to match once the handshake is done (TcpSocket::onAccept,
// onConnected) — before lwIP announces a scaled window. The window itself
// stays within the socket's receive ring (TcpSocket::maxWindow).
inline constexpr u8_t kRcvScale = 7;
static_assert(kRcvScale >= TCP_RCV_SCALE && kRcvScale <= 14);

// lwIP would loop traffic for its own address or 127/8 through the tcpip
// thread's mailbox, which mknet does not run (it drives lwIP from its own
// loop): such traffic is refused instead of reaching that path.
inline bool isLocal(uint32_t ip, uint32_t own) { return ip == own || (ip >> 24) == 127; }


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
  // UDP sockets waiting for transmit buffers (UdpSocket::pump): their
  // datagrams stay in the app's send ring, so the app's send() blocks as a
  // full socket buffer does on Linux, instead of the stack dropping them.
  std::vector<EngineSocket*> blockedSenders;

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
    if constexpr (kRcvScale != TCP_RCV_SCALE) {
      net::setSynWindowScale(std::span(reinterpret_cast<uint8_t*>(buf.data()), p->tot_len), kRcvScale);
    }
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

// The socket kinds, created by Engine::openSocket and by a TCP listener.
std::unique_ptr<EngineSocket> makeTcpSocket(Engine::Impl& eng, const SlotMemory& mem, SocketOwner& owner,
                                            tcp_pcb* pcb);
std::unique_ptr<EngineSocket> makeUdpSocket(Engine::Impl& eng, const SlotMemory& mem, SocketOwner& owner,
                                            udp_pcb* pcb);

}  // namespace mknet::stack
