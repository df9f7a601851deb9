// RpcServer, RpcClient and FdCap: the real schema::Stack bootstrap served
// over a Unix socket, a driver in another process receiving the pool region
// and doorbells as fds, and the server surviving hostile peers.
//
// One kj event loop per thread: tests that fork do so before they create
// their loop, and every test destroys its loop before it ends.
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize-async.h>
#include <capnp/serialize.h>
#include <kj/async-io.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ipc/doorbell.h"
#include "ipc/fd_cap.h"
#include "ipc/rpc_client.h"
#include "ipc/rpc_server.h"
#include "ipc/schema/admin.capnp.h"
#include "ipc/schema/driver.capnp.h"
#include "ipc/shm_region.h"
#include "tests/ipc/pattern.h"

namespace mknet::ipc {
namespace {

constexpr uint32_t kPoolContent = 7;
constexpr uint32_t kBufferCount = 32;
constexpr uint32_t kRingCapacity = 64;
constexpr size_t kObjectBytes = 64 * 1024;
constexpr uint64_t kPatternSeq = 11;  // the stack writes this into "pattern"
constexpr uint64_t kReplySeq = 12;    // the driver writes this into "reply"
constexpr uint64_t kToDriverRings = 3;
constexpr uint64_t kToStackRings = 5;
constexpr uint8_t kMac[6] = {0x02, 0x6d, 0x6b, 0x00, 0x00, 0x01};

// ---------------------------------------------------------------------------
// The stack side: a pool region, two doorbells, and the real schema::Stack
// bootstrap whose registry hands them to drivers as FdCaps.

struct Pool {
  std::optional<ShmRegion> region;
  Doorbell toDriver;  // the stack rings it
  Doorbell toStack;   // the driver rings it
  // What the stack learned from drivers.
  int registrations = 0;
  std::string driverName;
  uint32_t driverPid = 0;
  bool linkUp = false;
};

std::unique_ptr<Pool> makePool() {
  auto pool = std::make_unique<Pool>();
  auto region = ShmRegion::create("rpc-test-pool", 4 * kObjectBytes, RegionKind::kPacketPool,
                                  kPoolContent);
  if (!region) {
    ADD_FAILURE() << region.error().message();
    return nullptr;
  }
  pool->region.emplace(std::move(region).value());
  auto pattern = pool->region->allocate("pattern", kObjectBytes);
  auto reply = pool->region->allocate("reply", kObjectBytes);
  auto toDriver = Doorbell::create();
  auto toStack = Doorbell::create();
  if (!pattern || !reply || !toDriver || !toStack) {
    ADD_FAILURE() << "pool set-up failed";
    return nullptr;
  }
  test::fillPattern(*pattern, kPatternSeq);
  pool->toDriver = std::move(toDriver).value();
  pool->toStack = std::move(toStack).value();
  return pool;
}

class TestDriverSession final : public schema::DriverSession::Server {
 public:
  explicit TestDriverSession(Pool& pool) : pool_(pool) {}

 protected:
  kj::Promise<void> setLink(SetLinkContext context) override {
    pool_.linkUp = context.getParams().getUp();
    return kj::READY_NOW;
  }

 private:
  Pool& pool_;
};

class TestRegistry final : public schema::DriverRegistry::Server {
 public:
  explicit TestRegistry(Pool& pool) : pool_(pool) {}

 protected:
  kj::Promise<void> register_(RegisterContext context) override {
    auto info = context.getParams().getInfo();
    KJ_REQUIRE(info.getAbiVersion() == schema::DRIVER_ABI_VERSION, "driver ABI mismatch");
    KJ_REQUIRE(info.getMac().size() == 6, "a MAC has 6 bytes");
    ++pool_.registrations;
    pool_.driverName = info.getName();
    pool_.driverPid = info.getPid();

    auto regionFd = pool_.region->dupFd();
    auto toDriverFd = pool_.toDriver.dupFd();
    auto toStackFd = pool_.toStack.dupFd();
    KJ_REQUIRE(regionFd.hasValue() && toDriverFd.hasValue() && toStackFd.hasValue(), "dup failed");

    auto results = context.getResults();
    auto attachment = results.initAttachment();
    attachment.setRegion(makeFdCap(std::move(regionFd).value(), "pool-region"));
    attachment.setContentVersion(kPoolContent);
    attachment.setBufferCount(kBufferCount);
    attachment.setRingCapacity(kRingCapacity);
    attachment.setToDriver(makeFdCap(std::move(toDriverFd).value(), "doorbell-to-driver"));
    attachment.setToStack(makeFdCap(std::move(toStackFd).value(), "doorbell-to-stack"));
    results.setSession(kj::heap<TestDriverSession>(pool_));
    for (uint64_t i = 0; i < kToDriverRings; ++i) pool_.toDriver.ring();
    return kj::READY_NOW;
  }

