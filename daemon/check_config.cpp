#include "daemon/check_config.h"

#include <unistd.h>

#include <sys/stat.h>
#include <cstdlib>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "cdc/preflight.h"
#include "common/error.h"
#include "common/log.h"
#include "config/config.h"
#include "pipeline/source_adapter.h"
#include "projections/mongo.h"
#include "projections/registry.h"
#include "queue/job_queue.h"
#include "queue/redis.h"

namespace walfold::daemon {
namespace {

// A secret file that can be checked here: its ${VAR}s are set. Returns a problem or "".
std::string secret_file_problem(const std::string& key, const std::string& path,
                                std::string& note) {
  if (path.empty()) return "";
  try {
    expand_environment(path);
  } catch (const ConfigError&) {
    note = key + " '" + path +
           "' not checked: it names an environment variable that is not set here (systemd sets "
           "CREDENTIALS_DIRECTORY for a unit with LoadCredential=)";
    return "";
  }
  try {
    read_secret_file(path);
  } catch (const std::exception& e) {
    return key + ": " + e.what();
  }
  return "";
}

// Whether the state directory can be used: missing is fine (it is created), else it must be a
// directory this user can write.
std::string state_dir_verdict(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0)
    return dir +
           " does not exist yet (walfold creates it; under systemd, "
           "StateDirectory=walfold does)";
  if (!S_ISDIR(st.st_mode))
    throw FileError(FileError::CannotCreate, "state_dir " + dir + " is not a directory");
  if (::access(dir.c_str(), W_OK) != 0)
    throw FileError(FileError::CannotCreate, "state_dir " + dir +
                                                 " is not writable by this user (uid " +
                                                 std::to_string(::geteuid()) + ")");
  return dir + " is a writable directory";
}

// The preflight: every check only reads, and each server is tried even when another failed.
// Returns 0, or the exit code of the first check that failed.
int preflight(const Config& c, std::ostream& out, std::ostream& err) {
  int rc = 0;
  auto probe = [&](const char* server, const std::function<std::string()>& fn) {
    try {
      out << server << ": ok: " << fn() << "\n";
    } catch (const std::exception& e) {
      auto st = exit_status_for(e);
      err << server << ": FAILED: " << e.what() << "\n";
      if (rc == 0) rc = st.code;
    }
  };
  probe("postgres", [&] {
    pipeline::verify_source(c, *projections::projection_for(c));
    const auto slot = cdc::read_slot_any(postgres_conninfo(c.postgres), c.postgres.slot);
    std::string s = "wal_level is logical; publication '" + c.postgres.publication +
                    "' covers the configured tables with the replica identity walfold needs; ";
    if (!slot.exists)
      return s + "slot '" + c.postgres.slot + "' does not exist yet (`walfold setup` creates it)";
    return s + "slot '" + c.postgres.slot + "' exists (wal_status " + slot.wal_status +
           ", confirmed " + format_lsn(slot.confirmed_flush) + ")";
  });
  probe("redis", [&] {
    queue::Redis r(c.redis);  // connects, authenticates and selects the database
    auto pong = r.command({"PING"});
    // A queue another walfold version wrote in another format is refused here too (exit 65).
    const auto format =
        queue::JobQueue(r, queue::queue_prefix(c.redis.prefix, c.postgres.slot)).check_format();
    return r.address() + " answers " + queue::reply_to_string(pong.get()) +
           (c.redis.username.empty() ? "" : " (authenticated as '" + c.redis.username + "')") +
           (format.empty() ? "; no queue marked yet" : "; queue format " + format);
  });
  probe("mongodb", [&] {
    projections::MongoPool pool(c.mongodb);
    pool.ping();
    return pool.address() + " answers ping (database '" + c.mongodb.database + "'" +
           (c.mongodb.username.empty() ? "" : ", authenticated as '" + c.mongodb.username + "'") +
           ")";
  });
  probe("state_dir", [&] { return state_dir_verdict(c.state_dir); });
  return rc;
}

}  // namespace

int check_config(const CheckConfigOptions& o, std::ostream& out, std::ostream& err) {
  auto checked = projections::check_config_file(o.path);
  std::vector<std::string> notes;
  std::vector<std::string> problems;
  for (const auto& p : checked.problems) problems.push_back(format_problem(o.path, p));
  if (checked.config) {
    const Config& c = *checked.config;
    // The password files, then the secret files of the selected projection (e.g. the user
    // directory's salt_file): each read like `walfold run` reads it, its content never printed.
    std::vector<std::pair<std::string, std::string>> secrets{
        {"postgres.password_file", c.postgres.password_file},
        {"redis.password_file", c.redis.password_file},
        {"mongodb.password_file", c.mongodb.password_file}};
    for (auto& f : projections::secret_files(c)) secrets.push_back(std::move(f));
    for (const auto& [key, path] : secrets) {
      std::string note;
      auto problem = secret_file_problem(key, path, note);
      if (!problem.empty()) problems.push_back(o.path + ": " + problem);
      if (!note.empty()) notes.push_back(note);
    }
    // Then the projection is built as `walfold run` builds it (it refuses e.g. an empty salt
    // file), once every secret file could be read here.
    if (problems.empty() && notes.empty()) {
      try {
        projections::projection_for(c);
      } catch (const ConfigError& e) {
        problems.push_back(o.path + ": " + e.what());
      }
    }
  }
  for (const auto& p : problems) err << p << "\n";
  for (const auto& n : notes) out << "note: " << n << "\n";
  if (!problems.empty()) {
    err << "walfold: " << o.path << ": " << problems.size()
        << (problems.size() == 1 ? " problem" : " problems") << "; the configuration is refused\n";
    return exit_status_for(ConfigError("")).code;
  }
  out << o.path << ": the configuration is valid\n";
  if (!o.connect) return EXIT_SUCCESS;
  const int rc = preflight(*checked.config, out, err);
  if (rc != 0) err << "walfold: " << o.path << ": a server check failed\n";
  return rc;
}

}  // namespace walfold::daemon
