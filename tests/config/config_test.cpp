// Unit tests for the configuration loader (config/config.h).

#include "config/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <regex>
#include <string>

#include "common/error.h"
#include "projections/registry.h"

namespace walfold {
namespace {

namespace fs = std::filesystem;

// A copy of config/walfold.example.yaml (the test below also loads the real file).
constexpr const char* kExampleYaml = R"YAML(# walfold configuration.
postgres:
  dsn: "host=127.0.0.1 port=5432 dbname=bank user=walfold"
  slot: walfold
  publication: walfold

redis:
  host: 127.0.0.1
  port: 6379
  db: 0
  prefix: walfold

mongodb:
  uri: "mongodb://127.0.0.1:27017"
  database: walfold
  write_concern: majority

tables:
  public.users:        { model: users, priority: 3 }
  public.accounts:     { model: accounts, priority: 3 }
  public.transactions: { model: transactions, priority: 5 }

reader:
  status_interval_ms: 1000
  enqueue_max_delay_ms: 5
  enqueue_batch_jobs: 2000
  reconnect_min_ms: 500
  reconnect_max_ms: 30000

workers:
  count: 2
  batch_keys: 256
  batch_jobs_per_key: 64
  lease_ms: 30000
  idle_poll_max_ms: 50

log_level: info
state_dir: /var/lib/walfold
)YAML";

fs::path example_path() {
#ifdef WALFOLD_SOURCE_DIR
  return fs::path(WALFOLD_SOURCE_DIR) / "config" / "walfold.example.yaml";
#else
  // tests/config/config_test.cpp -> config/walfold.example.yaml
  return fs::path(__FILE__).parent_path().parent_path().parent_path() / "config" /
         "walfold.example.yaml";
#endif
}

// A temporary directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "walfold-config-test-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  fs::path write(const std::string& name, const std::string& content) const {
    auto p = path_ / name;
    std::ofstream out(p, std::ios::binary);
    out << content;
    out.close();
    if (!out) throw std::runtime_error("cannot write " + p.string());
    return p;
  }

 private:
  fs::path path_;
};

// Parses `yaml` as "cfg.yaml", expects a ConfigError and returns its message.
std::string config_error(const std::string& yaml, const std::string& source = "cfg.yaml") {
  try {
    projections::parse_config(yaml, source);
  } catch (const ConfigError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected ConfigError, got another exception: " << e.what() << "\nfor:\n"
                  << yaml;
    return e.what();
  }
  ADD_FAILURE() << "expected ConfigError for:\n" << yaml;
  return "";
}

void expect_contains(const std::string& msg, std::initializer_list<std::string> needles) {
  for (const auto& n : needles)
    EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' is not in: " << msg;
}

// "cfg.yaml:LINE:COLUMN: ..." with the given line (columns vary with the YAML library).
void expect_located(const std::string& msg, int line) {
  const std::regex re("^cfg\\.yaml:" + std::to_string(line) + ":[0-9]+: .+");
  EXPECT_TRUE(std::regex_match(msg, re)) << "not located at cfg.yaml:" << line << ": " << msg;
}

