// `walfold reconcile --verify | --repair | --full | --from-lsn L [--force]`: check, repair,
// rebuild or replay the MongoDB read model against PostgreSQL (reconcile/).
#include <spdlog/spdlog.h>

#include <chrono>
#include <iostream>

#include "cdc/preflight.h"
#include "checkpoint/store.h"
#include "daemon/command.h"
#include "daemon/run.h"
#include "pipeline/rebuild.h"
#include "projections/mongo.h"
#include "projections/registry.h"
#include "queue/job_queue.h"
#include "reconcile/rebuild.h"
#include "reconcile/snapshot.h"
#include "reconcile/verify.h"

namespace walfold::daemon {
namespace {

// The slot must exist and nobody may stream it (the daemon's reader is stopped).
void require_idle_slot(const Config& cfg, const cdc::SlotInfo& slot, const char* what) {
  if (slot.active_pid != 0)
    throw DataError(std::string(what) + " needs the slot to itself, but replication slot '" +
                    cfg.postgres.slot + "' is streamed by PID " + std::to_string(slot.active_pid) +
                    ": stop walfold first (systemctl stop walfold)");
}

// Empties walfold's queue in Redis (a new epoch), so every change is enqueued again in order.
void reset_queue(const Config& cfg) {
  queue::Redis redis(cfg.redis);
  queue::JobQueue q(redis, queue::queue_prefix(cfg.redis.prefix, cfg.postgres.slot));
  q.reset(std::to_string(checkpoint::now_ms()) + "-reconcile");
}

int reconcile_full(const Config& cfg) {
  const auto dsn = postgres_conninfo(cfg.postgres);
  auto slot = cdc::read_slot_any(dsn, cfg.postgres.slot);
  require_idle_slot(cfg, slot, "reconcile --full");
  projections::MongoPool pool(cfg.mongodb);
  pool.ping();
  if (slot.exists) cdc::drop_slot(dsn, cfg.postgres.slot);
  reset_queue(cfg);
  checkpoint::Store store(cfg, pool);
  auto cp = pipeline::initial_load(cfg, *projections::projection_for(cfg), pool, store,
                                   "reconcile --full");
  std::cout << "rebuilt: the read model equals PostgreSQL at " << format_lsn(cp) << "; slot '"
            << cfg.postgres.slot << "' streams from there (start walfold)\n";
  return kExitOk;
}

// Replaying from `from` needs WAL the slot still keeps.
void check_replayable(const Config& cfg, const cdc::SlotInfo& slot, Lsn from) {
  if (from < slot.confirmed_flush)
    throw DataError("cannot replay from " + format_lsn(from) + ": replication slot '" +
                    cfg.postgres.slot + "' is confirmed up to " + format_lsn(slot.confirmed_flush) +
                    ", and PostgreSQL keeps no WAL for it before that. The oldest replayable LSN "
                    "is " +
                    format_lsn(slot.confirmed_flush) +
                    "; to rebuild from the tables instead, run `walfold reconcile --full`");
}

void check_below_wal_end(PgConn& pg, Lsn from) {
  // Starting past what MongoDB holds skips every commit in between for good (the slot is then
  // confirmed past them): refused beyond the WAL's end always, beyond the checkpoint unless
  // --force, naming what would be skipped.
  const auto wal_end = parse_lsn(pg.scalar("SELECT pg_current_wal_insert_lsn()").value_or(""));
  if (wal_end && from > *wal_end)
    throw UsageError("--from-lsn " + format_lsn(from) + " is beyond the current WAL end " +
                     format_lsn(*wal_end) + " of PostgreSQL at " + pg.address() +
                     ": nothing would be replayed, and every change after the checkpoint would "
                     "be skipped. Refused (a typo?); `walfold checkpoints` lists usable LSNs");
}

// Starting past the saved checkpoint skips the commits in between: refused without --force.
void check_skipped_commits(const Config& cfg, PgConn& pg, Lsn from, Lsn checkpoint, bool force) {
  if (from <= checkpoint) return;
  // The commits that would never be folded: decoded (not consumed) from the idle slot.
  auto res = pg.exec_params(
      "SELECT count(*), min(lsn)::text, max(lsn)::text FROM "
      "pg_logical_slot_peek_binary_changes($1, $2::pg_lsn, NULL, 'proto_version', '1', "
      "'publication_names', $3) WHERE get_byte(data, 0) = 67 AND lsn > $4::pg_lsn",
      {cfg.postgres.slot, format_lsn(from), cfg.postgres.publication, format_lsn(checkpoint)},
      "counting the commits --from-lsn would skip");
  const std::string n(pg_value(*res, 0, 0));
  const std::string what =
      n == "0"
          ? std::string("no commit of the published tables lies in between")
          : n + " commits of the published tables (ending " + std::string(pg_value(*res, 0, 1)) +
                " to " + std::string(pg_value(*res, 0, 2)) + ") would never reach MongoDB";
  if (!force)
    throw UsageError("--from-lsn " + format_lsn(from) + " is past walfold's newest saved " +
                     "checkpoint " + format_lsn(checkpoint) + ": " + what +
                     ". Refused; replay from " + format_lsn(checkpoint) +
                     " or older, or add --force to skip them on purpose");
  spdlog::warn("reconcile --from-lsn {} --force: past the checkpoint {}: {}", format_lsn(from),
               format_lsn(checkpoint), what);
}

int reconcile_from_lsn(const Config& cfg, const std::string& config_path, const std::string& text,
                       bool force) {
  auto from = parse_lsn(text);
  if (!from) throw UsageError("--from-lsn '" + text + "' is not an LSN like 16/B374D848");
  const auto dsn = postgres_conninfo(cfg.postgres);
  auto slot = cdc::check_slot(dsn, cfg.postgres.slot);
  require_idle_slot(cfg, slot, "reconcile --from-lsn");
  check_replayable(cfg, slot, *from);
  PgConn pg(dsn, {}, "reconcile");
  check_below_wal_end(pg, *from);
  projections::MongoPool pool(cfg.mongodb);
  checkpoint::Store store(cfg, pool);
  auto saved = store.load_mongo();
  if (!saved) saved = store.load_state_dir();
  check_skipped_commits(cfg, pg, *from, saved ? saved->lsn : slot.confirmed_flush, force);
  spdlog::warn(
      "reconcile --from-lsn {}: emptying walfold's queue in redis and replaying every change "
      "from {} to the current WAL end (the folds are idempotent: what MongoDB has stays)",
      format_lsn(*from), format_lsn(*from));
  reset_queue(cfg);
  RunOptions o;
  o.stop_at = "current";
  o.start_at = *from;
  return daemon::run(cfg, config_path, o);
}

int reconcile_repair(const Config& cfg, int wait_seconds) {
  projections::MongoPool pool(cfg.mongodb);
  auto r = reconcile::repair(cfg, *projections::projection_for(cfg), pool, std::cout,
                             std::chrono::seconds(wait_seconds));
  std::cout.flush();
  spdlog::info(
      "reconcile --repair: {} compared at {}, {} rewritten, {} skipped (changed while "
      "rewriting: run again), {} unchecked (changed after the snapshot)",
      reconcile::describe(r.compared), format_lsn(r.snapshot_lsn), r.rewritten, r.skipped,
      r.unchecked);
  return r.skipped == 0 ? kExitOk : kExitAttention;
}

int reconcile_verify(const Config& cfg) {
  auto r = reconcile::verify(tools::report_options(cfg, tools::ReportSource::Postgres),
                             *projections::projection_for(cfg), std::cout);
  std::cout.flush();
  spdlog::info("reconcile --verify: {} compared, {} drifted", reconcile::describe(r.compared),
               r.drifted);
  return r.drifted == 0 ? kExitOk : kExitAttention;
}

class ReconcileCommand : public Command {
 public:
  ReconcileCommand(CLI::App& sub, Context& ctx);

