// Retrying with exponential backoff, one implementation for every loop that retries (the
// reader's reconnects, a worker's retries after Redis or MongoDB failed): the delay starts at
// `min`, doubles after each failure up to `max`, and each wait adds a uniform jitter of up to
// `jitter` times the delay, so processes that failed together do not retry together.
#pragma once

#include <chrono>
#include <random>
#include <string_view>

#include "common/progress.h"
#include "common/wakeup.h"

namespace walfold {

class Backoff {
 public:
  using ms = std::chrono::milliseconds;
  Backoff(ms min, ms max, double jitter, unsigned seed = std::random_device{}());
  // The wait after one more failure (the current delay plus its jitter); the next one doubles.
  ms next();
  // A success: the next failure waits `min` again.
  void reset() { delay_ = min_; }
  ms delay() const { return delay_; }

 private:
  ms min_, max_, delay_;
  double jitter_;
  std::mt19937 rng_;
};

// Waits `d`, or until `stop` is set: one wait, which the watchdog counts as waiting on `server`
// (for it to come back), not as a loop that stopped turning.
void pause(const Wakeup& stop, std::chrono::milliseconds d, Server server);

// The server an error message starts with ("redis at ...", "mongodb ...", "postgresql ...");
// `otherwise` when it names none. Only for the watchdog's account of a backoff.
Server server_named_in(std::string_view what, Server otherwise);

}  // namespace walfold
