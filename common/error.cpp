#include "common/error.h"

#include <sysexits.h>

namespace walfold {

ExitStatus exit_status_for(const std::exception& e) {
  const std::string what = e.what();
  if (dynamic_cast<const UsageError*>(&e)) return {EX_USAGE, "walfold: " + what};
  if (dynamic_cast<const ConfigError*>(&e))
    return {EX_CONFIG, "walfold: configuration error: " + what};
  if (dynamic_cast<const UnavailableError*>(&e)) return {EX_UNAVAILABLE, "walfold: " + what};
  if (dynamic_cast<const DataError*>(&e)) return {EX_DATAERR, "walfold: data error: " + what};
  if (const auto* f = dynamic_cast<const FileError*>(&e))
    return {f->kind == FileError::CannotCreate ? EX_CANTCREAT : EX_IOERR, "walfold: " + what};
  if (dynamic_cast<const PermissionError*>(&e)) return {EX_NOPERM, "walfold: " + what};
  if (dynamic_cast<const AuthError*>(&e)) return {EX_NOPERM, "walfold: permission denied: " + what};
  if (dynamic_cast<const InternalError*>(&e))
    return {EX_SOFTWARE, "walfold: internal error: " + what};
  return {EX_SOFTWARE, "walfold: " + what};
}

}  // namespace walfold