void expect_example_values(const Config& c) {
  EXPECT_EQ(c.postgres.dsn, "host=127.0.0.1 port=5432 dbname=bank user=walfold");
  EXPECT_EQ(c.postgres.password_file, "");
  EXPECT_EQ(c.postgres.slot, "walfold");
  EXPECT_EQ(c.postgres.publication, "walfold");
  EXPECT_EQ(c.redis.host, "127.0.0.1");
  EXPECT_EQ(c.redis.port, 6379);
  EXPECT_EQ(c.redis.unix_socket, "");
  EXPECT_EQ(c.redis.password_file, "");
  EXPECT_EQ(c.redis.db, 0);
  EXPECT_EQ(c.redis.prefix, "walfold");
  EXPECT_EQ(c.mongodb.uri, "mongodb://127.0.0.1:27017");
  EXPECT_EQ(c.mongodb.database, "walfold");
  EXPECT_EQ(c.mongodb.write_concern, "majority");
  ASSERT_EQ(c.tables.size(), 3u);
  const auto* users = c.table("public", "users");
  const auto* accounts = c.table("public", "accounts");
  const auto* txs = c.table("public", "transactions");
  ASSERT_TRUE(users && accounts && txs);
  EXPECT_EQ(users->model, "users");
  EXPECT_EQ(users->priority, 3);
  EXPECT_EQ(accounts->model, "accounts");
  EXPECT_EQ(accounts->priority, 3);
  EXPECT_EQ(txs->model, "transactions");
  EXPECT_EQ(txs->priority, 5);
  EXPECT_EQ(txs->schema, "public");
  EXPECT_EQ(txs->name, "transactions");
  EXPECT_EQ(c.table_for("accounts"), accounts);
  EXPECT_EQ(c.table("public", "nope"), nullptr);
  EXPECT_EQ(c.table("bank", "users"), nullptr);
  EXPECT_EQ(c.reader.status_interval, std::chrono::milliseconds(1000));
  EXPECT_EQ(c.reader.enqueue_max_delay, std::chrono::milliseconds(5));
  EXPECT_EQ(c.reader.enqueue_batch_jobs, 2000);
  EXPECT_EQ(c.reader.reconnect_min, std::chrono::milliseconds(500));
  EXPECT_EQ(c.reader.reconnect_max, std::chrono::milliseconds(30000));
  EXPECT_EQ(c.workers.count, 2);
  EXPECT_EQ(c.workers.batch_keys, 256);
  EXPECT_EQ(c.workers.batch_jobs_per_key, 64);
  EXPECT_EQ(c.workers.lease, std::chrono::milliseconds(30000));
  EXPECT_EQ(c.workers.idle_poll_max, std::chrono::milliseconds(50));
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.state_dir, "/var/lib/walfold");
}

TEST(Config, ExampleFileLoads) {
  const auto path = example_path();
  ASSERT_TRUE(fs::exists(path)) << path << " not found";
  Config c = projections::load_config(path.string());
  EXPECT_EQ(c.source_file, path.string());
  expect_example_values(c);
}

TEST(Config, EmbeddedExampleParses) {
  Config c = projections::parse_config(kExampleYaml, "walfold.example.yaml");
  EXPECT_EQ(c.source_file, "walfold.example.yaml");
  expect_example_values(c);
}

