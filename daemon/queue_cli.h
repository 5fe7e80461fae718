// `walfold queue`: look at and operate the job queue in Redis (counts by priority and state,
// dead letters, pause/resume). See packaging/walfold.1 and README.md.
#pragma once

#include <CLI/CLI.hpp>

#include <iosfwd>
#include <string>

#include "config/config.h"

namespace walfold::daemon {

class QueueCli {
 public:
  // Adds `queue` and its subcommands to `app`; `-c/--config` writes into `config_path`.
  QueueCli(CLI::App& app, std::string& config_path);
  bool parsed() const { return static_cast<bool>(*queue_); }
  // Runs the parsed subcommand; returns the exit code (0, 1 when a named key is not dead,
  // 64 usage).
  int run(const Config& cfg, std::ostream& out);

 private:
  CLI::App* queue_;
  CLI::App *stats_, *pause_, *resume_, *dead_, *list_, *inspect_, *retry_, *purge_;
  std::string key_;
  bool all_ = false, yes_ = false, json_ = false;
  int jobs_ = 20;
};

}  // namespace walfold::daemon
