// walfold's error types. Every message names what failed and where (file/line, server address,
// LSN, table, column) so an operator can act on it without reading the source.
#pragma once

#include <sysexits.h>

#include <exception>
#include <stdexcept>
#include <string>

namespace walfold {

// Every error walfold raises is one of these kinds. The table in common/error.cpp (error_class)
// says, once, what each kind means for a loop (its retry class) and for the process (its exit
// code, sysexits, and the prefix of the line printed for it); nothing else maps errors.
enum class ErrorKind {
  Usage,         // 64 a bad value on the command line
  Data,          // 65 data walfold cannot fold exactly, a gap: never retried blindly
  Unavailable,   // 69 a server cannot be reached (or is loading, shutting down, out of memory)
  Transient,     // 69 a server reported a failure that passes (write conflict, election, cancel)
  Internal,      // 70 walfold broke one of its own invariants (and errors of no known kind)
  CannotCreate,  // 73 a file or directory of walfold's cannot be created
  Io,            // 74 reading or writing walfold's own open file failed
  Permission,    // 77 refused because of who runs the command
  Auth,          // 77 a server refused walfold's credentials or a TLS certificate failed
  Config,        // 78 bad configuration
};

enum class RetryClass {
  Never,      // permanent: stop (the exit code tells systemd not to restart forever)
  Backoff,    // wait out a backoff and try the same thing again, on the same connection
  Reconnect,  // drop the connection, back off, connect again
};

struct ErrorClass {
  ErrorKind kind;
  const char* name;    // "unavailable", "data error", ...
  int exit_code;       // sysexits
  RetryClass retry;    // what a long-running loop does with it
  const char* prefix;  // of the printed line: "walfold: data error: "
};

// The base of walfold's errors: a message (what failed and where) and a kind.
class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
  ErrorKind error_kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

// The row of the table for an error: its kind's row for walfold's errors, Internal's for any
// other exception (a bug, or a library's error no room has classified).
const ErrorClass& error_class(const std::exception& e);
const ErrorClass& error_class(ErrorKind kind);

// Bad configuration: exit code 78 (EX_CONFIG).
struct ConfigError : Error {
  explicit ConfigError(const std::string& what) : Error(ErrorKind::Config, what) {}
};

// A bad value on the command line (not an LSN, an LSN beyond the WAL's end): exit code 64
// (EX_USAGE).
struct UsageError : Error {
  explicit UsageError(const std::string& what) : Error(ErrorKind::Usage, what) {}
};

// walfold's own files (the state directory) could not be created, read or written: not a
// configuration error. EX_CANTCREAT (73) when a file or directory cannot be created or opened
// for writing (EACCES, EROFS, a missing parent), EX_IOERR (74) when reading or writing an open
// file fails (ENOSPC, EIO, EFBIG) or a file that exists cannot be read.
struct FileError : Error {
  enum Kind { CannotCreate, Io };
  FileError(Kind k, const std::string& what)
      : Error(k == CannotCreate ? ErrorKind::CannotCreate : ErrorKind::Io, what), kind(k) {}
  Kind kind;
};

// Refused because of who runs the command (e.g. root on a state directory another user owns):
// exit code 77 (EX_NOPERM).
struct PermissionError : Error {
  explicit PermissionError(const std::string& what) : Error(ErrorKind::Permission, what) {}
};

// A server (PostgreSQL, Redis, MongoDB) could not be reached or refused us: exit 69
// (EX_UNAVAILABLE). Long-running loops reconnect with backoff.
struct UnavailableError : Error {
  explicit UnavailableError(const std::string& what) : Error(ErrorKind::Unavailable, what) {}
};

// A server reported a failure that passes with time on the same connection (a MongoDB write
// conflict or election, a PostgreSQL serialization failure or cancelled statement): retried
// with backoff; exit 69 if it ends the process.
struct TransientError : Error {
  explicit TransientError(const std::string& what) : Error(ErrorKind::Transient, what) {}
};

// A server refused walfold's credentials (wrong or missing password, no permission) or its TLS
// certificate failed verification. Retrying cannot help: exit 77 (EX_NOPERM), never retried.
// Messages name the server and address, never the secret.
struct AuthError : Error {
  explicit AuthError(const std::string& what) : Error(ErrorKind::Auth, what) {}
};

// The data violates what walfold can fold exactly (NaN amount, malformed protocol message,
// unknown column type for money). Never retried blindly: exit 65 (EX_DATAERR).
struct DataError : Error {
  explicit DataError(const std::string& what) : Error(ErrorKind::Data, what) {}
};

// walfold broke one of its own invariants (e.g. the flush rule in cdc/flush_ledger.h): it stops
// rather than go on: exit 70 (EX_SOFTWARE). Never retried.
struct InternalError : Error {
  explicit InternalError(const std::string& what) : Error(ErrorKind::Internal, what) {}
};

// The one place where an error becomes an exit code (sysexits) and the line printed for it.
struct ExitStatus {
  int code;
  std::string message;  // "walfold: data error: ..."
};
ExitStatus exit_status_for(const std::exception& e);

}  // namespace walfold
