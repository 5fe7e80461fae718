// Proves the test harness works: real PostgreSQL 15 with logical WAL, real Redis with AOF, the
// MongoDB endpoint, fault injection, and the process helpers.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <set>
#include <string>

#include "servers.h"

using namespace walfold::test;
using namespace std::chrono_literals;

namespace {

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no exception)";
}

bool pid_alive(const std::string& pid) {
  return !pid.empty() && ::kill(static_cast<pid_t>(std::stol(pid)), 0) == 0;
}

}  // namespace

// ---- PostgreSQL ------------------------------------------------------------------------------

TEST(HarnessPg, IsPostgres15WithLogicalWalAndTestSettings) {
  const std::string dsn = fresh_pg_database("selftest");
  const int version = std::stoi(pg_scalar(dsn, "SHOW server_version_num"));
  EXPECT_GE(version, 150000);
  EXPECT_LT(version, 160000);
  EXPECT_EQ(pg_scalar(dsn, "SHOW wal_level"), "logical");
  EXPECT_EQ(pg_scalar(dsn, "SHOW max_replication_slots"), "20");
  EXPECT_EQ(pg_scalar(dsn, "SHOW max_wal_senders"), "20");
  EXPECT_EQ(pg_scalar(dsn, "SHOW max_connections"), "200");
  EXPECT_EQ(pg_scalar(dsn, "SHOW fsync"), "off");
  EXPECT_EQ(pg_scalar(dsn, "SHOW full_page_writes"), "off");
  EXPECT_EQ(pg_scalar(dsn, "SHOW synchronous_commit"), "on");
  EXPECT_EQ(pg_scalar(dsn, "SHOW shared_buffers"), "128MB");
  EXPECT_EQ(pg_scalar(dsn, "SHOW wal_sender_timeout"), "1min");
  EXPECT_EQ(pg_scalar(dsn, "SHOW listen_addresses"), "127.0.0.1");
  EXPECT_EQ(pg_scalar(dsn, "SHOW port"), std::to_string(servers().pg_port));
  EXPECT_EQ(pg_scalar(dsn, "SHOW unix_socket_directories"), servers().pg_socket_dir);
  EXPECT_EQ(pg_scalar(dsn, "SELECT rolsuper::text FROM pg_roles WHERE rolname = current_user"),
            "true");
  EXPECT_EQ(servers().pg_host, "127.0.0.1");
  EXPECT_GE(servers().pg_port, 20000);
  EXPECT_LE(servers().pg_port, 40000);
}

TEST(HarnessPg, UnixSocketConnectionWorks) {
  const Servers& s = servers();
  const std::string dsn = "host=" + s.pg_socket_dir + " port=" + std::to_string(s.pg_port) +
                          " dbname=postgres user=" + s.pg_superuser;
  auto rows = pg_query(dsn, "SELECT inet_server_addr(), 42");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_FALSE(rows[0][0].has_value()) << "expected a Unix-socket connection";
  EXPECT_EQ(rows[0][1], "42");
}

TEST(HarnessPg, LogicalSlotWithPgoutputCanBeCreatedAndDropped) {
  const std::string dsn = fresh_pg_database("slot");
  const std::string slot = unique_name("selftest_slot");
  pg_query(dsn,
           "CREATE TABLE accounts (id int PRIMARY KEY, owner text);"
           "CREATE PUBLICATION selftest_pub FOR TABLE accounts;");
  pg_query(dsn, "SELECT pg_create_logical_replication_slot('" + slot + "', 'pgoutput')");
  auto rows = pg_query(dsn,
                       "SELECT plugin, slot_type, database = current_database() "
                       "FROM pg_replication_slots WHERE slot_name = '" +
                           slot + "'");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][0], "pgoutput");
  EXPECT_EQ(rows[0][1], "logical");
  EXPECT_EQ(rows[0][2], "t");

  pg_query(dsn, "INSERT INTO accounts VALUES (1, 'ada'), (2, 'bob')");
  // BEGIN, RELATION, INSERT, INSERT, COMMIT.
  const int changes = std::stoi(pg_scalar(
      dsn, "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('" + slot +
               "', NULL, NULL, 'proto_version', '1', 'publication_names', 'selftest_pub')"));
  EXPECT_GE(changes, 5);

  pg_query(dsn, "SELECT pg_drop_replication_slot('" + slot + "')");
  EXPECT_EQ(
      pg_scalar(dsn, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '" + slot + "'"),
      "0");
}

