// The stack's lwip_standard_chksum (servers/stack/engine.cc) replaces
// liblwip's for the whole library: same results as lwIP's own on every
// length and alignment, and lwIP's checksum functions use it.
#include <dlfcn.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include <gtest/gtest.h>

extern "C" {
#include "lwip/def.h"
#include "lwip/inet_chksum.h"
#include "lwip/ip_addr.h"
#include "lwip/prot/ip.h"
// Defined in liblwip and (replacing it) in servers/stack/engine.cc; lwIP's
// header declares it only where its own LWIP_CHKSUM default applies.
u16_t lwip_standard_chksum(const void* dataptr, int len);
}

namespace {

using ChksumFn = u16_t (*)(const void*, int);

// RFC 1071 by byte pairs, big-endian words, returned as lwIP does: in
// network byte order.
u16_t reference(const uint8_t* p, int len) {
  uint32_t sum = 0;
  for (int i = 0; i + 1 < len; i += 2) sum += (uint32_t{p[i]} << 8) | p[i + 1];
  if (len % 2 != 0) sum += uint32_t{p[len - 1]} << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return lwip_htons(static_cast<u16_t>(sum));
}

// liblwip's own definition (dlsym on the library's handle searches the
// library before the program).
ChksumFn lwipOwn() {
  void* h = dlopen("liblwip.so.0", RTLD_NOW | RTLD_NOLOAD);
  if (h == nullptr) return nullptr;
  return reinterpret_cast<ChksumFn>(dlsym(h, "lwip_standard_chksum"));
}

TEST(LwipChecksum, TheProgramsDefinitionIsTheOneInUse) {
  auto global = reinterpret_cast<ChksumFn>(dlsym(RTLD_DEFAULT, "lwip_standard_chksum"));
  ASSERT_NE(global, nullptr);
  EXPECT_EQ(global, &lwip_standard_chksum);
  ChksumFn own = lwipOwn();
  ASSERT_NE(own, nullptr) << dlerror();
  EXPECT_NE(own, &lwip_standard_chksum) << "the program does not define its own lwip_standard_chksum";
}

TEST(LwipChecksum, SameAsReferenceAndLwipOnEveryLengthAndAlignment) {
  ChksumFn own = lwipOwn();
  ASSERT_NE(own, nullptr) << dlerror();
  std::mt19937 rng(7);
  std::vector<uint8_t> buf(4096 + 16);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  int checked = 0;
  for (int offset = 0; offset < 8; ++offset) {
    for (int len = 0; len <= 1600; len += (len < 80 ? 1 : 37)) {
      const uint8_t* p = buf.data() + offset;
      u16_t want = reference(p, len);
      ASSERT_EQ(lwip_standard_chksum(p, len), want) << "offset " << offset << " len " << len;
      ASSERT_EQ(own(p, len), want) << "lwIP's own, offset " << offset << " len " << len;
      ++checked;
    }
  }
  EXPECT_GT(checked, 8 * 100);
  // All ones and all zeros: the folded sums 0xffff and 0 stay apart.
  std::vector<uint8_t> ones(1500, 0xff), zeros(1500, 0);
  EXPECT_EQ(lwip_standard_chksum(ones.data(), 1500), own(ones.data(), 1500));
  EXPECT_EQ(lwip_standard_chksum(ones.data(), 1500), 0xffff);
  EXPECT_EQ(lwip_standard_chksum(zeros.data(), 1500), 0);
  EXPECT_EQ(lwip_standard_chksum(zeros.data(), 0), 0);
}

// A real TCP segment (captured layout: 20-byte header + payload) with a
// correct checksum verifies to 0 through lwIP's pseudo-header function, which
// calls lwip_standard_chksum through its PLT; one flipped bit does not.
TEST(LwipChecksum, LwipsPseudoHeaderChecksumUsesItAndVerifies) {
  std::mt19937 rng(11);
  std::vector<uint8_t> seg(20 + 1001);
  for (auto& b : seg) b = static_cast<uint8_t>(rng());
  seg[12] = 0x50;  // data offset 5
  seg[16] = seg[17] = 0;
  ip_addr_t src, dst;
  IP_ADDR4(&src, 198, 18, 0, 1);
  IP_ADDR4(&dst, 198, 18, 0, 2);
  struct pbuf* p = pbuf_alloc(PBUF_RAW, static_cast<u16_t>(seg.size()), PBUF_RAM);
  ASSERT_NE(p, nullptr);
  std::memcpy(p->payload, seg.data(), seg.size());
  u16_t c = ip_chksum_pseudo(p, IP_PROTO_TCP, static_cast<u16_t>(seg.size()), &src, &dst);
  std::memcpy(static_cast<uint8_t*>(p->payload) + 16, &c, 2);
  EXPECT_EQ(ip_chksum_pseudo(p, IP_PROTO_TCP, static_cast<u16_t>(seg.size()), &src, &dst), 0);
  static_cast<uint8_t*>(p->payload)[500] ^= 0x10;
  EXPECT_NE(ip_chksum_pseudo(p, IP_PROTO_TCP, static_cast<u16_t>(seg.size()), &src, &dst), 0);
  pbuf_free(p);
}

}  // namespace
