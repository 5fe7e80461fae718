// walfold's error types. Every message names what failed and where (file/line, server address,
// LSN, table, column) so an operator can act on it without reading the source.
#pragma once

#include <sysexits.h>

#include <exception>
#include <stdexcept>
#include <string>

namespace walfold {

// Bad configuration: exit code 78 (EX_CONFIG).
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A bad value on the command line (not an LSN, an LSN beyond the WAL's end): exit code 64
// (EX_USAGE).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// walfold's own files (the state directory) could not be created, read or written: not a
// configuration error. EX_CANTCREAT (73) when a file or directory cannot be created or opened
// for writing (EACCES, EROFS, a missing parent), EX_IOERR (74) when reading or writing an open
// file fails (ENOSPC, EIO, EFBIG) or a file that exists cannot be read.
struct FileError : std::runtime_error {
  enum Kind { CannotCreate, Io };
  FileError(Kind k, const std::string& what) : std::runtime_error(what), kind(k) {}
  Kind kind;
};

// Refused because of who runs the command (e.g. root on a state directory another user owns):
// exit code 77 (EX_NOPERM).
struct PermissionError : std::runtime_error {
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

// The one place where an error becomes an exit code (sysexits) and the line printed for it.
struct ExitStatus {
  int code;
  std::string message;  // "walfold: data error: ..."
};
ExitStatus exit_status_for(const std::exception& e);

}  // namespace walfold
