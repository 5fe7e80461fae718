// Repairing the read model from PostgreSQL's tables instead of the WAL: repair rewrites the
// documents that differ from a fresh snapshot, while the daemon runs. (Loading it whole, for a
// new slot, `reconcile --full` or after a TRUNCATE, is the pipeline's: pipeline/rebuild.h.)
// This is the driver; the per-document comparison is the projection's
// (projections/read_model.h: SnapshotRepair).
#pragma once

#include <chrono>
#include <iosfwd>
#include <string>

#include "common/lsn.h"
#include "config/config.h"
#include "mongo/pool.h"
#include "projections/projection.h"

namespace walfold::reconcile {

struct RepairResult {
  projections::Counts compared;  // rows compared, per section
  std::size_t rewritten = 0;     // documents rewritten
  std::size_t skipped = 0;       // drifted, but changed while being rewritten: run again
  std::size_t unchecked = 0;     // changed by the daemon after the snapshot: not comparable
  Lsn snapshot_lsn = 0;
};
// Compares the read model with PostgreSQL inside one exported snapshot (a temporary slot gives
// its exact WAL position CP) and rewrites the documents that differ. It first waits (up to
// `wait`) until walfold's checkpoint has passed CP, so that every change below the snapshot is
// folded: it needs the daemon running (UnavailableError otherwise). A rewrite is a
// compare-and-set on the guards read: when a worker folded something into the document
// meanwhile, it is left alone and counted as skipped. A document the daemon already changed past
// the snapshot cannot be judged against it and is counted as unchecked (a later run, or --verify
// when writes are quiet, sees it). Rewritten documents carry CP - 1 in their guards, so jobs below
// CP still in the queue change nothing and jobs above it apply on top. Prints one line per
// rewrite ("repaired: <section> <id> (was: ...; now: ...)") or skip.
RepairResult repair(const Config& cfg, const projections::Projection& projection,
                    mongo::MongoPool& pool, std::ostream& out,
                    std::chrono::seconds wait = std::chrono::seconds(60));

}  // namespace walfold::reconcile
