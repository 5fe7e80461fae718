// Counters shared by the reader, the workers and the daemon (status, watchdog, benchmarks).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace walfold {

struct Progress {
  // Reader
  std::atomic<std::uint64_t> commits_seen{0}, changes_seen{0}, jobs_enqueued{0}, enqueue_calls{0};
  std::atomic<std::uint64_t> received_lsn{0}, confirmed_lsn{0}, heartbeats{0};
  std::atomic<bool> standby{false};  // another reader streams the slot
  // Workers
  std::atomic<std::uint64_t> jobs_folded{0}, changes_folded{0}, mongo_write_commands{0},
      mongo_statements{0}, fold_errors{0};
  // Liveness: steady_clock nanoseconds of the last loop iteration of each part.
  std::atomic<std::int64_t> reader_tick{0}, worker_tick{0};

  static std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace walfold
