// The reader's Redis side, on a thread of its own: batches of jobs handed over by the reader's
// loop are sent to Redis (queue::EnqueueSink::enqueue_send, pipelined: the next batch waits on
// Redis's socket while Redis runs the current one) and their replies read, while the loop goes on
// reading and decoding WAL. The loop never blocks on Redis unless it chooses to (wait_one(),
// wait_all()).
//
// Ownership of the queue: while batches are outstanding (handed over, reply not yet taken by
// take_acks()), only the thread uses it; when outstanding() is 0 the thread is idle and the
// caller may use the queue itself (the pending-set read of a status, the epoch) until it
// hands over the next batch. Replies come back in the order the batches were handed over.
//
// Errors: a batch that fails (Redis unavailable, an error reply) stops the thread: nothing handed
// over after it is sent (enqueue.lua would refuse it anyway), and the next call of the caller
// (take_acks, wait_one, wait_all, send) throws the error, with its type (UnavailableError: the
// session reconnects and streams again from the confirmed position).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "common/lsn.h"
#include "common/wakeup.h"
#include "queue/enqueue.h"

namespace walfold::cdc {

class Enqueuer {
 public:
  explicit Enqueuer(queue::EnqueueSink& queue);
  ~Enqueuer();  // stops the thread; replies not yet read are abandoned with the connection
  Enqueuer(const Enqueuer&) = delete;
  Enqueuer& operator=(const Enqueuer&) = delete;

  // Hands one batch over (never blocks on Redis). `completes_end_lsn`: as for
  // EnqueueSink::enqueue_send (the end of the last commit the batch completes, or 0).
  void send(std::vector<queue::EnqueueItem> batch, Lsn completes_end_lsn);
  // Batches handed over whose acknowledgement the caller has not taken yet.
  std::size_t outstanding() const { return handed_ - taken_; }
  // Batches Redis acknowledged since the last call (oldest first; they are in Redis), without
  // waiting. Throws the thread's error once every batch before the failed one was taken.
  std::size_t take_acks();
  // Waits until Redis acknowledged at least one more batch than was taken (if any is
  // outstanding), then take_acks().
  std::size_t wait_one();
  // Waits for every outstanding batch; returns how many were taken.
  std::size_t wait_all();
  // Readable from an acknowledgement (or the thread's failure) until take_acks() is called:
  // the reader's loop waits on it next to the replication socket, so a batch held back under
  // backpressure goes to Redis as soon as Redis has room, without polling.
  int acked_fd() const { return acked_wake_.fd(); }
  // The flag behind acked_fd(), without a system call: set from an ack until take_acks().
  bool acks_pending() const { return acked_wake_.is_set(); }
  // The thread stopped on an error (which take_acks/wait_one/send throw as it was).
  bool failed() const {
    std::lock_guard lk(m_);
    return error_ != nullptr;
  }

 private:
  void run();
  queue::EnqueueSink& queue_;
  mutable std::mutex m_;
  std::condition_variable work_cv_, done_cv_;
  struct Batch {
    std::vector<queue::EnqueueItem> items;
    Lsn completes;
  };
  std::deque<Batch> work_;    // handed over, not yet sent (guarded by m_)
  std::size_t acked_ = 0;     // batches Redis acknowledged (guarded by m_)
  std::exception_ptr error_;  // the thread's error (guarded by m_)
  Wakeup acked_wake_;         // set by the thread with every ack and on failure
  bool stop_ = false;         // guarded by m_
  // The caller's side (its thread only).
  std::size_t handed_ = 0, taken_ = 0;
  // Last: it starts in the constructor and runs on every member above, so it must start after
  // they are constructed (a thread waiting on a condition variable not yet constructed misses
  // every wakeup).
  std::thread thread_;
};

}  // namespace walfold::cdc