TEST(HarnessPg, ReplicationRoleNeedsItsPasswordAndCanOpenAWalsender) {
  const std::string dsn = fresh_pg_database("repl");
  const std::string rdsn = replication_dsn(dsn);
  EXPECT_TRUE(contains(rdsn, "user=walfold")) << rdsn;
  EXPECT_EQ(pg_scalar(rdsn, "SELECT current_user"), "walfold");
  EXPECT_EQ(pg_scalar(rdsn, "SELECT rolreplication::text FROM pg_roles WHERE rolname = 'walfold'"),
            "true");
  EXPECT_EQ(pg_scalar(rdsn, "SELECT rolsuper::text FROM pg_roles WHERE rolname = 'walfold'"),
            "false");

  // A walsender ("replication=database") connection, as walfold opens one.
  auto ident = pg_query(dsn_with(rdsn, "replication", "database"), "IDENTIFY_SYSTEM");
  ASSERT_EQ(ident.size(), 1u);
  ASSERT_EQ(ident[0].size(), 4u);  // systemid, timeline, xlogpos, dbname
  EXPECT_EQ(ident[0][3], pg_scalar(dsn, "SELECT current_database()"));

  const std::string err =
      error_of([&] { pg_query(dsn_with(rdsn, "password", "wrong"), "SELECT 1"); });
  EXPECT_TRUE(contains(err, "password authentication failed")) << err;
}

TEST(HarnessPg, FreshDatabasesAreDistinct) {
  const std::string a = fresh_pg_database("iso");
  const std::string b = fresh_pg_database("iso");
  ASSERT_NE(a, b);
  const std::string db_a = pg_scalar(a, "SELECT current_database()");
  const std::string db_b = pg_scalar(b, "SELECT current_database()");
  EXPECT_NE(db_a, db_b);
  EXPECT_EQ(db_a.rfind("iso_", 0), 0u) << db_a;
  pg_query(a, "CREATE TABLE only_in_a (id int)");
  EXPECT_EQ(pg_query(a, "SELECT to_regclass('only_in_a')")[0][0], "only_in_a");
  EXPECT_EQ(pg_query(b, "SELECT to_regclass('only_in_a')")[0][0], std::nullopt);
  EXPECT_EQ(pg_scalar(b, "SELECT count(*) FROM pg_class WHERE relname = 'only_in_a'"), "0");
}

TEST(HarnessPg, QueryReportsServerErrorsAndNulls) {
  const std::string dsn = fresh_pg_database("q");
  const std::string err = error_of([&] { pg_query(dsn, "SELECT * FROM no_such_table"); });
  EXPECT_TRUE(contains(err, "relation \"no_such_table\" does not exist")) << err;
  auto rows = pg_query(dsn, "SELECT NULL::text, 'x', '' UNION ALL SELECT 'y', NULL, NULL");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0][0], std::nullopt);
  EXPECT_EQ(rows[0][1], "x");
  EXPECT_EQ(rows[0][2], "");
  EXPECT_EQ(rows[1][0], "y");
  EXPECT_TRUE(pg_query(dsn, "CREATE TABLE t (id int)").empty());
  const std::string conn_err = error_of([&] {
    pg_query("host=127.0.0.1 port=" + std::to_string(servers().pg_port) +
                 " dbname=no_such_database user=walfold_admin",
             "SELECT 1");
  });
  EXPECT_TRUE(contains(conn_err, "no_such_database")) << conn_err;
}

TEST(HarnessPg, RestartPgKeepsDataAndPort) {
  const std::string dsn = fresh_pg_database("restart");
  pg_query(dsn, "CREATE TABLE kept (id int); INSERT INTO kept VALUES (7)");
  const std::string old_pid = servers_env().at("WALFOLD_TEST_PG_PID");
  ASSERT_TRUE(pid_alive(old_pid));
  servers_ctl({"restart-pg"});
  const std::string new_pid = servers_env().at("WALFOLD_TEST_PG_PID");
  EXPECT_NE(old_pid, new_pid);
  EXPECT_TRUE(pid_alive(new_pid));
  EXPECT_EQ(pg_scalar(dsn, "SELECT id FROM kept"), "7");
}

// ---- Redis -----------------------------------------------------------------------------------