 private:
  Pool& pool_;
};

class TestStack final : public schema::Stack::Server {
 public:
  explicit TestStack(Pool& pool) : pool_(pool) {}

 protected:
  kj::Promise<void> drivers(DriversContext context) override {
    context.getResults().setRegistry(kj::heap<TestRegistry>(pool_));
    return kj::READY_NOW;
  }

 private:
  Pool& pool_;
};

capnp::Capability::Client stackBootstrap(Pool& pool) { return kj::heap<TestStack>(pool); }

// Sends drivers().register() as a driver would.
capnp::RemotePromise<schema::DriverRegistry::RegisterResults> registerDriver(
    schema::Stack::Client stack) {
  auto request = stack.driversRequest().send().getRegistry().registerRequest();
  auto info = request.initInfo();
  info.setName("mk-test");
  info.setMac(kj::arrayPtr(kMac, sizeof(kMac)));
  info.setMtu(1500);
  info.setLinkUp(false);
  info.setPid(static_cast<uint32_t>(::getpid()));
  info.setAbiVersion(schema::DRIVER_ABI_VERSION);
  return request.send();
}

// ---------------------------------------------------------------------------
// Processes.

// A child that starts when the parent says so: it blocks on a pipe until the
// parent has its server listening. It dies with the parent (PDEATHSIG), kills
// itself if stuck (alarm), and never returns into gtest.
class Child {
 public:
  explicit Child(std::function<int()> body) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe: " << std::strerror(errno);
      return;
    }
    pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) {
      ADD_FAILURE() << "fork: " << std::strerror(errno);
      return;
    }
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(90);
      ::alarm(20);
      ::close(fds[1]);
      char go = 0;
      ssize_t n;
      while ((n = ::read(fds[0], &go, 1)) < 0 && errno == EINTR) {
      }
      if (n != 1) ::_exit(91);  // the parent gave up before starting us
      ::_exit(body());
    }
    ::close(fds[0]);
    go_.reset(fds[1]);
  }
  ~Child() {
    if (pid_ > 0 && status_ < 0) {
      ::kill(pid_, SIGKILL);
      wait();
    }
  }

  void start() {
    char go = 1;
    EXPECT_EQ(::write(go_.get(), &go, 1), 1);
    go_.reset();
  }

  // Turns the kj loop (serving the child) until the child exits or `timeout`
  // passes (then kills it). Returns the wait status, -1 on timeout.
  int serveUntilExit(kj::AsyncIoContext& io, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) return status_ = status;
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        wait();
        return -1;
      }
      io.provider->getTimer().afterDelay(2 * kj::MILLISECONDS).wait(io.waitScope);
    }
  }

 private:
  void wait() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    status_ = status;
  }

  pid_t pid_ = -1;
  int status_ = -1;
  UniqueFd go_;
};

std::string describeStatus(int status) {
  if (status < 0) return "timed out";
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

// ---------------------------------------------------------------------------
// Raw sockets, for clients that do not speak Cap'n Proto properly.

UniqueFd rawConnect(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ADD_FAILURE() << "connect " << path << ": " << std::strerror(errno);
    return {};
  }
  return fd;
}

// Leaves a socket file behind with nobody listening, as a crashed server does.
void makeStaleSocket(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0)
      << std::strerror(errno);
}

kj::Promise<void> readAll(kj::AsyncIoStream& stream, std::vector<uint8_t>& out) {
  auto buffer = kj::heapArray<kj::byte>(4096);
  kj::byte* data = buffer.begin();
  return stream.tryRead(data, 1, buffer.size())
      .then([&stream, &out, buffer = kj::mv(buffer)](size_t n) mutable -> kj::Promise<void> {
        if (n == 0) return kj::READY_NOW;
        out.insert(out.end(), buffer.begin(), buffer.begin() + n);
        return readAll(stream, out);
      });
}

enum class Ending { kEof, kReset, kTimeout };

