#include "drivers/tap/stack_link.h"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <thread>
#include <utility>

#include <capnp/capability.h>
#include <kj/async.h>
#include <spdlog/spdlog.h>

#include "ipc/doorbell.h"
#include "ipc/fd_cap.h"
#include "ipc/pool_region.h"
#include "ipc/rpc_client.h"
#include "ipc/schema/admin.capnp.h"
#include "ipc/schema/driver.capnp.h"

namespace mknet::drivers {

namespace {

// Sizes this driver accepts from a registration answer (the pool region
// itself refuses more than 2^20 buffers).
constexpr uint32_t kMaxRingCapacity = 1u << 21;

kj::Duration toKj(std::chrono::milliseconds d) { return d.count() * kj::MILLISECONDS; }

// A failed control call as an Error: the code tells retryable failures
// (connection gone, timed out) from a stack that refused us.
Error fromException(const char* what, const kj::Exception& e) {
  std::string desc = e.getDescription().cStr();
  switch (e.getType()) {
    case kj::Exception::Type::DISCONNECTED:
      return makeError(ECONNRESET, std::string(what) + ": connection lost (" + desc + ")");
    case kj::Exception::Type::OVERLOADED:
      return makeError(ETIMEDOUT, std::string(what) + ": no answer (" + desc + ")");
    default:
      return makeError(EPROTO, std::string(what) + ": refused by the stack: " + desc);
  }
}

// Failures worth waiting out while the stack starts: no socket yet, nobody
// listening yet, backlog full, connection or answer lost.
bool retryableAtStartup(const Error& e) {
  switch (e.code) {
    case ENOENT:
    case ECONNREFUSED:
    case EAGAIN:
    case ECONNRESET:
    case ETIMEDOUT:
      return true;
    default:
      return false;
  }
}

// The largest IP packet a pool buffer can carry with its Ethernet header.
constexpr uint32_t kMaxMtu = ipc::kBufferSize - 14;

}  // namespace

// Everything one registration owns. Destroyed in reverse member order after
// the destructor body has stopped and joined the data plane, so the rings are
// never touched after the connection (which tells the stack we are gone)
// closes.
struct StackLink::Attachment {
  kj::Own<ipc::RpcClient> client;
  schema::DriverSession::Client session = nullptr;
  ipc::PoolConfig config;
  std::unique_ptr<ipc::PoolRegion> region;
  ipc::Doorbell toDriver;
  ipc::Doorbell toStack;
  ipc::Doorbell control;  // wakes the data plane for requestStop()
  std::unique_ptr<TapDriver> driver;
  std::thread thread;