TEST(Config, EveryKeySet) {
  Config c = projections::parse_config(R"(postgres:
  dsn: "postgresql://walfold@db.internal/bank"
  password_file: /run/credentials/walfold.service/pg-password
  slot: wf_slot_2
  publication: wf_pub
redis:
  host: redis.internal
  port: 6380
  unix_socket: /run/redis/redis.sock
  password_file: /run/credentials/walfold.service/redis-password
  db: 3
  prefix: wf-prod
mongodb:
  uri: "mongodb+srv://cluster0.example.net/?retryWrites=true"
  database: bank_read
  write_concern: "2"
tables:
  bank.customers: { model: users, priority: 0 }
  bank.accounts: { model: accounts, priority: 255 }
  ledger: { model: transactions }
reader:
  status_interval_ms: 10
  enqueue_max_delay_ms: 0
  enqueue_batch_jobs: 100000
  reconnect_min_ms: 10
  reconnect_max_ms: 3600000
workers:
  count: 0
  batch_keys: 10000
  batch_jobs_per_key: 1
  lease_ms: 1000
  idle_poll_max_ms: 10000
log_level: debug
state_dir: /tmp/wf
)",
                                       "cfg.yaml");
  EXPECT_EQ(c.postgres.dsn, "postgresql://walfold@db.internal/bank");
  EXPECT_EQ(c.postgres.password_file, "/run/credentials/walfold.service/pg-password");
  EXPECT_EQ(c.postgres.slot, "wf_slot_2");
  EXPECT_EQ(c.postgres.publication, "wf_pub");
  EXPECT_EQ(c.redis.host, "redis.internal");
  EXPECT_EQ(c.redis.port, 6380);
  EXPECT_EQ(c.redis.unix_socket, "/run/redis/redis.sock");
  EXPECT_EQ(c.redis.password_file, "/run/credentials/walfold.service/redis-password");
  EXPECT_EQ(c.redis.db, 3);
  EXPECT_EQ(c.redis.prefix, "wf-prod");
  EXPECT_EQ(c.mongodb.uri, "mongodb+srv://cluster0.example.net/?retryWrites=true");
  EXPECT_EQ(c.mongodb.database, "bank_read");
  EXPECT_EQ(c.mongodb.write_concern, "2");
  ASSERT_EQ(c.tables.size(), 3u);
  const auto* users = c.table("bank", "customers");
  ASSERT_NE(users, nullptr);
  EXPECT_EQ(users->schema, "bank");
  EXPECT_EQ(users->name, "customers");
  EXPECT_EQ(users->model, "users");
  EXPECT_EQ(users->priority, 0);
  ASSERT_NE(c.table("bank", "accounts"), nullptr);
  EXPECT_EQ(c.table("bank", "accounts")->priority, 255);
  const auto* ledger = c.table("public", "ledger");  // no schema: public
  ASSERT_NE(ledger, nullptr);
  EXPECT_EQ(ledger->model, "transactions");
  EXPECT_EQ(ledger->priority, 5);  // default priority
  EXPECT_EQ(c.table_for("users"), users);
  EXPECT_EQ(c.table_for("transactions"), ledger);
  EXPECT_EQ(c.reader.status_interval.count(), 10);
  EXPECT_EQ(c.reader.enqueue_max_delay.count(), 0);
  EXPECT_EQ(c.reader.enqueue_batch_jobs, 100000);
  EXPECT_EQ(c.reader.reconnect_min.count(), 10);
  EXPECT_EQ(c.reader.reconnect_max.count(), 3600000);
  EXPECT_EQ(c.workers.count, 0);
  EXPECT_EQ(c.workers.batch_keys, 10000);
  EXPECT_EQ(c.workers.batch_jobs_per_key, 1);
  EXPECT_EQ(c.workers.lease.count(), 1000);
  EXPECT_EQ(c.workers.idle_poll_max.count(), 10000);
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.state_dir, "/tmp/wf");
}

TEST(Config, DefaultsWhenSectionsOmitted) {
  Config c = projections::parse_config("postgres:\n  dsn: \"host=db dbname=bank\"\n", "min.yaml");
  EXPECT_EQ(c.source_file, "min.yaml");
  EXPECT_EQ(c.postgres.dsn, "host=db dbname=bank");
  EXPECT_EQ(c.postgres.password_file, "");
  EXPECT_EQ(c.postgres.slot, "walfold");
  EXPECT_EQ(c.postgres.publication, "walfold");
  EXPECT_EQ(c.redis.host, "127.0.0.1");
  EXPECT_EQ(c.redis.port, 6379);
  EXPECT_EQ(c.redis.unix_socket, "");
  EXPECT_EQ(c.redis.db, 0);
  EXPECT_EQ(c.redis.prefix, "walfold");
  EXPECT_EQ(c.mongodb.uri, "mongodb://127.0.0.1:27017");
  EXPECT_EQ(c.mongodb.database, "walfold");
  EXPECT_EQ(c.mongodb.write_concern, "majority");

  ASSERT_EQ(c.tables.size(), 3u);
  const auto* users = c.table("public", "users");
  const auto* accounts = c.table("public", "accounts");
  const auto* txs = c.table("public", "transactions");
  ASSERT_NE(users, nullptr);
  ASSERT_NE(accounts, nullptr);
  ASSERT_NE(txs, nullptr);
  EXPECT_EQ(users->model, "users");
  EXPECT_EQ(accounts->model, "accounts");
  EXPECT_EQ(txs->model, "transactions");
  EXPECT_EQ(users->priority, 3);
  EXPECT_EQ(accounts->priority, 3);
  EXPECT_EQ(txs->priority, 5);
  EXPECT_EQ(c.table_for("users"), users);
  EXPECT_EQ(c.table_for("accounts"), accounts);
  EXPECT_EQ(c.table_for("transactions"), txs);

  const ReaderConfig rd;
  EXPECT_EQ(c.reader.status_interval, rd.status_interval);
  EXPECT_EQ(c.reader.enqueue_max_delay, rd.enqueue_max_delay);
  EXPECT_EQ(c.reader.enqueue_batch_jobs, rd.enqueue_batch_jobs);
  const WorkerConfig w;
  EXPECT_EQ(c.workers.count, w.count);
  EXPECT_EQ(c.workers.count, 2);
  EXPECT_EQ(c.workers.lease, std::chrono::milliseconds(30000));
  EXPECT_EQ(c.workers.batch_keys, w.batch_keys);
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.state_dir, "/var/lib/walfold");
}

