#include "mongo/connect.h"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <mutex>

#include "common/error.h"

namespace walfold::mongo {

std::string bson_json(const bson_t* b) {
  BsonChars s(bson_as_relaxed_extended_json(b, nullptr));
  return s ? std::string(s.get()) : std::string();
}

void route_mongoc_logs() {
  // libmongoc's own warnings (e.g. "Falling back to malloc for counters") go through walfold's
  // logger, with its levels and format, instead of being printed raw into stdout or stderr.
  mongoc_log_set_handler(
      [](mongoc_log_level_t level, const char* domain, const char* message, void*) {
        switch (level) {
          case MONGOC_LOG_LEVEL_ERROR:
          case MONGOC_LOG_LEVEL_CRITICAL:
            spdlog::error("libmongoc {}: {}", domain, message);
            break;
          case MONGOC_LOG_LEVEL_WARNING:
            spdlog::warn("libmongoc {}: {}", domain, message);
            break;
          case MONGOC_LOG_LEVEL_MESSAGE:
          case MONGOC_LOG_LEVEL_INFO:
            spdlog::debug("libmongoc {}: {}", domain, message);
            break;
          default:
            spdlog::trace("libmongoc {}: {}", domain, message);
        }
      },
      nullptr);
}

void mongo_global_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    route_mongoc_logs();
    mongoc_init();
    std::atexit(mongoc_cleanup);
  });
}

void set_mongo_credentials(mongoc_uri_t* uri, const std::string& username,
                           const std::string& password) {
  if (mongoc_uri_get_username(uri) != nullptr)
    throw ConfigError(
        "mongodb.uri already names a user, and mongodb.username is set too: keep the "
        "credentials out of the URI (mongodb.username and mongodb.password_file)");
  // Set on the parsed URI, not spliced into its text: nothing to escape, and the password never
  // becomes part of a string that could be logged.
  if (!mongoc_uri_set_username(uri, username.c_str()) ||
      !mongoc_uri_set_password(uri, password.c_str()))
    throw ConfigError(
        "mongodb.username or the password in mongodb.password_file is not valid "
        "UTF-8");
}

void throw_connect_error(const std::string& address, const bson_error_t& err) {
  const std::string msg = err.message;
  if (err.domain == MONGOC_ERROR_CLIENT && err.code == MONGOC_ERROR_CLIENT_AUTHENTICATE)
    throw AuthError("mongodb at " + address + " refused walfold's credentials: " + msg);
  if (msg.find("TLS handshake failed") != std::string::npos ||
      msg.find("certificate verify failed") != std::string::npos)
    throw AuthError("mongodb at " + address + ": TLS verification failed: " + msg);
  throw UnavailableError("mongodb at " + address + " is unreachable: " + msg);
}

}  // namespace walfold::mongo
