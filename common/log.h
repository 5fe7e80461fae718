// Logging setup: spdlog to stderr (journald adds its own timestamps under systemd) and helpers
// that keep secrets out of log lines.
#pragma once

#include <string>
#include <string_view>

namespace walfold {

// level: trace|debug|info|warn|error|critical|off. Throws ConfigError on an unknown level.
void init_logging(std::string_view level);
// A libpq connection string or URI with password=… / user:password@ replaced by "***".
std::string redact_secrets(std::string_view connection_string);

}  // namespace walfold
