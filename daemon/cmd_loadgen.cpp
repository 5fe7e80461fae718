// `walfold loadgen`: activity written to the source tables of the configured projection by its
// load generator (projections/projection.h: LoadGenerator), to the configured database or to
// --dsn, into the tables the `tables:` mapping names.
#include <spdlog/spdlog.h>

#include "common/error.h"
#include "daemon/command.h"
#include "projections/registry.h"
#include "tools/tables.h"

namespace walfold::daemon {
namespace {

// A configuration as `walfold loadgen --dsn` sees it (it reads no file): the default projection
// with its default `tables:` mapping.
Config default_config() {
  Config cfg;
  for (const ProjectionConfigSpec* spec : projections::config_specs())
    if (spec->name == cfg.projection)
      for (const TableConfig& t : spec->default_tables) cfg.tables[t.schema + "." + t.name] = t;
  return cfg;
}

class LoadgenCommand : public Command {
 public:
  LoadgenCommand(CLI::App& sub, Context& ctx) : sub_(sub) {
    add_config_option(sub, ctx);
    sub.add_option("--dsn", dsn_,
                   "PostgreSQL connection string, without a password (instead of the "
                   "configuration's)");
    sub.add_option("--password-file", password_file_,
                   "With --dsn: file holding the password (else PGPASSWORD, PGPASSFILE or "
                   "~/.pgpass)");
    sub.add_flag("--no-progress", no_progress_, "No progress display");
    // The generator's own options: those of the default projection's, which --help lists. A
    // configuration selecting another projection has its generator's options parsed at run().
    const auto default_projection = projections::projection_for(Config{});
    default_projection_ = std::string(default_projection->name());
    generator_ = default_projection->load_generator();
    if (generator_) generator_->add_options(sub);
    sub.allow_extras();
  }

  int run(const Context& ctx) override {
    Config cfg;
    PgConnInfo pg;
    if (!dsn_.empty()) {
      ctx.init_logging_or("info");
      pg = tool_conninfo(dsn_, password_file_);
      cfg = default_config();
    } else if (!password_file_.empty()) {
      throw UsageError(
          "--password-file goes with --dsn (with --config, set postgres.password_file)");
    } else {
      cfg = ctx.load_config();
      pg = postgres_conninfo(cfg.postgres);
    }
    const auto projection = projections::projection_for(cfg);
    std::unique_ptr<projections::LoadGenerator> configured;
    if (projection->name() != default_projection_) {
      configured = projection->load_generator();
      if (!configured) {
        throw ConfigError("projection '" + std::string(projection->name()) +
                          "' has no load generator: walfold loadgen cannot write its tables");
      }
      CLI::App own("walfold loadgen (projection " + std::string(projection->name()) + ")");
      configured->add_options(own);
      try {
        own.parse(sub_.remaining_for_passthrough());
      } catch (const CLI::ParseError& e) {
        throw UsageError("loadgen: " + std::string(e.what()));
      }
    } else if (!generator_) {
      throw ConfigError("projection '" + default_projection_ +
                        "' has no load generator: walfold loadgen cannot write its tables");
    } else if (!sub_.remaining().empty()) {
      throw UsageError("loadgen: unknown option " + sub_.remaining().front() +
                       " (walfold loadgen --help)");
    }
    projections::LoadGenerator& generator = configured ? *configured : *generator_;
    projections::LoadTarget target;
    target.pg = pg;
    target.tables = [mapping = tools::mapped_tables(cfg)](const PgConn& conn) {
      return std::make_unique<tools::ConfigTables>(mapping, conn);
    };
    target.progress = !no_progress_;
    spdlog::info("loadgen: {}", generator.run(target));
    return kExitOk;
  }

 private:
  CLI::App& sub_;
  std::string dsn_, password_file_;
  bool no_progress_ = false;
  std::string default_projection_;
  std::unique_ptr<projections::LoadGenerator> generator_;
};

}  // namespace

std::unique_ptr<Command> make_loadgen_command(CLI::App& sub, Context& ctx) {
  return std::make_unique<LoadgenCommand>(sub, ctx);
}

}  // namespace walfold::daemon
