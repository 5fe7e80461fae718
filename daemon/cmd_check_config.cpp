// `walfold check-config [--connect]`: the options; the checks are in daemon/check_config.cpp.
#include <iostream>

#include "daemon/check_config.h"
#include "daemon/command.h"

namespace walfold::daemon {
namespace {

class CheckConfigCommand : public Command {
 public:
  CheckConfigCommand(CLI::App& sub, Context& ctx) {
    add_config_option(sub, ctx);
    sub.add_flag("--connect", connect_,
                 "Also connect to each server and run the preflight (changes nothing)");
  }

  int run(const Context& ctx) override {
    // The configuration is what is checked: logging cannot wait for its log_level.
    ctx.init_logging_or("warn");
    return check_config({ctx.config_path, connect_}, std::cout, std::cerr);
  }

 private:
  bool connect_ = false;
};

}  // namespace

std::unique_ptr<Command> make_check_config_command(CLI::App& sub, Context& ctx) {
  return std::make_unique<CheckConfigCommand>(sub, ctx);
}

}  // namespace walfold::daemon
