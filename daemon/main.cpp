// walfold: PostgreSQL logical replication -> Redis jobs -> MongoDB read model.
// main() is a dispatch table: one row per subcommand (its name, its one-line help, the factory in
// daemon/cmd_<name>.cpp that adds its options), the options every command shares, and the one
// place where an error becomes an exit code (exit_status_for, common/error.h; sysexits.h).
#include <CLI/CLI.hpp>

#include <csignal>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/log.h"
#include "config/config.h"
#include "daemon/command.h"
#include "projections/mongo.h"

namespace {

using namespace walfold;
using namespace walfold::daemon;

struct CommandEntry {
  const char* name;
  const char* help;
  CommandFactory make;
};

// In the order `walfold --help` lists them.
const CommandEntry kCommands[] = {
    {"setup",
     "Create the publication and the replication slot (and with --schema the projection's tables)",
     make_setup_command},
    {"run", "Stream changes into Redis and fold them into MongoDB", make_run_command},
    {"status", "Show the slot, lag, queue, processes and checkpoint; exit code for monitoring",
     make_status_command},
    {"loadgen", "Write activity to the source tables of the read model (see walfold(1))",
     make_loadgen_command},
    {"report", "Print the read model from either side, in one format", make_report_command},
    {"reconcile", "Check, repair, replay or rebuild the MongoDB read model against PostgreSQL",
     make_reconcile_command},
    {"checkpoints", "Show the slot's identity, the saved checkpoint and its history",
     make_checkpoints_command},
    {"check-config",
     "Check the configuration and report every problem (FILE:LINE:COLUMN); with --connect also "
     "run the read-only preflight against PostgreSQL, Redis and MongoDB",
     make_check_config_command},
    {"queue", "Job queue in Redis: counts, dead letters, pause/resume (see walfold(1))",
     make_queue_command},
};

// What followed "walfold" on the command line, shell-quoted where needed, for messages that say
// how to run it otherwise.
std::string quoted_command_line(int argc, char** argv) {
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
  return command_line;
}

// One line per problem (a configuration may have several), each with the same prefix; under
// journald each at priority err. Returns the exit code.
int report_error(const std::exception& e) {
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

}  // namespace

int main(int argc, char** argv) {
  // A write to a server that closed the connection must fail with EPIPE, not kill walfold:
  // hiredis writes with write(2), so a Redis restart under load raised SIGPIPE (exit -13).
  // libpq and libmongoc guard their own sockets.
  std::signal(SIGPIPE, SIG_IGN);
  projections::route_mongoc_logs();  // before anything initialises libmongoc
  CLI::App app{
      "walfold: sync a PostgreSQL write model into a MongoDB read model through "
      "logical replication and a Redis job queue"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("walfold ") + WALFOLD_VERSION);
  Context ctx;
  app.add_option("--log-level", ctx.log_level, "Override log_level from the configuration");
  std::vector<std::pair<CLI::App*, std::unique_ptr<Command>>> commands;
  for (const auto& c : kCommands) {
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    commands.emplace_back(sub, c.make(*sub, ctx));
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : exit_code_of<UsageError>();
  }
  ctx.config_path = resolve_config_path(ctx.config_path);
  ctx.command_line = quoted_command_line(argc, argv);
  try {
    for (auto& [sub, command] : commands)
      if (*sub) return command->run(ctx);
    throw InternalError("no subcommand was parsed");  // require_subcommand(1) prevents it
  } catch (const std::exception& e) {
    return report_error(e);
  }
}
