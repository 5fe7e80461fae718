// The subcommands of the walfold binary (private to daemon/): each lives in its own file
// daemon/cmd_<name>.cpp and registers its options on the CLI11 subcommand that main.cpp's
// dispatch table creates for it; main.cpp then runs the one that was parsed.
//
// Exit codes: errors are thrown and become exit codes in exactly one place, exit_status_for
// (common/error.h). A command that reports a problem itself and returns asks that same map for
// the code (exit_code_of<UsageError>()). Apart from errors a command ends with kExitOk, or with
// kExitAttention when it ran fine but what it looked at needs an operator (drift, a key that is
// not dead, no checkpoint).
#pragma once

#include <CLI/CLI.hpp>

#include <cstdlib>
#include <memory>
#include <string>

#include "common/error.h"
#include "common/pg.h"
#include "config/config.h"

namespace walfold::daemon {

inline constexpr int kExitOk = EXIT_SUCCESS;
inline constexpr int kExitAttention = 1;

// The exit code of an error of kind E (one whose constructor takes a message).
template <class E>
int exit_code_of() {
  return exit_status_for(E("")).code;
}

// What every command shares: the options parsed in one place (main.cpp) and how a command reads
// the configuration.
struct Context {
  std::string config_path;   // --config as given; resolved (resolve_config_path) after parsing
  std::string log_level;     // --log-level: overrides the configuration's log_level when set
  std::string command_line;  // what followed "walfold", shell-quoted, for messages

  // Loads the configuration and starts logging at its level (or --log-level).
  Config load_config() const;
  // load_config(), then refuses a state directory the user may not write into (commands that
  // write it, before they touch any server).
  Config load_config_to_write_state() const;
  // Starts logging at --log-level, else at `fallback` (commands that read no configuration).
  void init_logging_or(const char* fallback) const;
};

// Adds "-c,--config" (with the help every command shows) writing into ctx.config_path.
CLI::Option* add_config_option(CLI::App& sub, Context& ctx);

class Command {
 public:
  virtual ~Command() = default;
  // Runs the parsed command; returns the process exit code, or throws (see exit_status_for).
  virtual int run(const Context& ctx) = 0;
};

// A command's factory: adds the command's options to `sub` (option values are stored in the
// returned object) and returns it.
using CommandFactory = std::unique_ptr<Command> (*)(CLI::App& sub, Context& ctx);

std::unique_ptr<Command> make_setup_command(CLI::App& sub, Context& ctx);
std::unique_ptr<Command> make_run_command(CLI::App& sub, Context& ctx);
std::unique_ptr<Command> make_status_command(CLI::App& sub, Context& ctx);
std::unique_ptr<Command> make_loadgen_command(CLI::App& sub, Context& ctx);
std::unique_ptr<Command> make_report_command(CLI::App& sub, Context& ctx);
std::unique_ptr<Command> make_reconcile_command(CLI::App& sub, Context& ctx);
std::unique_ptr<Command> make_checkpoints_command(CLI::App& sub, Context& ctx);
std::unique_ptr<Command> make_check_config_command(CLI::App& sub, Context& ctx);
std::unique_ptr<Command> make_queue_command(CLI::App& sub, Context& ctx);

// A tool's --dsn: never with a password in it (argv is visible to every user through ps and
// /proc); the password comes from --password-file or libpq's PGPASSWORD / PGPASSFILE / ~/.pgpass.
PgConnInfo tool_conninfo(const std::string& dsn, const std::string& password_file);

// The secret of mongodb.password_file when mongodb.username is set, else "".
std::string mongodb_password(const MongoConfig& m);

}  // namespace walfold::daemon