TEST(HarnessRedis, AnswersPingWithTestConfig) {
  EXPECT_EQ(redis_cmd({"PING"}), "PONG");
  EXPECT_EQ(redis_cmd({"CONFIG", "GET", "appendonly"}), "appendonly\nyes");
  EXPECT_EQ(redis_cmd({"CONFIG", "GET", "maxmemory-policy"}), "maxmemory-policy\nnoeviction");
  EXPECT_EQ(redis_cmd({"CONFIG", "GET", "appendfsync"}), "appendfsync\neverysec");
  EXPECT_EQ(redis_cmd({"CONFIG", "GET", "save"}), "save\n");
  EXPECT_EQ(redis_cmd({"CONFIG", "GET", "protected-mode"}), "protected-mode\nyes");
  EXPECT_EQ(redis_cmd({"CONFIG", "GET", "bind"}), "bind\n127.0.0.1");
  EXPECT_EQ(redis_cmd({"CONFIG", "GET", "port"}), "port\n" + std::to_string(servers().redis_port));
  const std::string info = redis_cmd({"INFO", "server"});
  EXPECT_TRUE(contains(info, "redis_version:7.")) << info;
}

TEST(HarnessRedis, RepliesAreRendered) {
  const std::string key = unique_name("selftest_list");
  EXPECT_EQ(redis_cmd({"RPUSH", key, "a", "b c", ""}), "3");
  EXPECT_EQ(redis_cmd({"LRANGE", key, "0", "-1"}), "a\nb c\n");
  EXPECT_EQ(redis_cmd({"GET", unique_name("missing")}), "(nil)");
  EXPECT_EQ(redis_cmd({"SET", key + ":bin", std::string("x\0y", 3)}), "OK");
  EXPECT_EQ(redis_cmd({"GET", key + ":bin"}), std::string("x\0y", 3));
  const std::string err = redis_cmd({"INCR", key});
  EXPECT_EQ(err.rfind("(error) WRONGTYPE", 0), 0u) << err;
}

TEST(HarnessRedis, RestartKeepsDataAndNoPersistenceLosesIt) {
  const std::string key = unique_name("selftest_persist");
  ASSERT_EQ(redis_cmd({"SET", key, "v1"}), "OK");
  const std::string old_pid = servers_env().at("WALFOLD_TEST_REDIS_PID");
  servers_ctl({"restart-redis"});
  const std::string new_pid = servers_env().at("WALFOLD_TEST_REDIS_PID");
  EXPECT_NE(old_pid, new_pid);
  EXPECT_TRUE(pid_alive(new_pid));
  EXPECT_EQ(redis_cmd({"GET", key}), "v1") << "the AOF should survive a restart";

  servers_ctl({"restart-redis", "--no-persistence"});
  EXPECT_EQ(redis_cmd({"PING"}), "PONG");
  EXPECT_EQ(redis_cmd({"GET", key}), "(nil)");
  EXPECT_EQ(redis_cmd({"CONFIG", "GET", "appendonly"}), "appendonly\nyes");
}

TEST(HarnessRedis, StopAndStartRedis) {
  servers_ctl({"stop-redis"});
  const std::string err = error_of([] { redis_cmd({"PING"}); });
  EXPECT_TRUE(contains(err, "cannot connect to Redis")) << err;
  servers_ctl({"stop-redis"});  // idempotent
  servers_ctl({"start-redis"});
  EXPECT_EQ(redis_cmd({"PING"}), "PONG");
}

// ---- MongoDB ---------------------------------------------------------------------------------

TEST(HarnessMongo, PortAcceptsTcpConnections) {
  const Servers& s = servers();
  auto [host, port] = mongo_host_port();
  ASSERT_TRUE(tcp_port_open(host, port, 5000))
      << "nothing accepts connections at " << host << ":" << port << " (" << s.mongo_uri << ")";
  if (s.mongo_is_real) {
    EXPECT_TRUE(contains(error_of([] { servers_ctl({"stop-mongo"}); }), "real server"));
    return;
  }
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(s.mongo_uri, "mongodb://127.0.0.1:" + std::to_string(port));
  servers_ctl({"stop-mongo"});
  EXPECT_FALSE(tcp_port_open(host, port, 1000)) << "stand-in still listening after stop-mongo";
  servers_ctl({"start-mongo"});
  EXPECT_TRUE(tcp_port_open(host, port, 5000)) << "stand-in not back on the same port";
}

