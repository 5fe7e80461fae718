// The reader service: everything around the replication loop (cdc/reader.h) that ties it to
// the rest of the house. Per session it
//   - opens the queue and checks Redis's epoch (the Redis-loss detector: a missing or changed
//     epoch, or a job sequence that went back, means Redis lost data; the queue is emptied and
//     everything after the slot's confirmed position replayed, at priorities.replay),
//   - checks the slot against the saved checkpoint (the slot policy: a slot that is missing,
//     recreated, from another cluster, or confirmed past the checkpoint is a gap and stops the
//     reader with exit 65 and a pointer to `walfold reconcile`), and on a first start creates it
//     with the initial load (pipeline/rebuild.h),
//   - starts streaming, or waits as a standby while another reader streams the slot,
//   - answers the loop's questions: what is pending in Redis (checked against the epoch first),
//     and saving the checkpoint (checkpoint/store.h: MongoDB, then the state directory),
//   - after a session that ended on a TRUNCATE, rebuilds the read model and starts the next one.
// Connection losses reconnect with backoff; every wait (backoff, standby) is one wait that the
// stop flag ends at once.
#pragma once

#include <atomic>
#include <exception>
#include <optional>
#include <string>

#include "cdc/reader.h"
#include "checkpoint/store.h"
#include "common/lsn.h"
#include "common/progress.h"
#include "common/wakeup.h"
#include "config/config.h"
#include "mongo/pool.h"
#include "pipeline/source_adapter.h"
#include "projections/projection.h"

namespace walfold::pipeline {

// Whether the reader reconnects (with backoff) after `e` ended a session, or stops with `e`'s
// exit code: the error table's retry class (common/error.h), nothing else. A PgError is classed
// by its SQLSTATE, so a statement cancelled or refused while the server shuts down reconnects
// like a lost connection; a data error, a gap or bad configuration stops.
bool reconnects_after(const std::exception& e);

class ReaderService {
 public:
  ReaderService(const Config& cfg, const projections::Projection& projection,
                mongo::MongoPool& pool, Progress& progress, cdc::ReaderOptions opts = {});
  ~ReaderService();
  // Streams until `stop` is set. Reconnects with backoff on connection loss; throws on errors
  // that retrying cannot fix (DataError, slot missing, config).
  void run(const Wakeup& stop);
  // True once stop_at was reached and everything received is in Redis.
  bool reached_stop() const { return reached_stop_.load(); }
  // The flush position last confirmed to PostgreSQL.
  Lsn confirmed() const { return progress_.confirmed_lsn.load(); }

 private:
  class Session;
  // How a session ended, for the loop in run().
  enum class Next { Done, NextSession };

  const Config& cfg_;
  const projections::Projection& projection_;
  SourceAdapter source_;  // the tables the reader decodes and its router (cdc/source.h)
  mongo::MongoPool& pool_;
  checkpoint::Store store_;
  Progress& progress_;
  cdc::ReaderOptions opts_;
  std::atomic<bool> reached_stop_{false};
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

}  // namespace walfold::pipeline
