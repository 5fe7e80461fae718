// walfold's error types. Every message names what failed and where (file/line, server address,
// LSN, table, column) so an operator can act on it without reading the source.
#pragma once

#include <sysexits.h>

#include <exception>
#include <stdexcept>
#include <string>

namespace walfold {

// A command-line value that cannot be right (an LSN beyond the WAL's end, a password given as an
// argument): exit 64 (EX_USAGE).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Bad configuration: exit code 78 (EX_CONFIG).
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A server (PostgreSQL, Redis, MongoDB) could not be reached or refused us: exit 69
// (EX_UNAVAILABLE). Retried with backoff by long-running loops.
struct UnavailableError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A server refused walfold's credentials (wrong or missing password, no permission) or its TLS
// certificate failed verification. Retrying cannot help: exit 77 (EX_NOPERM), never retried.
// Messages name the server and address, never the secret.
struct AuthError : std::runtime_error {
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

// The one mapping of errors to exit codes (sysexits.h) and to the word put before the message;
// anything else (InternalError included) is internal (70).
struct ExitStatus {
  int code;
  const char* label;  // "configuration error: ", "" ...
};
inline ExitStatus exit_status(const std::exception& e) noexcept {
  if (dynamic_cast<const ConfigError*>(&e)) return {EX_CONFIG, "configuration error: "};
  if (dynamic_cast<const UsageError*>(&e)) return {EX_USAGE, ""};
  if (dynamic_cast<const AuthError*>(&e)) return {EX_NOPERM, "permission denied: "};
  if (dynamic_cast<const UnavailableError*>(&e)) return {EX_UNAVAILABLE, ""};
  if (dynamic_cast<const DataError*>(&e)) return {EX_DATAERR, "data error: "};
  return {EX_SOFTWARE, ""};
}

}  // namespace walfold
