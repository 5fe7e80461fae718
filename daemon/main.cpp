// walfold: PostgreSQL logical replication -> Redis jobs -> MongoDB read model.
// Subcommands: setup, run, status, queue, loadgen, report, reconcile, checkpoints, check-config.
// Exit codes follow sysexits.h; exit_status_for (common/error.h) maps errors to them.
#include <spdlog/spdlog.h>
#include <sysexits.h>
#include <CLI/CLI.hpp>

#include <csignal>
#include <cstring>
#include <iostream>
#include <string_view>

#include "cdc/preflight.h"
#include "cdc/replication_stream.h"
#include "checkpoint/store.h"
#include "common/error.h"
#include "common/log.h"
#include "common/pg.h"
#include "config/config.h"
#include "daemon/check_config.h"
#include "daemon/queue_cli.h"
#include "daemon/run.h"
#include "observe/status.h"
#include "projections/mongo.h"
#include "queue/job_queue.h"
#include "reconcile/rebuild.h"
#include "reconcile/verify.h"
#include "tools/loadgen.h"
#include "tools/report.h"

namespace {

using namespace walfold;

// A tool's --dsn: never with a password in it (argv is visible to every user through ps and
// /proc); the password comes from --password-file or libpq's PGPASSWORD / PGPASSFILE / ~/.pgpass.
PgConnInfo tool_conninfo(const std::string& dsn, const std::string& password_file) {
  if (std::string problem = conninfo_problem(dsn); !problem.empty())
    throw UsageError("--dsn " + problem);
  if (conninfo_has_password(dsn))
    throw UsageError(
        "--dsn holds a password, which every user on this host can read in the process list: "
        "leave it out and give it with --password-file FILE, PGPASSFILE (a pgpass file), or "
        "--config with postgres.password_file");
  PgConnInfo info(dsn);
  if (!password_file.empty()) info.password = read_secret_file(password_file);
  return info;
}

// `walfold setup`: the PostgreSQL side, then the slot with its initial snapshot.
int setup_command(const Config& cfg, bool schema) {
  cdc::run_setup(cfg, {.schema = schema});
  const auto dsn = postgres_conninfo(cfg.postgres);
  auto slot = cdc::read_slot(dsn, cfg.postgres);
  if (slot.exists) {
    spdlog::info("setup: replication slot '{}' exists (confirmed flush {})", cfg.postgres.slot,
                 format_lsn(slot.confirmed_flush));
    return 0;
  }
  projections::MongoPool pool(cfg.mongodb);
  checkpoint::Store store(cfg, pool);
  const auto mongo = store.load_mongo();
  const auto local = store.load_state_dir();
  const auto& saved = mongo ? mongo : local;
  if (saved && !saved->loading) {
    cdc::ReplicationStream server(dsn);
    throw checkpoint::missing_slot_error(cfg.postgres.slot, mongo, local, store.state_file(),
                                         server.identify_system().system_id);
  }
  reconcile::initial_load(cfg, pool, store, "initial snapshot (setup)");
  return 0;
}

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
  auto slot = cdc::read_slot_any(dsn, cfg.postgres);
  require_idle_slot(cfg, slot, "reconcile --full");
  projections::MongoPool pool(cfg.mongodb);
  pool.ping();
  if (slot.exists) cdc::drop_slot(dsn, cfg.postgres);
  reset_queue(cfg);
  checkpoint::Store store(cfg, pool);
  auto cp = reconcile::initial_load(cfg, pool, store, "reconcile --full");
  std::cout << "rebuilt: the read model equals PostgreSQL at " << format_lsn(cp) << "; slot '"
            << cfg.postgres.slot << "' streams from there (start walfold)\n";
  return 0;
}

