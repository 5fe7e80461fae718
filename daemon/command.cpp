// What the subcommands share (daemon/command.h): the --config option, reading the configuration,
// starting the log, a tool's --dsn.
#include "daemon/command.h"

#include "checkpoint/store.h"
#include "common/log.h"
#include "projections/registry.h"

namespace walfold::daemon {

Config Context::load_config() const {
  Config cfg = projections::load_config(config_path);
  init_logging(log_level.empty() ? cfg.log_level : log_level);
  return cfg;
}

Config Context::load_config_to_write_state() const {
  Config cfg = load_config();
  checkpoint::check_state_dir_owner(cfg.state_dir, command_line);
  return cfg;
}

void Context::init_logging_or(const char* fallback) const {
  init_logging(log_level.empty() ? fallback : log_level);
}

CLI::Option* add_config_option(CLI::App& sub, Context& ctx) {
  // --config, else $WALFOLD_CONFIG, else /etc/walfold/walfold.yaml (resolve_config_path).
  return sub.add_option(
      "-c,--config", ctx.config_path,
      "Configuration file (default: $WALFOLD_CONFIG, else /etc/walfold/walfold.yaml)");
}

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

std::string mongodb_password(const MongoConfig& m) {
  return m.username.empty() ? std::string() : read_secret_file(m.password_file);
}

}  // namespace walfold::daemon
