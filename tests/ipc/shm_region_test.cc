#include "ipc/shm_region.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include <gtest/gtest.h>

namespace mknet::ipc {
namespace {

constexpr uint32_t kVersion = 7;

ShmRegion mustCreate(size_t size = 1 << 20) {
  auto r = ShmRegion::create("test", size, RegionKind::kTest, kVersion);
  EXPECT_TRUE(r) << r.error().message();
  return std::move(r).value();
}

UniqueFd dupOf(const ShmRegion& r) {
  auto fd = r.dupFd();
  EXPECT_TRUE(fd);
  return std::move(fd).value();
}

TEST(ShmRegionTest, AllocateAndFindAcrossMappings) {
  ShmRegion owner = mustCreate();
  auto obj = owner.allocate("ring", 1000);
  ASSERT_TRUE(obj) << obj.error().message();
  EXPECT_EQ(obj->size(), 1000u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(obj->data()) % kCacheLine, 0u);
  std::memcpy(obj->data(), "hello", 5);

  auto peer = ShmRegion::attach(dupOf(owner), RegionKind::kTest, kVersion);
  ASSERT_TRUE(peer) << peer.error().message();
  EXPECT_NE(peer->base(), owner.base());  // a second, independent mapping
  auto seen = peer->find("ring", 1000);
  ASSERT_TRUE(seen) << seen.error().message();
  EXPECT_EQ(std::memcmp(seen->data(), "hello", 5), 0);
  EXPECT_EQ(seen->data() - peer->base(), obj->data() - owner.base());

  std::memcpy(seen->data() + 10, "back", 4);  // and the other way
  EXPECT_EQ(std::memcmp(obj->data() + 10, "back", 4), 0);
}

TEST(ShmRegionTest, AttachInAnotherProcess) {
  ShmRegion owner = mustCreate();
  auto obj = owner.allocate("counter", sizeof(uint64_t));
  ASSERT_TRUE(obj);
  UniqueFd fd = dupOf(owner);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto peer = ShmRegion::attach(std::move(fd), RegionKind::kTest, kVersion);
    if (!peer) _exit(2);
    auto c = peer->find("counter", sizeof(uint64_t));
    if (!c) _exit(3);
    uint64_t v = 0xfeedfacecafebeefull;
    std::memcpy(c->data(), &v, sizeof v);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  uint64_t v;
  std::memcpy(&v, obj->data(), sizeof v);
  EXPECT_EQ(v, 0xfeedfacecafebeefull);
}

TEST(ShmRegionTest, RegionIsSizeSealed) {
  ShmRegion owner = mustCreate();
  // A peer that tries to shrink the region (to SIGBUS the owner) is refused.
  EXPECT_NE(ftruncate(owner.fd(), 4096), 0);
  EXPECT_EQ(errno, EPERM);
}

TEST(ShmRegionTest, DuplicateAndMissingNames) {
  ShmRegion owner = mustCreate();
  ASSERT_TRUE(owner.allocate("a", 64));
  auto again = owner.allocate("a", 64);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, EEXIST);
  auto missing = owner.find("b", 1);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ENOENT);
  auto small = owner.find("a", 65);
  ASSERT_FALSE(small);
  EXPECT_EQ(small.error().code, EPROTO);
}

TEST(ShmRegionTest, FullRegionRefusesAllocation) {
  ShmRegion owner = mustCreate(64 * 1024);
  auto big = owner.allocate("big", 1 << 20);
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, ENOSPC);
}

struct Corruption {
  const char* name;
  size_t offset;  // into RegionHeader
  uint32_t value;
  const char* expect;  // substring of the error
};

class ShmRegionCorruptTest : public ::testing::TestWithParam<Corruption> {};

TEST_P(ShmRegionCorruptTest, AttachRefusesBadHeader) {
  ShmRegion owner = mustCreate();
  const Corruption& c = GetParam();
  std::memcpy(owner.base() + c.offset, &c.value, sizeof c.value);
  auto peer = ShmRegion::attach(dupOf(owner), RegionKind::kTest, kVersion);
  ASSERT_FALSE(peer);
  EXPECT_EQ(peer.error().code, EPROTO);
  EXPECT_NE(peer.error().message().find(c.expect), std::string::npos) << peer.error().message();
}

INSTANTIATE_TEST_SUITE_P(
    Header, ShmRegionCorruptTest,
    ::testing::Values(Corruption{"magic", offsetof(RegionHeader, magic), 0x12345678, "bad magic"},
                      Corruption{"layout", offsetof(RegionHeader, layoutVersion), 99, "layout version"},
                      Corruption{"kind", offsetof(RegionHeader, kind), 3, "kind"},
                      Corruption{"content", offsetof(RegionHeader, contentVersion), 8, "content version"},
                      Corruption{"size", offsetof(RegionHeader, size), 4096, "size"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(ShmRegionTest, AttachChecksKindAndVersionOfCaller) {
  ShmRegion owner = mustCreate();
  auto wrongKind = ShmRegion::attach(dupOf(owner), RegionKind::kSession, kVersion);
  ASSERT_FALSE(wrongKind);
  EXPECT_EQ(wrongKind.error().code, EPROTO);
  auto wrongVersion = ShmRegion::attach(dupOf(owner), RegionKind::kTest, kVersion + 1);
  ASSERT_FALSE(wrongVersion);
  EXPECT_EQ(wrongVersion.error().code, EPROTO);
}

TEST(ShmRegionTest, AttachRefusesUnsealedOrForeignFds) {
  UniqueFd plain(memfd_create("unsealed", MFD_CLOEXEC));
  ASSERT_TRUE(plain);
  ASSERT_EQ(ftruncate(plain.get(), 1 << 20), 0);
  auto r = ShmRegion::attach(std::move(plain), RegionKind::kTest, kVersion);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("not size-sealed"), std::string::npos);

  int p[2];
  ASSERT_EQ(pipe(p), 0);
  close(p[1]);
  auto pipeRegion = ShmRegion::attach(UniqueFd(p[0]), RegionKind::kTest, kVersion);
  ASSERT_FALSE(pipeRegion);
  EXPECT_EQ(pipeRegion.error().code, EINVAL);  // F_GET_SEALS on a pipe
}

TEST(ShmRegionTest, AttachRefusesTinyRegion) {
  UniqueFd fd(memfd_create("tiny", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  ASSERT_EQ(ftruncate(fd.get(), 100), 0);
  ASSERT_EQ(fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
  auto r = ShmRegion::attach(std::move(fd), RegionKind::kTest, kVersion);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("too small"), std::string::npos);
}

TEST(ShmRegionTest, MoveKeepsMapping) {
  ShmRegion a = mustCreate();
  auto obj = a.allocate("x", 8);
  ASSERT_TRUE(obj);
  std::byte* base = a.base();
  ShmRegion b(std::move(a));
  EXPECT_EQ(a.base(), nullptr);
  EXPECT_EQ(b.base(), base);
  auto again = b.find("x", 8);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->data(), obj->data());
}

}  // namespace
}  // namespace mknet::ipc
