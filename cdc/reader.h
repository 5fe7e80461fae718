// The reader: one replication stream in, jobs in Redis out, and the checkpoint back.
//
//   forward:  PostgreSQL WAL -> ReplicationStream::read -> Decoder (pgoutput) -> Assembler
//             (transaction complete at Commit) -> jobs buffered -> JobQueue::enqueue (Redis)
//   backward: workers ack jobs in Redis -> send_status(): oldest commit still pending (or the
//             end of the last commit when nothing is) -> checkpoint::Store::save (MongoDB, then
//             the state directory) -> standby status "flush" to PostgreSQL, which lets the slot
//             release WAL.
//
// The flush rule (cdc/flush_ledger.h): the flush position sent to PostgreSQL is never above the
// end of the last message the reader processed, nor above the oldest commit still pending in
// Redis or not yet in Redis, nor above the saved checkpoint. FlushLedger computes it and every
// standby status goes through its gate (Session::send_standby), which stops the reader with
// exit 70 rather than send a larger flush LSN. Each path that sends a status, and why it is safe:
//   - periodic status (every status_interval): the in-flight batch is awaited, Redis's pending
//     set is read after it, the bound is saved in MongoDB and the state directory, then sent.
//   - keepalive with reply requested: resends the saved checkpoint (already admitted); the
//     keepalive's WAL end counts as processed only outside a transaction and while nothing was
//     dropped, so it can raise the bound only when every message before it was handled.
//   - asking for the WAL end (waiting for a stop position, after a heartbeat): the same resend.
//   - the stop position (--stop-at-lsn): data read after it is dropped, and a drop freezes the
//     processed end, so keepalives that follow (which carry the server's WAL end) cannot carry
//     the flush past what was decoded. The final status at stop is a periodic status.
//   - SIGTERM: the loop ends, the buffer goes to Redis and is awaited, then a periodic status;
//     whatever libpq had buffered but the reader had not read was never processed.
//   - heartbeats write a logical message; its position arrives in a keepalive (above).
//   - the rebuild after TRUNCATE: the TRUNCATE's commit is held like a drop, the status before
//     the rebuild cannot pass it, and the rebuild's own checkpoint is the saved one.
//   - reconnect and standby takeover: a new session starts a new ledger at the slot's confirmed
//     position (durable) and at Redis's recorded enqueued end (commits an earlier session
//     processed, bounded by the pending set), so nothing from an old connection counts.
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
#include "common/wakeup.h"
#include "config/config.h"
#include "projections/mongo.h"
#include "projections/projection.h"
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
  Reader(const Config& cfg, const projections::Projection& projection, projections::MongoPool& pool,
         Progress& progress, ReaderOptions opts = {});
  ~Reader();
  // Streams until `stop` is set (it also ends every wait at once) or stop_at is reached. Reconnects
  // with backoff on connection loss; throws on errors that retrying cannot fix (DataError, slot
  // missing, config).
  void run(const Wakeup& stop);
  // True once stop_at was reached and everything received is in Redis.
  bool reached_stop() const { return reached_stop_.load(); }
  // Sends one more status update with the current checkpoint, if connected (final confirm).
  Lsn confirmed() const;

 private:
  class Session;
  const Config& cfg_;
  const projections::Projection& projection_;  // what the assembler asks for keys and types
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

}  // namespace walfold::cdc
