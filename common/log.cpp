#include "common/log.h"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <regex>

#include "common/error.h"

namespace walfold {
namespace {

// syslog priorities (sd-daemon.h's SD_ERR etc. are string literals; these are the numbers).
char priority_digit(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::critical:
      return '2';
    case spdlog::level::err:
      return '3';
    case spdlog::level::warn:
      return '4';
    case spdlog::level::info:
      return '6';
    default:
      return '7';
  }
}

void write_journal_line(char priority, std::string_view text) {
  std::string line = "<";
  line.push_back(priority);
  line.push_back('>');
  line += single_line(text);
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

// stderr under journald: one line per message, led by its priority, which journald's stream
// protocol reads (SyslogLevelPrefix=yes, the default) and strips.
class JournalStreamSink final : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    write_journal_line(priority_digit(msg.level),
                       std::string_view(formatted.data(), formatted.size()));
  }
  void flush_() override { std::fflush(stderr); }
};

}  // namespace

bool stderr_is_journal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (stream == nullptr) return false;
  unsigned long long dev = 0, ino = 0;
  char tail = 0;
  if (std::sscanf(stream, "%llu:%llu%c", &dev, &ino, &tail) != 2) return false;
  struct stat st {};
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

std::string single_line(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c != '\n' && c != '\r') {
      out.push_back(c);
      continue;
    }
    while (i + 1 < text.size() && (text[i + 1] == '\n' || text[i + 1] == '\r' ||
                                   text[i + 1] == '\t' || text[i + 1] == ' '))
      ++i;
    if (!out.empty() && out.back() != ' ') out.push_back(' ');
  }
  return out;
}

void init_logging(std::string_view level) {
  auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off")
    throw ConfigError("log level '" + std::string(level) +
                      "' is not one of trace, debug, info, warn, error, critical, off");
  std::shared_ptr<spdlog::logger> logger;
  if (stderr_is_journal()) {
    // journald timestamps lines itself.
    logger = std::make_shared<spdlog::logger>("walfold", std::make_shared<JournalStreamSink>());
    logger->set_pattern("[%l] %v");
  } else {
    logger = spdlog::stderr_color_mt("walfold");
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e [%l] %v");
  }
  spdlog::set_default_logger(logger);
  spdlog::set_level(lvl);
}

void report_fatal(std::string_view message) {
  const std::string text = "walfold: " + std::string(message);
  if (stderr_is_journal()) {
    write_journal_line('3', text);
  } else {
    std::fwrite(text.data(), 1, text.size(), stderr);
    std::fputc('\n', stderr);
    std::fflush(stderr);
  }
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
