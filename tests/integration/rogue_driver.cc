#include "tests/integration/rogue_driver.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include <kj/async-io.h>

#include "ipc/doorbell.h"
#include "ipc/fd_cap.h"
#include "ipc/rpc_client.h"
#include "ipc/schema/admin.capnp.h"
#include "ipc/schema/driver.capnp.h"
#include "libnet/ethernet.h"

namespace mknet::itest {

// Declared in destruction order's reverse: the rings and the region go
// first, then the registration, then the connection, then the loop.
struct RogueDriver::Kj {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::Own<ipc::RpcClient> client;
  schema::DriverSession::Client session = nullptr;
  std::unique_ptr<ipc::PoolRegion> region;
  ipc::Doorbell toStack;
  ipc::DescriptorConsumer rxFree, txActive;
  ipc::DescriptorProducer rxActive, txFree;
};

RogueDriver::RogueDriver(const Testbed& tb) : kj_(std::make_unique<Kj>()) {
  auto client = ipc::RpcClient::connect(kj_->io, tb.stackSocket());
  if (!client) {
    error_ = "connect: " + client.error().message();
    return;
  }
  kj_->client = kj::mv(client).value();
  try {
    auto registry = kj_->client->bootstrap<schema::Stack>().driversRequest().send().getRegistry();
    auto req = registry.registerRequest();
    auto info = req.initInfo();
    info.setName(tb.tap());
    const auto mac = *net::MacAddress::parse(tb.mac());
    info.setMac(kj::arrayPtr(reinterpret_cast<const capnp::byte*>(mac.bytes().data()), mac.bytes().size()));
    info.setMtu(1500);
    info.setLinkUp(true);
    info.setPid(static_cast<uint32_t>(::getpid()));
    info.setAbiVersion(schema::DRIVER_ABI_VERSION);
    auto resp = req.send().wait(kj_->io.waitScope);
    auto att = resp.getAttachment();
    if (att.getContentVersion() != ipc::kPoolContentVersion) {
      error_ = "pool content version " + std::to_string(att.getContentVersion());
      return;
    }
    config_ = ipc::PoolConfig{att.getBufferCount(), att.getRingCapacity()};
    kj_->session = resp.getSession();
    auto regionFd = ipc::receiveFd(att.getRegion(), "pool-region").wait(kj_->io.waitScope);
    auto toStackFd = ipc::receiveFd(att.getToStack(), "doorbell-to-stack").wait(kj_->io.waitScope);
    if (!regionFd || !toStackFd) {
      error_ = "receiving fds: " + (!regionFd ? regionFd.error() : toStackFd.error()).message();
      return;
    }
    auto region = ipc::PoolRegion::attach(std::move(regionFd).value(), config_);
    if (!region) {
      error_ = "attach: " + region.error().message();
      return;
    }
    kj_->region = std::make_unique<ipc::PoolRegion>(std::move(region).value());
    kj_->toStack = ipc::Doorbell(std::move(toStackFd).value());
  } catch (const kj::Exception& e) {
    error_ = std::string("register: ") + e.getDescription().cStr();
    return;
  }
  const uint32_t cap = config_.ringCapacity;
  kj_->rxFree = ipc::DescriptorConsumer(kj_->region->rxFree(), cap);
  kj_->txActive = ipc::DescriptorConsumer(kj_->region->txActive(), cap);
  kj_->rxActive = ipc::DescriptorProducer(kj_->region->rxActive(), cap);
  kj_->txFree = ipc::DescriptorProducer(kj_->region->txFree(), cap);

  // The stack fills rxFree right after attach; take everything it lends.
  std::vector<ipc::Descriptor> got(cap);
  auto n = kj_->rxFree.pop(std::span<ipc::Descriptor>(got));
  if (!n) {
    error_ = "rxFree: " + n.error().message();
    return;
  }
  for (uint32_t i = 0; i < *n; ++i) lent_.push_back(got[i].index);
  std::sort(lent_.begin(), lent_.end());
  if (lent_.empty()) error_ = "the stack lent no buffers";
}

RogueDriver::~RogueDriver() = default;

bool RogueDriver::pushRaw(std::span<const ipc::Descriptor> descriptors) {
  auto pushed = kj_->rxActive.push(descriptors);
  if (!pushed || *pushed != descriptors.size()) return false;
  kj_->toStack.ring();
  return true;
}

bool RogueDriver::pushFrame(uint32_t index, std::span<const uint8_t> frame) {
  auto buf = kj_->region->pool().buffer(index);
  if (!buf || frame.size() > buf->size()) return false;
  std::memcpy(buf->data(), frame.data(), frame.size());
  lent_.erase(std::remove(lent_.begin(), lent_.end(), index), lent_.end());
  const ipc::Descriptor d{index, static_cast<uint32_t>(frame.size()), 0, 0};
  return pushRaw(std::span<const ipc::Descriptor>(&d, 1));
}

std::vector<std::vector<uint8_t>> RogueDriver::takeTx(std::chrono::milliseconds timeout) {
  std::vector<std::vector<uint8_t>> frames;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::array<ipc::Descriptor, 64> burst;
    auto n = kj_->txActive.pop(burst);
    if (n && *n > 0) {
      for (uint32_t i = 0; i < *n; ++i) {
        auto bytes = kj_->region->pool().bytes(burst[i]);
        if (bytes) {
          const auto* p = reinterpret_cast<const uint8_t*>(bytes->data());
          frames.emplace_back(p, p + bytes->size());
        }
      }
      (void)kj_->txFree.push(std::span<const ipc::Descriptor>(burst.data(), *n));
      kj_->toStack.ring();
      continue;  // take whatever else is already there
    }
    if (!frames.empty() || std::chrono::steady_clock::now() > deadline) return frames;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace mknet::itest
