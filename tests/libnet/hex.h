// Test helper: bytes from a hex string such as "45 00 00 73".
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace mknet::net::testing {

// Spaces are ignored; any other non-hex character or an odd digit count
// aborts, because it is a typo in the test itself.
inline std::vector<std::uint8_t> fromHex(std::string_view text) {
  std::string digits;
  for (char c : text) {
    if (c == ' ' || c == '\n') continue;
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!hex) std::abort();
    digits.push_back(c);
  }
  if (digits.size() % 2 != 0) std::abort();
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i < digits.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoul(digits.substr(i, 2), nullptr, 16)));
  }
  return out;
}

}  // namespace mknet::net::testing
