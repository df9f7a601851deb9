#include "libnet/tcp.h"

#include "libnet/checksum.h"

namespace mknet::net {
namespace {

// 65535 - the minimal IPv4 header.
constexpr std::size_t kMaxSegment = 0xffff - 20;

// True if a known option kind has a legal total length (kind + length +
// value). Unknown kinds accept any length >= 2 and are skipped by callers.
bool knownLengthValid(std::uint8_t kind, std::size_t length) {
  switch (kind) {
    case kTcpOptionMss:
      return length == 4;
    case kTcpOptionWindowScale:
      return length == 3;
    case kTcpOptionSackPermitted:
      return length == 2;
    case kTcpOptionTimestamps:
      return length == 10;
    case kTcpOptionSack:
      return length >= 10 && (length - 2) % 8 == 0 && (length - 2) / 8 <= kTcpMaxSackBlocks;
    default:
      return true;
  }
}

}  // namespace

TcpOptionIterator::Status TcpOptionIterator::next(TcpOption& option) {
  if (done_) return *done_;
  auto stop = [this](Status s) {
    done_ = s;
    return s;
  };
  if (pos_ >= options_.size()) return stop(Status::kEnd);
  const std::uint8_t kind = options_[pos_];
  if (kind == kTcpOptionEol) return stop(Status::kEnd);
  if (kind == kTcpOptionNop) {
    // An empty value that still points into the option bytes.
    option = TcpOption{kind, options_.subspan(pos_ + 1, 0)};
    ++pos_;
    return Status::kOption;
  }
  // Every other option has a length byte that counts kind and length too.
  if (pos_ + 1 >= options_.size()) return stop(Status::kMalformed);
  const std::size_t length = options_[pos_ + 1];
  if (length < 2 || length > options_.size() - pos_) return stop(Status::kMalformed);
  if (!knownLengthValid(kind, length)) return stop(Status::kMalformed);
  option = TcpOption{kind, options_.subspan(pos_ + 2, length - 2)};
  pos_ += length;
  return Status::kOption;
}

std::optional<TcpOptions> parseTcpOptions(ConstBytes options) {
  TcpOptions result;
  TcpOptionIterator it(options);
  TcpOption option;
  for (;;) {
    switch (it.next(option)) {
      case TcpOptionIterator::Status::kEnd:
        return result;
      case TcpOptionIterator::Status::kMalformed:
        return std::nullopt;
      case TcpOptionIterator::Status::kOption:
        break;
    }
    // Value sizes below were checked by the iterator (knownLengthValid).
    switch (option.kind) {
      case kTcpOptionMss:
        result.mss = loadBe16(option.value, 0);
        break;
      case kTcpOptionWindowScale:
        result.windowScale = option.value[0];
        break;
      case kTcpOptionSackPermitted:
        result.sackPermitted = true;
        break;
      case kTcpOptionTimestamps:
        result.timestamps = TcpTimestamps{loadBe32(option.value, 0), loadBe32(option.value, 4)};
        break;
      case kTcpOptionSack:
        // Clear first: a shorter repeated SACK option must not leave blocks
        // of an earlier one behind (see the TcpOptions invariant).
        result.sackBlocks = {};
        result.sackBlockCount = option.value.size() / 8;
        for (std::size_t i = 0; i < result.sackBlockCount; ++i) {
          result.sackBlocks[i] = {loadBe32(option.value, i * 8), loadBe32(option.value, i * 8 + 4)};
        }
        break;
      default:
        break;  // NOP or an option mknet does not use
    }
  }
}

std::optional<std::size_t> writeTcpOptions(MutableBytes out, const TcpOptions& options) {
  if (options.sackBlockCount > kTcpMaxSackBlocks) return std::nullopt;
  // Size first, so nothing is written when the options do not fit.
  std::size_t size = 0;
  if (options.mss) size += 4;
  if (options.timestamps) {
    size += 12;  // SACK-permitted rides in the timestamps' two NOP bytes
  } else if (options.sackPermitted) {
    size += 4;
  }
  if (options.windowScale) size += 4;
  if (options.sackBlockCount > 0) size += 4 + 8 * options.sackBlockCount;
  if (size > kTcpMaxOptionBytes || size > out.size()) return std::nullopt;

  std::size_t at = 0;
  auto put = [&](std::uint8_t b) { out[at++] = b; };
  if (options.mss) {
    put(kTcpOptionMss);
    put(4);
    storeBe16(out, at, *options.mss);
    at += 2;
  }
  if (options.timestamps) {
    if (options.sackPermitted) {
      put(kTcpOptionSackPermitted);
      put(2);
    } else {
      put(kTcpOptionNop);
      put(kTcpOptionNop);
    }
    put(kTcpOptionTimestamps);
    put(10);
    storeBe32(out, at, options.timestamps->value);
    storeBe32(out, at + 4, options.timestamps->echoReply);
    at += 8;
  } else if (options.sackPermitted) {
    put(kTcpOptionNop);
    put(kTcpOptionNop);
    put(kTcpOptionSackPermitted);
    put(2);
  }
  if (options.windowScale) {
    put(kTcpOptionNop);
    put(kTcpOptionWindowScale);
    put(3);
    put(*options.windowScale);
  }
  if (options.sackBlockCount > 0) {
    put(kTcpOptionNop);
    put(kTcpOptionNop);
    put(kTcpOptionSack);
    put(static_cast<std::uint8_t>(2 + 8 * options.sackBlockCount));
    for (std::size_t i = 0; i < options.sackBlockCount; ++i) {
      storeBe32(out, at, options.sackBlocks[i].left);
      storeBe32(out, at + 4, options.sackBlocks[i].right);
      at += 8;
    }
  }
  return at;
}

std::optional<TcpView> TcpView::parse(ConstBytes bytes) {
  // The pseudo-header carries the segment length in 16 bits.
  if (bytes.size() < kMinHeaderSize || bytes.size() > 0xffff) return std::nullopt;
  const std::size_t headerLength = static_cast<std::size_t>(bytes[12] >> 4) * 4;
  if (headerLength < kMinHeaderSize || headerLength > bytes.size()) return std::nullopt;
  return TcpView(bytes);
}

bool TcpView::checksumValid(Ipv4Address src, Ipv4Address dst) const {
  return ipv4L4Checksum(src.value(), dst.value(), kIpProtocolTcp, segment_) == 0;
}

std::optional<std::size_t> TcpBuilder::build(MutableBytes out, Ipv4Address src, Ipv4Address dst,
                                             ConstBytes payload) const {
  if (options.size() % 4 != 0 || options.size() > kTcpMaxOptionBytes) return std::nullopt;
  const std::size_t header = headerLength();
  const std::size_t total = header + payload.size();
  if (total > kMaxSegment || out.size() < total) return std::nullopt;
  moveBytes(out.subspan(header), payload);
  storeBe16(out, 0, srcPort);
  storeBe16(out, 2, dstPort);
  storeBe32(out, 4, seqNumber);
  storeBe32(out, 8, ackNumber);
  out[12] = static_cast<std::uint8_t>((header / 4) << 4);
  out[13] = flags;
  storeBe16(out, 14, window);
  storeBe16(out, 16, 0);
  storeBe16(out, 18, urgentPointer);
  moveBytes(out.subspan(TcpView::kMinHeaderSize), options);
  storeBe16(out, 16, ipv4L4Checksum(src.value(), dst.value(), kIpProtocolTcp, out.first(total)));
  return total;
}

}  // namespace mknet::net