int reconcile_from_lsn(const Config& cfg, const std::string& config_path, const std::string& text,
                       bool force) {
  auto from = parse_lsn(text);
  if (!from) throw UsageError("--from-lsn '" + text + "' is not an LSN like 16/B374D848");
  const auto dsn = postgres_conninfo(cfg.postgres);
  auto slot = cdc::check_slot(dsn, cfg.postgres);
  require_idle_slot(cfg, slot, "reconcile --from-lsn");
  if (*from < slot.confirmed_flush)
    throw DataError("cannot replay from " + format_lsn(*from) + ": replication slot '" +
                    cfg.postgres.slot + "' is confirmed up to " + format_lsn(slot.confirmed_flush) +
                    ", and PostgreSQL keeps no WAL for it before that. The oldest replayable LSN "
                    "is " +
                    format_lsn(slot.confirmed_flush) +
                    "; to rebuild from the tables instead, run `walfold reconcile --full`");
  // Starting past what MongoDB holds skips every commit in between for good (the slot is then
  // confirmed past them): refused beyond the WAL's end always, beyond the checkpoint unless
  // --force, naming what would be skipped.
  PgConn pg(dsn, {}, "reconcile");
  const auto wal_end = parse_lsn(pg.scalar("SELECT pg_current_wal_insert_lsn()").value_or(""));
  if (wal_end && *from > *wal_end)
    throw UsageError("--from-lsn " + format_lsn(*from) + " is beyond the current WAL end " +
                     format_lsn(*wal_end) + " of PostgreSQL at " + pg.address() +
                     ": nothing would be replayed, and every change after the checkpoint would "
                     "be skipped. Refused (a typo?); `walfold checkpoints` lists usable LSNs");
  projections::MongoPool pool(cfg.mongodb);
  checkpoint::Store store(cfg, pool);
  auto saved = store.load_mongo();
  if (!saved) saved = store.load_state_dir();
  const Lsn checkpoint = saved ? saved->lsn : slot.confirmed_flush;
  if (*from > checkpoint) {
    // The commits that would never be folded: decoded (not consumed) from the idle slot.
    auto res = pg.exec_params(
        "SELECT count(*), min(lsn)::text, max(lsn)::text FROM "
        "pg_logical_slot_peek_binary_changes($1, $2::pg_lsn, NULL, 'proto_version', '1', "
        "'publication_names', $3) WHERE get_byte(data, 0) = 67 AND lsn > $4::pg_lsn",
        {cfg.postgres.slot, format_lsn(*from), cfg.postgres.publication, format_lsn(checkpoint)},
        "counting the commits --from-lsn would skip");
    const std::string n(pg_value(*res, 0, 0));
    const std::string what =
        n == "0"
            ? std::string("no commit of the published tables lies in between")
            : n + " commits of the published tables (ending " + std::string(pg_value(*res, 0, 1)) +
                  " to " + std::string(pg_value(*res, 0, 2)) + ") would never reach MongoDB";
    if (!force)
      throw UsageError("--from-lsn " + format_lsn(*from) + " is past walfold's newest saved " +
                       "checkpoint " + format_lsn(checkpoint) + ": " + what +
                       ". Refused; replay from " + format_lsn(checkpoint) +
                       " or older, or add --force to skip them on purpose");
    spdlog::warn("reconcile --from-lsn {} --force: past the checkpoint {}: {}", format_lsn(*from),
                 format_lsn(checkpoint), what);
  }
  spdlog::warn(
      "reconcile --from-lsn {}: emptying walfold's queue in redis and replaying every change "
      "from {} to the current WAL end (the folds are idempotent: what MongoDB has stays)",
      format_lsn(*from), format_lsn(*from));
  reset_queue(cfg);
  daemon::RunOptions o;
  o.stop_at = "current";
  o.start_at = *from;
  return daemon::run(cfg, config_path, o);
}

