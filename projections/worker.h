// A worker: claim a batch of ordering keys from the queue, fold their jobs through the
// projection (projections/projection.h: prefetch, pure fold, write), and only then acknowledge
// them. The acknowledgement is what lets the reader
// move the checkpoint forward (cdc/checkpoint), so nothing is confirmed to PostgreSQL before
// MongoDB has it.
#pragma once

#include <atomic>
#include <memory>

#include "common/progress.h"
#include "config/config.h"
#include "projections/mongo.h"
#include "projections/projection.h"
#include "queue/job_queue.h"

namespace walfold::projections {

class Worker {
 public:
  Worker(const Config& cfg, const Projection& projection, MongoPool& pool, int index,
         Progress& progress);
  // Loops until `stop` is set. Transient errors (Redis, MongoDB down) back off and retry: the
  // batch's keys wait out a per-key backoff (workers.retry) and this worker sleeps too. A job
  // that cannot be decoded or folded is retried with backoff and, after
  // workers.retry.max_attempts, goes to the dead letters (its key stays blocked).
  void run(const std::atomic<bool>& stop);
  // One claim-fold-write-ack round; returns the number of jobs acknowledged (0 when idle).
  // Throws on Redis/MongoDB errors after releasing the claimed keys when it can.
  std::size_t run_once();

 private:
  const Config& cfg_;
  const Projection& projection_;
  MongoPool& pool_;
  int index_;
  Progress& progress_;
  std::unique_ptr<queue::Redis> redis_;
  std::unique_ptr<queue::JobQueue> queue_;
  int isolate_ = 0;  // claims left that take one key at a time (after a batch-wide failure)

  // Logs keys that went to the dead letters (ERROR) and, for a batch-wide error, the backoffs.
  void report(const queue::AckResult& r, const std::string& batch_error);
  void count_held(const queue::Claim& claim, const queue::AckResult& r);
};

}  // namespace walfold::projections
