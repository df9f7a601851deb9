// Sha256: incremental SHA-256 over OpenSSL EVP, for the apps' stream digests.
#pragma once

#include <cstddef>
#include <span>
#include <string>

struct evp_md_ctx_st;

namespace mknet::examples {

// Hashes bytes as they stream past. Move-only (owns an EVP_MD_CTX).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&& other) noexcept;
  Sha256& operator=(Sha256&& other) noexcept;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(std::span<const std::byte> data);
  // The digest of everything so far as 64 lowercase hex digits (sha256sum's
  // format). Ends this hash: call once.
  std::string hexDigest();

 private:
  evp_md_ctx_st* ctx_ = nullptr;
};

}  // namespace mknet::examples
