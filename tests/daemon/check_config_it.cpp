// `walfold check-config`, the configuration path, usage errors, credentials by reference (Redis
// ACL user, MongoDB user) and the state directory (ownership, read and write failures).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/harness/bank_env.h"

namespace walfold::test {
namespace {

namespace fs = std::filesystem;

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string temp_dir() {
  char tmpl[] = "/tmp/wf-cc-XXXXXX";
  return mkdtemp(tmpl);
}

CmdResult walfold(std::vector<std::string> args, const std::map<std::string, std::string>& env = {},
                  int timeout_s = 120) {
  args.insert(args.begin(), walfold_binary());
  return run_command(args, timeout_s, env);
}

// A loopback listener that never accepts: it shows whether anything tried to connect.
struct Listener {
  Listener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd, 16);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~Listener() { ::close(fd); }
  bool was_connected() const {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
  }
  int fd = -1;
  int port = 0;
};

std::string config_for(const Listener& pg, const Listener& redis, const Listener& mongo,
                       const std::string& extra) {
  return "postgres:\n  dsn: \"host=127.0.0.1 port=" + std::to_string(pg.port) +
         " dbname=bank user=walfold\"\nredis:\n  host: 127.0.0.1\n  port: " +
         std::to_string(redis.port) +
         "\nmongodb:\n  uri: \"mongodb://127.0.0.1:" + std::to_string(mongo.port) +
         "/?serverSelectionTimeoutMS=1000\"\nstate_dir: " + temp_dir() + "/state\n" + extra;
}

TEST(CheckConfig, ReportsEveryProblemWithItsPlaceAndExits78) {
  auto dir = temp_dir();
  const std::string path = dir + "/walfold.yaml";
  std::ofstream(path) << "postgres:\n  dsn: \"host=db\n  slot: walfold\nredis:\n  port: 0\n"
                         "workers:\n  leas_ms: 30s\n  lease_ms: 5 minutes\n";
  auto r = walfold({"check-config", "--config", path});
  EXPECT_EQ(r.status, 78) << r.output;
  EXPECT_TRUE(contains(r.output, path +
                                     ":2:8: unterminated quoted value: the \" opened here is not "
                                     "closed on this line"))
      << r.output;
  EXPECT_TRUE(contains(r.output, path + ":5:9: redis.port = 0 is out of range [1, 65535]\n"))
      << r.output;
  EXPECT_TRUE(contains(r.output,
                       path + ":7:3: unknown key 'leas_ms' in workers: did you mean 'lease_ms'?\n"))
      << r.output;
  EXPECT_TRUE(contains(r.output, path + ":8:13: workers.lease_ms '5 minutes' is not a duration"))
      << r.output;
  EXPECT_TRUE(contains(r.output, "walfold: " + path + ": 4 problems; the configuration is refused"))
      << r.output;

  // `walfold run` prints the same problems, one per line, and exits 78.
  r = walfold({"run", "--config", path});
  EXPECT_EQ(r.status, 78) << r.output;
  EXPECT_TRUE(contains(r.output, "walfold: configuration error: " + path + ":2:8:")) << r.output;
  EXPECT_TRUE(contains(r.output, "\nwalfold: configuration error: " + path + ":8:13:")) << r.output;
}

TEST(CheckConfig, AValidFileAndTheConfigPathFromTheEnvironment) {
  BankEnv env;
  auto r = walfold({"check-config", "--config", env.config_path});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, env.config_path + ": the configuration is valid")) << r.output;
  // No --config: WALFOLD_CONFIG, else /etc/walfold/walfold.yaml.
  r = walfold({"check-config"}, {{"WALFOLD_CONFIG", env.config_path}});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, env.config_path + ": the configuration is valid")) << r.output;
  r = walfold({"check-config", "--config", "/nonexistent/w.yaml"},
              {{"WALFOLD_CONFIG", env.config_path}});
  EXPECT_EQ(r.status, 78) << r.output;  // --config wins
  EXPECT_TRUE(contains(r.output, "/nonexistent/w.yaml: cannot open the configuration file"))
      << r.output;
  if (!fs::exists("/etc/walfold/walfold.yaml")) {
    r = walfold({"check-config"}, {{"WALFOLD_CONFIG", ""}});
    EXPECT_EQ(r.status, 78) << r.output;
    EXPECT_TRUE(contains(r.output, "/etc/walfold/walfold.yaml: cannot open")) << r.output;
  }
  // A password file that does not exist is a problem too (without --connect).
  std::ofstream(env.config_path, std::ios::app) << "";
  auto text = slurp(env.config_path);
  auto pos = text.find("  slot:");
  text.insert(pos, "  password_file: " + env.dir + "/missing-pw\n");
  std::ofstream(env.config_path) << text;
  r = walfold({"check-config", "--config", env.config_path});
  EXPECT_EQ(r.status, 78) << r.output;
  EXPECT_TRUE(contains(r.output, env.config_path + ": postgres.password_file: " + env.dir +
                                     "/missing-pw: the secret file does not exist"))
      << r.output;
}

