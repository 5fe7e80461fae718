// `walfold run [--role R] [--workers N] [--stop-at-lsn L]`: the options; the daemon itself is
// daemon/run.cpp.
#include "daemon/command.h"
#include "daemon/run.h"

namespace walfold::daemon {
namespace {

class RunCommand : public Command {
 public:
  RunCommand(CLI::App& sub, Context& ctx) {
    add_config_option(sub, ctx);
    sub.add_option("--role", role_, "reader, worker or all")
        ->check(CLI::IsMember({"all", "reader", "worker"}))
        ->capture_default_str();
    sub.add_option("--workers", opts_.workers, "Worker threads (default: workers.count)");
    sub.add_option(
        "--stop-at-lsn", opts_.stop_at,
        "Exit 0 once every change up to this LSN (or 'current': the WAL end at start) is folded");
  }

  int run(const Context& ctx) override {
    if (!opts_.stop_at.empty() && opts_.stop_at != "current" && !parse_lsn(opts_.stop_at))
      throw UsageError("--stop-at-lsn '" + opts_.stop_at +
                       "' is not an LSN like 16/B374D848 or 'current'");
    const Config cfg = ctx.load_config_to_write_state();
    opts_.role = role_ == "reader" ? Role::Reader : role_ == "worker" ? Role::Worker : Role::All;
    return daemon::run(cfg, ctx.config_path, opts_);
  }

 private:
  RunOptions opts_;
  std::string role_ = "all";
};

}  // namespace

std::unique_ptr<Command> make_run_command(CLI::App& sub, Context& ctx) {
  return std::make_unique<RunCommand>(sub, ctx);
}

}  // namespace walfold::daemon
