// walfold's configuration: one YAML file (reference: config/README.md, example:
// config/walfold.example.yaml). Every error names the file, line and column.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/decimal.h"
#include "common/pg.h"

namespace walfold {

struct TableConfig {
  std::string schema = "public";
  std::string name;   // PostgreSQL table name
  std::string model;  // the projection's table it feeds (a TableSpec::model of its tables())
  int priority = 5;   // 0 (served first) .. 255
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

// One row condition of a priority rule: a column of the row compared with a value. Which YAML
// keys a projection's rules take, and what they compare, its ProjectionConfigSpec says.
struct RowCondition {
  enum class Op {
    Equals,  // the column's text equals `value`
    Above,   // the column, an exact decimal, is greater than `number`
  };
  std::string key;     // the key it was written as (e.g. "amount_above"), for messages
  std::string column;  // a column of the model's TableSpec
  Op op = Op::Equals;
  std::string value;
  std::optional<Decimal> number;  // Above: `value` as an exact decimal
};

// A priority rule: a row that matches every condition given gets `priority` when that is more
// urgent than its table's. Conditions are about the rows of one model (`model`): a rule
// without a `table:` applies to that model's table (to every table when it has none).
struct PriorityRule {
  std::string table;  // "schema.name"; "" = any table (or the conditions' model's)
  std::string model;  // the model the conditions test ("" without conditions)
  std::vector<RowCondition> conditions;
  int priority = 0;
  // The condition written as `key`, or nullptr.
  const RowCondition* condition(const std::string& key) const {
    for (const auto& c : conditions)
      if (c.key == key) return &c;
    return nullptr;
  }
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

// What a projection keeps of its own section of the file (e.g. `user_directory:`); each
// projection derives its own (projections/<name>/), config/ sees only this base.
class ProjectionSettings {
 public:
  virtual ~ProjectionSettings() = default;
};

struct Config {
  std::string source_file;
  // The read model this daemon (and its slot) maintains: a ProjectionConfigSpec::name. One
  // projection per daemon and slot.
  std::string projection = "bank";
  std::shared_ptr<const ProjectionSettings> projection_settings;  // its section, when it has one
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
  // The configured table of a model, or nullptr.
  const TableConfig* table_for(std::string_view model) const;
};

// What the configuration checks of a projection. config/ names no projection and links none:
// the caller passes the specs to check against (projections/registry.h config_specs() lists
// every projection walfold has, each built from its projection's tables(), so a `tables:` entry
// can be checked against the models the projection has; a test may pass its own).
class SectionReader;  // config/section.h: reads a projection's section with config's checks
struct ProjectionConfigSpec {
  // A row-condition key of priority rules: `key: VALUE` tests `column` of the `model` table.
  struct RuleKey {
    std::string key, model, column;
    RowCondition::Op op = RowCondition::Op::Equals;
  };
  std::string name;                         // the `projection:` value
  std::vector<std::string> models;          // TableSpec::model of tables(): one table each
  std::vector<TableConfig> default_tables;  // when the file has no `tables:`
  std::vector<RuleKey> rule_keys;
  // Reads the projection's own top-level section (the key named like the projection; absent:
  // `section` is an undefined node); nullptr when the projection has none.
  std::shared_ptr<const ProjectionSettings> (*parse_section)(SectionReader& r) = nullptr;
  // The secret files its section names (e.g. a salt file), as {"section.key", path} with an
  // empty path for one not set, so `walfold check-config` checks them like the password files
  // without knowing the projection; nullptr when it reads none.
  std::vector<std::pair<std::string, std::string>> (*secret_files)(const ProjectionSettings& s) =
      nullptr;
};
// The projections a configuration may select (the `projection:` values), checked in this order.
using ProjectionSpecs = std::vector<const ProjectionConfigSpec*>;

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
// `specs`: the projections the file may select (projections/registry.h has the convenience
// that passes walfold's own).
ConfigCheck check_config_text(const std::string& yaml_text, const std::string& source_name,
                              const ProjectionSpecs& specs);
// The same for a file (one that cannot be read is a problem without a position).
ConfigCheck check_config_file(const std::string& path, const ProjectionSpecs& specs);

// Throws ConfigError listing every problem, one "FILE:LINE:COLUMN: ..." per line.
Config load_config(const std::string& path, const ProjectionSpecs& specs);
Config parse_config(const std::string& yaml_text, const std::string& source_name,
                    const ProjectionSpecs& specs);

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
