// The reader: one replication stream in, jobs in Redis out, and the checkpoint back.
//
//   forward:  PostgreSQL WAL -> ReplicationStream::read -> Decoder (pgoutput) -> Assembler
//             (transaction complete at Commit) -> jobs buffered -> JobQueue::enqueue (Redis)
//   backward: workers ack jobs in Redis -> send_status(): oldest commit still pending (or the
//             end of the last commit when nothing is) -> checkpoint::Store::save (MongoDB, then
//             the state directory) -> standby status "flush" to PostgreSQL, which lets the slot
//             release WAL.
//
// The flush position sent to PostgreSQL never passes a commit whose jobs MongoDB has not
// acknowledged, nor the saved checkpoint; the write position is what was received.
//
// At the start of every session the slot is checked against the saved checkpoint: a slot that
// is missing, recreated, from another cluster, or confirmed past the checkpoint is a gap and
// stops the reader (exit 65) with a pointer to `walfold reconcile`. A first start creates the
// slot with an exported snapshot and loads the read model from it (reconcile/rebuild.h). A
// slot streamed by another reader makes this one a standby that takes over when it is free.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/store.h"
#include "common/lsn.h"
#include "common/progress.h"
#include "config/config.h"
#include "projections/mongo.h"
#include "queue/job_queue.h"

namespace walfold::cdc {

struct ReaderOptions {
  // Stop once every commit up to this LSN has been received and handed to Redis (tests,
  // benchmarks, the README's demo). 0 = run until stopped.
  Lsn stop_at = 0;
  // START_REPLICATION at this position (reconcile --from-lsn); 0 = the slot's confirmed one.
  Lsn start_at = 0;
};

class Reader {
 public:
  Reader(const Config& cfg, projections::MongoPool& pool, Progress& progress,
         ReaderOptions opts = {});
  ~Reader();
  // Streams until `stop` is set or stop_at is reached. Reconnects with backoff on connection
  // loss; throws on errors that retrying cannot fix (DataError, slot missing, config).
  void run(const std::atomic<bool>& stop);
  // True once stop_at was reached and everything received is in Redis.
  bool reached_stop() const { return reached_stop_.load(); }
  // Sends one more status update with the current checkpoint, if connected (final confirm).
  Lsn confirmed() const;

 private:
  class Session;
  const Config& cfg_;
  projections::MongoPool& pool_;
  checkpoint::Store store_;
  Progress& progress_;
  ReaderOptions opts_;
  std::atomic<bool> reached_stop_{false};
  std::atomic<Lsn> confirmed_{0};
  bool reconnect_backoff_reset_ = false;
  // What this process knows of the queue across sessions: Redis's epoch and the last job
  // sequence number it returned. A different epoch, or a sequence that went back, means Redis
  // lost data.
  std::optional<std::string> epoch_;
  long long last_seq_ = 0;
  // A rebuild after a TRUNCATE loaded the read model at this LSN: older commits are in it.
  Lsn rebuilt_lsn_ = 0;
  bool standby_logged_ = false;
};

// The checkpoint arithmetic, separated so it can be unit-tested: given what is still pending in
// Redis, what is received but not yet in Redis, and the end of the last commit handed to
// Redis, the highest LSN that is safe to confirm as flushed.
struct CheckpointInputs {
  std::optional<Lsn> oldest_pending;     // commit LSN of the oldest unacknowledged job
  std::optional<Lsn> oldest_unenqueued;  // commit LSN of the oldest commit not yet in Redis
  Lsn enqueued_end = 0;                  // end LSN of the last commit fully in Redis
  Lsn idle_wal_end = 0;                  // server WAL end seen while nothing was in flight
  bool in_transaction = false;
};
Lsn safe_flush_lsn(const CheckpointInputs& in);

}  // namespace walfold::cdc
