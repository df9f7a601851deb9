// Backoff: when a process that died is started again. Pure arithmetic, no
// clock: the caller says how long the instance ran, Backoff says how long to
// wait before the next start.
#pragma once

#include <chrono>
#include <cstdint>

#include "servers/supervisor/options.h"

namespace mknet::supervisor {

// Delays, for consecutive quick deaths: 0 (at once), initial, 2*initial,
// 4*initial, ... capped at max. An instance that ran at least `healthy`
// before it died resets the sequence, so its restart is at once again.
// With the defaults: 0, 100, 200, 400, 800, 1600, 2000, 2000, ... ms.
class Backoff {
 public:
  explicit Backoff(BackoffPolicy policy) : policy_(policy) {}

  // The instance ended after running `ran`; returns the delay before the
  // next start and advances the sequence.
  std::chrono::milliseconds next(std::chrono::milliseconds ran);

  // Quick deaths in a row so far (0 after a healthy run).
  uint32_t consecutive() const { return consecutive_; }

 private:
  BackoffPolicy policy_;
  uint32_t consecutive_ = 0;
};

}  // namespace mknet::supervisor