int checkpoints_command(const Config& cfg) {
  projections::MongoPool pool(cfg.mongodb);
  checkpoint::Store store(cfg, pool);
  std::optional<checkpoint::Checkpoint> c;
  std::string source = "mongodb " + pool.address() + " database '" + cfg.mongodb.database + "'";
  try {
    c = store.load_mongo();
  } catch (const UnavailableError& e) {
    std::cerr << "walfold: " << e.what() << "; showing " << store.state_file() << "\n";
  }
  if (!c) {
    c = store.load_state_dir();
    source = store.state_file();
    if (c) c->history = store.read_history_file();
  }
  if (!c) {
    std::cout << "no checkpoint for slot '" << cfg.postgres.slot << "' (walfold never ran it)\n";
    return 1;
  }
  std::cout << "source        " << source << "\n"
            << "slot          " << cfg.postgres.slot << " (system " << c->identity.system_id
            << ", created at " << format_lsn(c->identity.created_lsn) << " on "
            << checkpoint::format_time_ms(c->identity.created_at_ms) << ")\n"
            << "checkpoint    " << format_lsn(c->lsn) << " (saved "
            << checkpoint::format_time_ms(c->saved_at_ms) << ")"
            << (c->loading ? "  LOADING: an initial load has not finished" : "") << "\n";
  if (c->rebuilt_lsn) std::cout << "rebuilt at    " << format_lsn(c->rebuilt_lsn) << "\n";
  std::cout << "history (oldest first):\n";
  for (const auto& h : c->history)
    std::cout << "  " << (h.at_ms ? checkpoint::format_time_ms(h.at_ms) + "  " : std::string())
              << format_lsn(h.lsn) << "  " << h.event << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // A write to a server that closed the connection must fail with EPIPE, not kill walfold:
  // hiredis writes with write(2), so a Redis restart under load raised SIGPIPE (exit -13).
  // libpq and libmongoc guard their own sockets.
  std::signal(SIGPIPE, SIG_IGN);
  projections::route_mongoc_logs();  // before anything initialises libmongoc
  CLI::App app{
      "walfold: sync a bank's PostgreSQL write model into a MongoDB read model through "
      "logical replication and a Redis job queue"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("walfold ") + WALFOLD_VERSION);
  // --config, else $WALFOLD_CONFIG, else /etc/walfold/walfold.yaml (resolve_config_path).
  std::string config_path;
  const char* const config_help =
      "Configuration file (default: $WALFOLD_CONFIG, else /etc/walfold/walfold.yaml)";
  std::string log_level;
  app.add_option("--log-level", log_level, "Override log_level from the configuration");

  auto* setup = app.add_subcommand(
      "setup",
      "Create the publication and the replication slot (and with --schema the bank tables)");
  setup->add_option("-c,--config", config_path, config_help);
  bool schema = false;
  setup->add_flag("--schema", schema, "Also create the bank tables if missing");

  auto* run = app.add_subcommand("run", "Stream changes into Redis and fold them into MongoDB");
  run->add_option("-c,--config", config_path, config_help);
  daemon::RunOptions ropts;
  std::string role = "all";
  run->add_option("--role", role, "reader, worker or all")
      ->check(CLI::IsMember({"all", "reader", "worker"}))
      ->capture_default_str();
  run->add_option("--workers", ropts.workers, "Worker threads (default: workers.count)");
  run->add_option(
      "--stop-at-lsn", ropts.stop_at,
      "Exit 0 once every change up to this LSN (or 'current': the WAL end at start) is folded");

  auto* status = app.add_subcommand(
      "status", "Show the slot, lag, queue, processes and checkpoint; exit code for monitoring");
  status->add_option("-c,--config", config_path, config_help);
  bool status_json = false;
  std::string status_max_lag;
  status->add_flag("--json", status_json, "One JSON document instead of text");
  status->add_option("--max-lag", status_max_lag,
                     "Exit 1 when the lag is over this many bytes (64MiB) or seconds (30s)");

  auto* loadgen = app.add_subcommand(
      "loadgen", "Write bank activity (users, accounts, transactions) to PostgreSQL");
  loadgen->add_option("-c,--config", config_path, config_help);
  tools::LoadgenOptions lg;
  std::string lg_dsn, lg_password_file;
  loadgen->add_option("--dsn", lg_dsn,
                      "PostgreSQL connection string, without a password (instead of the "
                      "configuration's)");
  loadgen->add_option("--password-file", lg_password_file,
                      "With --dsn: file holding the password (else PGPASSWORD, PGPASSFILE or "
                      "~/.pgpass)");
  loadgen->add_option("--users", lg.users, "Users to create first")->capture_default_str();
  loadgen->add_option("--transactions", lg.transactions, "Bank operations to run")
      ->capture_default_str();
  loadgen->add_option("--rate", lg.rate, "Operations per second (0: as fast as possible)")
      ->capture_default_str();
  loadgen->add_option("--transfer-share", lg.transfer_share)->capture_default_str();
  loadgen->add_option("--update-share", lg.update_share)->capture_default_str();
  loadgen->add_option("--delete-share", lg.delete_share)->capture_default_str();
  loadgen->add_option("--currencies", lg.currencies)->delimiter(',')->capture_default_str();
  loadgen->add_option("--seed", lg.seed, "Random seed (0: random)")->capture_default_str();
  loadgen
      ->add_option("--ops-per-commit", lg.ops_per_commit, "Operations per PostgreSQL transaction")
      ->capture_default_str();
  bool no_progress = false;
  loadgen->add_flag("--no-progress", no_progress, "No progress display");
  loadgen->add_flag("--reuse", lg.reuse_existing, "Use existing users and accounts");

  auto* report = app.add_subcommand(
      "report", "Print balances and last transactions from either side, in one format");
  report->add_option("-c,--config", config_path, config_help);
  std::string from;
  report->add_option("--from", from, "postgres or mongo")
      ->required()
      ->check(CLI::IsMember({"postgres", "mongo"}));

  auto* reconcile = app.add_subcommand(
      "reconcile", "Check, repair, replay or rebuild the MongoDB read model against PostgreSQL");
  reconcile->add_option("-c,--config", config_path, config_help);
  bool verify = false, repair = false, full = false;
  std::string from_lsn;
  auto* o_verify = reconcile->add_flag(
      "--verify", verify,
      "Print every account and user whose documents differ from PostgreSQL (nothing when "
      "clean); exit 1 on drift");
  auto* o_repair = reconcile->add_flag(
      "--repair", repair,
      "Rewrite the documents that differ from a consistent PostgreSQL snapshot (safe while "
      "walfold runs)");
  int repair_wait = 60;
  reconcile
      ->add_option("--wait", repair_wait,
                   "--repair: longest wait for walfold's checkpoint to pass the snapshot (s)")
      ->capture_default_str();
  auto* o_full = reconcile->add_flag(
      "--full", full,
      "Rebuild the read model from the tables and recreate the slot (walfold must be stopped)");
  auto* o_from = reconcile->add_option(
      "--from-lsn", from_lsn,
      "Empty the queue and replay every change from this LSN through the slot (walfold must be "
      "stopped)");
  bool force = false;
  reconcile
      ->add_flag("--force", force,
                 "--from-lsn: replay from past the saved checkpoint, skipping the commits in "
                 "between for good")
      ->needs(o_from);
  for (auto* a : {o_verify, o_repair, o_full, o_from})
    for (auto* b : {o_verify, o_repair, o_full, o_from})
      if (a != b) a->excludes(b);

  auto* checkpoints = app.add_subcommand(
      "checkpoints", "Show the slot's identity, the saved checkpoint and its history");
  checkpoints->add_option("-c,--config", config_path, config_help);

  auto* check = app.add_subcommand(
      "check-config",
      "Check the configuration and report every problem (FILE:LINE:COLUMN); with --connect also "
      "run the read-only preflight against PostgreSQL, Redis and MongoDB");
  check->add_option("-c,--config", config_path, config_help);
  bool check_connect = false;
  check->add_flag("--connect", check_connect,
                  "Also connect to each server and run the preflight (changes nothing)");

  daemon::QueueCli queue_cli(app, config_path);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : EX_USAGE;
  }
  config_path = resolve_config_path(config_path);
  // What followed "walfold" on the command line, for messages that say how to run it otherwise.
  std::string command_line;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.find_first_of(" \t'\"\\$`") != std::string::npos) {
      std::string q = "'";
      for (char ch : a) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
      a = q + "'";
    }
    command_line += (i > 1 ? " " : "") + a;
  }

  try {
    if (*check) {
      init_logging(log_level.empty() ? "warn" : log_level);
      return daemon::check_config({config_path, check_connect}, std::cout, std::cerr);
    }
    if (*run && !ropts.stop_at.empty() && ropts.stop_at != "current" && !parse_lsn(ropts.stop_at))
      throw UsageError("--stop-at-lsn '" + ropts.stop_at +
                       "' is not an LSN like 16/B374D848 or 'current'");
    if (*reconcile && !from_lsn.empty() && !parse_lsn(from_lsn))
      throw UsageError("--from-lsn '" + from_lsn + "' is not an LSN like 16/B374D848");
    if (*loadgen && !lg_dsn.empty()) {
      init_logging(log_level.empty() ? "info" : log_level);
      lg.pg_dsn = tool_conninfo(lg_dsn, lg_password_file);
    } else if (!lg_password_file.empty()) {
      throw UsageError(
          "--password-file goes with --dsn (with --config, set postgres.password_file)");
    } else {
      Config cfg = load_config(config_path);
      init_logging(log_level.empty() ? cfg.log_level : log_level);
      // Commands that write the state directory, before they touch any server.
      if (*setup || *run || (*reconcile && (full || !from_lsn.empty())))
        checkpoint::check_state_dir_owner(cfg.state_dir, command_line);
      if (*setup) return setup_command(cfg, schema);
      if (*checkpoints) return checkpoints_command(cfg);
      if (*run) {
        ropts.role = role == "reader"   ? daemon::Role::Reader
                     : role == "worker" ? daemon::Role::Worker
                                        : daemon::Role::All;
        return daemon::run(cfg, config_path, ropts);
      }
      if (*status) return observe::status_command(cfg, status_json, status_max_lag, std::cout);
      if (*reconcile && !verify && !repair && !full && from_lsn.empty()) {
        std::cerr << "walfold reconcile: say what to do: --verify, --repair, --full or "
                     "--from-lsn X/Y\n";
        return EX_USAGE;
      }
      if (*reconcile && full) return reconcile_full(cfg);
      if (*reconcile && !from_lsn.empty())
        return reconcile_from_lsn(cfg, config_path, from_lsn, force);
      if (*reconcile && repair) {
        projections::MongoPool pool(cfg.mongodb);
        auto r = reconcile::repair(cfg, pool, std::cout, std::chrono::seconds(repair_wait));
        std::cout.flush();
        spdlog::info(
            "reconcile --repair: {} accounts, {} users and {} transactions compared at {}, {} "
            "rewritten, {} skipped (changed while rewriting: run again), {} unchecked (changed "
            "after the snapshot)",
            r.accounts, r.users, r.transactions, format_lsn(r.snapshot_lsn), r.rewritten, r.skipped,
            r.unchecked);
        return r.skipped == 0 ? 0 : 1;
      }
      if (queue_cli.parsed()) return queue_cli.run(cfg, std::cout);
      if (*reconcile) {
        reconcile::VerifyOptions v{postgres_conninfo(cfg.postgres), cfg.mongodb.uri,
                                   cfg.mongodb.database, cfg.mongodb.username,
                                   cfg.mongodb.username.empty()
                                       ? std::string()
                                       : read_secret_file(cfg.mongodb.password_file)};
        auto r = reconcile::verify(v, std::cout);
        std::cout.flush();
        spdlog::info("reconcile --verify: {} accounts and {} users compared, {} drifted",
                     r.accounts, r.users, r.drifted);
        return r.drifted == 0 ? 0 : 1;
      }
      if (*report) {
        tools::ReportOptions o;
        o.from = from == "postgres" ? tools::ReportSource::Postgres : tools::ReportSource::Mongo;
        o.pg_dsn = postgres_conninfo(cfg.postgres);
        o.mongo_uri = cfg.mongodb.uri;
        o.mongo_database = cfg.mongodb.database;
        if (!cfg.mongodb.username.empty()) {
          o.mongo_username = cfg.mongodb.username;
          o.mongo_password = read_secret_file(cfg.mongodb.password_file);
        }
        std::ios::sync_with_stdio(false);
        long n = tools::write_report(o, std::cout);
        std::cout.flush();
        spdlog::debug("report: {} accounts", n);
        return 0;
      }
      lg.pg_dsn = postgres_conninfo(cfg.postgres);
    }
    lg.progress = !no_progress;
    auto st = tools::run_loadgen(lg);
    spdlog::info(
        "loadgen: {} users, {} accounts, {} deposits, {} withdrawals, {} transfers, {} updates, "
        "{} deletes in {:.1f} s",
        st.users, st.accounts, st.deposits, st.withdrawals, st.transfers, st.updates, st.deletes,
        st.seconds);
    return 0;
  } catch (const std::exception& e) {
    // One line per problem (a configuration may have several), each with the same prefix;
    // under journald each at priority err.
    auto st = exit_status_for(e);
    const std::string prefix = st.message.substr(0, st.message.size() - std::strlen(e.what()));
    std::string_view rest = st.message;
    for (bool first = true; !rest.empty(); first = false) {
      auto nl = rest.find('\n');
      std::string line = (first ? std::string() : prefix) + std::string(rest.substr(0, nl));
      if (line.rfind("walfold: ", 0) == 0) line.erase(0, 9);
      report_fatal(line);
      rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    }
    return st.code;
  }
}