// The user directory's salt_file is a secret file like the password files: check-config reads
// it the way `walfold run` does (run refuses a missing one with 78, so check-config must not say
// OK), names the file and never prints its content. The servers are listeners: nothing here
// needs them.
TEST(CheckConfig, TheUserDirectorysSaltFileIsCheckedLikeAPasswordFile) {
  Listener pg, redis, mongo;
  const auto dir = temp_dir();
  const std::string salt = dir + "/salt.secret", path = dir + "/walfold.yaml";
  std::ofstream(path) << config_for(pg, redis, mongo,
                                    "projection: user_directory\n"
                                    "user_directory:\n"
                                    "  salt_file: " +
                                        salt +
                                        "\n"
                                        "  columns:\n"
                                        "    email: hash\n");
  auto r = walfold({"check-config", "--config", path});
  EXPECT_EQ(r.status, 78) << r.output;
  EXPECT_TRUE(contains(
      r.output, path + ": user_directory.salt_file: " + salt + ": the secret file does not exist"))
      << r.output;
  EXPECT_FALSE(contains(r.output, "the configuration is valid")) << r.output;
  // `walfold run` refuses the same file with the same exit code.
  auto run = walfold({"run", "--config", path});
  EXPECT_EQ(run.status, 78) << run.output;
  EXPECT_TRUE(contains(run.output, salt + ": the secret file does not exist")) << run.output;

  // Present: valid, and its content is in no output.
  const std::string secret = "salt-" + unique_name("s");
  std::ofstream(salt) << secret << "\n";
  r = walfold({"check-config", "--config", path});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, path + ": the configuration is valid")) << r.output;
  EXPECT_FALSE(contains(r.output, secret)) << r.output;

  // Empty: `walfold run` refuses it (hash needs a key), and so does check-config, naming it.
  std::ofstream(salt, std::ios::trunc) << "";
  r = walfold({"check-config", "--config", path});
  EXPECT_EQ(r.status, 78) << r.output;
  EXPECT_TRUE(contains(r.output, "the salt file " + salt + " is empty")) << r.output;
  run = walfold({"run", "--config", path});
  EXPECT_EQ(run.status, 78) << run.output;
  EXPECT_TRUE(contains(run.output, "the salt file " + salt + " is empty")) << run.output;

  // A directory where the file should be is refused like a password file that is one.
  fs::remove(salt);
  fs::create_directory(salt);
  r = walfold({"check-config", "--config", path});
  EXPECT_EQ(r.status, 78) << r.output;
  EXPECT_TRUE(contains(r.output, path + ": user_directory.salt_file: " + salt + ": ")) << r.output;
}

