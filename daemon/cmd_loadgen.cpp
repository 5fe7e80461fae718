// `walfold loadgen`: bank activity (users, accounts, transactions) written to PostgreSQL
// (projections/bank/loadgen.h), to the configured database or to --dsn.
#include <spdlog/spdlog.h>

#include "daemon/command.h"
#include "projections/bank/loadgen.h"

namespace walfold::daemon {
namespace {

class LoadgenCommand : public Command {
 public:
  LoadgenCommand(CLI::App& sub, Context& ctx) {
    add_config_option(sub, ctx);
    sub.add_option("--dsn", dsn_,
                   "PostgreSQL connection string, without a password (instead of the "
                   "configuration's)");
    sub.add_option("--password-file", password_file_,
                   "With --dsn: file holding the password (else PGPASSWORD, PGPASSFILE or "
                   "~/.pgpass)");
    sub.add_option("--users", lg_.users, "Users to create first")->capture_default_str();
    sub.add_option("--transactions", lg_.transactions, "Bank operations to run")
        ->capture_default_str();
    sub.add_option("--rate", lg_.rate, "Operations per second (0: as fast as possible)")
        ->capture_default_str();
    sub.add_option("--transfer-share", lg_.transfer_share)->capture_default_str();
    sub.add_option("--update-share", lg_.update_share)->capture_default_str();
    sub.add_option("--delete-share", lg_.delete_share)->capture_default_str();
    sub.add_option("--currencies", lg_.currencies)->delimiter(',')->capture_default_str();
    sub.add_option("--seed", lg_.seed, "Random seed (0: random)")->capture_default_str();
    sub.add_option("--ops-per-commit", lg_.ops_per_commit, "Operations per PostgreSQL transaction")
        ->capture_default_str();
    sub.add_flag("--no-progress", no_progress_, "No progress display");
    sub.add_flag("--reuse", lg_.reuse_existing, "Use existing users and accounts");
  }

  int run(const Context& ctx) override {
    if (!dsn_.empty()) {
      ctx.init_logging_or("info");
      lg_.pg_dsn = tool_conninfo(dsn_, password_file_);
    } else if (!password_file_.empty()) {
      throw UsageError(
          "--password-file goes with --dsn (with --config, set postgres.password_file)");
    } else {
      lg_.pg_dsn = postgres_conninfo(ctx.load_config().postgres);
    }
    lg_.progress = !no_progress_;
    auto st = projections::bank::run_loadgen(lg_);
    spdlog::info(
        "loadgen: {} users, {} accounts, {} deposits, {} withdrawals, {} transfers, {} updates, "
        "{} deletes in {:.1f} s",
        st.users, st.accounts, st.deposits, st.withdrawals, st.transfers, st.updates, st.deletes,
        st.seconds);
    return kExitOk;
  }

 private:
  projections::bank::LoadgenOptions lg_;
  std::string dsn_, password_file_;
  bool no_progress_ = false;
};

}  // namespace

std::unique_ptr<Command> make_loadgen_command(CLI::App& sub, Context& ctx) {
  return std::make_unique<LoadgenCommand>(sub, ctx);
}

}  // namespace walfold::daemon
