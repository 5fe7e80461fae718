// Repairing the read model from PostgreSQL's tables instead of the WAL: repair rewrites the
// documents that differ from a fresh snapshot, while the daemon runs. (Loading it whole, for a
// new slot, `reconcile --full` or after a TRUNCATE, is the pipeline's: pipeline/rebuild.h.)
#pragma once

#include <atomic>

#include <chrono>
#include <iosfwd>
#include <string>

#include "common/lsn.h"
#include "config/config.h"
#include "projections/mongo.h"

namespace walfold::reconcile {

struct RepairResult {
  std::size_t accounts = 0, users = 0, transactions = 0;  // compared
  std::size_t rewritten = 0;                              // documents rewritten
  std::size_t skipped = 0;    // drifted, but changed while being rewritten: run again
  std::size_t unchecked = 0;  // changed by the daemon after the snapshot: not comparable
  Lsn snapshot_lsn = 0;
};
// Compares every account and user document, and the read model's copy of every transaction
// row (which window recomputes read), with PostgreSQL inside one exported snapshot (a
// temporary slot gives its exact WAL position CP) and rewrites the ones that differ. It first
// waits (up to `wait`) until walfold's checkpoint has passed CP, so that every change below the
// snapshot is folded: it needs the daemon running (UnavailableError otherwise). A rewrite is
// a compare-and-set on the guards read (applied_lsn and window_lsn; profile_lsn, floor_lsn and
// acct_lsn; a copy's applied_lsn and left): when a worker folded something into the document
// meanwhile, it is left alone and counted as skipped. A document the daemon already changed past
// the snapshot cannot be judged against it and is counted as unchecked (a later run, or --verify
// when writes are quiet, sees it). Rewritten documents carry CP - 1 in their guards, so jobs below
// CP still in the queue change nothing and jobs above it apply on top. Prints one line per rewrite.
RepairResult repair(const Config& cfg, projections::MongoPool& pool, std::ostream& out,
                    std::chrono::seconds wait = std::chrono::seconds(60));

}  // namespace walfold::reconcile