  ~Attachment() {
    if (driver) driver->requestStop();
    if (thread.joinable()) thread.join();
  }
};

StackLink::StackLink(kj::AsyncIoContext& io, NicDevice& nic, StackLinkOptions options)
    : io_(io), timer_(io.provider->getTimer()), nic_(nic), options_(std::move(options)),
      firstDeadline_(timer_.now()), backoff_(options_.backoffMin) {}

StackLink::~StackLink() = default;

kj::Promise<Error> StackLink::run() {
  firstDeadline_ = timer_.now() + toKj(options_.connectTimeout);
  lastLinkUp_ = nic_.linkUp();
  return cycle();
}

kj::Promise<Error> StackLink::cycle() {
  return connectAndRegister().then(
      [this](Result<kj::Own<Attachment>>&& r) -> kj::Promise<Error> {
        if (!r) {
          const Error& e = r.error();
          if (registrations_ == 0) {
            if (!retryableAtStartup(e)) return e;
            if (timer_.now() >= firstDeadline_)
              return makeError(0, "no stack answered at " + options_.socketPath + " within " +
                                      std::to_string(options_.connectTimeout.count()) +
                                      " ms (last attempt: " + e.message() + ")");
          }
          return retryLater(e);
        }
        attachment_ = kj::mv(r).value();
        ++registrations_;
        backoff_ = options_.backoffMin;
        failedAttempts_ = 0;
        spdlog::info("{}: registered with the stack at {} (mac {}, {} buffers, ring {}; "
                     "registration #{})",
                     nic_.name(), options_.socketPath, nic_.mac().toString(),
                     attachment_->config.bufferCount, attachment_->config.ringCapacity,
                     registrations_);
        return serve().then([this](Error why) -> kj::Promise<Error> {
          attachment_ = nullptr;  // stops and joins the data plane, then hangs up
          if (deviceFailed_) return why;
          spdlog::warn("{}: lost the stack ({}); registering again", nic_.name(), why.message());
          ++failedAttempts_;  // already said: no second line for this one
          return scheduleRetry();
        });
      });
}

kj::Promise<Error> StackLink::retryLater(const Error& why) {
  ++failedAttempts_;
  // One line when the stack first goes missing and then every 20 attempts
  // (10 s at the maximum backoff); the rest at debug level.
  if (failedAttempts_ % 20 == 1 && registrations_ > 0)
    spdlog::warn("{}: cannot register ({}); retrying", nic_.name(), why.message());
  else if (failedAttempts_ == 1)
    spdlog::info("{}: waiting for the stack at {} ({})", nic_.name(), options_.socketPath,
                 why.message());
  else
    spdlog::debug("{}: cannot register ({}); retrying", nic_.name(), why.message());
  return scheduleRetry();
}

kj::Promise<Error> StackLink::scheduleRetry() {
  kj::Duration delay = toKj(backoff_);
  backoff_ = std::min(backoff_ * 2, options_.backoffMax);
  if (registrations_ == 0) {
    kj::Duration left = firstDeadline_ - timer_.now();
    if (left < delay) delay = left < 0 * kj::NANOSECONDS ? 0 * kj::NANOSECONDS : left;
  }
  return timer_.afterDelay(delay).then([this]() { return cycle(); });
}

kj::Promise<Result<kj::Own<StackLink::Attachment>>> StackLink::connectAndRegister() {
  using R = Result<kj::Own<Attachment>>;
  auto client = ipc::RpcClient::connect(io_, options_.socketPath);
  if (!client) return R(client.error());
  auto att = kj::heap<Attachment>();
  att->client = kj::mv(client).value();

  // drivers() and register() go out together (promise pipelining).
  auto registry = att->client->bootstrap<schema::Stack>().driversRequest().send().getRegistry();
  auto req = registry.registerRequest();
  auto info = req.initInfo();
  info.setName(nic_.name());
  const net::MacAddress mac = nic_.mac();  // by value: bytes() refers into it
  info.setMac(kj::arrayPtr(reinterpret_cast<const capnp::byte*>(mac.bytes().data()),
                           mac.bytes().size()));
  if (nic_.mtu() > kMaxMtu)
    spdlog::warn("{}: MTU {} is more than a {}-byte pool buffer carries; announcing {}",
                 nic_.name(), nic_.mtu(), ipc::kBufferSize, kMaxMtu);
  info.setMtu(std::min(nic_.mtu(), kMaxMtu));
  lastLinkUp_ = nic_.linkUp();
  info.setLinkUp(lastLinkUp_);
  info.setPid(static_cast<uint32_t>(::getpid()));
  info.setAbiVersion(schema::DRIVER_ABI_VERSION);

  Attachment* raw = att.get();  // alive until the last continuation, which owns it
  auto registered =
      req.send().then([raw](capnp::Response<schema::DriverRegistry::RegisterResults>&& resp)
                          -> kj::Promise<Result<void>> {
        auto a = resp.getAttachment();
        // Every number is checked against this build before anything is mapped.
        if (a.getContentVersion() != ipc::kPoolContentVersion)
          return Result<void>(makeError(
              EPROTO, "the stack's pool content version is " +
                          std::to_string(a.getContentVersion()) + ", this driver speaks " +
                          std::to_string(ipc::kPoolContentVersion)));
        if (a.getRingCapacity() > kMaxRingCapacity)
          return Result<void>(makeError(EPROTO, "the stack's ring capacity " +
                                                    std::to_string(a.getRingCapacity()) +
                                                    " is beyond this driver's limit"));
        raw->config = ipc::PoolConfig{a.getBufferCount(), a.getRingCapacity()};
        raw->session = resp.getSession();
        auto fds = kj::heapArrayBuilder<kj::Promise<Result<ipc::UniqueFd>>>(3);
        fds.add(ipc::receiveFd(a.getRegion(), "pool-region"));
        fds.add(ipc::receiveFd(a.getToDriver(), "doorbell-to-driver"));
        fds.add(ipc::receiveFd(a.getToStack(), "doorbell-to-stack"));
        return kj::joinPromises(fds.finish())
            .then([raw](kj::Array<Result<ipc::UniqueFd>>&& fds) -> Result<void> {
              for (auto& f : fds)
                if (!f) return f.error();
              auto region = ipc::PoolRegion::attach(std::move(fds[0]).value(), raw->config);
              if (!region)
                return makeError(region.error().code,
                                 "attaching the pool region: " + region.error().context);
              raw->region = std::make_unique<ipc::PoolRegion>(std::move(region).value());
              raw->toDriver = ipc::Doorbell(std::move(fds[1]).value());
              raw->toStack = ipc::Doorbell(std::move(fds[2]).value());
              auto control = ipc::Doorbell::create();
              if (!control) return control.error();
              raw->control = std::move(control).value();
              return ok();
            });
      });
  // Before the first registration the whole attempt also fits in what is
  // left of --connect-timeout.
  kj::Duration timeout = toKj(options_.callTimeout);
  if (registrations_ == 0) {
    kj::Duration left = firstDeadline_ - timer_.now();
    if (left < timeout) timeout = left > kj::MILLISECONDS ? left : kj::MILLISECONDS;
  }
  return timer_.timeoutAfter(timeout, kj::mv(registered))
      .catch_([](kj::Exception&& e) -> Result<void> { return fromException("register", e); })
      .then([att = kj::mv(att)](Result<void>&& r) mutable -> R {
        if (!r) return r.error();
        return kj::mv(att);
      });
}

kj::Promise<Error> StackLink::serve() {
  Attachment& a = *attachment_;
  a.driver =
      std::make_unique<TapDriver>(nic_, *a.region, a.toDriver, a.toStack, a.control, options_.data);
  auto paf = kj::newPromiseAndCrossThreadFulfiller<TapDriverStop>();
  // kj::Own's destructor may throw, which std::thread's callable must not:
  // the fulfiller rides in a unique_ptr.
  auto fulfiller =
      std::make_unique<kj::Own<kj::CrossThreadPromiseFulfiller<TapDriverStop>>>(kj::mv(paf.fulfiller));
  a.thread = std::thread([driver = a.driver.get(), fulfiller = std::move(fulfiller)]() {
    ::pthread_setname_np(::pthread_self(), "tapdrv-data");
    TapDriverStop why = driver->run();
    (*fulfiller)->fulfill(kj::mv(why));
  });

  auto stopped = paf.promise.then([this](TapDriverStop why) -> Error {
    if (why == TapDriverStop::kDeviceError) {
      deviceFailed_ = true;
      return makeError(EIO, "device " + nic_.name() + " failed; see the log above");
    }
    return makeError(EPROTO, std::string("data plane stopped: ") + toString(why));
  });
  auto disconnected = a.client->onDisconnect().then(
      []() { return makeError(ECONNRESET, "the stack closed the connection"); });
  auto reporting = statsLoop().then([](Result<void>&& r) -> Error {
    return r ? makeError(EPROTO, "stats loop ended") : r.error();
  });
  return stopped.exclusiveJoin(kj::mv(disconnected)).exclusiveJoin(kj::mv(reporting));
}

kj::Promise<Result<void>> StackLink::statsLoop() {
  return timer_.afterDelay(toKj(options_.statsInterval)).then([this]() -> kj::Promise<Result<void>> {
    Attachment& a = *attachment_;
    TapDriverStats s = a.driver->stats();
    spdlog::debug("{}: rx {} frames {} bytes {} dropped ({} no buffer, {} oversize, {} bad "
                  "offload), {} super-frames segmented, {} checksums completed; tx {} frames {} "
                  "bytes {} errors, {} super-frames carrying {} frames, {} fallbacks; {} bad "
                  "descriptors; {} wake-ups",
                  nic_.name(), s.rxFrames, s.rxBytes, s.rxDropped, s.rxDroppedNoBuffer,
                  s.rxDroppedOversize, s.rxDroppedBadOffload, s.rxGsoFrames,
                  s.rxChecksumsCompleted, s.txFrames, s.txBytes, s.txErrors, s.txGsoFrames,
                  s.txCoalescedFrames, s.txGsoFallbacks, s.badDescriptors, s.wakeups);
    auto req = a.session.reportStatsRequest();
    auto st = req.initStats();
    st.setRxFrames(s.rxFrames);
    st.setRxBytes(s.rxBytes);
    st.setRxDropped(s.rxDropped);
    st.setTxFrames(s.txFrames);
    st.setTxBytes(s.txBytes);
    st.setTxErrors(s.txErrors);
    bool up = nic_.linkUp();
    auto calls = kj::heapArrayBuilder<kj::Promise<void>>(up != lastLinkUp_ ? 2 : 1);
    calls.add(req.send().ignoreResult());
    if (up != lastLinkUp_) {
      spdlog::info("{}: link {}", nic_.name(), up ? "up" : "down");
      lastLinkUp_ = up;
      auto link = a.session.setLinkRequest();
      link.setUp(up);
      calls.add(link.send().ignoreResult());
    }
    return kj::joinPromises(calls.finish())
        .then([this]() { return statsLoop(); },
              [](kj::Exception&& e) -> kj::Promise<Result<void>> {
                return Result<void>(fromException("reportStats", e));
              });
  });
}

}  // namespace mknet::drivers
