#include "servers/supervisor/backoff.h"

#include <algorithm>

namespace mknet::supervisor {

std::chrono::milliseconds Backoff::next(std::chrono::milliseconds ran) {
  if (ran >= policy_.healthy) consecutive_ = 0;
  std::chrono::milliseconds delay{0};
  if (consecutive_ > 0) {
    delay = policy_.initial;
    // Doubling by steps instead of a shift: no overflow however long it dies.
    for (uint32_t i = 1; i < consecutive_ && delay < policy_.max; ++i) delay *= 2;
    delay = std::min(delay, policy_.max);
  }
  if (consecutive_ < UINT32_MAX) ++consecutive_;
  return delay;
}

}  // namespace mknet::supervisor
