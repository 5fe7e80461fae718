// Checks and one-time setup on the PostgreSQL side: wal_level, tables, REPLICA IDENTITY,
// publication, slot. `walfold setup` creates what is missing; `walfold run` verifies and
// refuses to start with an error that says what to do. What is checked is the source's table
// list (cdc/source.h); pipeline/source_adapter.h offers the same from the configuration and the
// projection.
#pragma once

#include <string>
#include <string_view>

#include "cdc/source.h"
#include "common/lsn.h"
#include "common/pg.h"

namespace walfold::cdc {

struct SlotInfo {
  bool exists = false;
  std::string plugin;
  Lsn confirmed_flush = 0;
  Lsn restart_lsn = 0;
  std::string wal_status;  // reserved | extended | unreserved | lost
  int active_pid = 0;      // walsender streaming it right now, 0 if none
};

// Reads the slot named `slot`; throws DataError when it is lost or not a pgoutput slot of this
// database, UnavailableError when PostgreSQL cannot be reached. Missing slot: exists == false.
SlotInfo read_slot(const PgConnInfo& dsn, const std::string& slot);
// The same without judging it (a lost or foreign slot is returned as it is).
SlotInfo read_slot_any(const PgConnInfo& dsn, const std::string& slot);
// read_slot, and a missing slot is an error that points to `walfold setup`.
SlotInfo check_slot(const PgConnInfo& dsn, const std::string& slot);

// pg_drop_replication_slot, when it exists and nobody streams it (DataError otherwise).
void drop_slot(const PgConnInfo& dsn, const std::string& slot);

// wal_level, the source's tables, REPLICA IDENTITY FULL where the old row is needed
// (SourceTable::replica_identity_full), the publication and its tables. Throws ConfigError
// naming the first problem and the fix.
void verify_source(const PgConnInfo& dsn, const std::string& publication, const Source& source);

struct SetupOptions {
  bool schema = false;  // run `schema_sql` first (it creates the tables where missing)
  // The DDL of the source's tables (the projection's Projection::schema_sql); empty: it ships
  // none, and `schema` is refused.
  std::string_view schema_sql = {};
};
// Idempotent: creates the tables (with --schema), sets REPLICA IDENTITY FULL, creates or
// completes the publication. Logs what it did. (The slot is created, with its initial
// snapshot, by pipeline::initial_load (pipeline/rebuild.cpp).)
void run_setup(const PgConnInfo& dsn, const std::string& publication, const Source& source,
               const SetupOptions& opts);

}  // namespace walfold::cdc
