// `walfold checkpoints`: the slot's identity, the saved checkpoint and its history, from MongoDB
// or (when MongoDB cannot be reached or holds none) from the state directory.
#include <iostream>
#include <optional>

#include "checkpoint/store.h"
#include "daemon/command.h"
#include "projections/mongo.h"

namespace walfold::daemon {
namespace {

void print_checkpoint(const Config& cfg, const std::string& source,
                      const checkpoint::Checkpoint& c) {
  std::cout << "source        " << source << "\n"
            << "slot          " << cfg.postgres.slot << " (system " << c.identity.system_id
            << ", created at " << format_lsn(c.identity.created_lsn) << " on "
            << checkpoint::format_time_ms(c.identity.created_at_ms) << ")\n"
            << "checkpoint    " << format_lsn(c.lsn) << " (saved "
            << checkpoint::format_time_ms(c.saved_at_ms) << ")"
            << (c.loading ? "  LOADING: an initial load has not finished" : "") << "\n";
  if (c.rebuilt_lsn) std::cout << "rebuilt at    " << format_lsn(c.rebuilt_lsn) << "\n";
  std::cout << "history (oldest first):\n";
  for (const auto& h : c.history)
    std::cout << "  " << (h.at_ms ? checkpoint::format_time_ms(h.at_ms) + "  " : std::string())
              << format_lsn(h.lsn) << "  " << h.event << "\n";
}

class CheckpointsCommand : public Command {
 public:
  CheckpointsCommand(CLI::App& sub, Context& ctx) { add_config_option(sub, ctx); }

  int run(const Context& ctx) override {
    const Config cfg = ctx.load_config();
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
      return kExitAttention;
    }
    print_checkpoint(cfg, source, *c);
    return kExitOk;
  }
};

}  // namespace

std::unique_ptr<Command> make_checkpoints_command(CLI::App& sub, Context& ctx) {
  return std::make_unique<CheckpointsCommand>(sub, ctx);
}

}  // namespace walfold::daemon