TEST(Config, PartialSectionsKeepOtherDefaults) {
  Config c = projections::parse_config(
      "postgres:\n  dsn: x\nredis:\n  port: 7000\nworkers:\n  count: 8\n", "cfg.yaml");
  EXPECT_EQ(c.redis.port, 7000);
  EXPECT_EQ(c.redis.host, "127.0.0.1");
  EXPECT_EQ(c.redis.prefix, "walfold");
  EXPECT_EQ(c.workers.count, 8);
  EXPECT_EQ(c.workers.batch_keys, 256);
  EXPECT_EQ(c.workers.lease, std::chrono::milliseconds(30000));
}

// The models a `tables:` entry may name are the selected projection's (the bank's by default).
TEST(Config, ModelNames) {
  const ProjectionConfigSpec* bank = nullptr;
  for (const auto* s : projections::config_specs())
    if (s->name == "bank") bank = s;
  ASSERT_NE(bank, nullptr);
  EXPECT_EQ(bank->models, (std::vector<std::string>{"users", "accounts", "transactions"}));
}

TEST(Config, MalformedYamlNamesFileLineColumn) {
  // Unclosed bracket on line 3, at the end of the file.
  auto msg = config_error("postgres:\n  dsn: x\n  slot: [a, b");
  expect_located(msg, 3);
  expect_contains(msg, {"cfg.yaml:3:", "malformed YAML"});

  // A stray closing bracket on line 3, column 15.
  msg = config_error("postgres:\n  dsn: x\n  slot: [a, b]]\n");
  expect_contains(msg, {"cfg.yaml:3:15:", "malformed YAML"});

  // Unclosed bracket with more lines after it: still a FILE:LINE:COLUMN message.
  msg = config_error("postgres:\n  dsn: x\n  slot: [a, b\nredis:\n  port: 1\n");
  EXPECT_TRUE(std::regex_match(msg, std::regex("^cfg\\.yaml:[0-9]+:[0-9]+: malformed YAML.*")))
      << msg;

  // Bad indentation.
  msg = config_error("postgres:\n  dsn: x\n slot: y\n");
  EXPECT_TRUE(std::regex_match(msg, std::regex("^cfg\\.yaml:[0-9]+:[0-9]+: .+"))) << msg;
}

TEST(Config, EmptyOrNonMappingFile) {
  auto msg = config_error("");
  expect_contains(msg, {"cfg.yaml", "empty"});
  msg = config_error("# only a comment\n");
  expect_contains(msg, {"cfg.yaml", "empty"});
  msg = config_error("- a\n- b\n");
  expect_located(msg, 1);
  msg = config_error("just a string\n");
  expect_located(msg, 1);
}

TEST(Config, UnknownKeyNamesKeyAndLine) {
  auto msg = config_error("postgres:\n  dsn: x\nredis:\n  prot: 6379\n");
  expect_contains(msg, {"cfg.yaml:4:3:", "'prot'", "redis"});

  msg = config_error("postgres:\n  dsn: x\nlogging: debug\n");
  expect_contains(msg, {"cfg.yaml:3:1:", "'logging'"});

  msg = config_error("postgres:\n  dsn: x\n  passwd: hunter2\n");
  expect_contains(msg, {"cfg.yaml:3:3:", "'passwd'", "postgres"});

  msg = config_error(
      "postgres:\n  dsn: x\ntables:\n  public.users: { model: users, prio: 1 }\n"
      "  public.accounts: { model: accounts }\n  public.transactions: { model: transactions }\n");
  expect_located(msg, 4);
  expect_contains(msg, {"'prio'", "public.users"});

  msg = config_error("postgres:\n  dsn: x\nworkers:\n  count: 2\n  lease: 1000\n");
  expect_contains(msg, {"cfg.yaml:5:3:", "'lease'"});

  msg = config_error("postgres:\n  dsn: x\nreader:\n  status_interval: 5\n");
  expect_contains(msg, {"cfg.yaml:4:3:", "'status_interval'"});

  msg = config_error("postgres:\n  dsn: x\nmongodb:\n  url: mongodb://h\n");
  expect_contains(msg, {"cfg.yaml:4:3:", "'url'"});
}

