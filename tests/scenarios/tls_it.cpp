// TLS to PostgreSQL and MongoDB, with certificates the test makes (openssl): the whole pipeline
// (setup, loadgen, run) works with PostgreSQL's sslmode=verify-full and with MongoDB's
// tls=true&tlsCAFile= through stunnel in front of the stand-in, and a certificate that does not
// match the host name (PostgreSQL) or is signed by an unknown CA (MongoDB) is refused with a
// message that says so. Redis has no TLS in Debian 12's hiredis 0.14: systemd/README.md lists
// the safe deployments.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/harness/bank_env.h"
#include "tests/harness/tls.h"

namespace walfold::test {
namespace {

namespace fs = std::filesystem;

std::string read_all(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A copy of `base` (a configuration) in env.dir/file with one line replaced (the line must be
// there exactly once).
std::string config_with(const BankEnv& env, const std::string& base, const std::string& file,
                        const std::string& from, const std::string& to) {
  std::string text = read_all(base);
  auto pos = text.find(from);
  if (pos == std::string::npos || text.find(from, pos + 1) != std::string::npos)
    throw std::runtime_error("'" + from + "' is not in " + base + " exactly once");
  text.replace(pos, from.size(), to);
  const std::string path = env.dir + "/" + file;
  std::ofstream(path) << text;
  return path;
}

std::string make_dir(const std::string& prefix) {
  std::string t = "/tmp/" + prefix + "-XXXXXX";
  if (!mkdtemp(t.data())) throw std::runtime_error("mkdtemp failed");
  return t;
}

// The exit statuses that the shipped units do not restart (RestartPreventExitStatus=).
bool is_permanent(int status) {
  return status == 64 || status == 65 || status == 73 || status == 74 || status == 77 ||
         status == 78;
}

TEST(Tls, PostgresVerifyFullStreamsAndAHostNameMismatchIsRefused) {
  const std::string dir = make_dir("wf-tls-pg");
  const TestCa ca = make_test_ca(dir, "pg");
  // The certificate names only "localhost": connecting to 127.0.0.1 must not match it.
  const TestCert cert = make_server_cert(ca, "pg-server", {"DNS:localhost"});
  PgTlsOn tls(cert);

  BankEnv env;
  const std::string base = env.config_path;
  const auto& s = servers();
  std::string tls_dsn = dsn_with(env.dsn, "host", "localhost");
  tls_dsn = dsn_with(tls_dsn, "hostaddr", s.pg_host);
  tls_dsn = dsn_with(tls_dsn, "sslmode", "verify-full");
  tls_dsn = dsn_with(tls_dsn, "sslrootcert", ca.cert);
  const std::string dsn_line = "  dsn: \"" + env.dsn + "\"";
  env.config_path = config_with(env, base, "tls.yaml", dsn_line, "  dsn: \"" + tls_dsn + "\"");

  // The whole pipeline over verified TLS: setup (schema, publication, slot, snapshot), loadgen,
  // and run (its SQL session and its replication connection).
  auto r = env.cmd("setup", {"--schema"});
  ASSERT_EQ(r.status, 0) << r.output;
  r = env.cmd("loadgen",
              {"--users", "40", "--transactions", "400", "--seed", "7", "--no-progress"});
  ASSERT_EQ(r.status, 0) << r.output;
  run_until_caught_up(env);
  EXPECT_GT(read_mongo_accounts(s.mongo_uri, env.mongo_db).size(), 30u);
  expect_read_model_exact(env);
  // From the server's side, a session with these settings is encrypted (pg_stat_ssl).
  EXPECT_EQ(pg_scalar(tls_dsn, "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()"),
            "true");

  // The same server under its address: the certificate is for "localhost", not "127.0.0.1".
  std::string mismatch_dsn = dsn_with(env.dsn, "sslmode", "verify-full");
  mismatch_dsn = dsn_with(mismatch_dsn, "sslrootcert", ca.cert);
  const std::string bad =
      config_with(env, base, "tls-mismatch.yaml", dsn_line, "  dsn: \"" + mismatch_dsn + "\"");
  r = run_command({walfold_binary(), "run", "--config", bad, "--stop-at-lsn", "current"}, 120);
  EXPECT_FALSE(r.timed_out) << "walfold kept retrying a certificate that can never match:\n"
                            << r.output;
  EXPECT_NE(r.status, 0) << r.output;
  // libpq: 'server certificate for "localhost" (and 1 other name) does not match host name
  // "127.0.0.1"' (the other name is the subject's CN).
  EXPECT_NE(r.output.find("server certificate for \"localhost\""), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("does not match host name \"127.0.0.1\""), std::string::npos) << r.output;
  std::cout << "walfold run with a PostgreSQL certificate for another host name exited " << r.status
            << (is_permanent(r.status) ? " (permanent)" : " (restartable)") << "\n";
  // A TLS verification failure is permanent: 77 (EX_NOPERM), which the unit does not restart.
  EXPECT_EQ(r.status, 77) << r.output;
  fs::remove_all(dir);
}

// mongodb://[user@]HOSTS[/db][?query] with HOSTS replaced by `host_port` and TLS options added.
std::string tls_mongo_uri(const std::string& uri, const std::string& host_port,
                          const std::string& ca_file) {
  const auto scheme = uri.find("://");
  if (scheme == std::string::npos) throw std::runtime_error("not a MongoDB URI: " + uri);
  auto start = scheme + 3;
  auto end = uri.find_first_of("/?", start);
  if (end == std::string::npos) end = uri.size();
  auto at = uri.rfind('@', end);
  if (at != std::string::npos && at >= start) start = at + 1;
  std::string rest = uri.substr(end);
  if (rest.empty()) rest = "/";
  if (rest.find('?') == std::string::npos)
    rest += "?";
  else
    rest += "&";
  rest += "tls=true&tlsCAFile=" + ca_file;
  if (uri.find("directConnection") == std::string::npos) rest += "&directConnection=true";
  return uri.substr(0, start) + host_port + rest;
}

TEST(Tls, MongoThroughStunnelAndAnUnknownCaIsRefused) {
  const std::string dir = make_dir("wf-tls-mongo");
  const TestCa ca = make_test_ca(dir, "mongo");
  const TestCa other = make_test_ca(dir, "other");
  const TestCert cert = make_server_cert(ca, "mongo-server", {"DNS:localhost", "IP:127.0.0.1"});
  const auto [mongo_host, mongo_port] = mongo_host_port();
  Stunnel tunnel(dir, cert, mongo_host, mongo_port);

  BankEnv env;
  const std::string base = env.config_path;
  const auto& s = servers();
  const std::string endpoint = "127.0.0.1:" + std::to_string(tunnel.port());
  const std::string uri_line = "  uri: \"" + s.mongo_uri + "\"";
  env.config_path = config_with(env, base, "tls.yaml", uri_line,
                                "  uri: \"" + tls_mongo_uri(s.mongo_uri, endpoint, ca.cert) + "\"");

  auto r = env.cmd("setup", {"--schema"});
  ASSERT_EQ(r.status, 0) << r.output;
  r = env.cmd("loadgen",
              {"--users", "40", "--transactions", "400", "--seed", "8", "--no-progress"});
  ASSERT_EQ(r.status, 0) << r.output;
  run_until_caught_up(env);
  EXPECT_GT(read_mongo_accounts(s.mongo_uri, env.mongo_db).size(), 30u);
  expect_read_model_exact(env);  // read straight from MongoDB, not through the tunnel
  // walfold's connections went through the TLS terminator (stunnel logs each one it accepts).
  EXPECT_NE(tunnel.output().find("accepted connection"), std::string::npos) << tunnel.output();

  // The same terminator, but walfold trusts another CA: the handshake must fail.
  const std::string bad =
      config_with(env, base, "tls-unknown-ca.yaml", uri_line,
                  "  uri: \"" + tls_mongo_uri(s.mongo_uri, endpoint, other.cert) + "\"");
  r = run_command({walfold_binary(), "report", "--config", bad, "--from", "mongo"}, 120);
  EXPECT_FALSE(r.timed_out) << r.output;
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("certificate verify failed"), std::string::npos) << r.output;
  std::cout << "walfold report --from mongo with an unknown CA exited " << r.status
            << (is_permanent(r.status) ? " (permanent)" : " (restartable)") << "\n";
  EXPECT_EQ(r.status, 77) << r.output;
  // The daemon too: refused before READY=1, permanently.
  r = run_command({walfold_binary(), "run", "--config", bad, "--stop-at-lsn", "current"}, 120);
  EXPECT_FALSE(r.timed_out) << r.output;
  EXPECT_NE(r.output.find("certificate verify failed"), std::string::npos) << r.output;
  EXPECT_EQ(r.status, 77) << r.output;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace walfold::test
