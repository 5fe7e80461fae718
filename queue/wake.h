// Waking idle workers when the reader has enqueued (issue #13: "workers sleep-poll; compute
// waits instead of polling"; issue #12: latency).
//
// A Redis stream of one entry, `<queue prefix>:wake` (same hash tag as the queue's keys). After
// Redis has applied a batch of jobs, the reader adds an entry (XADD ... MAXLEN 1: the stream
// never holds more than the newest). An idle worker blocks in XREAD on it, from the last entry
// it saw, with a timeout: it returns at once when an entry newer than that one exists (added
// while the worker was claiming, or busy), so a wake-up is never missed in that window; every
// idle worker sees the same entry (all are woken; the first to claim takes the work, the others
// claim nothing and wait again).
//
// The wake-up only shortens the wait: a worker still claims after the timeout
// (workers.idle_poll_max) without one, which is how it finds what no enqueue announces (a retry
// whose backoff passed, an expired lease, a dead letter retried). A lost wake-up (the entry
// could not be added, the stream was deleted, Redis restarted) costs at most that timeout.
#pragma once

#include <chrono>
#include <string>

#include "queue/redis.h"

namespace walfold::queue {

std::string wake_key(const std::string& queue_prefix);

// The reader's side: one XADD on `redis`, which must have no replies pending (nothing
// pipelined in flight). Never throws: a wake-up that cannot be sent only costs the idle
// workers their timeout (logged at debug; a connection error leaves `redis` to reconnect on
// its next call, as any lost connection does).
void wake_workers(Redis& redis, const std::string& queue_prefix);

// The worker's side: remembers the newest entry it has seen.
class WakeWait {
 public:
  explicit WakeWait(std::string queue_prefix);

  enum class Result { Woken, TimedOut };
  // Blocks until an entry newer than the last one seen exists (at once if one does) or
  // `timeout` passes. The first call only learns the newest entry (no wait) and returns Woken,
  // so the caller claims once more after it: nothing added before it is missed. If the
  // server cannot run the stream commands (an ACL without XREAD, a Redis before 5.0), it
  // sleeps `timeout` instead, logged once. Connection errors (UnavailableError) propagate.
  Result wait(Redis& redis, std::chrono::milliseconds timeout);

 private:
  void disable(const char* why, std::chrono::milliseconds timeout);
  std::string key_;
  std::string last_id_;  // "" until learnt
  bool unsupported_ = false;
};

}  // namespace walfold::queue
