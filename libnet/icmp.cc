#include "libnet/icmp.h"

#include "libnet/checksum.h"

namespace mknet::net {
namespace {
// 65535 - the minimal IPv4 header.
constexpr std::size_t kMaxMessage = 0xffff - 20;
}  // namespace

std::optional<IcmpView> IcmpView::parse(ConstBytes message) {
  if (message.size() < kHeaderSize) return std::nullopt;
  return IcmpView(message);
}

bool IcmpView::checksumValid() const { return internetChecksum(message_) == 0; }

std::optional<std::size_t> IcmpBuilder::build(MutableBytes out, ConstBytes payload) const {
  const std::size_t total = IcmpView::kHeaderSize + payload.size();
  if (total > kMaxMessage || out.size() < total) return std::nullopt;
  moveBytes(out.subspan(IcmpView::kHeaderSize), payload);
  out[0] = type;
  out[1] = code;
  storeBe16(out, 2, 0);
  storeBe32(out, 4, restOfHeader);
  storeBe16(out, 2, internetChecksum(out.first(total)));
  return total;
}

}  // namespace mknet::net