// Reads what the server sends until it closes the connection.
Ending readUntilClosed(kj::AsyncIoContext& io, kj::AsyncIoStream& stream,
                       std::vector<uint8_t>& out) {
  return readAll(stream, out)
      .then([]() { return Ending::kEof; }, [](kj::Exception&&) { return Ending::kReset; })
      .exclusiveJoin(io.provider->getTimer().afterDelay(5 * kj::SECONDS).then([]() {
        return Ending::kTimeout;
      }))
      .wait(io.waitScope);
}

// The reasons of the Abort messages among the Cap'n Proto messages in `bytes`.
std::vector<std::string> abortReasons(const std::vector<uint8_t>& bytes) {
  std::vector<std::string> reasons;
  auto words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), bytes.data(), words.size() * sizeof(capnp::word));
  kj::ArrayPtr<const capnp::word> rest = words;
  while (rest.size() > 0) {
    bool more = false;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
      capnp::FlatArrayMessageReader reader(rest);
      auto message = reader.getRoot<capnp::rpc::Message>();
      if (message.isAbort()) reasons.emplace_back(message.getAbort().getReason().cStr());
      rest = kj::arrayPtr(reader.getEnd(), rest.end());
      more = true;
    })) {
      (void)e;  // a truncated last message: the connection was reset mid-write
    }
    if (!more) break;
  }
  return reasons;
}

bool anyContains(const std::vector<std::string>& reasons, const std::string& needle) {
  for (auto& r : reasons)
    if (r.find(needle) != std::string::npos) return true;
  return false;
}

std::string joined(const std::vector<std::string>& reasons) {
  std::string s;
  for (auto& r : reasons) s += "[" + r + "] ";
  return s;
}

// Turns the loop until `done()` or 5 s have passed.
bool turnUntil(kj::AsyncIoContext& io, const std::function<bool()>& done) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    io.provider->getTimer().afterDelay(1 * kj::MILLISECONDS).wait(io.waitScope);
  }
  return true;
}

// A full, well-behaved driver registration from this process: receive the
// region fd, attach it and check the stack's pattern.
testing::AssertionResult registersAndSeesPool(kj::AsyncIoContext& io, RpcClient& client) {
  auto response = registerDriver(client.bootstrap<schema::Stack>()).wait(io.waitScope);
  auto attachment = response.getAttachment();
  if (attachment.getContentVersion() != kPoolContent ||
      attachment.getBufferCount() != kBufferCount)
    return testing::AssertionFailure() << "wrong attachment fields";
  auto fd = receiveFd(attachment.getRegion(), "pool-region").wait(io.waitScope);
  if (!fd) return testing::AssertionFailure() << fd.error().message();
  auto region = ShmRegion::attach(std::move(fd).value(), RegionKind::kPacketPool, kPoolContent);
  if (!region) return testing::AssertionFailure() << region.error().message();
  auto pattern = region->find("pattern", kObjectBytes);
  if (!pattern) return testing::AssertionFailure() << pattern.error().message();
  if (!test::checkPattern(*pattern, kPatternSeq))
    return testing::AssertionFailure() << "pattern mismatch through the received region";
  return testing::AssertionSuccess();
}

testing::AssertionResult registersAndSeesPool(kj::AsyncIoContext& io, const std::string& path) {
  auto client = RpcClient::connect(io, path);
  if (!client) return testing::AssertionFailure() << client.error().message();
  return registersAndSeesPool(io, **client);
}

uint64_t readEventfd(int fd) {
  uint64_t value = 0;
  if (::read(fd, &value, sizeof(value)) != static_cast<ssize_t>(sizeof(value))) return 0;
  return value;
}

size_t openFdCount() {
  size_t n = 0;
  for (auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)entry;
    ++n;
  }
  return n;
}

// Each test gets its own directory for sockets, and must give back every fd
// it opened (sockets, received fds, kj's epoll and eventfds).
class RpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fdsBefore_ = openFdCount();
    char tmpl[] = "/tmp/mknet-rpc-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr) << std::strerror(errno);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    EXPECT_EQ(openFdCount(), fdsBefore_) << "fds leaked";
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  std::string dir_;
  size_t fdsBefore_ = 0;
};

// ---------------------------------------------------------------------------
// Driver process: what a NIC driver does with the attachment.

