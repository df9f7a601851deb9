// Runs the libnet fuzz entry point (frame_fuzz.cc) over 200,000 inputs from
// a fixed seed: a share of pure random bytes, the rest valid frames of every
// kind put through structure-aware mutations. Mutated frames often get their
// checksums repaired afterwards, so inputs reach the deep checks (TCP
// options, L4 lengths) instead of all stopping at the IP checksum.
//
// The entry point traps on any violated property. This test additionally
// asserts that the stream really covered every outcome of parseFrame(), so a
// broken generator cannot pass silently.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "libnet/checksum.h"
#include "libnet/frame.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace mknet::net {
namespace {

constexpr int kIterations = 200'000;
constexpr std::size_t kIp = 14;

class Generator {
 public:
  explicit Generator(std::uint64_t seed) : rng_(seed) {}

  std::vector<std::uint8_t> next() {
    if (pick(10) == 0) return randomBytes(pick(120));
    auto frame = validFrame();
    const int mutations = static_cast<int>(pick(4));
    for (int i = 0; i < mutations; ++i) mutate(frame);
    if (pick(3) != 0) fixL4Checksum(frame);
    if (pick(4) != 0) fixIpChecksum(frame);
    return frame;
  }

 private:
  std::uint32_t pick(std::uint32_t n) {
    return n == 0 ? 0 : static_cast<std::uint32_t>(rng_() % n);
  }
  std::uint8_t byte() { return static_cast<std::uint8_t>(rng_()); }

  std::vector<std::uint8_t> randomBytes(std::size_t n) {
    std::vector<std::uint8_t> v(n);
    for (auto& b : v) b = byte();
    return v;
  }

  MacAddress mac() { return MacAddress({byte(), byte(), byte(), byte(), byte(), byte()}); }

  std::vector<std::uint8_t> tcpOptions() {
    std::vector<std::uint8_t> out(kTcpMaxOptionBytes);
    if (pick(4) == 0) {
      // Raw option soup, padded to a multiple of 4 as the builder requires:
      // half the options get their correct length (so repeats and odd
      // orders of valid options occur), the rest a random one.
      static constexpr std::array<std::uint8_t, 8> kKinds{0, 1, 2, 3, 4, 5, 8, 30};
      static constexpr std::array<std::uint8_t, 8> kLengths{1, 1, 4, 3, 2, 10, 10, 4};
      out.clear();
      const std::size_t words = 1 + pick(10);
      while (out.size() < words * 4) {
        const std::size_t k = pick(kKinds.size());
        out.push_back(kKinds[k]);
        if (kLengths[k] < 2) continue;  // EOL and NOP have no length byte
        if (pick(2) == 0) {
          const std::uint8_t length = kKinds[k] == kTcpOptionSack && pick(2) ? 18 : kLengths[k];
          out.push_back(length);
          for (std::size_t i = 2; i < length; ++i) out.push_back(byte());
        } else if (pick(2) == 0) {
          out.push_back(static_cast<std::uint8_t>(pick(14)));
        }
      }
      out.resize(words * 4);
      return out;
    }
    TcpOptions o;
    if (pick(2)) o.mss = static_cast<std::uint16_t>(rng_());
    if (pick(2)) o.windowScale = static_cast<std::uint8_t>(pick(15));
    if (pick(2)) o.sackPermitted = true;
    if (pick(2))
      o.timestamps =
          TcpTimestamps{static_cast<std::uint32_t>(rng_()), static_cast<std::uint32_t>(rng_())};
    if (pick(3) == 0) {
      o.sackBlockCount = 1 + pick(2);
      for (std::size_t i = 0; i < o.sackBlockCount; ++i) o.sackBlocks[i] = {byte(), byte()};
    }
    out.resize(writeTcpOptions(out, o).value_or(0));
    return out;
  }

