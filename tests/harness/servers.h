// walfold test harness: real PostgreSQL 15, Redis 7 and a MongoDB stand-in (or a real MongoDB),
// started once per test process by tests/harness/servers.sh. See tests/harness/README.md.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"

namespace walfold::test {

struct Servers {
  std::string dir;  // DIR of servers.sh (holds env, logs and data)
  std::string pg_host;
  int pg_port = 0;
  std::string pg_socket_dir;
  std::string pg_superuser;
  std::string redis_host;
  int redis_port = 0;
  std::string mongo_uri;
  bool mongo_is_real = false;

  // Extras.
  std::string pg_repl_user;  // the `walfold` role: LOGIN REPLICATION, password required over TCP
  std::string pg_repl_password;
  std::string pg_bin_dir;  // /usr/lib/postgresql/15/bin
  std::string pg_log;      // DIR/pg.log
  std::string redis_log;   // DIR/redis.log
  std::string mongo_log;   // DIR/mongo.log (stand-in only)
  bool owned = false;      // started by this process (and stopped at exit)
};

// Starts the servers once per test process (lazily, on first call) via `servers.sh start` into a
// fresh mkdtemp dir under $TMPDIR (default /tmp), and stops them at process exit (atexit); the dir
// is removed when every test passed, and kept (its path printed) otherwise or when
// WALFOLD_TEST_KEEP_SERVERS_DIR=1. If WALFOLD_TEST_SERVERS_DIR names a dir where servers.sh already
// started them, reuses it and does not stop them. Throws std::runtime_error with servers.sh's
// output if the start fails (and the same error again on later calls, without retrying).
const Servers& servers();

// The harness's Redis as walfold's configuration (its loopback address and private port).
inline RedisConfig redis_config() {
  RedisConfig cfg;
  cfg.host = servers().redis_host;
  cfg.port = servers().redis_port;
  return cfg;
}

// Runs servers.sh with a sub-command against the current dir, e.g. {"restart-redis",
// "--no-persistence"} runs `servers.sh restart-redis DIR --no-persistence`. Throws on failure.
void servers_ctl(const std::vector<std::string>& args);

// DIR/env as a map, read afresh (pids change after restarts).
std::map<std::string, std::string> servers_env();

// Path of tests/harness/servers.sh.
std::string servers_script();

// Superuser DSN for the `postgres` maintenance database.
std::string pg_admin_dsn();

// A new, empty PostgreSQL database (from template0) with a unique name; returns a libpq
// connection string "host=127.0.0.1 port=P dbname=NAME user=walfold_admin".
std::string fresh_pg_database(const std::string& prefix = "t");

// The same connection string (keyword=value or URI) with user and password of the `walfold`
// replication role. Add "replication=database" yourself for a walsender connection.
std::string replication_dsn(const std::string& dsn);

// Sets (or replaces) keyword=value in a libpq connection string; returns keyword=value form.
std::string dsn_with(const std::string& dsn, const std::string& keyword, const std::string& value);

// A unique name: prefix + "_" + pid + "_" + counter + "_" + random hex. The result contains only
// [a-z0-9_] (the prefix is lower-cased, other characters become '_') and is at most 63 characters,
// so it is valid as a PostgreSQL database or replication slot name, a Redis key prefix or a Mongo
// database name.
std::string unique_name(const std::string& prefix);

using PgRows = std::vector<std::vector<std::optional<std::string>>>;
// Executes SQL (one or more statements; the last statement's rows are returned) on a DSN; throws
// std::runtime_error with the server's error message on failure. NULL is std::nullopt.
PgRows pg_query(const std::string& dsn, const std::string& sql);
// The single value of a one-row, one-column query; throws if the shape differs or it is NULL.
std::string pg_scalar(const std::string& dsn, const std::string& sql);

// Redis: one command (argv form) on the test Redis. Returns the reply rendered as a string:
// strings/status as is, integers in decimal, nil as "(nil)", errors as "(error) MESSAGE", arrays
// joined with '\n' (nested arrays flattened). Throws std::runtime_error on connection errors.
std::string redis_cmd(const std::vector<std::string>& argv);
std::string redis_cmd_at(const std::string& host, int port, const std::vector<std::string>& argv);

// Host and port of the MongoDB (first host of the URI, default port 27017); throws for
// mongodb+srv URIs.
std::pair<std::string, int> mongo_host_port();

// True if a TCP connection to host:port succeeds within timeout_ms.
bool tcp_port_open(const std::string& host, int port, int timeout_ms = 2000);

// Polls pred every `interval` until it returns true (-> true) or `timeout` passes (-> false).
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval = std::chrono::milliseconds(50));

// Source tree root (compile-time WALFOLD_SOURCE_DIR, a string literal) and the walfold binary
// (env WALFOLD_BIN, else compile-time WALFOLD_BINARY_PATH); throw if unknown.
std::string source_dir();
std::string walfold_binary();

// Runs a command (PATH is searched) with a timeout, capturing stdout+stderr interleaved; stdin is
// /dev/null. status is the exit code, or -signal if it was killed by a signal (on timeout its
// process group gets SIGTERM, then SIGKILL after 5 s; timed_out is set and a note is appended to
// the output). If the program cannot be executed, status is 127.
struct CmdResult {
  int status = -1;
  std::string output;
  bool timed_out = false;
};
CmdResult run_command(const std::vector<std::string>& argv, int timeout_seconds,
                      const std::map<std::string, std::string>& extra_env = {});

// A background child process (e.g. `walfold run`), in its own process group, stdout+stderr going to
// a log file, stdin /dev/null. The destructor kills the whole process group (SIGKILL) if it is
// still running, and reaps it; the log file is kept.
class Process {
 public:
  struct Options {
    std::map<std::string, std::string> env;  // added to / overriding the inherited environment
    std::string log_path;                    // default: a new file $TMPDIR/walfold-proc-XXXXXX.log
    std::string cwd;                         // default: inherited
  };

  explicit Process(std::vector<std::string> argv);  // starts it; throws if fork/exec fails
  Process(std::vector<std::string> argv, Options options);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  const std::vector<std::string>& argv() const { return argv_; }

  bool is_running();
  // Sends a signal to the process (not its group); a no-op once it has exited.
  void signal(int sig);
  // Sends a signal to its whole process group.
  void signal_group(int sig);
  // Waits for exit; returns the status (exit code, or -signal) or nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  std::optional<int> wait(int timeout_seconds) {
    return wait(std::chrono::seconds(timeout_seconds));
  }
  // SIGTERM, wait up to grace, then SIGKILL to the group; returns the exit status.
  int stop(std::chrono::milliseconds grace = std::chrono::seconds(10));
  // The exit status once it has exited.
  std::optional<int> exit_status() const { return status_; }
  // The log file's content so far.
  std::string output() const;
  // Waits until the log contains `needle`; false on timeout or if the process exited without it.
  bool wait_for_output(const std::string& needle, std::chrono::milliseconds timeout);

 private:
  void start();
  void reap(bool block);
  void kill_and_reap();

  std::vector<std::string> argv_;
  Options options_;
  std::string log_path_;
  pid_t pid_ = -1;
  std::optional<int> status_;
};

}  // namespace walfold::test
