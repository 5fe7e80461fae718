// Logging setup: spdlog to stderr (journald adds its own timestamps under systemd) and helpers
// that keep secrets out of log lines.
#pragma once

#include <string>
#include <string_view>

namespace walfold {

// level: trace|debug|info|warn|error|critical|off. Throws ConfigError on an unknown level.
// When stderr is the journal (JOURNAL_STREAM names its device and inode, as systemd sets it),
// each line starts with its syslog priority (<2> critical, <3> error, <4> warning, <6> info,
// <7> debug and trace) and a message with line breaks stays one entry (they become blanks).
void init_logging(std::string_view level);
// Whether stderr is connected to the journal (JOURNAL_STREAM matches stderr's device:inode).
bool stderr_is_journal();
// A message on one line: line breaks (and tabs after them) become single blanks.
std::string single_line(std::string_view text);
// Writes "walfold: <message>" to stderr as an error (with <3> under the journal), whether or not
// init_logging ran: for the last words of a command that failed.
void report_fatal(std::string_view message);
// A libpq connection string or URI with password=… / user:password@ replaced by "***".
std::string redact_secrets(std::string_view connection_string);

}  // namespace walfold
