// A worker: claim a batch of ordering keys from the queue, fold their jobs through the
// projection (projections/projection.h: prefetch, pure fold, write), and only then acknowledge
// them. The acknowledgement is what lets the reader
// move the checkpoint forward (cdc/checkpoint), so nothing is confirmed to PostgreSQL before
// MongoDB has it.
#pragma once

#include <chrono>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "common/progress.h"
#include "common/wakeup.h"
#include "config/config.h"
#include "projections/mongo.h"
#include "projections/projection.h"
#include "queue/job_queue.h"

namespace walfold::pipeline {

class WorkerService {
 public:
  WorkerService(const Config& cfg, const projections::Projection& projection,
                mongo::MongoPool& pool, int index, Progress& progress);
  // Loops until `stop` is set. Transient errors (Redis, MongoDB down) back off and retry: the
  // batch's keys wait out a per-key backoff (workers.retry) and this worker sleeps too. A job
  // that cannot be decoded or folded is retried with backoff and, after
  // workers.retry.max_attempts, goes to the dead letters (its key stays blocked).
  void run(const Wakeup& stop);
  // One claim-fold-write-ack round; returns the number of jobs acknowledged (0 when idle).
  // Throws on Redis/MongoDB errors after releasing the claimed keys when it can.
  std::size_t run_once();

 private:
  const Config& cfg_;
  const projections::Projection& projection_;
  mongo::MongoPool& pool_;
  int index_;
  Progress& progress_;
  std::unique_ptr<queue::Redis> redis_;
  std::unique_ptr<queue::JobQueue> queue_;
  int isolate_ = 0;  // claims left that take one key at a time (after a batch-wide failure)

  // The backoff of this worker's loop after Redis or MongoDB failed (each key's own retry
  // backoff is workers.retry's, in the queue).
  static constexpr std::chrono::milliseconds kBackoffMin{100}, kBackoffMax{5000};

  // One claimed key's jobs as this round sees them.
  struct KeyWork {
    const queue::ClaimedKey* claimed;
    std::vector<queue::Job> jobs;  // decoded, within workers.batch_max_changes
    std::size_t folded = 0;        // jobs of this key in the plan
    bool poison = false;           // the job after the folded ones cannot be decoded or folded
    std::string reason;
  };
  std::vector<KeyWork> decode(const queue::Claim& claim) const;
  static std::vector<std::string> attempted_keys(const std::vector<KeyWork>& work);
  // Prefetch, fold each key's jobs in order, write; counts what MongoDB acknowledged.
  void fold_and_write(std::vector<KeyWork>& work);
  // After fold_and_write threw `e`: gives every claimed key back (retry, poison or untouched).
  void release_after(const queue::Claim& claim, const std::vector<KeyWork>& work,
                     const std::exception& e);
  // Acknowledges the folded jobs and settles poison keys; returns the jobs acknowledged.
  std::size_t acknowledge(const queue::Claim& claim, const std::vector<KeyWork>& work);

  // Logs keys that went to the dead letters (ERROR) and, for a batch-wide error, the backoffs.
  void report(const queue::AckResult& r, const std::string& batch_error);
  void count_held(const queue::Claim& claim, const queue::AckResult& r);
};

}  // namespace walfold::pipeline