TEST(HarnessMongo, PauseStopsTheStandInAndResumeContinuesIt) {
  const Servers& s = servers();
  if (s.mongo_is_real) {
    EXPECT_TRUE(contains(error_of([] { servers_ctl({"pause-mongo"}); }), "real server"));
    return;
  }
  auto state = [] {
    std::ifstream f("/proc/" + servers_env().at("WALFOLD_TEST_MONGO_PID") + "/stat");
    std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto p = stat.rfind(") ");
    return p == std::string::npos ? '?' : stat[p + 2];
  };
  auto status = [&] { return run_command({"bash", servers_script(), "status", s.dir}, 30); };
  const std::string pid = servers_env().at("WALFOLD_TEST_MONGO_PID");
  servers_ctl({"pause-mongo"});
  EXPECT_EQ(state(), 'T');
  auto st = status();
  EXPECT_EQ(st.status, 1) << st.output;
  EXPECT_TRUE(contains(st.output, "mongo: stand-in paused")) << st.output;
  auto [host, port] = mongo_host_port();
  EXPECT_TRUE(tcp_port_open(host, port, 1000)) << "a paused server still accepts connections";
  servers_ctl({"resume-mongo"});
  EXPECT_NE(state(), 'T');
  st = status();
  EXPECT_EQ(st.status, 0) << st.output;
  EXPECT_EQ(servers_env().at("WALFOLD_TEST_MONGO_PID"), pid) << "resume must not restart it";
}

// ---- environment, names, paths ---------------------------------------------------------------

TEST(HarnessEnv, EnvFileDescribesTheServers) {
  const Servers& s = servers();
  auto env = servers_env();
  EXPECT_EQ(env.at("WALFOLD_TEST_PG_HOST"), s.pg_host);
  EXPECT_EQ(env.at("WALFOLD_TEST_PG_PORT"), std::to_string(s.pg_port));
  EXPECT_EQ(env.at("WALFOLD_TEST_PG_SOCKET_DIR"), s.pg_socket_dir);
  EXPECT_EQ(env.at("WALFOLD_TEST_PG_SUPERUSER"), "walfold_admin");
  EXPECT_EQ(env.at("WALFOLD_TEST_REDIS_HOST"), "127.0.0.1");
  EXPECT_EQ(env.at("WALFOLD_TEST_REDIS_PORT"), std::to_string(s.redis_port));
  EXPECT_EQ(env.at("WALFOLD_TEST_MONGODB_URI"), s.mongo_uri);
  EXPECT_EQ(env.at("WALFOLD_TEST_MONGO_KIND"), s.mongo_is_real ? "real" : "standin");
  EXPECT_TRUE(pid_alive(env.at("WALFOLD_TEST_PG_PID")));
  EXPECT_TRUE(pid_alive(env.at("WALFOLD_TEST_REDIS_PID")));
  if (!s.mongo_is_real) {
    EXPECT_TRUE(pid_alive(env.at("WALFOLD_TEST_MONGO_PID")));
  }
  EXPECT_NE(s.pg_port, s.redis_port);
  EXPECT_TRUE(std::filesystem::exists(s.pg_log)) << s.pg_log;
  EXPECT_TRUE(std::filesystem::exists(s.redis_log)) << s.redis_log;
  // The same dir is returned every time.
  EXPECT_EQ(&servers(), &s);
  // The env file is valid shell.
  CmdResult r = run_command(
      {"sh", "-c", ". \"$1\" && printf '%s' \"$WALFOLD_TEST_MONGODB_URI\"", "sh", s.dir + "/env"},
      10);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, s.mongo_uri);
}

TEST(HarnessEnv, BadSubcommandFails) {
  const std::string err = error_of([] { servers_ctl({"no-such-subcommand"}); });
  EXPECT_TRUE(contains(err, "failed")) << err;
}

TEST(HarnessNames, UniqueNamesAreDistinctAndValid) {
  const std::regex valid("^[a-z0-9_]{1,63}$");
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string n = unique_name("Walfold-Test.x");
    EXPECT_TRUE(std::regex_match(n, valid)) << n;
    EXPECT_TRUE(seen.insert(n).second) << "duplicate " << n;
  }
  EXPECT_EQ(seen.begin()->rfind("walfold_test_x_", 0), 0u) << *seen.begin();
  std::string long_name = unique_name(std::string(200, 'a'));
  EXPECT_LE(long_name.size(), 63u);
  EXPECT_TRUE(std::regex_match(long_name, valid)) << long_name;
}

TEST(HarnessPaths, SourceDirHoldsTheHarness) {
  EXPECT_TRUE(std::filesystem::exists(source_dir() + "/tests/harness/servers.sh")) << source_dir();
  EXPECT_EQ(servers_script(), source_dir() + "/tests/harness/servers.sh");
}

