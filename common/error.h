// walfold's error types. Every message names what failed and where (file/line, server address,
// LSN, table, column) so an operator can act on it without reading the source.
#pragma once

#include <stdexcept>
#include <string>

namespace walfold {

// A command-line value that cannot be right (an LSN beyond the WAL's end): exit 64 (EX_USAGE).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Bad configuration or command line: exit code 78 (EX_CONFIG).
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A server (PostgreSQL, Redis, MongoDB) could not be reached or refused us: exit 69
// (EX_UNAVAILABLE). Retried with backoff by long-running loops.
struct UnavailableError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The data violates what walfold can fold exactly (NaN amount, malformed protocol message,
// unknown column type for money). Never retried blindly: exit 65 (EX_DATAERR).
struct DataError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// walfold broke one of its own invariants (e.g. the flush rule in cdc/flush_ledger.h): it stops
// rather than go on: exit 70 (EX_SOFTWARE). Never retried.
struct InternalError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace walfold