  std::vector<std::uint8_t> validFrame() {
    const FrameBuilder fb{.srcMac = mac(),
                          .dstMac = mac(),
                          .srcIp = Ipv4Address(static_cast<std::uint32_t>(rng_())),
                          .dstIp = Ipv4Address(static_cast<std::uint32_t>(rng_())),
                          .ttl = byte(),
                          .tos = byte(),
                          .ipId = static_cast<std::uint16_t>(rng_()),
                          .dontFragment = pick(2) == 0};
    const auto payload = randomBytes(pick(3) == 0 ? 0 : pick(80));
    std::vector<std::uint8_t> buf(2048);
    std::optional<std::size_t> n;
    switch (pick(7)) {
      case 0:
      case 1: {
        const auto options = tcpOptions();
        n = fb.buildTcp(buf,
                        TcpBuilder{.srcPort = static_cast<std::uint16_t>(rng_()),
                                   .dstPort = static_cast<std::uint16_t>(rng_()),
                                   .seqNumber = static_cast<std::uint32_t>(rng_()),
                                   .ackNumber = static_cast<std::uint32_t>(rng_()),
                                   .flags = byte(),
                                   .window = static_cast<std::uint16_t>(rng_()),
                                   .urgentPointer = static_cast<std::uint16_t>(rng_()),
                                   .options = options},
                        payload);
        break;
      }
      case 2:
        n = fb.buildUdp(buf,
                        UdpBuilder{.srcPort = static_cast<std::uint16_t>(rng_()),
                                   .dstPort = static_cast<std::uint16_t>(rng_()),
                                   .computeChecksum = pick(5) != 0},
                        payload);
        break;
      case 3:
        n = fb.buildIcmp(buf,
                         pick(2) ? IcmpBuilder::echoRequest(static_cast<std::uint16_t>(rng_()), 1)
                                 : IcmpBuilder{byte(), byte(), static_cast<std::uint32_t>(rng_())},
                         payload);
        break;
      case 4:
        n = fb.buildArp(buf, ArpBuilder{static_cast<std::uint16_t>(1 + pick(2)), mac(),
                                        Ipv4Address(static_cast<std::uint32_t>(rng_())), mac(),
                                        Ipv4Address(static_cast<std::uint32_t>(rng_()))});
        break;
      case 5: {
        // An IPv4 packet of some other protocol, possibly a fragment.
        n = fb.buildUdp(buf, UdpBuilder{}, payload);
        buf[kIp + 9] = pick(2) ? 47 : byte();
        if (pick(2)) storeBe16(buf, kIp + 6, static_cast<std::uint16_t>(rng_()));
        break;
      }
      default: {
        // Something that is not IPv4 or ARP.
        n = fb.buildUdp(buf, UdpBuilder{}, payload);
        storeBe16(buf, 12, pick(2) ? kEtherTypeIpv6 : static_cast<std::uint16_t>(rng_()));
        break;
      }
    }
    buf.resize(n.value_or(0));
    if (pick(3) == 0 && buf.size() < 60) buf.resize(60, byte());  // Ethernet padding
    fixIpChecksum(buf);
    return buf;
  }

  void mutate(std::vector<std::uint8_t>& f) {
    switch (pick(10)) {
      case 0:
        if (!f.empty())
          f[pick(static_cast<std::uint32_t>(f.size()))] ^= static_cast<std::uint8_t>(1u << pick(8));
        break;
      case 1:
        if (!f.empty()) f[pick(static_cast<std::uint32_t>(f.size()))] = byte();
        break;
      case 2:
        f.resize(pick(static_cast<std::uint32_t>(f.size() + 1)));
        break;
      case 3: {
        const auto extra = randomBytes(1 + pick(40));
        f.insert(f.end(), extra.begin(), extra.end());
        break;
      }
      case 4:  // IP version / IHL nibbles
        if (f.size() > kIp)
          f[kIp] = static_cast<std::uint8_t>(pick(2) ? (f[kIp] & 0x0f) | (pick(16) << 4)
                                                     : (f[kIp] & 0xf0) | pick(16));
        break;
      case 5:  // IP total length: near the real one or anything
        if (f.size() > kIp + 3) {
          const auto len = static_cast<std::uint16_t>(
              pick(2) ? loadBe16(f, kIp + 2) + static_cast<int>(pick(9)) - 4 : rng_());
          storeBe16(f, kIp + 2, len);
        }
        break;
      case 6:  // TCP data offset
        if (f.size() > 34 + 12)
          f[34 + 12] = static_cast<std::uint8_t>((pick(16) << 4) | (f[34 + 12] & 0x0f));
        break;
      case 7:  // UDP length
        if (f.size() > 34 + 5)
          storeBe16(f, 34 + 4,
                    static_cast<std::uint16_t>(
                        pick(2) ? loadBe16(f, 38) + static_cast<int>(pick(5)) - 2 : rng_()));
        break;
      case 8:  // a byte inside the TCP options
        if (f.size() > 54)
          f[54 + pick(static_cast<std::uint32_t>(std::min<std::size_t>(40, f.size() - 54)))] =
              byte();
        break;
      default:  // the IP protocol
        if (f.size() > kIp + 9) {
          static constexpr std::array<std::uint8_t, 4> kProtocols{1, 6, 17, 47};
          f[kIp + 9] = kProtocols[pick(4)];
        }
        break;
    }
  }