TEST(CheckConfig, ConnectRunsThePreflightAgainstEachServer) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  auto r = walfold({"check-config", "--config", env.config_path, "--connect"});
  EXPECT_EQ(r.status, 0) << r.output;
  for (const char* line : {"\npostgres: ok: wal_level is logical",
                           "\nredis: ok: ", "\nmongodb: ok: ", "\nstate_dir: ok: "})
    EXPECT_TRUE(contains(r.output, line)) << line << " missing in: " << r.output;
  EXPECT_TRUE(contains(r.output, "slot '" + env.name + "' exists")) << r.output;

  // One server unreachable: it is named, the others are still checked, exit 69.
  Listener closed;  // then closed: nothing listens on the port
  const int port = closed.port;
  ::close(closed.fd);
  closed.fd = ::socket(AF_INET, SOCK_STREAM, 0);
  auto text = slurp(env.config_path);
  auto at = text.find("  port: " + std::to_string(servers().redis_port));
  ASSERT_NE(at, std::string::npos);
  text.replace(at, ("  port: " + std::to_string(servers().redis_port)).size(),
               "  port: " + std::to_string(port));
  std::ofstream(env.config_path) << text;
  r = walfold({"check-config", "--config", env.config_path, "--connect"});
  EXPECT_EQ(r.status, 69) << r.output;
  EXPECT_TRUE(contains(
      r.output, "redis: FAILED: redis at 127.0.0.1:" + std::to_string(port) + " is unreachable"))
      << r.output;
  EXPECT_TRUE(contains(r.output, "\npostgres: ok: ")) << r.output;
  EXPECT_TRUE(contains(r.output, "\nmongodb: ok: ")) << r.output;
  // Nothing was changed: the slot is where setup left it, nobody streams it.
  EXPECT_EQ(pg_scalar(env.dsn, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '" +
                                   env.name + "' AND NOT active"),
            "1");
}

// A bad configuration stops `walfold run` with 78 before it connects to anything: the servers
// here are listeners that would see a connection attempt. Control: with the bad key removed,
// the same run does connect.
TEST(CheckConfig, RunWithABadConfigExits78BeforeTouchingAnyServer) {
  Listener pg, redis, mongo;
  auto dir = temp_dir();
  const std::string bad = dir + "/bad.yaml", good = dir + "/good.yaml";
  std::ofstream(bad) << config_for(pg, redis, mongo, "workers:\n  cuont: 2\n");
  auto r = walfold({"run", "--config", bad});
  EXPECT_EQ(r.status, 78) << r.output;
  EXPECT_TRUE(contains(r.output, "unknown key 'cuont' in workers: did you mean 'count'?"))
      << r.output;
  EXPECT_FALSE(pg.was_connected());
  EXPECT_FALSE(redis.was_connected());
  EXPECT_FALSE(mongo.was_connected());

  std::ofstream(good) << config_for(pg, redis, mongo, "");
  Process p({walfold_binary(), "run", "--config", good});
  EXPECT_TRUE(wait_until([&] { return pg.was_connected(); }, std::chrono::seconds(30)))
      << p.output();
  p.stop(std::chrono::seconds(2));
}

TEST(CheckConfig, BadCommandLineValuesAreUsageErrors) {
  BankEnv env;
  auto r = env.cmd("run", {"--stop-at-lsn", "soon"});
  EXPECT_EQ(r.status, 64) << r.output;
  EXPECT_TRUE(contains(r.output, "--stop-at-lsn 'soon' is not an LSN")) << r.output;
  r = env.cmd("reconcile", {"--from-lsn", "1234"});
  EXPECT_EQ(r.status, 64) << r.output;
  EXPECT_TRUE(contains(r.output, "--from-lsn '1234' is not an LSN")) << r.output;
  r = env.cmd("run", {"--role", "everything"});
  EXPECT_EQ(r.status, 64) << r.output;
}

// A queue another walfold version wrote in another format (meta `format`, queue/job_queue.h):
// `walfold queue`, `check-config --connect` and the reader refuse it with exit 65 (DataError:
// systemd does not restart it, RestartPreventExitStatus) and say how to drain or empty it; nothing
// changes.
TEST(QueueFormat, AQueueInAnotherFormatStopsQueueCheckConfigAndRunWithExit65) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  const std::string meta = env.queue_prefix() + ":meta";
  ASSERT_EQ(redis_cmd({"HSET", meta, "epoch", "old", "format", "0-other"}), "2");
  auto r = env.cmd("queue", {"stats"});
  EXPECT_EQ(r.status, 65) << r.output;
  EXPECT_TRUE(contains(r.output, "format '0-other'")) << r.output;
  EXPECT_TRUE(contains(r.output, "walfold reconcile --from-lsn")) << r.output;
  r = walfold({"check-config", "--connect", "--config", env.config_path});
  EXPECT_EQ(r.status, 65) << r.output;
  EXPECT_TRUE(contains(r.output, "redis: FAILED")) << r.output;
  EXPECT_TRUE(contains(r.output, "format '0-other'")) << r.output;
  r = env.cmd("run", {"--role", "reader"}, 60);
  EXPECT_EQ(r.status, 65) << r.output;
  EXPECT_TRUE(contains(r.output, "format '0-other'")) << r.output;
  EXPECT_EQ(redis_cmd({"HGET", meta, "epoch"}), "old") << "the refusal changed the queue";
}

