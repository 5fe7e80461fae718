// walfold's configuration: one YAML file (reference: config/README.md, example:
// config/walfold.example.yaml). Every error names the file, line and column.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/decimal.h"
#include "common/pg.h"

namespace walfold {

// Which part of the bank read model a PostgreSQL table feeds.
enum class Model { Users, Accounts, Transactions };
const char* model_name(Model m);

struct TableConfig {
  std::string schema = "public";
  std::string name;  // PostgreSQL table name
  Model model;
  int priority = 5;  // 0 (served first) .. 255
};

struct PostgresConfig {
  std::string dsn;            // libpq connection string, without the password
  std::string password_file;  // optional; read at start, never logged
  std::string slot = "walfold";
  std::string publication = "walfold";
};

struct RedisConfig {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string unix_socket;    // when set, used instead of host/port
  std::string username;       // ACL user (AUTH username password); "" = the default user
  std::string password_file;  // optional; read at start, never logged
  int db = 0;
  std::string prefix = "walfold";  // keys: <prefix>:{<slot>}:...
};

struct MongoConfig {
  std::string uri = "mongodb://127.0.0.1:27017";
  // Credentials by reference: set on the parsed URI (mongoc_uri_set_username/password), never
  // spliced into the URI text, so they cannot reach a log line or an error message.
  std::string username;
  std::string password_file;
  std::string database = "walfold";
  std::string write_concern = "majority";  // "majority" or a number
};

struct ReaderConfig {
  std::chrono::milliseconds status_interval{1000};  // standby status updates to PostgreSQL
  // Flush queued jobs to Redis at least this often (5 ms: see config/README.md, issue #12).
  std::chrono::milliseconds enqueue_max_delay{5};
  int enqueue_batch_jobs = 2000;  // or when this many jobs are waiting
  std::chrono::milliseconds reconnect_min{500}, reconnect_max{30000};
  // While no change of the published tables arrives for this long, write a logical message
  // (pg_logical_emit_message) so the slot keeps a recent position to confirm. 0 = off.
  std::chrono::milliseconds heartbeat_interval{10000};
  // A saved checkpoint joins the listable history at most this often (0: every save).
  std::chrono::milliseconds checkpoint_history_interval{60000};
  // A transaction is assembled in memory until its Commit; one whose changes to the bank
  // tables exceed this many MiB stops the reader (exit 65) instead of exhausting memory.
  int max_transaction_mb = 256;
};

// Retries of a key whose head job failed (queue/scripts/ack.lua): backoff with full jitter,
// uniform in [0, min(max, initial * 2^(attempt - 1))].
struct RetryConfig {
  std::chrono::milliseconds initial{100}, max{60000};
  int max_attempts = 10;  // poison failures before a job goes to the dead letters
};

struct WorkerConfig {
  int count = 2;
  int batch_keys = 256;         // ordering keys claimed at once
  int batch_jobs_per_key = 64;  // jobs taken from one key per claim
  // Rows folded per batch: jobs past it (whole jobs; a batch always takes at least one) go back
  // to the queue unfolded, so a worker's memory follows this, not the size of the jobs.
  int batch_max_changes = 20000;
  std::chrono::milliseconds lease{30000};
  std::chrono::milliseconds idle_poll_max{50};
  RetryConfig retry;
};

// A priority rule: a row that matches every condition given gets `priority` when that is more
// urgent than its table's. `kind` and `amount_above` apply to the transactions model only.
struct PriorityRule {
  std::string table;                    // "schema.name"; "" = any table (or the transactions one)
  std::optional<std::string> kind;      // transactions.kind equals this
  std::optional<Decimal> amount_above;  // transactions.amount > this (exact decimal comparison)
  int priority = 0;
};

struct PriorityConfig {
  std::chrono::milliseconds aging{1000};  // bounded wait: a priority-p job waits at most like a
                                          // priority-0 job that arrived p * aging later
  int replay = 255;                       // jobs of replayed/snapshot traffic (reader hook)
  std::vector<PriorityRule> rules;
};

// A lag limit in bytes of WAL ("64MiB", "1GiB", "4096") or in seconds ("30s", "500ms", "2m").
struct LagLimit {
  bool seconds = false;
  double value = 0;  // bytes, or seconds
};
// nullopt when the text is neither.
std::optional<LagLimit> parse_lag_limit(const std::string& text);
std::string format_lag_limit(const LagLimit& l);

// The HTTP server of `walfold run` (observe/): /metrics, /healthz, /readyz, the status page.
struct HttpConfig {
  bool enabled = true;  // listen: off
  std::string host = "127.0.0.1";
  int port = 9731;
  bool allow_remote = false;  // a non-loopback listen address is refused without it
  std::string token_file;     // bearer token every request must carry (required with allow_remote)
  bool admin = false;         // retry/purge dead letters from the status page
  LagLimit ready_max_lag{false, 256.0 * 1024 * 1024};  // /readyz fails above it
};
// 127.0.0.0/8, ::1 and "localhost".
bool is_loopback_host(const std::string& host);

struct Config {
  std::string source_file;
  PostgresConfig postgres;
  RedisConfig redis;
  MongoConfig mongodb;
  std::map<std::string, TableConfig> tables;  // key: "schema.name"
  ReaderConfig reader;
  WorkerConfig workers;
  PriorityConfig priorities;
  HttpConfig http;
  std::string log_level = "info";
  std::string state_dir = "/var/lib/walfold";