int runDriver(const std::string& path) {
  int code = 0;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
    auto io = kj::setupAsyncIo();
    auto& ws = io.waitScope;
    auto fail = [&](int c, const std::string& what) {
      std::fprintf(stderr, "driver child: %s\n", what.c_str());
      code = c;
    };
    auto client = RpcClient::connect(io, path);
    if (!client) return fail(10, client.error().message());
    auto response = registerDriver((*client)->bootstrap<schema::Stack>()).wait(ws);
    auto attachment = response.getAttachment();
    if (attachment.getContentVersion() != kPoolContent ||
        attachment.getBufferCount() != kBufferCount ||
        attachment.getRingCapacity() != kRingCapacity)
      return fail(11, "attachment fields");
    auto what = attachment.getRegion().describeRequest().send().wait(ws);
    if (what.getWhat() != "pool-region") return fail(12, "describe()");

    auto regionFd = receiveFd(attachment.getRegion(), "pool-region").wait(ws);
    auto toDriverFd = receiveFd(attachment.getToDriver(), "doorbell-to-driver").wait(ws);
    auto toStackFd = receiveFd(attachment.getToStack(), "doorbell-to-stack").wait(ws);
    if (!regionFd) return fail(13, regionFd.error().message());
    if (!toDriverFd) return fail(14, toDriverFd.error().message());
    if (!toStackFd) return fail(15, toStackFd.error().message());
    if ((::fcntl(regionFd->get(), F_GETFD) & FD_CLOEXEC) == 0) return fail(16, "no CLOEXEC");

    auto region =
        ShmRegion::attach(std::move(regionFd).value(), RegionKind::kPacketPool, kPoolContent);
    if (!region) return fail(17, region.error().message());
    auto pattern = region->find("pattern", kObjectBytes);
    auto reply = region->find("reply", kObjectBytes);
    if (!pattern || !reply) return fail(18, "objects missing");
    std::vector<std::byte> expected(kObjectBytes);
    test::fillPattern(expected, kPatternSeq);
    for (size_t i = 0; i < kObjectBytes; ++i) {
      if ((*pattern)[i] != expected[i]) return fail(19, "pattern byte " + std::to_string(i));
    }
    test::fillPattern(*reply, kReplySeq);

    // Capabilities work as well as fds: tell the stack the link is up.
    auto setLink = response.getSession().setLinkRequest();
    setLink.setUp(true);
    setLink.send().wait(ws);

    if (readEventfd(toDriverFd->get()) != kToDriverRings) return fail(20, "toDriver count");
    for (uint64_t i = 0; i < kToStackRings; ++i) {
      uint64_t one = 1;
      if (::write(toStackFd->get(), &one, sizeof(one)) != sizeof(one))
        return fail(21, "eventfd write");
    }
  })) {
    std::fprintf(stderr, "driver child: %s\n", e->getDescription().cStr());
    return 30;
  }
  return code;
}

// The whole driver registration across two processes: Cap'n Proto calls one
// way, a memfd and two eventfds the other, and data through both.
TEST_F(RpcTest, DriverRegistersAndUsesPoolAcrossProcesses) {
  const std::string sock = path("stack.sock");
  Child driver([&] { return runDriver(sock); });  // before this process has a kj loop

  auto io = kj::setupAsyncIo();
  auto pool = makePool();
  ASSERT_TRUE(pool);
  auto server = RpcServer::listen(io, sock, stackBootstrap(*pool));
  ASSERT_TRUE(server) << server.error().message();
  driver.start();

  int status = driver.serveUntilExit(io, std::chrono::seconds(8));
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << describeStatus(status);

  EXPECT_EQ(pool->registrations, 1);
  EXPECT_EQ(pool->driverName, "mk-test");
  EXPECT_NE(pool->driverPid, 0u);
  EXPECT_NE(pool->driverPid, static_cast<uint32_t>(::getpid()));
  EXPECT_TRUE(pool->linkUp);
  auto reply = pool->region->find("reply", kObjectBytes);
  ASSERT_TRUE(reply);
  EXPECT_TRUE(test::checkPattern(*reply, kReplySeq)) << "the driver's reply is not in our mapping";
  EXPECT_EQ(readEventfd(pool->toStack.fd()), kToStackRings);
  EXPECT_EQ((*server)->stats().accepted, 1u);
  EXPECT_EQ((*server)->stats().peerErrors, 0u);
  EXPECT_TRUE(turnUntil(io, [&] { return (*server)->stats().open == 0; }));
}

