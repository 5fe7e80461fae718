#include "cdc/preflight.h"

#include <spdlog/spdlog.h>

#include "cdc/replication_stream.h"
#include "common/error.h"
#include "common/pg.h"

namespace walfold::cdc {
namespace {

std::string qualified(const SourceTable& t) {
  return quote_ident(t.schema) + "." + quote_ident(t.name);
}

// Whether the table needs REPLICA IDENTITY FULL; a table the source lists but cannot decode is
// refused here (the configuration validated its model, so only a hand-built one gets here).
bool needs_full_identity(const SourceTable& t) {
  if (!t.problem.empty()) throw ConfigError("table " + t.qualified_name() + " " + t.problem);
  return t.replica_identity_full;
}

void check_wal_level(PgConn& c) {
  auto level = c.scalar("SHOW wal_level").value_or("?");
  if (level != "logical")
    throw ConfigError(
        "postgresql at " + c.address() + " has wal_level = '" + level +
        "'; logical replication needs 'logical' (ALTER SYSTEM SET wal_level = logical; "
        "then restart PostgreSQL)");
}

}  // namespace

SlotInfo read_slot_impl(const PgConnInfo& dsn, const std::string& slot, bool strict);

SlotInfo read_slot(const PgConnInfo& dsn, const std::string& slot) {
  return read_slot_impl(dsn, slot, true);
}

SlotInfo read_slot_any(const PgConnInfo& dsn, const std::string& slot) {
  return read_slot_impl(dsn, slot, false);
}

SlotInfo read_slot_impl(const PgConnInfo& dsn, const std::string& slot, bool strict) {
  PgConn c(dsn, {}, "slot check");
  auto r = c.exec_params(
      "SELECT plugin, confirmed_flush_lsn, restart_lsn, wal_status, database = current_database(), "
      "COALESCE(active_pid, 0) "
      "FROM pg_replication_slots WHERE slot_name = $1",
      {slot});
  SlotInfo s;
  if (PQntuples(r.get()) == 0) return s;
  s.exists = true;
  s.plugin = PQgetisnull(r.get(), 0, 0) ? "" : PQgetvalue(r.get(), 0, 0);
  s.confirmed_flush =
      PQgetisnull(r.get(), 0, 1) ? 0 : parse_lsn(PQgetvalue(r.get(), 0, 1)).value_or(0);
  s.restart_lsn = PQgetisnull(r.get(), 0, 2) ? 0 : parse_lsn(PQgetvalue(r.get(), 0, 2)).value_or(0);
  s.wal_status = PQgetisnull(r.get(), 0, 3) ? "" : PQgetvalue(r.get(), 0, 3);
  bool same_db = std::string(PQgetvalue(r.get(), 0, 4)) == "t";
  s.active_pid = std::atoi(PQgetvalue(r.get(), 0, 5));
  if (!strict) return s;
  if (s.plugin != "pgoutput" || !same_db)
    throw DataError("replication slot '" + slot + "' on " + c.address() +
                    " is not a pgoutput slot of this database (plugin '" + s.plugin +
                    "'); choose another postgres.slot");
  if (s.wal_status == "lost")
    throw DataError(
        "replication slot '" + slot + "' on " + c.address() +
        " is invalidated (wal_status = 'lost'): PostgreSQL removed WAL it still needed, so "
        "changes were lost to it. Rebuild the read model with `walfold reconcile --full`");
  return s;
}

SlotInfo check_slot(const PgConnInfo& dsn, const std::string& slot) {
  auto s = read_slot(dsn, slot);
  if (!s.exists)
    throw DataError(
        "replication slot '" + slot +
        "' does not exist; create it with `walfold setup` "
        "(if it existed before, changes since it was dropped are missing from the read model: "
        "run `walfold reconcile --full`)");
  return s;
}

void drop_slot(const PgConnInfo& dsn, const std::string& slot) {
  PgConn c(dsn, {}, "drop slot");
  auto r =
      c.exec_params("SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", {slot});
  if (PQntuples(r.get()) == 0) return;
  if (!PQgetisnull(r.get(), 0, 0))
    throw DataError("replication slot '" + slot + "' on " + c.address() +
                    " is being streamed by PID " + PQgetvalue(r.get(), 0, 0) +
                    " (a running walfold reader?): stop it first");
  c.exec_params("SELECT pg_drop_replication_slot($1)", {slot});
  spdlog::warn("dropped replication slot '{}' on {}", slot, c.address());
}

void verify_source(const PgConnInfo& dsn, const std::string& publication, const Source& source) {
  PgConn c(dsn, {}, "preflight");
  check_wal_level(c);
  auto pub = c.exec_params("SELECT 1 FROM pg_publication WHERE pubname = $1", {publication});
  if (PQntuples(pub.get()) == 0)
    throw ConfigError("publication '" + publication + "' does not exist on " + c.address() +
                      "; create it with `walfold setup`");
  for (const auto& t : source.tables) {
    const std::string name = t.qualified_name();
    auto r = c.exec_params(
        "SELECT c.relreplident, EXISTS (SELECT 1 FROM pg_publication_tables p WHERE p.pubname = $3 "
        "AND p.schemaname = $1 AND p.tablename = $2) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND "
        "c.relname = $2",
        {t.schema, t.name, publication});
    if (PQntuples(r.get()) == 0)
      throw ConfigError("table " + name + " (configured as the " + t.model +
                        " model) does not exist on " + c.address() +
                        "; create it (`walfold setup --schema` creates the " + source.name +
                        " tables)");
    if (std::string(PQgetvalue(r.get(), 0, 1)) != "t")
      throw ConfigError("table " + name + " is not in publication '" + publication +
                        "'; `walfold setup` adds it");
    if (needs_full_identity(t) && std::string(PQgetvalue(r.get(), 0, 0)) != "f")
      throw ConfigError(
          "table " + name +
          " does not have REPLICA IDENTITY FULL, so corrections (UPDATE/DELETE) "
          "would reach walfold without the old row; run `walfold setup` or ALTER TABLE " +
          name + " REPLICA IDENTITY FULL");
  }
}

void run_setup(const PgConnInfo& dsn, const std::string& publication, const Source& source,
               const SetupOptions& opts) {
  PgConn c(dsn, {}, "setup");
  check_wal_level(c);
  if (opts.schema) {
    if (opts.schema_sql.empty())
      throw ConfigError("the " + source.name +
                        " projection ships no schema: create its tables yourself");
    c.exec(std::string(opts.schema_sql));
    spdlog::info("setup: {} schema applied (tables created if missing)", source.name);
  }
  std::vector<std::string> tables;
  for (const auto& t : source.tables) {
    const std::string name = t.qualified_name();
    auto exists = c.exec_params("SELECT to_regclass($1) IS NOT NULL", {qualified(t)});
    if (std::string(PQgetvalue(exists.get(), 0, 0)) != "t")
      throw ConfigError("table " + name + " does not exist on " + c.address() +
                        "; run `walfold setup --schema` to create the " + source.name + " tables");
    if (needs_full_identity(t)) c.exec("ALTER TABLE " + qualified(t) + " REPLICA IDENTITY FULL");
    tables.push_back(qualified(t));
  }
  auto pub = c.exec_params("SELECT 1 FROM pg_publication WHERE pubname = $1", {publication});
  if (PQntuples(pub.get()) == 0) {
    std::string list;
    for (const auto& t : tables) list += (list.empty() ? "" : ", ") + t;
    c.exec("CREATE PUBLICATION " + quote_ident(publication) + " FOR TABLE " + list);
    spdlog::info("setup: created publication '{}' for {}", publication, list);
  } else {
    for (const auto& t : source.tables) {
      auto in = c.exec_params(
          "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND "
          "tablename = $3",
          {publication, t.schema, t.name});
      if (PQntuples(in.get()) == 0) {
        c.exec("ALTER PUBLICATION " + quote_ident(publication) + " ADD TABLE " + qualified(t));
        spdlog::info("setup: added {} to publication '{}'", t.qualified_name(), publication);
      }
    }
  }
}

}  // namespace walfold::cdc