// redis.username + redis.password_file: AUTH user pass for an ACL user of the real Redis.
TEST(Credentials, RedisAclUserAuthenticatesWithItsPasswordFile) {
  BankEnv env;
  const std::string user = unique_name("wfacl");
  const std::string password = "Acl-" + unique_name("pw");
  ASSERT_EQ(redis_cmd({"ACL", "SETUSER", user, "reset", "on", ">" + password, "~*", "&*", "+@all"}),
            "OK");
  struct Cleanup {
    std::string user;
    ~Cleanup() { redis_cmd({"ACL", "DELUSER", user}); }
  } cleanup{user};
  const std::string pw_file = env.dir + "/redis-pw";
  std::ofstream(pw_file) << password << "\n";
  auto text = slurp(env.config_path);
  text.insert(text.find("  prefix:"),
              "  username: " + user + "\n  password_file: " + pw_file + "\n");
  std::ofstream(env.config_path) << text;

  auto r = env.cmd("queue", {"stats"});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_FALSE(contains(r.output, password)) << r.output;
  // A wrong password fails, without the password in the output, and Redis logs the failed
  // AUTH under this user's name. (The test Redis's default user has no password: AUTH with only
  // a password would succeed as that user, so this is what shows the user name is sent.)
  redis_cmd({"ACL", "LOG", "RESET"});
  std::ofstream(pw_file) << "wrong-" << password << "\n";
  r = env.cmd("queue", {"stats"});
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "WRONGPASS")) << r.output;
  EXPECT_FALSE(contains(r.output, password)) << r.output;
  const auto acl_log = redis_cmd({"ACL", "LOG"});
  EXPECT_TRUE(contains(acl_log, "auth") && contains(acl_log, user)) << acl_log;
}

// mongodb.username + mongodb.password_file are set on the parsed URI. The stand-in has no SASL
// (it answers saslStart with 115 CommandNotSupported), so this checks that the credentials reach
// the server (the driver starts authenticating: the stand-in logs the saslStart it refused) and
// that the password is in no output; with a real MongoDB (WALFOLD_TEST_MONGODB_URI) without that
// user, the authentication fails the same way.
TEST(Credentials, MongoUserAndPasswordFileGoToTheServerNotTheOutput) {
  BankEnv env;
  const std::string password = "Mg-" + unique_name("pw");
  const std::string pw_file = env.dir + "/mongo-pw";
  std::ofstream(pw_file) << password << "\n";
  auto text = slurp(env.config_path);
  text.insert(text.find("  database:"), "  username: wfuser\n  password_file: " + pw_file + "\n");
  std::ofstream(env.config_path) << text;
  const auto log_before = servers().mongo_is_real ? std::string() : slurp(servers().mongo_log);

  auto r = walfold({"check-config", "--config", env.config_path, "--connect"});
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "mongodb: FAILED: ")) << r.output;
  EXPECT_TRUE(contains(r.output, "uthenticat")) << r.output;  // "Authentication failed"
  EXPECT_FALSE(contains(r.output, password)) << r.output;
  if (!servers().mongo_is_real) {
    const auto log = slurp(servers().mongo_log).substr(log_before.size());
    EXPECT_TRUE(contains(log, "saslStart")) << log;
    EXPECT_FALSE(contains(log, password)) << log;
  }

  // A URI that carries a user already, and mongodb.username too: refused as ambiguous.
  text = slurp(env.config_path);
  auto at = text.find("mongodb://");
  text.replace(at, 10, "mongodb://other@");
  std::ofstream(env.config_path) << text;
  r = walfold({"check-config", "--config", env.config_path, "--connect"});
  EXPECT_TRUE(contains(r.output, "mongodb.uri already names a user")) << r.output;
  EXPECT_FALSE(contains(r.output, password)) << r.output;
}

