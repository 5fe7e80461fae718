// Checks and one-time setup on the PostgreSQL side: wal_level, tables, REPLICA IDENTITY,
// publication, slot. `walfold setup` creates what is missing; `walfold run` verifies and
// refuses to start with an error that says what to do.
#pragma once

#include <string>

#include "common/lsn.h"
#include "config/config.h"
#include "projections/projection.h"

namespace walfold::cdc {

struct SlotInfo {
  bool exists = false;
  std::string plugin;
  Lsn confirmed_flush = 0;
  Lsn restart_lsn = 0;
  std::string wal_status;  // reserved | extended | unreserved | lost
  int active_pid = 0;      // walsender streaming it right now, 0 if none
};

// Reads the slot; throws DataError when it is lost or not a pgoutput slot of this database,
// UnavailableError when PostgreSQL cannot be reached. Missing slot: exists == false.
SlotInfo read_slot(const PgConnInfo& dsn, const PostgresConfig& pg);
// The same without judging it (a lost or foreign slot is returned as it is).
SlotInfo read_slot_any(const PgConnInfo& dsn, const PostgresConfig& pg);
// read_slot, and a missing slot is an error that points to `walfold setup`.
SlotInfo check_slot(const PgConnInfo& dsn, const PostgresConfig& pg);

// pg_drop_replication_slot, when it exists and nobody streams it (DataError otherwise).
void drop_slot(const PgConnInfo& dsn, const PostgresConfig& pg);

// wal_level, the tables, REPLICA IDENTITY FULL where the projection needs the old row
// (TableSpec::replica_identity_full), the publication and its tables. Throws ConfigError naming
// the first problem and the fix.
void verify_source(const Config& cfg, const projections::Projection& projection);

struct SetupOptions {
  bool schema = false;  // create the projection's tables (Projection::schema_sql) if missing
};
// Idempotent: creates the tables (with --schema), sets REPLICA IDENTITY FULL, creates or
// completes the publication. Logs what it did. (The slot is created, with its initial
// snapshot, by pipeline::initial_load (pipeline/rebuild.cpp).)
void run_setup(const Config& cfg, const projections::Projection& projection,
               const SetupOptions& opts);

}  // namespace walfold::cdc