  static void fixIpChecksum(std::vector<std::uint8_t>& f) {
    if (f.size() < kIp + 20 || loadBe16(f, 12) != kEtherTypeIpv4) return;
    const std::size_t ihl = std::size_t{f[kIp] & 0x0fu} * 4;
    if (ihl < 20 || kIp + ihl > f.size()) return;
    storeBe16(f, kIp + 10, 0);
    storeBe16(f, kIp + 10, internetChecksum(ConstBytes(f).subspan(kIp, ihl)));
  }

  static void fixL4Checksum(std::vector<std::uint8_t>& f) {
    if (f.size() < kIp || loadBe16(f, 12) != kEtherTypeIpv4) return;
    auto ip = Ipv4View::parse(ConstBytes(f).subspan(kIp));
    if (!ip) return;
    const std::size_t at = kIp + ip->headerLength();
    const std::size_t length = ip->payload().size();
    MutableBytes l4(f.data() + at, length);
    auto sumWithZero = [&](std::size_t field, std::size_t range, std::uint8_t protocol) {
      storeBe16(l4, field, 0);
      return protocol == kIpProtocolIcmp
                 ? internetChecksum(l4.first(range))
                 : ipv4L4Checksum(ip->src().value(), ip->dst().value(), protocol, l4.first(range));
    };
    switch (ip->protocol()) {
      case kIpProtocolTcp:
        if (length >= 18) storeBe16(l4, 16, sumWithZero(16, length, kIpProtocolTcp));
        break;
      case kIpProtocolUdp:
        if (length >= 8 && loadBe16(l4, 4) >= 8 && loadBe16(l4, 4) <= length &&
            loadBe16(l4, 6) != 0) {
          std::uint16_t sum = sumWithZero(6, loadBe16(l4, 4), kIpProtocolUdp);
          storeBe16(l4, 6, sum == 0 ? 0xffff : sum);
        }
        break;
      case kIpProtocolIcmp:
        if (length >= 4) storeBe16(l4, 2, sumWithZero(2, length, kIpProtocolIcmp));
        break;
      default:
        break;
    }
  }

  std::mt19937_64 rng_;
};

TEST(FrameFuzzTest, RandomAndMutatedValidFramesKeepEveryInvariant) {
  Generator generator(0x6d6b6e6574);  // "mknet"
  std::array<int, kFrameErrorCount> errors{};
  std::array<int, kFrameKindCount> kinds{};
  for (int i = 0; i < kIterations; ++i) {
    const auto input = generator.next();
    // Traps inside on any violated property.
    ASSERT_EQ(LLVMFuzzerTestOneInput(input.data(), input.size()), 0);
    FrameError error{};
    if (auto frame = parseFrame(input, &error)) {
      ++kinds[static_cast<std::size_t>(frame->kind)];
    } else {
      ++errors[static_cast<std::size_t>(error)];
    }
  }
  // The stream must reach every outcome a fair number of times.
  for (std::size_t k = 0; k < kinds.size(); ++k) {
    EXPECT_GT(kinds[k], 500) << "FrameKind " << k;
  }
  for (std::size_t e = 0; e < kFrameErrorCount; ++e) {
    EXPECT_GT(errors[e], 500) << frameErrorName(static_cast<FrameError>(e));
  }
  for (std::size_t k = 0; k < kinds.size(); ++k) std::printf("kind %zu: %d\n", k, kinds[k]);
  for (std::size_t e = 0; e < kFrameErrorCount; ++e) {
    std::printf("%s: %d\n", frameErrorName(static_cast<FrameError>(e)), errors[e]);
  }
}

}  // namespace
}  // namespace mknet::net