  int run(const Context& ctx) override {
    if (!from_lsn_.empty() && !parse_lsn(from_lsn_))
      throw UsageError("--from-lsn '" + from_lsn_ + "' is not an LSN like 16/B374D848");
    // --full and --from-lsn write the state directory.
    const Config cfg =
        full_ || !from_lsn_.empty() ? ctx.load_config_to_write_state() : ctx.load_config();
    if (!verify_ && !repair_ && !full_ && from_lsn_.empty()) {
      std::cerr << "walfold reconcile: say what to do: --verify, --repair, --full or "
                   "--from-lsn X/Y\n";
      return exit_code_of<UsageError>();
    }
    if (full_) return reconcile_full(cfg);
    if (!from_lsn_.empty()) return reconcile_from_lsn(cfg, ctx.config_path, from_lsn_, force_);
    if (repair_) return reconcile_repair(cfg, repair_wait_);
    return reconcile_verify(cfg);
  }

 private:
  bool verify_ = false, repair_ = false, full_ = false, force_ = false;
  int repair_wait_ = 60;
  std::string from_lsn_;
};

ReconcileCommand::ReconcileCommand(CLI::App& sub, Context& ctx) {
  add_config_option(sub, ctx);
  auto* o_verify = sub.add_flag(
      "--verify", verify_,
      "Print every record of the read model whose documents differ from PostgreSQL (nothing when "
      "clean); exit 1 on drift");
  auto* o_repair = sub.add_flag(
      "--repair", repair_,
      "Rewrite the documents that differ from a consistent PostgreSQL snapshot (safe while "
      "walfold runs)");
  sub.add_option("--wait", repair_wait_,
                 "--repair: longest wait for walfold's checkpoint to pass the snapshot (s)")
      ->capture_default_str();
  auto* o_full = sub.add_flag(
      "--full", full_,
      "Rebuild the read model from the tables and recreate the slot (walfold must be stopped)");
  auto* o_from = sub.add_option(
      "--from-lsn", from_lsn_,
      "Empty the queue and replay every change from this LSN through the slot (walfold must be "
      "stopped)");
  sub.add_flag("--force", force_,
               "--from-lsn: replay from past the saved checkpoint, skipping the commits in "
               "between for good")
      ->needs(o_from);
  for (auto* a : {o_verify, o_repair, o_full, o_from})
    for (auto* b : {o_verify, o_repair, o_full, o_from})
      if (a != b) a->excludes(b);
}

}  // namespace

std::unique_ptr<Command> make_reconcile_command(CLI::App& sub, Context& ctx) {
  return std::make_unique<ReconcileCommand>(sub, ctx);
}

}  // namespace walfold::daemon