// `sudo walfold setup` used to leave root-owned <slot>.checkpoint/.history in the service user's
// state directory, and the service then exited 78 "cannot append". Root is now refused there
// (exit 77, saying how to run it as the owner) before any server is touched, and the command
// run as the owner leaves files the daemon (as that user) keeps appending to.
TEST(StateDirOwnership, RootIsRefusedAndTheOwnerRunsSetupAndTheDaemon) {
  ASSERT_EQ(::geteuid(), 0u) << "this test needs root (CI runs the tests as root)";
  BankEnv env;
  const std::string state = env.dir + "/state";
  fs::create_directory(state);
  ASSERT_EQ(::chown(state.c_str(), 65534, 65534), 0);
  ASSERT_EQ(::chmod(env.dir.c_str(), 0755), 0);
  ASSERT_EQ(::chmod(env.config_path.c_str(), 0644), 0);

  auto r = env.cmd("setup", {"--schema"});
  EXPECT_EQ(r.status, 77) << r.output;
  EXPECT_TRUE(contains(r.output, "state_dir " + state + " belongs to user nobody (uid 65534)"))
      << r.output;
  EXPECT_TRUE(contains(
      r.output, "runuser -u nobody -- walfold setup --config " + env.config_path + " --schema"))
      << r.output;
  EXPECT_TRUE(fs::is_empty(state));
  EXPECT_EQ(pg_scalar(env.dsn, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '" +
                                   env.name + "'"),
            "0");  // refused before touching PostgreSQL
  r = env.cmd("reconcile", {"--full"});
  EXPECT_EQ(r.status, 77) << r.output;

  // As the owner (what the message says to do).
  r = run_command({"runuser", "-u", "nobody", "--", walfold_binary(), "setup", "--config",
                   env.config_path, "--schema"},
                  300);
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* f : {".checkpoint", ".history"}) {
    struct stat st {};
    ASSERT_EQ(::stat((state + "/" + env.name + f).c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_uid, 65534u) << f;
  }
  const auto history_before = slurp(state + "/" + env.name + ".history");
  pg_query(env.dsn,
           "INSERT INTO users (full_name, email) VALUES ('A', 'a@example.com');"
           "SELECT pg_switch_wal()");
  r = run_command({"runuser", "-u", "nobody", "--", walfold_binary(), "run", "--config",
                   env.config_path, "--stop-at-lsn", "current"},
                  300);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_FALSE(contains(r.output, "cannot append")) << r.output;
  EXPECT_NE(slurp(state + "/" + env.name + ".checkpoint"), "");
}

// A state file that cannot be created is EX_CANTCREAT (73), a write that fails on the way
// (here: the file size limit, as a full disk would) EX_IOERR (74); neither is a configuration
// error (78), and both name the path and errno.
TEST(StateDirErrors, WriteFailuresMapTo73And74) {
  BankEnv env;
  // The temporary file next to the checkpoint (written, then renamed over it) cannot be created:
  // a directory is in its place (as root, permissions would not stop it).
  const std::string state = env.dir + "/state";
  fs::create_directories(state + "/" + env.name + ".checkpoint.tmp");
  auto r = env.cmd("setup", {"--schema"});
  EXPECT_EQ(r.status, 73) << r.output;
  EXPECT_TRUE(contains(r.output, "state_dir: cannot create " + state + "/" + env.name +
                                     ".checkpoint.tmp: Is a directory (errno 21)"))
      << r.output;

  BankEnv env2;
  // File size limit 0: every write to a regular file fails with EFBIG (SIGXFSZ ignored). The
  // output goes through a pipe, which the limit does not apply to.
  r = run_command({"bash", "-c", "trap '' XFSZ; ulimit -f 0; exec \"$0\" \"$@\"", walfold_binary(),
                   "setup", "--config", env2.config_path, "--schema"},
                  300);
  EXPECT_EQ(r.status, 74) << r.output;
  EXPECT_TRUE(contains(r.output, ".checkpoint.tmp failed: File too large (errno 27)")) << r.output;
}

}  // namespace
}  // namespace walfold::test
