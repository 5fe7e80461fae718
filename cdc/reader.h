// The replication loop: one streaming session, WAL in, jobs to Redis out, and the flush
// position back.
//
//   forward:  PostgreSQL WAL -> ReplicationStream::read -> Decoder (pgoutput) -> Assembler
//             (transaction complete at Commit) -> jobs buffered -> Enqueuer -> Redis
//   backward: workers ack jobs in Redis -> send_status(): oldest commit still pending (asked of
//             the ReaderHost, or the end of the last commit when nothing is) -> the host saves
//             the checkpoint durably -> standby status "flush" to PostgreSQL, which lets the
//             slot release WAL.
//
// What happens around a session (the slot policy, the Redis-loss detector, the checkpoint
// store, the initial load and the rebuild after a TRUNCATE, standby and reconnects) is the
// pipeline's (pipeline/reader_service.h): it prepares the stream and the queue, tells the
// session where it starts (SessionStart) and answers its two questions (ReaderHost). A session
// ends by returning what ended it (SessionEnd), never by an exception that is not an error.
//
// The flush rule (cdc/flush_ledger.h): the flush position sent to PostgreSQL is never above the
// end of the last message the reader processed, nor above the oldest commit still pending in
// Redis or not yet in Redis, nor above the saved checkpoint. FlushLedger computes it and every
// standby status goes through its gate (send_standby), which stops the reader with exit 70
// rather than send a larger flush LSN. Each path that sends a status, and why it is safe:
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
//   - a TRUNCATE: its commit is held like a drop, the status before the session ends cannot
//     pass it, and the rebuild's own checkpoint (pipeline/rebuild.h) is the saved one.
//   - reconnect and standby takeover: a new session starts a new ledger at the slot's confirmed
//     position (durable) and at Redis's recorded enqueued end (commits an earlier session
//     processed, bounded by the pending set), so nothing from an old connection counts.
//
// Every deadline of the loop (status, keepalive reply, enqueue, heartbeat, asking for the WAL
// end) is in one Deadlines (cdc/deadlines.h), which gives the one wait for WAL data; the stop
// flag ends that wait at once.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cdc/source.h"
#include "common/lsn.h"
#include "common/progress.h"
#include "common/wakeup.h"
#include "queue/enqueue.h"

namespace walfold::cdc {

class ReplicationStream;

struct ReaderOptions {
  // Stop once every commit up to this LSN has been received and handed to Redis (tests,
  // benchmarks, the README's demo). 0 = run until stopped.
  Lsn stop_at = 0;
  // START_REPLICATION at this position (reconcile --from-lsn); 0 = the slot's confirmed one.
  Lsn start_at = 0;
  // Notified once stop_at was reached (the supervisor waits on it).
  Wakeup* reached = nullptr;
};

// What the replication loop asks of the pipeline around it.
class ReaderHost {
 public:
  virtual ~ReaderHost() = default;
  // The commit LSN of the oldest commit with a job still pending in the queue (nullopt: none),
  // asked once every batch the session sent was acknowledged (so the answer counts them).
  // Throws UnavailableError when the queue can no longer bound the checkpoint (Redis lost data):
  // nothing is confirmed then, and the next session replays.
  virtual std::optional<Lsn> oldest_pending() = 0;
  // Saves `lsn` durably as the checkpoint before PostgreSQL hears of it; false when it could
  // not be saved now (a server unavailable: PostgreSQL stays at the last saved one).
  virtual bool save_checkpoint(Lsn lsn) = 0;
};

// Where a session starts, as the pipeline found it.
struct SessionStart {
  Lsn confirmed = 0;         // the slot's confirmed flush position
  Lsn in_redis_through = 0;  // commits ending at or below are in Redis already: not enqueued
  Lsn replay_until = 0;      // commits below go at priorities.replay (a replay)
  Lsn rebuilt_lsn = 0;       // the read model was rebuilt here: TRUNCATEs below are in it
};

// What ended a session.
struct SessionEnd {
  enum class Kind {
    Stopped,    // the stop flag was set; the buffer is in Redis and a last status went out
    Truncated,  // a TRUNCATE of projected tables: the read model must be rebuilt (the stream
                // is finished; nothing from that commit on was confirmed)
  };
  Kind kind = Kind::Stopped;
  Lsn commit_lsn = 0;               // Truncated: the commit with the TRUNCATE
  std::vector<std::string> tables;  // Truncated: the tables it truncated
  Lsn confirmed = 0;                // the last flush position sent
};

class Reader {
 public:
  // `stream` has started streaming (START_REPLICATION); `queue` is this session's (the Enqueuer's
  // thread uses it while batches are outstanding). `source` lists the tables decoded and `router`
  // says what each row change is keyed by and how urgent it is (cdc/source.h); both outlive the
  // reader.
  Reader(const SourceSettings& settings, const Source& source, const Router& router,
         Progress& progress, const ReaderOptions& opts, std::atomic<bool>& reached_stop,
         ReplicationStream& stream, queue::EnqueueSink& queue, ReaderHost& host,
         const SessionStart& start);
  ~Reader();
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  // Streams until `stop` is set or a TRUNCATE needs a rebuild. Throws on errors (UnavailableError
  // for a lost connection: the pipeline reconnects; DataError and the like: it stops).
  SessionEnd run(const Wakeup& stop);
  // The flush position last sent (the saved checkpoint).
  Lsn confirmed() const;

 private:
  class Session;
  std::unique_ptr<Session> session_;
};

}  // namespace walfold::cdc