TEST(HarnessPaths, DsnWithReplacesKeywords) {
  const std::string d = dsn_with("host=h port=1 dbname=d user=u", "user", "v w");
  for (const char* part : {"user='v w'", "dbname=d", "host=h", "port=1"})
    EXPECT_TRUE(contains(d, part)) << d;
  EXPECT_FALSE(contains(d, "user=u")) << d;
  EXPECT_TRUE(contains(dsn_with("postgresql://u@h:5/db", "password", "it's"), "password='it\\'s'"));
  EXPECT_THROW(dsn_with("host=h", "no_such_keyword", "x"), std::invalid_argument);
  EXPECT_THROW(dsn_with("host='unterminated", "user", "x"), std::runtime_error);
}

// ---- run_command and Process -----------------------------------------------------------------

TEST(HarnessRunCommand, CapturesOutputAndExitCodes) {
  CmdResult r = run_command({"sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"}, 10);
  EXPECT_EQ(r.status, 3);
  EXPECT_FALSE(r.timed_out);
  EXPECT_TRUE(contains(r.output, "to-stdout\n")) << r.output;
  EXPECT_TRUE(contains(r.output, "to-stderr\n")) << r.output;

  EXPECT_EQ(run_command({"true"}, 10).status, 0);
  EXPECT_EQ(run_command({"false"}, 10).status, 1);
  EXPECT_EQ(run_command({"sh", "-c", "kill -KILL $$"}, 10).status, -SIGKILL);

  r = run_command({"sh", "-c", "printf '%s' \"$WF_SELFTEST\""}, 10, {{"WF_SELFTEST", "a b"}});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.output, "a b");

  r = run_command({"/nonexistent/program"}, 10);
  EXPECT_EQ(r.status, 127);
  EXPECT_TRUE(contains(r.output, "No such file")) << r.output;

  r = run_command({"cat"}, 10);  // stdin is /dev/null, so this ends at once
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.output, "");
}

TEST(HarnessRunCommand, TimesOutAndDoesNotWaitForBackgroundChildren) {
  auto t0 = std::chrono::steady_clock::now();
  CmdResult r = run_command({"sh", "-c", "echo before; exec sleep 30"}, 1);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.status, -SIGTERM);
  EXPECT_TRUE(contains(r.output, "before")) << r.output;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);

  t0 = std::chrono::steady_clock::now();
  r = run_command({"sh", "-c", "sleep 3 & echo started"}, 20);
  EXPECT_EQ(r.status, 0);
  EXPECT_TRUE(contains(r.output, "started")) << r.output;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2500ms);
}

TEST(HarnessProcess, StartSignalWaitAndLog) {
  Process sleeper({"sleep", "30"});
  EXPECT_GT(sleeper.pid(), 0);
  EXPECT_TRUE(sleeper.is_running());
  EXPECT_FALSE(sleeper.wait(200ms).has_value());
  sleeper.signal(SIGTERM);
  EXPECT_EQ(sleeper.wait(5s), -SIGTERM);
  EXPECT_FALSE(sleeper.is_running());
  EXPECT_EQ(sleeper.exit_status(), -SIGTERM);
  std::filesystem::remove(sleeper.log_path());

  Process::Options opts;
  opts.env = {{"WF_SELFTEST", "child"}};
  opts.cwd = "/";
  Process talker({"sh", "-c", "echo hello from $WF_SELFTEST in $(pwd); echo oops >&2; exit 7"},
                 opts);
  EXPECT_EQ(talker.wait(10s), 7);
  EXPECT_TRUE(contains(talker.output(), "hello from child in /\n")) << talker.output();
  EXPECT_TRUE(contains(talker.output(), "oops\n")) << talker.output();
  EXPECT_TRUE(std::filesystem::exists(talker.log_path()));
  std::filesystem::remove(talker.log_path());
}

TEST(HarnessProcess, StopEscalatesToKillAndDestructorCleansUp) {
  Process stubborn({"sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done"});
  ASSERT_TRUE(stubborn.wait_for_output("ready", 10s)) << stubborn.output();
  EXPECT_EQ(stubborn.stop(500ms), -SIGKILL);
  EXPECT_FALSE(stubborn.is_running());
  std::filesystem::remove(stubborn.log_path());

  pid_t pid;
  {
    Process doomed({"sleep", "30"});
    pid = doomed.pid();
    std::filesystem::remove(doomed.log_path());
    ASSERT_EQ(::kill(pid, 0), 0);
  }
  EXPECT_NE(::kill(pid, 0), 0) << "destructor left pid " << pid << " running";

  Process quick({"true"});
  EXPECT_FALSE(quick.wait_for_output("never printed", 5s));
  EXPECT_EQ(quick.exit_status(), 0);
  std::filesystem::remove(quick.log_path());

  EXPECT_THROW(Process({"/nonexistent/program"}), std::runtime_error);
}
