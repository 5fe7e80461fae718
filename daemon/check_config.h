// `walfold check-config [--config F] [--connect]`: like `nginx -t`. Reports every problem of the
// configuration in one run (each as FILE:LINE:COLUMN: message) and, with --connect, runs the
// read-only preflight against PostgreSQL, Redis and MongoDB. Changes nothing anywhere.
#pragma once

#include <iosfwd>
#include <string>

namespace walfold::daemon {

struct CheckConfigOptions {
  std::string path;  // already resolved (--config, WALFOLD_CONFIG, /etc/walfold/walfold.yaml)
  bool connect = false;
};

// Prints the verdict to `out` and the problems to `err`. Returns 0 when everything is fine, 78
// (EX_CONFIG) when the configuration has problems (the servers are then not contacted), else the
// exit code of the first server check that failed (69 unreachable, ...; see exit_status_for).
int check_config(const CheckConfigOptions& options, std::ostream& out, std::ostream& err);

}  // namespace walfold::daemon
