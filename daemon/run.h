// `walfold run`: the process shell around the reader and the workers.
#pragma once

#include <string>

#include "common/lsn.h"

#include "config/config.h"

namespace walfold::daemon {

enum class Role { All, Reader, Worker };

struct RunOptions {
  Role role = Role::All;
  int workers = -1;     // -1: workers.count from the config
  std::string stop_at;  // "" | "X/Y" | "current": exit once caught up to it and drained
  Lsn start_at = 0;     // stream from this LSN instead of the slot's confirmed one
};

// Returns the process exit code.
int run(const Config& cfg, const std::string& config_path, const RunOptions& opts);

}  // namespace walfold::daemon
