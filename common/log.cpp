#include "common/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <regex>

#include "common/error.h"

namespace walfold {

void init_logging(std::string_view level) {
  auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off")
    throw ConfigError("log level '" + std::string(level) +
                      "' is not one of trace, debug, info, warn, error, critical, off");
  auto logger = spdlog::stderr_color_mt("walfold");
  // Under systemd (JOURNAL_STREAM set) journald timestamps lines itself.
  if (getenv("JOURNAL_STREAM") != nullptr)
    logger->set_pattern("[%l] %v");
  else
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e [%l] %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(lvl);
}

std::string redact_secrets(std::string_view connection_string) {
  static const std::regex kv(R"((password\s*=\s*)('([^'\\]|\\.)*'|\S+))", std::regex::icase);
  static const std::regex uri(R"(([a-z][a-z0-9+.-]*://[^:/@\s]*:)([^@\s]*)(@))", std::regex::icase);
  std::string s(connection_string);
  s = std::regex_replace(s, kv, "$1***");
  s = std::regex_replace(s, uri, "$1***$3");
  return s;
}

}  // namespace walfold
