#include "tests/ipc/pattern.h"

#include <cstdlib>

namespace mknet::test {

double testScale() {
  const char* s = std::getenv("MKNET_TEST_SCALE");
  if (s == nullptr) return 1.0;
  double v = std::strtod(s, nullptr);
  return v > 0 ? v : 1.0;
}

}  // namespace mknet::test