TEST(Config, WrongType) {
  auto msg = config_error("postgres:\n  dsn: x\nredis:\n  port: \"abc\"\n");
  expect_located(msg, 4);
  expect_contains(msg, {"redis.port"});

  msg = config_error("postgres:\n  dsn: x\nworkers:\n  count: [1, 2]\n");
  expect_located(msg, 4);
  expect_contains(msg, {"workers.count"});

  msg = config_error("postgres:\n  dsn: x\nworkers:\n  lease_ms: 1.5\n");
  expect_located(msg, 4);
  expect_contains(msg, {"workers.lease_ms"});

  msg = config_error("postgres:\n  dsn: {a: 1}\n");
  expect_located(msg, 2);
  expect_contains(msg, {"postgres.dsn"});

  msg = config_error(
      "postgres:\n  dsn: x\ntables:\n  public.users: { model: users, priority: high }\n"
      "  public.accounts: { model: accounts }\n  public.transactions: { model: transactions }\n");
  expect_located(msg, 4);
  expect_contains(msg, {"priority"});

  msg = config_error("postgres: [dsn, x]\n");
  expect_located(msg, 1);
  expect_contains(msg, {"postgres"});

  msg = config_error("postgres:\n  dsn: x\ntables: [a, b]\n");
  expect_located(msg, 3);
  expect_contains(msg, {"tables"});
}

TEST(Config, OutOfRange) {
  auto msg = config_error("postgres:\n  dsn: x\nworkers:\n  count: 1000\n");
  expect_located(msg, 4);
  expect_contains(msg, {"workers.count", "1000", "out of range", "[0, 256]"});

  msg = config_error("postgres:\n  dsn: x\nworkers:\n  count: -1\n");
  expect_located(msg, 4);
  expect_contains(msg, {"workers.count"});

  msg = config_error("postgres:\n  dsn: x\nredis:\n  host: h\n  port: 0\n");
  expect_located(msg, 5);
  expect_contains(msg, {"redis.port"});

  msg = config_error("postgres:\n  dsn: x\nredis:\n  port: 65536\n");
  expect_located(msg, 4);
  expect_contains(msg, {"redis.port", "65536"});

  msg = config_error("postgres:\n  dsn: x\nredis:\n  db: 16\n");
  expect_located(msg, 4);
  expect_contains(msg, {"redis.db"});

  msg = config_error("postgres:\n  dsn: x\nworkers:\n  lease_ms: 999\n");
  expect_located(msg, 4);
  expect_contains(msg, {"workers.lease_ms", "999"});

  msg = config_error(
      "postgres:\n  dsn: x\ntables:\n  public.users: { model: users, priority: 256 }\n"
      "  public.accounts: { model: accounts }\n  public.transactions: { model: transactions }\n");
  expect_located(msg, 4);
  expect_contains(msg, {"priority", "256"});

  // Larger than an int.
  msg = config_error("postgres:\n  dsn: x\nworkers:\n  count: 99999999999\n");
  expect_located(msg, 4);
  expect_contains(msg, {"workers.count"});
}

TEST(Config, BadSlotOrPublicationName) {
  auto msg = config_error("postgres:\n  dsn: x\n  slot: My-Slot\n");
  expect_located(msg, 3);
  expect_contains(msg, {"postgres.slot", "My-Slot"});

  msg = config_error("postgres:\n  dsn: x\n  publication: \"pub lication\"\n");
  expect_located(msg, 3);
  expect_contains(msg, {"postgres.publication"});

  msg = config_error("postgres:\n  dsn: x\n  slot: " + std::string(64, 'a') + "\n");
  expect_located(msg, 3);
  expect_contains(msg, {"postgres.slot"});

  msg = config_error("postgres:\n  dsn: x\n  slot: \"\"\n");
  expect_located(msg, 3);
  expect_contains(msg, {"postgres.slot"});

  // 63 characters of [a-z0-9_] are fine.
  Config c = projections::parse_config(
      "postgres:\n  dsn: x\n  slot: " + std::string(62, 'a') + "_\n", "cfg.yaml");
  EXPECT_EQ(c.postgres.slot.size(), 63u);
}

