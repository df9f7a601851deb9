// ShmRegion: a shared-memory region backed by a sealed memfd, laid out by
// Boost.Interprocess, handed to peers as an fd over the control socket.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "ipc/result.h"
#include "ipc/unique_fd.h"

namespace mknet::ipc {

inline constexpr uint64_t kRegionMagic = 0x314e47524b4e4d6bull;  // "kMNKRGN1"
inline constexpr uint32_t kRegionLayoutVersion = 1;
inline constexpr size_t kCacheLine = 64;

// What a region is for; checked at attach so a pool fd can never be mistaken
// for a session fd.
enum class RegionKind : uint32_t {
  kTest = 1,
  kPacketPool = 2,  // stack <-> driver: packet buffers and the four rings
  kSession = 3,     // stack <-> app: socket byte rings and event ring
};

// First bytes of every region. Written once by the owner before the fd is
// handed out, never written again; an attaching peer copies it out and checks
// every field against its own expectations.
struct RegionHeader {
  uint64_t magic;            // kRegionMagic
  uint32_t layoutVersion;    // kRegionLayoutVersion (header + directory format)
  uint32_t kind;             // RegionKind
  uint32_t contentVersion;   // version of what the kind stores (ring layouts...)
  uint32_t reserved;
  uint64_t size;             // bytes in the whole mapping
  uint64_t managedOffset;    // start of the Boost.Interprocess managed buffer
};

// One named object's place in the region, stored under its name in the
// managed buffer's index. Offsets, never pointers: the peer maps elsewhere.
struct RegionEntry {
  uint64_t offset;  // from the start of the region, kCacheLine aligned
  uint64_t bytes;
};

// An mmapped shared-memory region. The owner create()s it, places named
// objects with allocate(), and passes fd() to peers; a peer attach()es the fd
// and looks the objects up with find(). The mapping is unmapped and the fd
// closed on destruction. Move-only.
//
// Trust: the owner (the stack) is trusted by its peers for the layout; the
// owner never reads the directory back, so a peer scribbling over the index
// only breaks its own view. Objects found by a peer are bounds-checked against
// the mapping size the peer measured itself (fstat), not the header's claim.
class ShmRegion {
 public:
  // Creates a memfd of `size` bytes (rounded up to a page), seals its size
  // (so no peer can shrink it and SIGBUS the owner), maps it and writes the
  // header. Errors: memfd_create/ftruncate/fcntl/mmap failures with errno.
  static Result<ShmRegion> create(const std::string& name, size_t size, RegionKind kind,
                                  uint32_t contentVersion);

  // Maps a region received from its owner. Checks the seals, the size against
  // fstat, magic, layout version, kind and content version; EPROTO on a
  // mismatch with a message naming the field.
  static Result<ShmRegion> attach(UniqueFd fd, RegionKind kind, uint32_t contentVersion);

  ShmRegion(ShmRegion&&) noexcept;
  ShmRegion& operator=(ShmRegion&&) noexcept;
  ~ShmRegion();

  // Owner only: reserves `bytes` (cache-line aligned, zeroed) under `name`.
  // ENOSPC when the region is full, EEXIST when the name is taken.
  Result<std::span<std::byte>> allocate(const std::string& name, size_t bytes);

  // Looks up a named object; validates that it lies inside the mapping and is
  // at least `minBytes` long. ENOENT if absent, EPROTO if out of bounds.
  Result<std::span<std::byte>> find(const std::string& name, size_t minBytes) const;

  std::byte* base() const { return base_; }
  size_t size() const { return size_; }
  int fd() const { return fd_.get(); }
  // A new fd for the same memory, e.g. to pass to a peer while keeping ours.
  Result<UniqueFd> dupFd() const;

 private:
  struct Managed;
  ShmRegion(UniqueFd fd, std::byte* base, size_t size, std::unique_ptr<Managed> managed);

  UniqueFd fd_;
  std::byte* base_ = nullptr;
  size_t size_ = 0;
  std::unique_ptr<Managed> managed_;
};

}  // namespace mknet::ipc