// With fd passing off on the receiving side, the capability still arrives and
// answers calls, but receiveFd() reports EPROTO instead of crashing. The same
// server with fd passing on delivers the fd (so the error is the option's).
TEST_F(RpcTest, ReceiveFdWithoutFdPassingIsEproto) {
  const std::string sock = path("stack.sock");
  auto io = kj::setupAsyncIo();
  auto pool = makePool();
  ASSERT_TRUE(pool);
  auto server = RpcServer::listen(io, sock, stackBootstrap(*pool));
  ASSERT_TRUE(server) << server.error().message();

  auto client = RpcClient::connect(io, sock, RpcClientOptions{.maxFdsPerMessage = 0});
  ASSERT_TRUE(client) << client.error().message();
  auto response = registerDriver((*client)->bootstrap<schema::Stack>()).wait(io.waitScope);
  auto region = response.getAttachment().getRegion();
  auto fd = receiveFd(region, "pool-region").wait(io.waitScope);
  ASSERT_FALSE(fd);
  EXPECT_EQ(fd.error().code, EPROTO);
  EXPECT_NE(fd.error().context.find("pool-region"), std::string::npos) << fd.error().context;
  EXPECT_NE(fd.error().context.find("without its file descriptor"), std::string::npos);
  EXPECT_EQ(region.describeRequest().send().wait(io.waitScope).getWhat(), "pool-region");

  EXPECT_TRUE(registersAndSeesPool(io, sock));
  EXPECT_EQ(pool->registrations, 2);
}

// A capability that is not remote at all still yields a duplicate of its fd.
TEST_F(RpcTest, ReceiveFdFromLocalCapabilityDupsCloseOnExec) {
  auto io = kj::setupAsyncIo();
  UniqueFd event(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  ASSERT_TRUE(event);
  struct stat original {};
  ASSERT_EQ(::fstat(event.get(), &original), 0);
  auto cap = makeFdCap(std::move(event), "local");
  auto fd = receiveFd(cap, "local").wait(io.waitScope);
  ASSERT_TRUE(fd) << fd.error().message();
  cap = nullptr;  // the capability (and its fd) goes away; our dup stays
  struct stat dup {};
  ASSERT_EQ(::fstat(fd->get(), &dup), 0);
  EXPECT_EQ(dup.st_ino, original.st_ino);
  EXPECT_NE(::fcntl(fd->get(), F_GETFD) & FD_CLOEXEC, 0);

  schema::FdCap::Client broken = capnp::Capability::Client(KJ_EXCEPTION(FAILED, "no region"))
                                     .castAs<schema::FdCap>();
  auto err = receiveFd(broken, "broken").wait(io.waitScope);
  ASSERT_FALSE(err);
  EXPECT_EQ(err.error().code, EPROTO);
  EXPECT_NE(err.error().context.find("no region"), std::string::npos) << err.error().context;
}

// A client on an already connected socket (here a blocking socketpair end,
// as a supervisor might hand to a process it spawns) passes fds as well.
TEST_F(RpcTest, ClientOnConnectedFdPassesFds) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  UniqueFd serverEnd(pair[0]);
  UniqueFd clientEnd(pair[1]);
  auto io = kj::setupAsyncIo();
  auto pool = makePool();
  ASSERT_TRUE(pool);
  capnp::TwoPartyServer server(stackBootstrap(*pool));
  server.accept(io.lowLevelProvider->wrapUnixSocketFd(
                    serverEnd.release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP),
                kMaxFdsPerMessage);
  auto client = RpcClient::fromConnectedFd(io, std::move(clientEnd));
  ASSERT_TRUE(client) << client.error().message();
  EXPECT_TRUE(registersAndSeesPool(io, **client));

  auto invalid = RpcClient::fromConnectedFd(io, UniqueFd());
  ASSERT_FALSE(invalid);
  EXPECT_EQ(invalid.error().code, EBADF);
}

// ---------------------------------------------------------------------------
// Socket files.

TEST_F(RpcTest, ConnectErrorsNameTheCause) {
  auto io = kj::setupAsyncIo();
  auto missing = RpcClient::connect(io, path("nobody.sock"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ENOENT) << missing.error().message();

  makeStaleSocket(path("stale.sock"));
  auto stale = RpcClient::connect(io, path("stale.sock"));
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ECONNREFUSED) << stale.error().message();

  auto tooLong = RpcClient::connect(io, "/tmp/" + std::string(200, 'x'));
  ASSERT_FALSE(tooLong);
  EXPECT_EQ(tooLong.error().code, ENAMETOOLONG);
}

