// `walfold setup [--schema]`: the PostgreSQL side (publication, with --schema the projection's
// tables), then the replication slot with its initial snapshot loaded into MongoDB.
#include <spdlog/spdlog.h>

#include "cdc/preflight.h"
#include "cdc/replication_stream.h"
#include "checkpoint/store.h"
#include "daemon/command.h"
#include "pipeline/rebuild.h"
#include "pipeline/source_adapter.h"
#include "projections/mongo.h"
#include "projections/registry.h"

namespace walfold::daemon {
namespace {

class SetupCommand : public Command {
 public:
  SetupCommand(CLI::App& sub, Context& ctx) {
    add_config_option(sub, ctx);
    sub.add_flag("--schema", schema_, "Also create the projection's tables if missing");
  }

  int run(const Context& ctx) override {
    const Config cfg = ctx.load_config_to_write_state();
    pipeline::run_setup(cfg, *projections::projection_for(cfg), {.schema = schema_});
    const auto dsn = postgres_conninfo(cfg.postgres);
    auto slot = cdc::read_slot(dsn, cfg.postgres.slot);
    if (slot.exists) {
      spdlog::info("setup: replication slot '{}' exists (confirmed flush {})", cfg.postgres.slot,
                   format_lsn(slot.confirmed_flush));
      return kExitOk;
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
    pipeline::initial_load(cfg, *projections::projection_for(cfg), pool, store,
                           "initial snapshot (setup)");
    return kExitOk;
  }

 private:
  bool schema_ = false;
};

}  // namespace

std::unique_ptr<Command> make_setup_command(CLI::App& sub, Context& ctx) {
  return std::make_unique<SetupCommand>(sub, ctx);
}

}  // namespace walfold::daemon
