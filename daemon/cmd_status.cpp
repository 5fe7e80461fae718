// `walfold status [--json] [--max-lag L]`: the slot, lag, queue, processes and checkpoint, with
// an exit code for monitoring (observe/status.h).
#include <iostream>

#include "daemon/command.h"
#include "observe/status.h"

namespace walfold::daemon {
namespace {

class StatusCommand : public Command {
 public:
  StatusCommand(CLI::App& sub, Context& ctx) {
    add_config_option(sub, ctx);
    sub.add_flag("--json", json_, "One JSON document instead of text");
    sub.add_option("--max-lag", max_lag_,
                   "Exit 1 when the lag is over this many bytes (64MiB) or seconds (30s)");
  }

  int run(const Context& ctx) override {
    const Config cfg = ctx.load_config();
    return observe::status_command(cfg, json_, max_lag_, std::cout);
  }

 private:
  bool json_ = false;
  std::string max_lag_;
};

}  // namespace

std::unique_ptr<Command> make_status_command(CLI::App& sub, Context& ctx) {
  return std::make_unique<StatusCommand>(sub, ctx);
}

}  // namespace walfold::daemon
