// Snapshots of the tables whose position in the WAL is known exactly: a replication slot created
// with SNAPSHOT 'export' (its consistent point CP), and one read-only transaction importing it,
// in which a projection reads its tables (projections/read_model.h). Used by the initial load (a
// new slot), by `reconcile --full`, by the rebuild after a TRUNCATE (pipeline/rebuild.h), and by
// `reconcile --repair` (reconcile/rebuild.h).
//
// Documents written from a snapshot at consistent point CP carry CP - 1 in every guard: every
// commit the snapshot contains is below CP, every commit the slot streams afterwards is at or
// above it, so the fold's guards skip exactly what the snapshot already holds.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "common/lsn.h"
#include "common/pg.h"
#include "config/config.h"
#include "mongo/pool.h"
#include "projections/projection.h"
#include "tools/tables.h"

namespace walfold::reconcile {

// A replication slot created with an exported snapshot. The snapshot stays importable while
// this object (its replication connection) lives and runs nothing else.
struct ExportedSnapshot {
  std::unique_ptr<PgConn> connection;
  std::string slot;
  std::string name;  // for SET TRANSACTION SNAPSHOT
  Lsn consistent_point = 0;
  std::string system_id;
};
// CREATE_REPLICATION_SLOT <slot> [TEMPORARY] LOGICAL pgoutput (SNAPSHOT 'export').
ExportedSnapshot create_slot_with_snapshot(const PgConnInfo& dsn, const std::string& slot,
                                           bool temporary);
// A temporary slot (gone with its connection) next to walfold's own, named
// "<slot>_<purpose>_<pid>": an exact snapshot position for a rebuild or a repair.
ExportedSnapshot create_temporary_snapshot(const PgConnInfo& dsn, const std::string& slot,
                                           const std::string& purpose);

// A REPEATABLE READ READ ONLY transaction that imports `snapshot`, with the configuration's
// `tables:` mapping: what a projection reads its tables in.
class SnapshotTransaction {
 public:
  SnapshotTransaction(const Config& cfg, const PgConnInfo& dsn, const std::string& snapshot);
  projections::PgRead& read() { return read_; }
  void commit();

 private:
  PgConn conn_;
  tools::ConfigTables tables_;
  projections::PgRead read_{conn_, tables_};
};

// "3 widgets, 2 parts and 5 orders": count and name per entry (a name gets an "s" unless it
// ends in one).
std::string describe(const projections::Counts& counts);

struct LoadResult {
  projections::LoadStats stats;
  double seconds = 0;
};
// Writes the whole read model of `projection` from the snapshot (SnapshotLoad::load with guards
// at consistent_point - 1). Nothing may fold jobs at or above the consistent point meanwhile
// (the callers guarantee it: nothing is streamed from the slot yet). `written`, when given,
// counts the documents as MongoDB acknowledges them (progress metrics). Throws ConfigError when
// the projection has no snapshot load.
LoadResult load_read_model(const Config& cfg, const projections::Projection& projection,
                           mongo::MongoPool& pool, const std::string& snapshot,
                           Lsn consistent_point, std::atomic<std::uint64_t>* written = nullptr);

}  // namespace walfold::reconcile
