#include "reconcile/rebuild.h"

#include <ostream>
#include <thread>

#include "common/error.h"
#include "reconcile/snapshot.h"

namespace walfold::reconcile {
namespace {

// Counts and prints what the projection's repair did.
class PrintLog : public projections::RepairLog {
 public:
  PrintLog(std::ostream& out, RepairResult& r) : out_(out), r_(r) {}
  void compared(std::string_view section) override {
    if (r_.compared.empty() || r_.compared.back().first != section)
      r_.compared.emplace_back(section, 0);
    ++r_.compared.back().second;
  }
  void repaired(std::string_view section, std::string_view id, bool in_postgres,
                std::string_view was, std::string_view now) override {
    ++r_.rewritten;
    out_ << "repaired: " << section << " " << id << (in_postgres ? "" : " (not in PostgreSQL)")
         << "\n";
    block("was:      ", was);
    block("now:      ", now);
  }
  void skipped(std::string_view section, std::string_view id) override {
    ++r_.skipped;
    out_ << "skipped: " << section << " " << id
         << " (changed while repairing; run --repair again)\n";
  }
  void unchecked(std::string_view, std::string_view) override { ++r_.unchecked; }

 private:
  // A canonical record (one or more lines) under its label, laid out as `reconcile --verify`
  // lays out its "postgres:" and "mongo:" sides, so the same record prints the same lines.
  void block(std::string_view label, std::string_view text) {
    bool first = true;
    while (first || !text.empty()) {
      const auto nl = text.find('\n');
      out_ << "  " << (first ? label : std::string_view("          ")) << text.substr(0, nl)
           << "\n";
      text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
      first = false;
    }
  }

  std::ostream& out_;
  RepairResult& r_;
};

// Waits until walfold's checkpoint (hence the slot's confirmed position) has passed `cp`.
void wait_for_checkpoint(const Config& cfg, const PgConnInfo& dsn, Lsn cp,
                         std::chrono::seconds wait) {
  PgConn watch(dsn, {}, "repair");
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (true) {
    auto v = watch.exec_params(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
        {cfg.postgres.slot});
    Lsn confirmed = PQntuples(v.get()) == 1 && !PQgetisnull(v.get(), 0, 0)
                        ? parse_lsn(PQgetvalue(v.get(), 0, 0)).value_or(0)
                        : 0;
    if (confirmed >= cp) break;
    if (std::chrono::steady_clock::now() >= deadline)
      throw UnavailableError(
          "reconcile --repair: walfold's checkpoint (slot '" + cfg.postgres.slot + "' at " +
          format_lsn(confirmed) + ") did not reach the snapshot at " + format_lsn(cp) + " within " +
          std::to_string(wait.count()) +
          " s. Repair compares documents once everything before its snapshot is folded: "
          "start walfold (or let it catch up) and run it again");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

}  // namespace

RepairResult repair(const Config& cfg, const projections::Projection& projection,
                    mongo::MongoPool& pool, std::ostream& out, std::chrono::seconds wait) {
  const projections::SnapshotRepair* repairer = projection.snapshot_repair();
  if (!repairer)
    throw ConfigError("the " + std::string(projection.name()) + " projection cannot be repaired");
  const PgConnInfo dsn = postgres_conninfo(cfg.postgres);
  // A temporary slot gives a snapshot with an exact WAL position; it disappears with this
  // connection.
  auto snap = create_temporary_snapshot(dsn, cfg.postgres.slot, "repair");
  const Lsn cp = snap.consistent_point;
  RepairResult r;
  r.snapshot_lsn = cp;
  SnapshotTransaction tx(cfg, dsn, snap.name);
  // Compare only once every change below the snapshot is folded: a document can then differ
  // from the snapshot only by drift, and no job below CP, which a rewritten document would make
  // the fold skip, is still to come.
  wait_for_checkpoint(cfg, dsn, cp, wait);
  PrintLog log(out, r);
  repairer->repair(tx.read(), pool, cp, log);
  tx.commit();
  return r;
}

}  // namespace walfold::reconcile