TEST(Config, BadRedisPrefix) {
  for (const char* p : {"\"a:b\"", "\"a{b}\"", "\"a b\"", "\"\""}) {
    auto msg = config_error(std::string("postgres:\n  dsn: x\nredis:\n  prefix: ") + p + "\n");
    expect_located(msg, 4);
    expect_contains(msg, {"redis.prefix"});
  }
}

TEST(Config, MissingPostgresDsn) {
  auto msg = config_error("postgres:\n  slot: walfold\n");
  EXPECT_TRUE(std::regex_match(msg, std::regex("^cfg\\.yaml:[0-9]+:[0-9]+: .+"))) << msg;
  expect_contains(msg, {"postgres.dsn", "required"});

  msg = config_error("postgres:\n  dsn: \"\"\n");
  EXPECT_TRUE(std::regex_match(msg, std::regex("^cfg\\.yaml:[0-9]+:[0-9]+: .+"))) << msg;
  expect_contains(msg, {"postgres.dsn"});

  msg = config_error("redis:\n  port: 6379\n");
  EXPECT_TRUE(std::regex_match(msg, std::regex("^cfg\\.yaml:[0-9]+:[0-9]+: .+"))) << msg;
  expect_contains(msg, {"postgres"});
}

TEST(Config, BadMongoUri) {
  for (const char* uri : {"http://127.0.0.1:27017", "127.0.0.1:27017", "\"\"", "mongodb:/h"}) {
    auto msg = config_error(std::string("postgres:\n  dsn: x\nmongodb:\n  database: d\n  uri: ") +
                            uri + "\n");
    expect_located(msg, 5);
    expect_contains(msg, {"mongodb.uri"});
  }
}

TEST(Config, TwoTablesWithTheSameModel) {
  auto msg = config_error(
      "postgres:\n  dsn: x\ntables:\n  public.users: { model: users }\n"
      "  public.customers: { model: users }\n  public.accounts: { model: accounts }\n"
      "  public.transactions: { model: transactions }\n");
  EXPECT_TRUE(std::regex_match(msg, std::regex("^cfg\\.yaml:[0-9]+:[0-9]+: .+"))) << msg;
  expect_contains(msg, {"'users'", "found 2"});
}

TEST(Config, MissingModelTable) {
  auto msg = config_error(
      "postgres:\n  dsn: x\ntables:\n  public.users: { model: users }\n"
      "  public.accounts: { model: accounts }\n");
  EXPECT_TRUE(std::regex_match(msg, std::regex("^cfg\\.yaml:[0-9]+:[0-9]+: .+"))) << msg;
  expect_contains(msg, {"'transactions'", "found 0"});
}

TEST(Config, BadModelName) {
  auto msg = config_error(
      "postgres:\n  dsn: x\ntables:\n  public.users: { model: users }\n"
      "  public.accounts: { model: account }\n  public.transactions: { model: transactions }\n");
  expect_located(msg, 5);
  expect_contains(msg, {"'account'", "users, accounts, transactions"});

  msg = config_error(
      "postgres:\n  dsn: x\ntables:\n  public.users: { priority: 1 }\n"
      "  public.accounts: { model: accounts }\n  public.transactions: { model: transactions }\n");
  expect_located(msg, 4);
  expect_contains(msg, {"public.users.model", "required"});
}

// A non-scalar model or key is a ConfigError naming cfg.yaml:LINE:COLUMN, not a yaml-cpp
// conversion error escaping parse_config.
TEST(Config, NonScalarModelOrKeyIsAConfigError) {
  auto msg = config_error(
      "postgres:\n  dsn: x\ntables:\n  public.users: { model: [users] }\n"
      "  public.accounts: { model: accounts }\n  public.transactions: { model: transactions }\n");
  expect_located(msg, 4);
  expect_contains(msg, {"model"});

  msg = config_error("postgres:\n  dsn: x\n[a, b]: 1\n");
  expect_located(msg, 3);

  msg = config_error("postgres:\n  dsn: x\ntables:\n  [a]: { model: users }\n");
  expect_located(msg, 4);
}