  // The configured table for a relation, or nullptr.
  const TableConfig* table(const std::string& schema, const std::string& name) const;
  const TableConfig* table_for(Model m) const;
};

// One problem found in a configuration file (line and column are 1-based; 0 when unknown).
struct ConfigProblem {
  int line = 0, column = 0;
  std::string message;
};
// "FILE:LINE:COLUMN: message" (or "FILE: message" without a position).
std::string format_problem(const std::string& file, const ConfigProblem& p);

// Every problem of a configuration at once (what `walfold check-config` prints): `config` is set
// only when `problems` is empty.
struct ConfigCheck {
  std::optional<Config> config;
  std::vector<ConfigProblem> problems;
};
ConfigCheck check_config_text(const std::string& yaml_text, const std::string& source_name);
// The same for a file (one that cannot be read is a problem without a position).
ConfigCheck check_config_file(const std::string& path);

// Throws ConfigError listing every problem, one "FILE:LINE:COLUMN: ..." per line.
Config load_config(const std::string& path);
Config parse_config(const std::string& yaml_text, const std::string& source_name);

// The configuration file a command reads: `cli_path` when given (--config), else the
// environment's WALFOLD_CONFIG, else /etc/walfold/walfold.yaml.
std::string resolve_config_path(const std::string& cli_path);

// Values with units (also accepted as plain integers in the key's own unit, e.g. milliseconds
// for *_ms keys): a duration "500ms", "30s", "2m", "1h", "1d" -> milliseconds; a size "512KiB",
// "256MiB", "1GiB", "1TiB" (or a number of bytes with "B") -> bytes. nullopt when `text` is not
// a number with one of these units (plain integers included: their unit is the caller's).
std::optional<std::int64_t> parse_duration_ms(const std::string& text);
std::optional<std::int64_t> parse_size_bytes(const std::string& text);

// The closest of `candidates` to `word` when it is a likely typo of it (at most 2 edits, a swap
// of two neighbours counting as one, and fewer than half of the word's letters), else "".
std::string closest_name(const std::string& word, const std::vector<std::string>& candidates);

// "${NAME}" replaced by the environment variable NAME (e.g. ${CREDENTIALS_DIRECTORY} under
// systemd's LoadCredential=); ConfigError when it is not set.
std::string expand_environment(const std::string& text);
// Reads a secret file (trailing newline stripped; ${VAR} in the path expanded). Throws ConfigError
// naming the file, never the content.
std::string read_secret_file(const std::string& path);
// Where walfold connects to PostgreSQL: `dsn` as it is and, apart from it, the password from
// `password_file` when one is configured (otherwise libpq's PGPASSWORD / PGPASSFILE / ~/.pgpass /
// service file count). The password is never spliced into the connection string.
PgConnInfo postgres_conninfo(const PostgresConfig& pg);

}  // namespace walfold
