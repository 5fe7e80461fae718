// The rebuild orchestration: loading the read model from PostgreSQL's tables inside an
// exported snapshot, and recording it in the checkpoint so that streaming continues exactly
// where the snapshot ends (reconcile/snapshot.h: documents written from a snapshot at CP carry
// CP - 1 in every guard). Used by
//   - the reader's first start, and its retry when a load did not finish (reader_service.cpp),
//   - `walfold setup` and `walfold reconcile --full` (initial_load, after it dropped the slot and
//     emptied the queue),
//   - the reader after a TRUNCATE of a projected table (rebuild_after_truncate).
// `reconcile --repair` shares the snapshot (reconcile::create_temporary_snapshot) but compares
// instead of loading (reconcile/rebuild.h).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "checkpoint/store.h"
#include "common/lsn.h"
#include "common/progress.h"
#include "config/config.h"
#include "mongo/pool.h"
#include "projections/projection.h"

namespace walfold::pipeline {

// Creates the slot (it must not exist) with an exported snapshot, records its identity as
// "loading", loads `projection`'s read model in the snapshot (its SnapshotLoad), and saves the
// checkpoint at the consistent point. Returns the consistent point. `event` names the reason in the
// checkpoint history. `written`, when given, counts the documents as MongoDB acknowledges them.
Lsn initial_load(const Config& cfg, const projections::Projection& projection,
                 mongo::MongoPool& pool, checkpoint::Store& store, const std::string& event,
                 std::atomic<std::uint64_t>* written = nullptr);

// After a TRUNCATE of `tables` in the commit at `commit_lsn` (the reader's session ended with
// the stream closed, checkpoint at `confirmed`): reloads the read model inside a temporary
// slot's snapshot taken now, and records "rebuilt after TRUNCATE" in the checkpoint history with
// the snapshot's consistent point as the rebuilt LSN (commits below it are in the read model, so
// the TRUNCATE, streamed again, is skipped). Progress::rebuilding is set meanwhile. Returns the
// consistent point.
Lsn rebuild_after_truncate(const Config& cfg, const projections::Projection& projection,
                           mongo::MongoPool& pool, checkpoint::Store& store, Progress& progress,
                           Lsn confirmed, Lsn commit_lsn, const std::vector<std::string>& tables);

// Progress::rebuilding while a load runs, on every exit path.
class Rebuilding {
 public:
  explicit Rebuilding(Progress& p) : p_(p) { p_.rebuilding = true; }
  ~Rebuilding() { p_.rebuilding = false; }
  Rebuilding(const Rebuilding&) = delete;
  Rebuilding& operator=(const Rebuilding&) = delete;

 private:
  Progress& p_;
};

}  // namespace walfold::pipeline
