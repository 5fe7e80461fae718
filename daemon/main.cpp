// walfold: PostgreSQL logical replication -> Redis jobs -> MongoDB read model.
// Subcommands: setup, run, status, queue, loadgen, report, reconcile. Exit codes follow sysexits.h.
#include <spdlog/spdlog.h>
#include <sysexits.h>
#include <CLI/CLI.hpp>

#include <iostream>

#include "cdc/preflight.h"
#include "common/error.h"
#include "common/log.h"
#include "common/pg.h"
#include "config/config.h"
#include "daemon/queue_cli.h"
#include "daemon/run.h"
#include "queue/job_queue.h"
#include "reconcile/verify.h"
#include "tools/loadgen.h"
#include "tools/report.h"

namespace {

using namespace walfold;

int status_command(const Config& cfg) {
  auto dsn = postgres_dsn_with_password(cfg.postgres);
  auto slot = cdc::read_slot(dsn, cfg.postgres);
  PgConn c(dsn, {}, "status");
  auto current = c.scalar("SELECT pg_current_wal_lsn()").value_or("0/0");
  std::cout << "postgres      " << c.address() << "\n";
  if (slot.exists) {
    auto lag = c.exec_params("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint",
                             {format_lsn(slot.confirmed_flush)});
    std::cout << "slot          " << cfg.postgres.slot << " (wal_status " << slot.wal_status
              << ")\n"
              << "confirmed     " << format_lsn(slot.confirmed_flush) << "\n"
              << "wal end       " << current << "\n"
              << "lag bytes     " << PQgetvalue(lag.get(), 0, 0) << "\n";
  } else {
    std::cout << "slot          " << cfg.postgres.slot << " (missing: run `walfold setup`)\n";
  }
  queue::Redis redis(cfg.redis);
  queue::JobQueue q(redis, queue::queue_prefix(cfg.redis.prefix, cfg.postgres.slot));
  auto counts = q.counts();
  auto oldest = q.oldest_pending_commit();
  std::cout << "redis         " << redis.address() << "\n"
            << "pending jobs  " << counts.pending_jobs << "\n"
            << "ready keys    " << counts.ready_keys << "\n"
            << "active keys   " << counts.active_keys << "\n"
            << "delayed keys  " << counts.delayed_keys << " (retrying after an error)\n"
            << "dead keys     " << counts.dead_keys
            << (counts.dead_keys ? " (blocked accounts: walfold queue dead list)" : "") << "\n"
            << "paused        " << (counts.paused ? "yes (walfold queue resume)" : "no") << "\n"
            << "oldest commit " << (oldest ? format_lsn(*oldest) : "-") << "\n"
            << "enqueued thru " << format_lsn(q.enqueued_end_lsn()) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "walfold: sync a bank's PostgreSQL write model into a MongoDB read model through "
      "logical replication and a Redis job queue"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("walfold ") + WALFOLD_VERSION);
  std::string config_path = "/etc/walfold/walfold.yaml";
  std::string log_level;
  app.add_option("--log-level", log_level, "Override log_level from the configuration");

  auto* setup = app.add_subcommand(
      "setup",
      "Create the publication and the replication slot (and with --schema the bank tables)");
  setup->add_option("-c,--config", config_path, "Configuration file")->capture_default_str();
  bool schema = false;
  setup->add_flag("--schema", schema, "Also create the bank tables if missing");

  auto* run = app.add_subcommand("run", "Stream changes into Redis and fold them into MongoDB");
  run->add_option("-c,--config", config_path, "Configuration file")->capture_default_str();
  daemon::RunOptions ropts;
  std::string role = "all";
  run->add_option("--role", role, "reader, worker or all")
      ->check(CLI::IsMember({"all", "reader", "worker"}))
      ->capture_default_str();
  run->add_option("--workers", ropts.workers, "Worker threads (default: workers.count)");
  run->add_option(
      "--stop-at-lsn", ropts.stop_at,
      "Exit 0 once every change up to this LSN (or 'current': the WAL end at start) is folded");

  auto* status = app.add_subcommand("status", "Show the slot position, lag and queue counts");
  status->add_option("-c,--config", config_path, "Configuration file")->capture_default_str();

