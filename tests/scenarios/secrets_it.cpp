// Secrets stay secret (issue #10, bugs 1 and 2): the PostgreSQL password travels to libpq apart
// from the connection string in every DSN form, reaches neither walfold's output nor
// PostgreSQL's log, a malformed DSN is never quoted back, and the tools refuse a password in
// argv. Under journald (JOURNAL_STREAM = stderr) every line carries its syslog priority.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "tests/harness/bank_env.h"

namespace walfold::test {
namespace {

std::string random_hex(std::size_t n) {
  std::random_device rd;
  std::string s;
  while (s.size() < n) s += "0123456789abcdef"[rd() % 16];
  return s;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A secret a test made up: the suite-wide scan (tests/harness/scan_secrets.sh) looks for it in
// every captured output and server log at the end of the run.
std::string made_up_secret(const std::string& prefix) {
  std::string secret = prefix + random_hex(16);
  std::ofstream(servers().dir + "/test-secrets", std::ios::app) << secret << "\n";
  return secret;
}

// A secret file (the scan skips *.secret).
std::string write_secret(const BankEnv& env, const std::string& name, const std::string& value) {
  const std::string path = env.dir + "/" + name + ".secret";
  std::ofstream(path) << value << "\n";
  chmod(path.c_str(), 0600);
  return path;
}

// env's configuration with another postgres.dsn (and password_file, when given).
std::string config_with_dsn(const BankEnv& env, const std::string& name, const std::string& dsn,
                            const std::string& password_file) {
  std::string quoted;
  for (char c : dsn) {
    if (c == '"' || c == '\\') quoted += '\\';
    quoted += c;
  }
  std::string line = "  dsn: \"" + quoted + "\"\n";
  if (!password_file.empty()) line += "  password_file: " + password_file + "\n";
  return env.config_variant(name, "  dsn: \"" + env.dsn + "\"\n", line);
}

void expect_absent(const std::string& text, const std::vector<std::string>& secrets,
                   const std::string& where) {
  for (const auto& s : secrets)
    EXPECT_EQ(text.find(s), std::string::npos) << "a password appears in " << where;
}

struct DsnForm {
  std::string name;
  std::string dsn;
  bool needs_password;  // role walfold (scram over TCP) rather than the trusted superuser
};

TEST(Secrets, EveryDsnFormWithRightWrongAndNoPasswordKeepsThePasswordOut) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  pg_query(env.dsn, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO walfold");
  ASSERT_EQ(env.cmd("loadgen", {"--users", "20", "--transactions", "100", "--no-progress"}).status,
            0);
  const auto& s = servers();
  const std::string host = s.pg_host, port = std::to_string(s.pg_port);
  const std::string db = pg_scalar(env.dsn, "SELECT current_database()");
  const std::string right = s.pg_repl_password;
  const std::string wrong = made_up_secret("Wr0ng-");
  const std::string ignored = made_up_secret("Trusted-");  // given to a role that needs none
  const std::vector<std::string> secrets{right, wrong, ignored};

  const std::string service = unique_name("svc");
  const std::string service_file = env.dir + "/pg_service.conf";
  std::ofstream(service_file) << "[" << service << "]\nhost=" << host << "\nport=" << port
                              << "\ndbname=" << db << "\nuser=walfold\n";
  // No password from anywhere else: the test decides every source.
  const std::map<std::string, std::string> pgenv{{"PGSERVICEFILE", service_file},
                                                 {"PGPASSFILE", env.dir + "/no-such-pgpass"}};

  const std::vector<DsnForm> forms{
      {"kv", "host=" + host + " port=" + port + " dbname=" + db + " user=walfold", true},
      {"quoted",
       "host='" + host + "' port='" + port + "' dbname='" + db +
           "' user='walfold' application_name='walfold test'",
       true},
      {"uri", "postgresql://walfold@" + host + ":" + port + "/" + db, true},
      {"uri-query",
       "postgresql://walfold@" + host + ":" + port + "/" + db +
           "?application_name=walfold_test&connect_timeout=10",
       true},
      {"service", "service=" + service, true},
      // Trusted: the password is ignored, and must not end up in the database name (bug #10:
      // `database "bank password='...'" does not exist`, in walfold's output and the server log).
      {"trusted-uri", "postgresql://" + s.pg_superuser + "@" + host + ":" + port + "/" + db, false},
  };
  const std::string right_file = write_secret(env, "right", right);
  const std::string wrong_file = write_secret(env, "wrong", wrong);
  const std::string ignored_file = write_secret(env, "ignored", ignored);

  for (const auto& form : forms) {
    for (const std::string which : {"right", "wrong", "none"}) {
      SCOPED_TRACE(form.name + " / " + which + " password");
      const std::string file = which == "none"        ? std::string()
                               : !form.needs_password ? ignored_file
                               : which == "right"     ? right_file
                                                      : wrong_file;
      const auto cfg = config_with_dsn(env, form.name + "-" + which, form.dsn, file);
      auto r = run_command({walfold_binary(), "status", "--config", cfg}, 60, pgenv);
      const bool should_work = !form.needs_password || which == "right";
      if (should_work) {
        EXPECT_EQ(r.status, 0) << r.output;
        EXPECT_NE(r.output.find("slot          " + env.name), std::string::npos) << r.output;
      } else {
        EXPECT_EQ(r.status, 77) << r.output;
        EXPECT_NE(r.output.find("refused walfold's credentials"), std::string::npos) << r.output;
        EXPECT_NE(r.output.find(host + ":" + port), std::string::npos) << r.output;
      }
      expect_absent(r.output, secrets, "`walfold status` (" + form.name + ", " + which + ")");
    }
  }

  // The daemon itself (preflight, the replication connection, heartbeats, the stop position)
  // with a URI that has query parameters.
  const auto cfg = config_with_dsn(env, "run", forms[3].dsn, right_file);
  ASSERT_EQ(env.cmd("loadgen", {"--reuse", "--transactions", "50", "--no-progress"}).status, 0);
  auto run = run_command({walfold_binary(), "run", "--config", cfg, "--stop-at-lsn", "current"},
                         300, pgenv);
  EXPECT_EQ(run.status, 0) << run.output;
  expect_absent(run.output, secrets, "`walfold run`");
  expect_read_model_exact(env);

  expect_absent(read_file(s.pg_log), secrets, "PostgreSQL's log " + s.pg_log);
}

TEST(Secrets, AMalformedDsnIsNeverQuotedBack) {
  BankEnv env;
  const auto& s = servers();
  // An unquoted value with a blank: libpq's own message would print "Tail8".
  const std::string dsn = "host=" + s.pg_host + " port=" + std::to_string(s.pg_port) +
                          " user=walfold password=Qv7x Tail8x dbname=bank";
  const auto cfg = config_with_dsn(env, "blank", dsn, "");
  for (const std::string sub : {"status", "run", "setup"}) {
    auto r = run_command({walfold_binary(), sub, "--config", cfg}, 60);
    EXPECT_EQ(r.status, 78) << sub << ": " << r.output;
    EXPECT_NE(r.output.find("after the value of 'password'"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("Qv7x"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("Tail8x"), std::string::npos) << r.output;
  }
}

TEST(Secrets, ToolsTakeNoPasswordOnTheCommandLine) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  pg_query(env.dsn,
           "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO walfold; "
           "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO walfold");
  const auto& s = servers();
  const std::string db = pg_scalar(env.dsn, "SELECT current_database()");
  const std::string base =
      "host=" + s.pg_host + " port=" + std::to_string(s.pg_port) + " dbname=" + db;
  const std::string role_dsn = base + " user=walfold";
  const std::map<std::string, std::string> no_pgpass{{"PGPASSFILE", env.dir + "/none"}};

  // Refused before anything connects: exit 64, pointing at the routes that keep it out of argv.
  for (const std::string& with_password :
       {role_dsn + " password=" + s.pg_repl_password,
        "postgresql://walfold:" + s.pg_repl_password + "@" + s.pg_host + ":" +
            std::to_string(s.pg_port) + "/" + db,
        "postgresql://walfold@" + s.pg_host + ":" + std::to_string(s.pg_port) + "/" + db +
            "?password=" + s.pg_repl_password}) {
    auto r = run_command({walfold_binary(), "loadgen", "--dsn", with_password, "--users", "1",
                          "--transactions", "0", "--no-progress"},
                         60);
    EXPECT_EQ(r.status, 64) << r.output;
    EXPECT_NE(r.output.find("--password-file"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("PGPASSFILE"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find(s.pg_repl_password), std::string::npos) << r.output;
  }

  // --password-file.
  const std::string pw = write_secret(env, "pw", s.pg_repl_password);
  auto r = run_command({walfold_binary(), "loadgen", "--dsn", role_dsn, "--password-file", pw,
                        "--users", "5", "--transactions", "20", "--no-progress"},
                       120, no_pgpass);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output.find(s.pg_repl_password), std::string::npos) << r.output;

  // A pgpass file named by PGPASSFILE (libpq requires mode 0600).
  const std::string pgpass = env.dir + "/pgpass.secret";
  std::ofstream(pgpass) << s.pg_host << ":" << s.pg_port << ":*:walfold:" << s.pg_repl_password
                        << "\n";
  chmod(pgpass.c_str(), 0600);
  r = run_command({walfold_binary(), "loadgen", "--dsn", role_dsn, "--reuse", "--transactions",
                   "20", "--no-progress"},
                  120, {{"PGPASSFILE", pgpass}});
  EXPECT_EQ(r.status, 0) << r.output;

  // No password anywhere: the server refuses, permanently (77), without a secret in sight.
  r = run_command({walfold_binary(), "loadgen", "--dsn", role_dsn, "--reuse", "--transactions", "1",
                   "--no-progress"},
                  60, no_pgpass);
  EXPECT_EQ(r.status, 77) << r.output;
  EXPECT_NE(r.output.find("refused walfold's credentials"), std::string::npos) << r.output;
  EXPECT_EQ(pg_scalar(env.dsn, "SELECT count(*) FROM users"), "5");
}

// The environment the shipped unit sets (its Environment= lines), as KEY -> value.
std::map<std::string, std::string> unit_environment() {
  std::map<std::string, std::string> env;
  std::ifstream unit(source_dir() + "/systemd/walfold.service");
  for (std::string l; std::getline(unit, l);) {
    if (l.rfind("Environment=", 0) != 0) continue;
    const std::string kv = l.substr(std::string("Environment=").size());
    const auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

// The binary under journald, in the unit's environment: stderr is a file whose device:inode
// JOURNAL_STREAM names. Each run first leaves a /dev/shm/mongoc-<its pid> behind, as a process
// killed earlier with the same PID would: libmongoc then falls back from shared-memory counters
// and says so raw, at load, unless the unit's MONGOC_DISABLE_SHM=1 turns them off.
TEST(Journald, EveryLineStartsWithItsPriority) {
  auto unit_env = unit_environment();
  ASSERT_EQ(unit_env["MONGOC_DISABLE_SHM"], "1") << "systemd/walfold.service";
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(env.cmd("loadgen", {"--users", "5", "--transactions", "10", "--no-progress"}).status,
            0);
  const std::string err = env.dir + "/journal.stderr";
  std::ofstream(err).close();
  struct stat st {};
  ASSERT_EQ(stat(err.c_str(), &st), 0);
  const std::string stream = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  auto journal_env = unit_env;
  journal_env["JOURNAL_STREAM"] = stream;
  // A run that logs info lines, then one that fails (a PostgreSQL password refused).
  auto ok = run_command({"/bin/sh", "-c",
                         "echo $$ >>\"$2.pids\" && touch /dev/shm/mongoc-$$ && exec \"$0\" run "
                         "--config \"$1\" --stop-at-lsn current "
                         "2>>\"$2\"",
                         walfold_binary(), env.config_path, err},
                        300, journal_env);
  ASSERT_EQ(ok.status, 0) << read_file(err);
  const auto& s = servers();
  const std::string db = pg_scalar(env.dsn, "SELECT current_database()");
  const auto bad = config_with_dsn(env, "bad",
                                   "host=" + s.pg_host + " port=" + std::to_string(s.pg_port) +
                                       " dbname=" + db + " user=walfold",
                                   write_secret(env, "bad", made_up_secret("Bad-")));
  auto failed = run_command({"/bin/sh", "-c",
                             "echo $$ >>\"$2.pids\" && touch /dev/shm/mongoc-$$ && exec \"$0\" run "
                             "--config \"$1\" 2>>\"$2\"",
                             walfold_binary(), bad, err},
                            60, journal_env);
  EXPECT_EQ(failed.status, 77) << read_file(err);

  std::ifstream pids(err + ".pids");
  for (std::string pid; std::getline(pids, pid);) ::unlink(("/dev/shm/mongoc-" + pid).c_str());

  std::ifstream in(err);
  int info = 0, errors = 0, lines = 0;
  for (std::string l; std::getline(in, l); ++lines) {
    ASSERT_GE(l.size(), 3u) << l;
    ASSERT_TRUE(l[0] == '<' && l[1] >= '2' && l[1] <= '7' && l[2] == '>')
        << "no priority prefix: " << l;
    info += l.rfind("<6>", 0) == 0;
    errors += l.rfind("<3>walfold: permission denied: postgresql at", 0) == 0;
  }
  EXPECT_GT(info, 2) << read_file(err);
  EXPECT_EQ(errors, 1) << read_file(err);

  // Without a matching JOURNAL_STREAM, lines carry their own timestamps and no prefix.
  auto plain =
      run_command({walfold_binary(), "run", "--config", bad}, 60, {{"JOURNAL_STREAM", "1:1"}});
  EXPECT_EQ(plain.status, 77);
  EXPECT_EQ(plain.output.find("<3>"), std::string::npos) << plain.output;
}

}  // namespace
}  // namespace walfold::test
