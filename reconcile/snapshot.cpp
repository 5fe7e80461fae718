#include "reconcile/snapshot.h"

#include <unistd.h>

#include <chrono>

#include "common/error.h"

namespace walfold::reconcile {

ExportedSnapshot create_slot_with_snapshot(const PgConnInfo& dsn, const std::string& slot,
                                           bool temporary) {
  ExportedSnapshot s;
  s.connection = std::make_unique<PgConn>(
      dsn, std::map<std::string, std::string>{{"replication", "database"}}, "snapshot");
  auto id = s.connection->exec("IDENTIFY_SYSTEM");
  s.system_id = PQgetvalue(id.get(), 0, 0);
  auto r =
      s.connection->exec("CREATE_REPLICATION_SLOT " + quote_ident(slot) +
                         (temporary ? " TEMPORARY" : "") + " LOGICAL pgoutput (SNAPSHOT 'export')");
  s.slot = slot;
  auto cp = parse_lsn(PQgetvalue(r.get(), 0, 1));
  if (!cp) throw UnavailableError("CREATE_REPLICATION_SLOT returned no consistent point");
  s.consistent_point = *cp;
  s.name = PQgetvalue(r.get(), 0, 2);
  return s;
}

ExportedSnapshot create_temporary_snapshot(const PgConnInfo& dsn, const std::string& slot,
                                           const std::string& purpose) {
  // Slot names are at most 63 characters.
  const std::string name = (slot.size() > 40 ? slot.substr(0, 40) : slot) + "_" + purpose + "_" +
                           std::to_string(::getpid());
  return create_slot_with_snapshot(dsn, name, /*temporary=*/true);
}

SnapshotTransaction::SnapshotTransaction(const Config& cfg, const PgConnInfo& dsn,
                                         const std::string& snapshot)
    : conn_(dsn, {}, "snapshot read"), tables_(tools::mapped_tables(cfg), conn_) {
  conn_.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  conn_.exec("SET TRANSACTION SNAPSHOT " + quote_literal(snapshot));
}

void SnapshotTransaction::commit() {
  conn_.exec("COMMIT");
}

std::string describe(const projections::Counts& counts) {
  std::string out;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (i != 0) out += i + 1 == counts.size() ? " and " : ", ";
    out += std::to_string(counts[i].second) + " " + counts[i].first;
    if (counts[i].first.empty() || counts[i].first.back() != 's') out += "s";
  }
  return out.empty() ? "nothing" : out;
}

LoadResult load_read_model(const Config& cfg, const projections::Projection& projection,
                           mongo::MongoPool& pool, const std::string& snapshot,
                           Lsn consistent_point, std::atomic<std::uint64_t>* written) {
  const projections::SnapshotLoad* load = projection.snapshot_load();
  if (!load)
    throw ConfigError("the " + std::string(projection.name()) +
                      " projection cannot be loaded from a snapshot");
  const auto start = std::chrono::steady_clock::now();
  SnapshotTransaction tx(cfg, postgres_conninfo(cfg.postgres), snapshot);
  LoadResult r;
  r.stats = load->load(tx.read(), pool, consistent_point - 1, written);
  tx.commit();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace walfold::reconcile
