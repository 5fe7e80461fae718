// Bad input gets a clear error that names the problem, and the right exit code (sysexits).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>

#include "common/lsn.h"
#include "tests/harness/bank_env.h"

namespace walfold::test {
namespace {

constexpr int kExUnavailable = 69, kExConfig = 78, kExDataErr = 65;

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

// A loopback port with nothing listening on it.
int closed_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

std::string write_file(const std::string& text) {
  char tmpl[] = "/tmp/wf-cfg-XXXXXX";
  int fd = mkstemp(tmpl);
  close(fd);
  std::ofstream(tmpl) << text;
  return tmpl;
}

CmdResult walfold(std::vector<std::string> args, int timeout_s = 120) {
  args.insert(args.begin(), walfold_binary());
  return run_command(args, timeout_s);
}

TEST(Errors, MalformedYamlNamesFileLineAndColumn) {
  auto path = write_file("postgres:\n  dsn: \"host=x\"\n  - item\n");
  auto r = walfold({"status", "--config", path});
  EXPECT_EQ(r.status, kExConfig) << r.output;
  EXPECT_TRUE(contains(r.output, path + ":3:3:")) << r.output;
  EXPECT_TRUE(contains(r.output, "malformed YAML")) << r.output;
}

TEST(Errors, UnknownKeyAndWrongTypeNameTheirLine) {
  auto path = write_file("postgres:\n  dsn: \"host=x\"\n  slots: walfold\n");
  auto r = walfold({"status", "--config", path});
  EXPECT_EQ(r.status, kExConfig) << r.output;
  EXPECT_TRUE(contains(r.output, path + ":3:3: unknown key 'slots' in postgres")) << r.output;
  path = write_file("postgres:\n  dsn: \"host=x\"\nredis:\n  port: many\n");
  r = walfold({"status", "--config", path});
  EXPECT_EQ(r.status, kExConfig) << r.output;
  EXPECT_TRUE(contains(r.output, path + ":4:9: redis.port has the wrong type")) << r.output;
}

TEST(Errors, MissingConfigFileIsNamed) {
  auto r = walfold({"status", "--config", "/nonexistent/walfold.yaml"});
  EXPECT_EQ(r.status, kExConfig) << r.output;
  EXPECT_TRUE(contains(r.output, "/nonexistent/walfold.yaml: cannot open")) << r.output;
}

TEST(Errors, UnreachablePostgresNamesItsAddress) {
  int port = closed_port();
  auto path = write_file("postgres:\n  dsn: \"host=127.0.0.1 port=" + std::to_string(port) +
                         " dbname=x user=y password=hunter2\"\n");
  auto r = walfold({"setup", "--config", path});
  EXPECT_EQ(r.status, kExUnavailable) << r.output;
  EXPECT_TRUE(contains(r.output, "postgresql at 127.0.0.1:" + std::to_string(port))) << r.output;
  EXPECT_FALSE(contains(r.output, "hunter2")) << "a secret reached the output: " << r.output;
}

TEST(Errors, UnreachableRedisNamesItsAddress) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  int port = closed_port();
  auto path = write_file("postgres:\n  dsn: \"" + env.dsn + "\"\n  slot: " + env.name +
                         "\n  publication: " + env.name +
                         "\nredis:\n  host: 127.0.0.1\n  port: " + std::to_string(port) + "\n");
  auto r = walfold({"status", "--config", path});
  EXPECT_EQ(r.status, kExUnavailable) << r.output;
  EXPECT_TRUE(contains(r.output, "redis at 127.0.0.1:" + std::to_string(port) + " is unreachable"))
      << r.output;
}

TEST(Errors, UnreachableMongoNamesItsAddress) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  int port = closed_port();
  auto path = write_file("postgres:\n  dsn: \"" + env.dsn +
                         "\"\nmongodb:\n  uri: \"mongodb://127.0.0.1:" + std::to_string(port) +
                         "/?serverSelectionTimeoutMS=1000\"\n");
  auto r = walfold({"report", "--from", "mongo", "--config", path});
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "127.0.0.1:" + std::to_string(port))) << r.output;
}

TEST(Errors, MissingPublicationIsReportedBeforeStreaming) {
  BankEnv env;
  pg_query(env.dsn, std::string("CREATE TABLE users (id bigserial primary key, full_name text, "
                                "email text, created_at timestamptz);"));
  auto r = env.cmd("run", {"--stop-at-lsn", "current"}, 60);
  EXPECT_EQ(r.status, kExConfig) << r.output;
  EXPECT_TRUE(contains(r.output, "publication '" + env.name + "' does not exist")) << r.output;
  EXPECT_TRUE(contains(r.output, "walfold setup")) << r.output;
}

TEST(Errors, MissingReplicaIdentityFullIsReported) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  pg_query(env.dsn, "ALTER TABLE transactions REPLICA IDENTITY DEFAULT");
  auto r = env.cmd("run", {"--stop-at-lsn", "current"}, 60);
  EXPECT_EQ(r.status, kExConfig) << r.output;
  EXPECT_TRUE(contains(r.output, "REPLICA IDENTITY FULL")) << r.output;
}

