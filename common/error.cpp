#include "common/error.h"

#include <sysexits.h>

#include <array>

namespace walfold {
namespace {

// The one table: kind -> name, exit code, retry class, printed prefix.
constexpr std::array<ErrorClass, 10> kTable{{
    {ErrorKind::Usage, "usage error", EX_USAGE, RetryClass::Never, "walfold: "},
    {ErrorKind::Data, "data error", EX_DATAERR, RetryClass::Never, "walfold: data error: "},
    {ErrorKind::Unavailable, "unavailable", EX_UNAVAILABLE, RetryClass::Reconnect, "walfold: "},
    {ErrorKind::Transient, "transient", EX_UNAVAILABLE, RetryClass::Backoff, "walfold: "},
    {ErrorKind::Internal, "internal error", EX_SOFTWARE, RetryClass::Never,
     "walfold: internal error: "},
    {ErrorKind::CannotCreate, "cannot create", EX_CANTCREAT, RetryClass::Never, "walfold: "},
    {ErrorKind::Io, "i/o error", EX_IOERR, RetryClass::Never, "walfold: "},
    {ErrorKind::Permission, "permission", EX_NOPERM, RetryClass::Never, "walfold: "},
    {ErrorKind::Auth, "permission denied", EX_NOPERM, RetryClass::Never,
     "walfold: permission denied: "},
    {ErrorKind::Config, "configuration error", EX_CONFIG, RetryClass::Never,
     "walfold: configuration error: "},
}};

// An exception that is not one of walfold's: a bug, or a library error no room classified.
constexpr ErrorClass kUnclassified{ErrorKind::Internal, "error", EX_SOFTWARE, RetryClass::Never,
                                   "walfold: "};

}  // namespace

const ErrorClass& error_class(ErrorKind kind) {
  for (const auto& row : kTable)
    if (row.kind == kind) return row;
  return kUnclassified;
}

const ErrorClass& error_class(const std::exception& e) {
  if (const auto* w = dynamic_cast<const Error*>(&e)) return error_class(w->error_kind());
  return kUnclassified;
}

ExitStatus exit_status_for(const std::exception& e) {
  const auto& c = error_class(e);
  return {c.exit_code, c.prefix + std::string(e.what())};
}

}  // namespace walfold
