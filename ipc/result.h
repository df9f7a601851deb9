// Result<T>: a value or an Error carrying errno and context (tier 3 of docs/errors.md).
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace mknet {

// An environment or peer error: an errno value plus a human-readable context
// ("mmap pool region: Cannot allocate memory"). `code` is 0 for errors that
// have no errno (e.g. a magic mismatch); such errors use EPROTO or EINVAL.
struct Error {
  int code = 0;
  std::string context;

  // "context: strerror(code)" — the one line main() prints.
  std::string message() const {
    if (code == 0) return context;
    return context + ": " + std::strerror(code);
  }
};

// Builds an Error from the current errno; call it right after the failing syscall.
inline Error errnoError(std::string context) { return Error{errno, std::move(context)}; }
inline Error makeError(int code, std::string context) { return Error{code, std::move(context)}; }

// A value or an Error. The API follows std::expected (C++23, not available in
// the C++20 this project builds with) so it can become an alias later;
// Boost.Outcome was considered but its policies make error context awkward.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}

  bool hasValue() const { return v_.index() == 0; }
  explicit operator bool() const { return hasValue(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Result<void>: success or an Error.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}
  bool hasValue() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

inline Result<void> ok() { return {}; }

}  // namespace mknet