TEST(Errors, MissingTableIsReported) {
  BankEnv env;
  auto r = env.cmd("setup");
  EXPECT_EQ(r.status, kExConfig) << r.output;
  EXPECT_TRUE(contains(r.output, "does not exist")) << r.output;
  EXPECT_TRUE(contains(r.output, "--schema")) << r.output;
}

TEST(Errors, WrongWalLevelIsReported) {
  // A second, private PostgreSQL with wal_level=replica (the shared one is logical).
  const auto& s = servers();
  char tmpl[] = "/tmp/wf-pgrep-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  int port = closed_port();
  auto as_pg = [&](const std::string& cmd) {
    std::string full = geteuid() == 0 ? "runuser -u postgres -- " + cmd : cmd;
    return run_command({"bash", "-c", full}, 120);
  };
  if (geteuid() == 0) {
    ASSERT_EQ(run_command({"chown", "postgres:postgres", dir}, 10).status, 0);
  }
  auto init = as_pg(s.pg_bin_dir + "/initdb -D " + dir + "/data -U admin --auth=trust");
  ASSERT_EQ(init.status, 0) << init.output;
  auto start = as_pg(s.pg_bin_dir + "/pg_ctl -D " + dir + "/data -l " + dir +
                     "/log -w start -o \"-p " + std::to_string(port) + " -k " + dir +
                     " -c listen_addresses=127.0.0.1 -c wal_level=replica\"");
  ASSERT_EQ(start.status, 0) << start.output;
  auto path = write_file("postgres:\n  dsn: \"host=127.0.0.1 port=" + std::to_string(port) +
                         " dbname=postgres user=admin\"\n");
  auto r = walfold({"setup", "--config", path, "--schema"});
  as_pg(s.pg_bin_dir + "/pg_ctl -D " + dir + "/data -m immediate stop");
  EXPECT_EQ(r.status, kExConfig) << r.output;
  EXPECT_TRUE(contains(r.output, "wal_level = 'replica'")) << r.output;
  EXPECT_TRUE(contains(r.output, "127.0.0.1:" + std::to_string(port))) << r.output;
}

TEST(Errors, NanAmountHoldsOnlyItsAccountAndIsLogged) {
  // Three quick attempts, then the key is dead-lettered (issue #4).
  BankEnv env("", "  retry: {initial_ms: 10, max_ms: 50, max_attempts: 3}\n");
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(
      env.cmd("loadgen", {"--users", "10", "--transactions", "50", "--seed", "2", "--no-progress"})
          .status,
      0);
  // numeric NaN passes CHECK (amount > 0); walfold must refuse to fold it, not poison a balance.
  pg_query(env.dsn,
           "INSERT INTO transactions (account_id, amount, kind) VALUES (1, 'NaN', 'deposit')");
  pg_query(env.dsn,
           "INSERT INTO transactions (account_id, amount, kind) VALUES (2, 7.0000, 'deposit')");
  Process daemon({walfold_binary(), "run", "--config", env.config_path});
  ASSERT_TRUE(
      daemon.wait_for_output("cannot be held exactly by Decimal128", std::chrono::seconds(60)))
      << daemon.output();
  // Everything else is folded: account 2 got its deposit, account 1 is held before the NaN.
  ASSERT_TRUE(
      wait_until([&] { return balance_matches_postgres(env, 2); }, std::chrono::seconds(60)));
  auto out = daemon.output();
  EXPECT_TRUE(contains(out, "transactions row id=")) << out;
  EXPECT_TRUE(contains(out, "column amount")) << out;
  EXPECT_EQ(redis_cmd({"ZCARD", env.queue_prefix() + ":pending"}), "1")
      << "only the NaN job's commit stays pending";
  EXPECT_EQ(redis_cmd({"HVALS", env.queue_prefix() + ":left"}), "1")
      << "only the NaN job stays pending";
  // After max_attempts the key is a dead letter: logged loudly, listed, and still pending.
  ASSERT_TRUE(daemon.wait_for_output("DEAD LETTER: key a:1", std::chrono::seconds(60)))
      << daemon.output();
  auto list = env.cmd("queue", {"dead", "list"});
  EXPECT_EQ(list.status, 0) << list.output;
  EXPECT_TRUE(contains(list.output, "a:1")) << list.output;
  EXPECT_TRUE(contains(list.output, "column amount")) << list.output;
  auto status = env.cmd("status", {});
  EXPECT_TRUE(contains(status.output, "dead keys     1")) << status.output;
  EXPECT_EQ(redis_cmd({"ZCARD", env.queue_prefix() + ":pending"}), "1");
  daemon.signal(SIGTERM);
  auto st = daemon.wait(std::chrono::seconds(60));
  ASSERT_TRUE(st.has_value());
  // A run that should stop once caught up cannot get past a dead key: it says so and ends.
  auto stuck = env.cmd("run", {"--stop-at-lsn", "current"}, 120);
  EXPECT_EQ(stuck.status, 65) << stuck.output;
  EXPECT_TRUE(contains(stuck.output, "wait behind 1 dead keys")) << stuck.output;
  // The slot is held before the poison commit: it is replayed once fixed.
  auto held = pg_scalar(
      env.dsn,
      "SELECT confirmed_flush_lsn < (SELECT max(lsn) FROM pg_logical_slot_peek_binary_changes('" +
          env.name + "', NULL, NULL, 'proto_version', '1', 'publication_names', '" + env.name +
          "')) FROM pg_replication_slots WHERE slot_name = '" + env.name + "'");
  EXPECT_EQ(held, "t");
}