TEST(Config, LoadConfigNamesThePath) {
  TempDir dir;
  auto good = dir.write("good.yaml", kExampleYaml);
  Config c = projections::load_config(good.string());
  EXPECT_EQ(c.source_file, good.string());
  expect_example_values(c);

  auto bad = dir.write("bad.yaml", "postgres:\n  dsn: x\n  slot: [a, b");
  try {
    projections::load_config(bad.string());
    ADD_FAILURE() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(bad.string() + ":3:", 0), 0u) << e.what();
  }

  auto missing = dir.path() / "does-not-exist.yaml";
  try {
    projections::load_config(missing.string());
    ADD_FAILURE() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(missing.string()), std::string::npos) << e.what();
  }
}

TEST(Config, ReadSecretFile) {
  TempDir dir;
  EXPECT_EQ(read_secret_file(dir.write("a", "s3cret\n").string()), "s3cret");
  EXPECT_EQ(read_secret_file(dir.write("b", "s3cret").string()), "s3cret");
  EXPECT_EQ(read_secret_file(dir.write("c", "s3cret\r\n").string()), "s3cret");
  EXPECT_EQ(read_secret_file(dir.write("d", "with space \n").string()), "with space ");
  EXPECT_EQ(read_secret_file(dir.write("e", "line1\nline2\n").string()), "line1\nline2");

  auto missing = (dir.path() / "no-such-secret").string();
  try {
    read_secret_file(missing);
    ADD_FAILURE() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
}

// KNOWN BUG (config/config.cpp, read_secret_file): a directory opens fine as an ifstream and the
// read then throws std::ios_base::failure ("basic_filebuf::underflow ... Is a directory"): not a
// ConfigError, and the path is not named. Enable once fixed.
TEST(Config, SecretFileThatIsADirectory) {
  TempDir dir;
  try {
    read_secret_file(dir.path().string());
    ADD_FAILURE() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(dir.path().string()), std::string::npos) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected ConfigError, got: " << e.what();
  }
}

// The password travels apart from the connection string, which stays as written (bug #10: it
// was appended to the string, which broke URIs and put it into PostgreSQL's log).
TEST(Config, PostgresConninfoKeepsThePasswordOutOfTheDsn) {
  TempDir dir;
  PostgresConfig pg;
  pg.dsn = "postgresql://walfold@db/bank?sslmode=require";
  auto info = postgres_conninfo(pg);
  EXPECT_EQ(info.dsn, pg.dsn);
  EXPECT_EQ(info.password, "");  // no password file: libpq's own sources count

  pg.password_file = dir.write("pw", "it's a \\ pass word\n").string();
  info = postgres_conninfo(pg);
  EXPECT_EQ(info.dsn, pg.dsn);
  EXPECT_EQ(info.password, "it's a \\ pass word");

  pg.password_file = (dir.path() / "missing").string();
  try {
    postgres_conninfo(pg);
    ADD_FAILURE() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(pg.password_file), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace walfold

namespace walfold {
namespace {
// yaml-cpp silently keeps one of two equal keys; walfold refuses, naming both lines.
TEST(Config, DuplicateKeysAreErrors) {
  auto top = config_error(
      "postgres:\n  dsn: x\nreader:\n  status_interval_ms: 200\n"
      "reader:\n  heartbeat_interval_ms: 0\n");
  EXPECT_NE(top.find("cfg.yaml:5:1: duplicate key 'reader' in the top level (first at line 3)"),
            std::string::npos)
      << top;
  auto inner = config_error("postgres:\n  dsn: x\n  slot: a\n  slot: b\n");
  EXPECT_NE(inner.find("cfg.yaml:4:3: duplicate key 'slot' in postgres (first at line 3)"),
            std::string::npos)
      << inner;
}
}  // namespace
}  // namespace walfold
