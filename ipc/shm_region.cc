#include "ipc/shm_region.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/interprocess/indexes/iset_index.hpp>
#include <boost/interprocess/managed_external_buffer.hpp>
#include <boost/interprocess/mem_algo/rbtree_best_fit.hpp>
#include <boost/interprocess/sync/mutex_family.hpp>
#include <cstring>

namespace mknet::ipc {

namespace bip = boost::interprocess;

// null_mutex_family: the managed buffer is only ever modified by the owner,
// single-threaded, before the fd is handed out. Boost's default mutexes are
// not robust: a peer killed while holding one would deadlock every later
// attach (e.g. a restarted driver), so the index takes no locks at all.
using ManagedBuffer =
    bip::basic_managed_external_buffer<char, bip::rbtree_best_fit<bip::null_mutex_family>,
                                       bip::iset_index>;

struct ShmRegion::Managed {
  ManagedBuffer buffer;
};

namespace {

constexpr size_t kPageSize = 4096;
constexpr size_t kManagedOffset = kPageSize;  // header page, then the managed buffer
constexpr unsigned kRequiredSeals = F_SEAL_SHRINK | F_SEAL_GROW;

size_t roundUp(size_t v, size_t to) { return (v + to - 1) / to * to; }

}  // namespace

ShmRegion::ShmRegion(UniqueFd fd, std::byte* base, size_t size, std::unique_ptr<Managed> managed)
    : fd_(std::move(fd)), base_(base), size_(size), managed_(std::move(managed)) {}

ShmRegion::ShmRegion(ShmRegion&& o) noexcept
    : fd_(std::move(o.fd_)),
      base_(std::exchange(o.base_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      managed_(std::move(o.managed_)) {}

ShmRegion& ShmRegion::operator=(ShmRegion&& o) noexcept {
  if (this != &o) {
    this->~ShmRegion();
    new (this) ShmRegion(std::move(o));
  }
  return *this;
}

ShmRegion::~ShmRegion() {
  managed_.reset();  // before the unmap: the managed object lives in the mapping
  if (base_ != nullptr) ::munmap(base_, size_);
}

// Boost.Interprocess maps only objects it opened by name (shm_open, files);
// mknet regions are anonymous memfds received over a socket, so the mapping
// itself is a plain mmap and Boost lays out what lives inside it.
Result<ShmRegion> ShmRegion::create(const std::string& name, size_t size, RegionKind kind,
                                    uint32_t contentVersion) {
  size = roundUp(size + kManagedOffset + kPageSize, kPageSize);
  UniqueFd fd(::memfd_create(("mknet:" + name).c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) return errnoError("memfd_create " + name);
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0)
    return errnoError("ftruncate " + name + " to " + std::to_string(size));
  if (::fcntl(fd.get(), F_ADD_SEALS, kRequiredSeals | F_SEAL_SEAL) != 0)
    return errnoError("seal " + name);
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd.get(), 0);
  if (p == MAP_FAILED) return errnoError("mmap " + name);
  auto* base = static_cast<std::byte*>(p);

  RegionHeader h{};
  h.magic = kRegionMagic;
  h.layoutVersion = kRegionLayoutVersion;
  h.kind = static_cast<uint32_t>(kind);
  h.contentVersion = contentVersion;
  h.size = size;
  h.managedOffset = kManagedOffset;
  std::memcpy(base, &h, sizeof h);

  std::unique_ptr<Managed> managed;
  try {
    managed.reset(new Managed{ManagedBuffer(bip::create_only, base + kManagedOffset,
                                            size - kManagedOffset)});
  } catch (const std::exception& e) {
    ::munmap(base, size);
    return makeError(ENOMEM, "lay out region " + name + ": " + e.what());
  }
  return ShmRegion(std::move(fd), base, size, std::move(managed));
}

Result<ShmRegion> ShmRegion::attach(UniqueFd fd, RegionKind kind, uint32_t contentVersion) {
  int seals = ::fcntl(fd.get(), F_GET_SEALS);
  if (seals < 0) return errnoError("region fd is not a sealable memfd");
  if ((static_cast<unsigned>(seals) & kRequiredSeals) != kRequiredSeals)
    return makeError(EPROTO, "region fd is not size-sealed (peer could truncate it)");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errnoError("fstat region");
  auto size = static_cast<size_t>(st.st_size);
  if (size < kManagedOffset + kPageSize)
    return makeError(EPROTO, "region too small: " + std::to_string(size) + " bytes");
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd.get(), 0);
  if (p == MAP_FAILED) return errnoError("mmap region");
  auto* base = static_cast<std::byte*>(p);
  auto fail = [&](std::string why) -> Error {
    ::munmap(base, size);
    return makeError(EPROTO, "attach region: " + why);
  };

  RegionHeader h;
  std::memcpy(&h, base, sizeof h);  // copy once, then validate the copy
  if (h.magic != kRegionMagic) return fail("bad magic");
  if (h.layoutVersion != kRegionLayoutVersion)
    return fail("layout version " + std::to_string(h.layoutVersion) + ", expected " +
                std::to_string(kRegionLayoutVersion));
  if (h.kind != static_cast<uint32_t>(kind))
    return fail("kind " + std::to_string(h.kind) + ", expected " +
                std::to_string(static_cast<uint32_t>(kind)));
  if (h.contentVersion != contentVersion)
    return fail("content version " + std::to_string(h.contentVersion) + ", expected " +
                std::to_string(contentVersion));
  if (h.size != size) return fail("header size " + std::to_string(h.size) + " != mapping size");
  if (h.managedOffset != kManagedOffset) return fail("unexpected managed offset");

  std::unique_ptr<Managed> managed;
  try {
    managed.reset(
        new Managed{ManagedBuffer(bip::open_only, base + kManagedOffset, size - kManagedOffset)});
  } catch (const std::exception& e) {
    return fail(std::string("open managed buffer: ") + e.what());
  }
  return ShmRegion(std::move(fd), base, size, std::move(managed));
}

Result<std::span<std::byte>> ShmRegion::allocate(const std::string& name, size_t bytes) {
  ManagedBuffer& mb = managed_->buffer;
  if (mb.find<RegionEntry>(name.c_str()).first != nullptr)
    return makeError(EEXIST, "region object " + name + " exists");
  void* mem = mb.allocate_aligned(bytes, kCacheLine, std::nothrow);
  if (mem == nullptr)
    return makeError(ENOSPC, "region has no room for " + name + " (" + std::to_string(bytes) +
                                 " bytes)");
  std::memset(mem, 0, bytes);
  auto offset = static_cast<uint64_t>(static_cast<std::byte*>(mem) - base_);
  RegionEntry* e = mb.construct<RegionEntry>(name.c_str(), std::nothrow)(RegionEntry{offset, bytes});
  if (e == nullptr) {
    mb.deallocate(mem);
    return makeError(ENOSPC, "region has no room for the name " + name);
  }
  return std::span<std::byte>(static_cast<std::byte*>(mem), bytes);
}

Result<std::span<std::byte>> ShmRegion::find(const std::string& name, size_t minBytes) const {
  auto found = managed_->buffer.find<RegionEntry>(name.c_str());
  if (found.first == nullptr) return makeError(ENOENT, "region object " + name + " not found");
  RegionEntry e;
  std::memcpy(&e, found.first, sizeof e);  // copy once, then validate
  if (e.offset < kManagedOffset || e.offset % kCacheLine != 0 || e.offset > size_ ||
      e.bytes > size_ - e.offset)
    return makeError(EPROTO, "region object " + name + " lies outside the region");
  if (e.bytes < minBytes)
    return makeError(EPROTO, "region object " + name + " is " + std::to_string(e.bytes) +
                                 " bytes, need " + std::to_string(minBytes));
  return std::span<std::byte>(base_ + e.offset, e.bytes);
}

Result<UniqueFd> ShmRegion::dupFd() const {
  UniqueFd d(::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0));
  if (!d) return errnoError("dup region fd");
  return d;
}

}  // namespace mknet::ipc