  auto* loadgen = app.add_subcommand(
      "loadgen", "Write bank activity (users, accounts, transactions) to PostgreSQL");
  loadgen->add_option("-c,--config", config_path, "Configuration file (for postgres.dsn)")
      ->capture_default_str();
  tools::LoadgenOptions lg;
  std::string lg_dsn;
  loadgen->add_option("--dsn", lg_dsn,
                      "PostgreSQL connection string (instead of the configuration's)");
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
  report->add_option("-c,--config", config_path, "Configuration file")->capture_default_str();
  std::string from;
  report->add_option("--from", from, "postgres or mongo")
      ->required()
      ->check(CLI::IsMember({"postgres", "mongo"}));

  auto* reconcile = app.add_subcommand(
      "reconcile", "Compare the MongoDB read model with PostgreSQL (more modes: issue #3)");
  reconcile->add_option("-c,--config", config_path, "Configuration file")->capture_default_str();
  bool verify = false;
  reconcile
      ->add_flag("--verify", verify,
                 "Print every account and user whose documents differ from PostgreSQL "
                 "(nothing when clean); exit 1 on drift")
      ->required();

  daemon::QueueCli queue_cli(app, config_path);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : EX_USAGE;
  }

  try {
    if (*loadgen && !lg_dsn.empty()) {
      init_logging(log_level.empty() ? "info" : log_level);
      lg.pg_dsn = lg_dsn;
    } else {
      Config cfg = load_config(config_path);
      init_logging(log_level.empty() ? cfg.log_level : log_level);
      if (*setup) {
        cdc::run_setup(cfg, {.schema = schema});
        return 0;
      }
      if (*run) {
        ropts.role = role == "reader"   ? daemon::Role::Reader
                     : role == "worker" ? daemon::Role::Worker
                                        : daemon::Role::All;
        return daemon::run(cfg, config_path, ropts);
      }
      if (*status) return status_command(cfg);
      if (queue_cli.parsed()) return queue_cli.run(cfg, std::cout);
      if (*reconcile) {
        reconcile::VerifyOptions v{postgres_dsn_with_password(cfg.postgres), cfg.mongodb.uri,
                                   cfg.mongodb.database};
        auto r = reconcile::verify(v, std::cout);
        std::cout.flush();
        spdlog::info("reconcile --verify: {} accounts and {} users compared, {} drifted",
                     r.accounts, r.users, r.drifted);
        return r.drifted == 0 ? 0 : 1;
      }
      if (*report) {
        tools::ReportOptions o;
        o.from = from == "postgres" ? tools::ReportSource::Postgres : tools::ReportSource::Mongo;
        o.pg_dsn = postgres_dsn_with_password(cfg.postgres);
        o.mongo_uri = cfg.mongodb.uri;
        o.mongo_database = cfg.mongodb.database;
        std::ios::sync_with_stdio(false);
        long n = tools::write_report(o, std::cout);
        std::cout.flush();
        spdlog::debug("report: {} accounts", n);
        return 0;
      }
      lg.pg_dsn = postgres_dsn_with_password(cfg.postgres);
    }
    lg.progress = !no_progress;
    auto st = tools::run_loadgen(lg);
    spdlog::info(
        "loadgen: {} users, {} accounts, {} deposits, {} withdrawals, {} transfers, {} updates, "
        "{} deletes in {:.1f} s",
        st.users, st.accounts, st.deposits, st.withdrawals, st.transfers, st.updates, st.deletes,
        st.seconds);
    return 0;
  } catch (const ConfigError& e) {
    std::cerr << "walfold: configuration error: " << e.what() << "\n";
    return EX_CONFIG;
  } catch (const UnavailableError& e) {
    std::cerr << "walfold: " << e.what() << "\n";
    return EX_UNAVAILABLE;
  } catch (const DataError& e) {
    std::cerr << "walfold: data error: " << e.what() << "\n";
    return EX_DATAERR;
  } catch (const std::exception& e) {
    std::cerr << "walfold: " << e.what() << "\n";
    return EX_SOFTWARE;
  }
}