TEST(Errors, ADocumentMongoRefusesIsDeadLetteredAndRetriedAfterTheFix) {
  // A write MongoDB refuses for the document itself (here a validator an operator added) fails
  // the same way on every retry: after max_attempts its key is a dead letter, not retried
  // forever in silence, and every other account goes on.
  BankEnv env("", "  retry: {initial_ms: 10, max_ms: 50, max_attempts: 3}\n");
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(
      env.cmd("loadgen", {"--users", "10", "--transactions", "50", "--seed", "4", "--no-progress"})
          .status,
      0);
  run_until_caught_up(env);
  mongo_command(servers().mongo_uri, env.mongo_db,
                R"({"collMod": "accounts", "validator": {"_id": {"$ne": 1}}})");
  pg_query(env.dsn,
           "INSERT INTO transactions (account_id, amount, kind) VALUES (1, 5.0000, 'deposit')");
  pg_query(env.dsn,
           "INSERT INTO transactions (account_id, amount, kind) VALUES (2, 7.0000, 'deposit')");
  Process daemon({walfold_binary(), "run", "--config", env.config_path});
  ASSERT_TRUE(daemon.wait_for_output("DEAD LETTER: key a:1", std::chrono::seconds(60)))
      << daemon.output();
  EXPECT_TRUE(contains(daemon.output(), "Document failed validation")) << daemon.output();
  ASSERT_TRUE(
      wait_until([&] { return balance_matches_postgres(env, 2); }, std::chrono::seconds(60)));
  EXPECT_FALSE(balance_matches_postgres(env, 1));
  auto list = env.cmd("queue", {"dead", "list"});
  EXPECT_TRUE(contains(list.output, "a:1")) << list.output;
  EXPECT_TRUE(contains(list.output, "Document failed validation")) << list.output;

  // The operator removes the validator and retries the key: it folds, nothing doubled.
  mongo_command(servers().mongo_uri, env.mongo_db, R"({"collMod": "accounts", "validator": {}})");
  auto retry = env.cmd("queue", {"dead", "retry", "a:1"});
  ASSERT_EQ(retry.status, 0) << retry.output;
  ASSERT_TRUE(
      wait_until([&] { return balance_matches_postgres(env, 1); }, std::chrono::seconds(60)))
      << daemon.output();
  stop_cleanly(daemon);
  run_until_caught_up(env);
  expect_read_model_exact(env);
  expect_verify_clean(env);
}

TEST(Errors, AnOversizedTransactionStopsTheReaderAndLosesNothing) {
  BankEnv env("", "", "  max_transaction_mb: 1\n");
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(env.cmd("loadgen", {"--users", "10", "--transactions", "50", "--no-progress"}).status,
            0);
  run_until_caught_up(env);
  // About 7 MB of changes in one transaction.
  pg_query(env.dsn,
           "INSERT INTO transactions (account_id, amount, kind) SELECT 1 + g % 10, 1.0000, "
           "'deposit' FROM generate_series(1, 20000) g");
  const auto after = *parse_lsn(pg_scalar(env.dsn, "SELECT pg_current_wal_lsn()"));
  auto r = env.cmd("run", {"--stop-at-lsn", "current"}, 120);
  EXPECT_EQ(r.status, 65) << r.output;
  EXPECT_TRUE(contains(r.output, "holds more than 1 MiB of changes")) << r.output;
  EXPECT_TRUE(contains(r.output, "raise reader.max_transaction_mb")) << r.output;
  EXPECT_LT(slot_confirmed(env), after) << "the refused transaction must stay in the slot";
  // With room for it, the same transaction is folded, exactly once.
  const std::string roomy = env.dir + "/roomy.yaml";
  run_command(
      {"bash", "-c",
       "sed 's/max_transaction_mb: 1$/max_transaction_mb: 64/' " + env.config_path + " > " + roomy},
      10);
  auto ok = walfold({"run", "--config", roomy, "--stop-at-lsn", "current"});
  ASSERT_EQ(ok.status, 0) << ok.output;
  expect_read_model_exact(env);
  expect_verify_clean(env);
}

}  // namespace
}  // namespace walfold::test
