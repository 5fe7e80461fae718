// `walfold report --from postgres|mongo`: the read model from either side, in one format (the
// projection's canonical form, tools/report.h), so the two can be compared with diff.
#include <spdlog/spdlog.h>

#include <iostream>

#include "daemon/command.h"
#include "projections/registry.h"
#include "reconcile/snapshot.h"
#include "tools/report.h"

namespace walfold::daemon {
namespace {

class ReportCommand : public Command {
 public:
  ReportCommand(CLI::App& sub, Context& ctx) {
    add_config_option(sub, ctx);
    sub.add_option("--from", from_, "postgres or mongo")
        ->required()
        ->check(CLI::IsMember({"postgres", "mongo"}));
  }

  int run(const Context& ctx) override {
    const Config cfg = ctx.load_config();
    tools::ReportOptions o = tools::report_options(
        cfg, from_ == "postgres" ? tools::ReportSource::Postgres : tools::ReportSource::Mongo);
    std::ios::sync_with_stdio(false);
    auto n = tools::write_report(o, *projections::projection_for(cfg), std::cout);
    spdlog::debug("report: {}", reconcile::describe(n));
    return kExitOk;
  }

 private:
  std::string from_;
};

}  // namespace

std::unique_ptr<Command> make_report_command(CLI::App& sub, Context& ctx) {
  return std::make_unique<ReportCommand>(sub, ctx);
}

}  // namespace walfold::daemon
