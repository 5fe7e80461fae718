#include "pipeline/rebuild.h"

#include <spdlog/spdlog.h>

#include "common/pg.h"
#include "reconcile/snapshot.h"

namespace walfold::pipeline {

Lsn initial_load(const Config& cfg, const projections::Projection& projection,
                 mongo::MongoPool& pool, checkpoint::Store& store, const std::string& event,
                 std::atomic<std::uint64_t>* written) {
  const PgConnInfo dsn = postgres_conninfo(cfg.postgres);
  auto snap = reconcile::create_slot_with_snapshot(dsn, cfg.postgres.slot, /*temporary=*/false);
  spdlog::info(
      "created replication slot '{}' at {} with an exported snapshot; loading the read model "
      "from the tables inside it ({})",
      cfg.postgres.slot, format_lsn(snap.consistent_point), event);
  checkpoint::SlotIdentity id{cfg.postgres.slot, snap.system_id, snap.consistent_point,
                              checkpoint::now_ms()};
  store.begin(id, /*loading=*/true, "slot created");
  if (const auto* load = projection.snapshot_load()) load->prepare(pool);
  auto st =
      reconcile::load_read_model(cfg, projection, pool, snap.name, snap.consistent_point, written);
  store.finish_load(snap.consistent_point, event);
  spdlog::info(
      "{}: {} loaded at {} ({} stale documents tombstoned) in {:.1f} s; streaming continues "
      "from there",
      event, reconcile::describe(st.stats.documents), format_lsn(snap.consistent_point),
      st.stats.tombstoned, st.seconds);
  return snap.consistent_point;
}

// The read model is rebuilt from the tables, inside a snapshot taken after the TRUNCATE, then
// streaming goes on from where it was. The documents the rebuild writes carry its position, so
// the commits streamed again between the TRUNCATE and the snapshot change nothing.
Lsn rebuild_after_truncate(const Config& cfg, const projections::Projection& projection,
                           mongo::MongoPool& pool, checkpoint::Store& store, Progress& progress,
                           Lsn confirmed, Lsn commit_lsn, const std::vector<std::string>& tables) {
  std::string names;
  for (const auto& n : tables) names += (names.empty() ? "" : ", ") + n;
  spdlog::error(
      "reader: TRUNCATE of {} in the transaction at {}: rebuilding the read model from the "
      "tables (logged in the checkpoint history)",
      names, format_lsn(commit_lsn));
  Rebuilding busy(progress);
  const PgConnInfo dsn = postgres_conninfo(cfg.postgres);
  auto snap = reconcile::create_temporary_snapshot(dsn, cfg.postgres.slot, "rebuild");
  auto st = reconcile::load_read_model(cfg, projection, pool, snap.name, snap.consistent_point,
                                       &progress.snapshot_documents);
  store.finish_load(confirmed,
                    "rebuilt after TRUNCATE of " + names + " at " + format_lsn(commit_lsn) +
                        " (snapshot " + format_lsn(snap.consistent_point) + ")",
                    snap.consistent_point);
  spdlog::warn(
      "reader: rebuild after TRUNCATE done: {} at {} ({} documents tombstoned) in {:.1f} s; "
      "streaming resumes",
      reconcile::describe(st.stats.documents), format_lsn(snap.consistent_point),
      st.stats.tombstoned, st.seconds);
  ++progress.rebuilds;
  return snap.consistent_point;
}

}  // namespace walfold::pipeline
