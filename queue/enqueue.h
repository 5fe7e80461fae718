// The queue's enqueue side, as the source (cdc/) sees it: batches of jobs in, Redis's
// acknowledgements back, in order. cdc/ depends on this interface, not on the queue's Redis
// layout (queue/job_queue.h implements it).
#pragma once

#include <string>
#include <vector>

#include "common/lsn.h"

namespace walfold::queue {

struct EnqueueItem {
  std::string key;   // the ordering key (projections/projection.h: Route)
  int priority;      // 0 most urgent (config `priorities`)
  Lsn commit_lsn;    // the commit the job belongs to (Job::commit_lsn)
  std::string body;  // encode_job()
};

class EnqueueSink {
 public:
  virtual ~EnqueueSink() = default;
  // Sends one batch without waiting for Redis; several may be in flight. `completes_end_lsn`:
  // the end LSN of the last commit whose last job is in this batch (0: none), recorded with it
  // as enqueued. A batch is applied only if the one sent before it was.
  virtual void enqueue_send(const std::vector<EnqueueItem>& items, Lsn completes_end_lsn) = 0;
  // Waits for the oldest batch in flight to be acknowledged; throws its error.
  virtual void enqueue_wait_one() = 0;
};

}  // namespace walfold::queue