TEST_F(RpcTest, SecondServerOnLivePathIsRefused) {
  const std::string sock = path("stack.sock");
  auto io = kj::setupAsyncIo();
  auto pool = makePool();
  ASSERT_TRUE(pool);
  auto first = RpcServer::listen(io, sock, stackBootstrap(*pool));
  ASSERT_TRUE(first) << first.error().message();

  auto second = RpcServer::listen(io, sock, stackBootstrap(*pool));
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, EADDRINUSE);
  EXPECT_NE(second.error().context.find("already listening"), std::string::npos);
  // The refused server must neither have removed nor broken the live one.
  EXPECT_TRUE(registersAndSeesPool(io, sock));
}

TEST_F(RpcTest, ServerReplacesStaleSocket) {
  const std::string sock = path("stack.sock");
  makeStaleSocket(sock);
  auto io = kj::setupAsyncIo();
  auto pool = makePool();
  ASSERT_TRUE(pool);
  auto server = RpcServer::listen(io, sock, stackBootstrap(*pool));
  ASSERT_TRUE(server) << server.error().message();
  EXPECT_TRUE(registersAndSeesPool(io, sock));
}

TEST_F(RpcTest, ServerLeavesNonSocketFilesAlone) {
  const std::string file = path("not-a-socket");
  {
    UniqueFd fd(::open(file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::write(fd.get(), "keep", 4), 4);
  }
  auto io = kj::setupAsyncIo();
  auto server = RpcServer::listen(io, file, capnp::Capability::Client(nullptr));
  ASSERT_FALSE(server);
  EXPECT_EQ(server.error().code, EEXIST);
  struct stat st {};
  ASSERT_EQ(::lstat(file.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_size, 4);

  auto noDir = RpcServer::listen(io, path("no/such/dir.sock"), capnp::Capability::Client(nullptr));
  ASSERT_FALSE(noDir);
  EXPECT_EQ(noDir.error().code, ENOENT);
  EXPECT_NE(noDir.error().context.find("does not exist"), std::string::npos)
      << noDir.error().context;
}

// The requested mode, not the umask, decides; the file goes with the server,
// but only if it is still ours.
TEST_F(RpcTest, SocketFileHasRequestedModeAndIsRemoved) {
  auto io = kj::setupAsyncIo();
  mode_t oldMask = ::umask(022);
  auto a = RpcServer::listen(io, path("a.sock"), capnp::Capability::Client(nullptr),
                             RpcServerOptions{.mode = 0660});
  auto b = RpcServer::listen(io, path("b.sock"), capnp::Capability::Client(nullptr),
                             RpcServerOptions{.mode = 0606});
  ::umask(oldMask);
  ASSERT_TRUE(a) << a.error().message();
  ASSERT_TRUE(b) << b.error().message();
  struct stat st {};
  ASSERT_EQ(::lstat(path("a.sock").c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  ASSERT_EQ(::lstat(path("b.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0606u);

  *a = nullptr;
  EXPECT_NE(::lstat(path("a.sock").c_str(), &st), 0);
  EXPECT_EQ(errno, ENOENT);

  // Someone replaced b's socket file: the destructor must not remove theirs.
  ASSERT_EQ(::unlink(path("b.sock").c_str()), 0);
  makeStaleSocket(path("b.sock"));
  *b = nullptr;
  EXPECT_EQ(::lstat(path("b.sock").c_str(), &st), 0);
}

// Permissions are enforced by the kernel at connect(): a user without write
// permission on the socket gets EACCES, with it gets served.
TEST_F(RpcTest, ConnectWithoutPermissionIsEacces) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to switch to another user";
  ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
  const std::string closed = path("closed.sock");
  const std::string open = path("open.sock");
  Child other([&] {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0)
      return 40;
    auto io = kj::setupAsyncIo();
    auto denied = RpcClient::connect(io, closed);
    if (denied) return 41;
    if (denied.error().code != EACCES) return 42;
    auto allowed = RpcClient::connect(io, open);
    if (!allowed) return 43;
    // Served for real: a call round trip.
    auto registry = (*allowed)->bootstrap<schema::Stack>().driversRequest().send();
    registry.wait(io.waitScope);
    return 0;
  });

  auto io = kj::setupAsyncIo();
  auto pool = makePool();
  ASSERT_TRUE(pool);
  auto a = RpcServer::listen(io, closed, stackBootstrap(*pool), RpcServerOptions{.mode = 0600});
  auto b = RpcServer::listen(io, open, stackBootstrap(*pool), RpcServerOptions{.mode = 0666});
  ASSERT_TRUE(a && b);
  other.start();
  int status = other.serveUntilExit(io, std::chrono::seconds(8));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << describeStatus(status);
  EXPECT_EQ((*a)->stats().accepted, 0u);
  EXPECT_EQ((*b)->stats().accepted, 1u);
}

// ---------------------------------------------------------------------------
// Hostile peers lose their own connection; everyone else is served.

class RpcPeerFaultTest : public RpcTest {
 protected:
  // kj's destructors may throw, gtest's fixture destructor may not: keep the
  // kj objects behind a unique_ptr.
  struct Env {
    kj::AsyncIoContext io = kj::setupAsyncIo();
    std::unique_ptr<Pool> pool;
    kj::Own<RpcServer> server;
  };

  void SetUp() override {
    RpcTest::SetUp();
    env_ = std::make_unique<Env>();
    env_->pool = makePool();
    ASSERT_TRUE(env_->pool);
    auto server = RpcServer::listen(io(), path("stack.sock"), stackBootstrap(*env_->pool));
    ASSERT_TRUE(server) << server.error().message();
    env_->server = std::move(server).value();
  }
  void TearDown() override {
    env_.reset();
    RpcTest::TearDown();
  }

  kj::AsyncIoContext& io() { return env_->io; }
  RpcServer& server() { return *env_->server; }

  kj::Own<kj::AsyncIoStream> rawStream() {
    UniqueFd fd = rawConnect(path("stack.sock"));
    return io().lowLevelProvider->wrapSocketFd(fd.release(),
                                               kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  }

  // Writes `messages` and then collects what the server answers until it
  // hangs up; returns the Abort reasons it sent.
  std::vector<std::string> sendAndCollectAborts(kj::AsyncIoStream& stream,
                                                kj::ArrayPtr<capnp::MessageBuilder*> messages) {
    auto write = capnp::writeMessages(stream, messages)
                     .catch_([](kj::Exception&&) {
                       // EPIPE/ECONNRESET: the server hung up mid-message,
                       // which is what an oversized message should cause.
                     })
                     .eagerlyEvaluate(nullptr);
    std::vector<uint8_t> received;
    Ending ending = readUntilClosed(io(), stream, received);
    EXPECT_NE(ending, Ending::kTimeout) << "the server kept the connection open";
    write.wait(io().waitScope);
    return abortReasons(received);
  }

  void expectServerRecovered(uint64_t peerErrors) {
    EXPECT_TRUE(turnUntil(io(), [&] { return server().stats().open == 0; }))
        << server().stats().open << " connections still open";
    EXPECT_EQ(server().stats().peerErrors, peerErrors);
    EXPECT_TRUE(registersAndSeesPool(io(), path("stack.sock")));
    EXPECT_EQ(server().stats().peerErrors, peerErrors);
  }

  std::unique_ptr<Env> env_;
};

TEST_F(RpcPeerFaultTest, GarbageLosesOnlyItsConnection) {
  // A well-behaved client connected before the garbage keeps working too.
  auto bystander = RpcClient::connect(io(), path("stack.sock"));
  ASSERT_TRUE(bystander) << bystander.error().message();
  auto stack = (*bystander)->bootstrap<schema::Stack>();
  stack.driversRequest().send().wait(io().waitScope);

  auto stream = rawStream();
  std::mt19937_64 rng(0x6d6b6e6574);
  std::vector<uint8_t> garbage(4096);
  for (auto& b : garbage) b = static_cast<uint8_t>(rng());
  stream->write(garbage.data(), garbage.size()).wait(io().waitScope);
  std::vector<uint8_t> received;
  EXPECT_NE(readUntilClosed(io(), *stream, received), Ending::kTimeout);
  auto reasons = abortReasons(received);
  ASSERT_EQ(reasons.size(), 1u) << joined(reasons);
  EXPECT_FALSE(reasons[0].empty());

  EXPECT_TRUE(turnUntil(io(), [&] { return server().stats().open == 1; }));
  EXPECT_EQ(server().stats().peerErrors, 1u);
  auto response = registerDriver(stack).wait(io().waitScope);
  EXPECT_EQ(response.getAttachment().getContentVersion(), kPoolContent);
  *bystander = nullptr;
  expectServerRecovered(1);
}

// A well-formed Bootstrap followed by a Call whose message is 100 MiB: the
// server rejects it from its header, before reading (or allocating) the body.
TEST_F(RpcPeerFaultTest, OversizedMessageLosesItsConnection) {
  auto stream = rawStream();
  capnp::MallocMessageBuilder bootstrap;
  bootstrap.initRoot<capnp::rpc::Message>().initBootstrap().setQuestionId(0);
  capnp::MallocMessageBuilder call;
  auto c = call.initRoot<capnp::rpc::Message>().initCall();
  c.setQuestionId(1);
  c.initTarget().initPromisedAnswer().setQuestionId(0);
  c.setInterfaceId(capnp::typeId<schema::Stack>());
  c.setMethodId(0);
  c.initParams().getContent().initAs<capnp::Data>(100u << 20);
  capnp::MessageBuilder* messages[] = {&bootstrap, &call};

  auto reasons = sendAndCollectAborts(*stream, kj::arrayPtr(messages, 2));
  EXPECT_TRUE(anyContains(reasons, "too large")) << joined(reasons);
  expectServerRecovered(1);
}

// A few words on the wire that claim a 2^28-element list: Cap'n Proto's
// traversal limit (amplification check) stops the server from walking it.
TEST_F(RpcPeerFaultTest, ListBombLosesItsConnection) {
  auto stream = rawStream();
  capnp::MallocMessageBuilder bootstrap;
  bootstrap.initRoot<capnp::rpc::Message>().initBootstrap().setQuestionId(0);
  capnp::MallocMessageBuilder call;
  auto c = call.initRoot<capnp::rpc::Message>().initCall();
  c.setQuestionId(1);
  c.initTarget().initPromisedAnswer().setQuestionId(0);
  c.setInterfaceId(capnp::typeId<schema::Stack>());
  c.setMethodId(0);
  auto params = c.initParams();
  params.getContent().initAs<schema::Stack::DriversParams>();
  // Payload.capTable (pointer 1) as a List(Void): zero bytes per element.
  capnp::AnyStruct::Builder payload(c.getParams());
  payload.getPointerSection()[1].initAs<capnp::List<capnp::Void>>(1u << 28);
  ASSERT_LT(call.sizeInWords(), 64u);
  capnp::MessageBuilder* messages[] = {&bootstrap, &call};

  auto reasons = sendAndCollectAborts(*stream, kj::arrayPtr(messages, 2));
  EXPECT_TRUE(anyContains(reasons, "traversal limit")) << joined(reasons);
  expectServerRecovered(1);
}

// Our own side refuses to send what the peer would reject: the call fails
// locally and the connection survives (Cap'n Proto 0.9 checks outgoing
// messages against the same traversal limit).
TEST_F(RpcPeerFaultTest, OversizedRequestFailsLocallyAndKeepsConnection) {
  auto client = RpcClient::connect(io(), path("stack.sock"));
  ASSERT_TRUE(client) << client.error().message();
  auto stack = (*client)->bootstrap<schema::Stack>();
  auto request = stack.driversRequest().send().getRegistry().registerRequest();
  request.initInfo().initMac(70u << 20);  // > 64 MiB
  std::string outcome = request.send()
                            .then([](auto&&) { return std::string("sent"); },
                                  [](kj::Exception&& e) {
                                    return std::string(e.getDescription().cStr());
                                  })
                            .wait(io().waitScope);
  EXPECT_NE(outcome.find("larger than our single-message size limit"), std::string::npos)
      << outcome;
  EXPECT_TRUE(registersAndSeesPool(io(), **client));
  EXPECT_EQ(server().stats().peerErrors, 0u);
  EXPECT_EQ(server().stats().open, 1u);
}

TEST_F(RpcPeerFaultTest, ClientSeesServerGoAway) {
  auto client = RpcClient::connect(io(), path("stack.sock"));
  ASSERT_TRUE(client) << client.error().message();
  auto stack = (*client)->bootstrap<schema::Stack>();
  stack.driversRequest().send().wait(io().waitScope);
  auto disconnected = (*client)->onDisconnect();
  env_->server = nullptr;
  disconnected.wait(io().waitScope);
  auto later = stack.driversRequest().send().then(
      [](auto&&) { return kj::Exception::Type::OVERLOADED; },
      [](kj::Exception&& e) { return e.getType(); });
  EXPECT_EQ(later.wait(io().waitScope), kj::Exception::Type::DISCONNECTED);
}

}  // namespace
}  // namespace mknet::ipc
