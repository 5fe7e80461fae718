// Issue #11: what an operator sees. /metrics scraped during a sync against what was written
// (strictly parsed), /healthz, /readyz, the bearer token, CSRF, the loopback rule,
// `walfold status --json` and its exit codes, `queue stats --json`, and the status page in
// headless Chromium (tests/browser/status_page.py), with a screenshot kept as a CI artifact.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>

#include "tests/harness/bank_env.h"
#include "tests/harness/servers.h"

namespace walfold::test {
namespace {

bool contains(const std::string& h, const std::string& n) {
  return h.find(n) != std::string::npos;
}

// The daemon's HTTP port, from its log line "http: serving ... on http://127.0.0.1:PORT/".
int http_port(Process& daemon) {
  if (!daemon.wait_for_output("http: serving", std::chrono::seconds(60))) return -1;
  std::smatch m;
  const auto out = daemon.output();
  if (!std::regex_search(out, m, std::regex(R"(http://127\.0\.0\.1:(\d+)/)"))) return -1;
  return std::stoi(m[1]);
}

// Series -> value ("name{labels}" as exposed), and each family's sum under its bare name.
std::map<std::string, double> parse_metrics(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto sp = line.rfind(' ');
    auto series = line.substr(0, sp);
    auto v = std::stod(line.substr(sp + 1));
    out[series] = v;
    auto brace = series.find('{');
    if (brace != std::string::npos) out[series.substr(0, brace)] += v;
  }
  return out;
}

struct Http {
  httplib::Client c;
  std::string token;
  explicit Http(int port) : c("127.0.0.1", port) { c.set_read_timeout(10, 0); }
  httplib::Headers headers(httplib::Headers h = {}) const {
    if (!token.empty()) h.emplace("Authorization", "Bearer " + token);
    return h;
  }
  httplib::Result get(const std::string& path) { return c.Get(path, headers()); }
  std::string metrics() {
    auto r = get("/metrics");
    return r && r->status == 200 ? r->body : "";
  }
};

// Strict parse: python3-prometheus-client and promtool (tests/harness/check_exposition.py).
void expect_strict_exposition(const std::string& text, const std::string& dir) {
  const auto path = dir + "/scrape.txt";
  std::ofstream(path) << text;
  auto r = run_command(
      {"/usr/bin/python3", source_dir() + "/tests/harness/check_exposition.py", path}, 60);
  EXPECT_EQ(r.status, 0) << r.output << "\n" << text;
}

// WALFOLD_TEST_ARTIFACTS_DIR, else "artifacts" beside ctest's servers dir (build/ci/artifacts),
// else /tmp/walfold-artifacts. CI keeps it; scripts/test.sh prints the screenshot's path.
std::string artifacts_dir() {
  std::string dir = "/tmp/walfold-artifacts";
  if (const char* d = std::getenv("WALFOLD_TEST_ARTIFACTS_DIR"); d && *d)
    dir = d;
  else if (const char* s = std::getenv("WALFOLD_TEST_SERVERS_DIR"); s && *s)
    dir = std::filesystem::path(s).parent_path().string() + "/artifacts";
  std::filesystem::create_directories(dir);
  return dir;
}

// A first start loads the read model from a snapshot: the documents it wrote are counted, and
// the load is shown as in progress only while it runs.
TEST(Observe, ASnapshotLoadIsCountedInTheMetrics) {
  BankEnv env("http:\n  listen: 127.0.0.1:0\n");
  {
    std::ifstream f(source_dir() + "/examples/bank/schema.sql");
    std::stringstream sql;
    sql << f.rdbuf();
    pg_query(env.dsn, sql.str());
  }
  ASSERT_EQ(env.cmd("loadgen", {"--users", "40", "--transactions", "300", "--no-progress"}).status,
            0);
  pg_query(env.dsn, "CREATE PUBLICATION " + env.name + " FOR TABLE users, accounts, transactions");
  const double documents =
      std::stod(pg_scalar(env.dsn,
                          "SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM accounts) "
                          "+ (SELECT count(*) FROM transactions)"));
  Process daemon({walfold_binary(), "run", "--config", env.config_path});
  const int port = http_port(daemon);
  ASSERT_GT(port, 0) << daemon.output();
  Http http(port);
  // The load runs in the reader at first start; the gauge says so until it is done.
  std::map<std::string, double> m;
  ASSERT_TRUE(wait_until(
      [&] {
        m = parse_metrics(http.metrics());
        return m.count("walfold_rebuild_in_progress") && m["walfold_rebuild_in_progress"] == 0 &&
               m["walfold_snapshot_documents_written_total"] > 0;
      },
      std::chrono::seconds(120), std::chrono::milliseconds(100)))
      << http.metrics() << daemon.output();
  EXPECT_EQ(m["walfold_snapshot_documents_written_total"], documents) << http.metrics();
  ASSERT_TRUE(running_daemon_caught_up(env)) << daemon.output();
  stop_cleanly(daemon);
  expect_read_model_exact(env);
}

// Scrapes /metrics while the sync runs: never empty, and rows folded never goes back.
struct ScrapesDuringSync {
  Http& http;
  double last_folded = 0;
  void scrape() {
    auto text = http.metrics();
    ASSERT_FALSE(text.empty());
    auto m = parse_metrics(text);
    EXPECT_GE(m["walfold_rows_folded_total"], last_folded) << "a counter went back";
    last_folded = m["walfold_rows_folded_total"];
  }
};

// Every statement its own commit, each changing one row of one ordering key: one job each.
// 5 users, 10 accounts, 200 transactions, scraped (and strictly parsed) along the way. Returns
// the rows written.
int write_rows_one_commit_each_while_scraping(const BankEnv& env, Http& http) {
  int rows = 0;
  ScrapesDuringSync scrapes{http};
  for (int u = 1; u <= 5; ++u, ++rows)
    pg_query(env.dsn, "INSERT INTO users (full_name, email) VALUES ('u" + std::to_string(u) +
                          "', 'u" + std::to_string(u) + "@bank.test')");
  for (int a = 1; a <= 10; ++a, ++rows)
    pg_query(env.dsn, "INSERT INTO accounts (user_id, currency) VALUES (" +
                          std::to_string((a - 1) % 5 + 1) + ", 'EUR')");
  scrapes.scrape();
  for (int t = 0; t < 200; ++t, ++rows) {
    pg_query(env.dsn, "INSERT INTO transactions (account_id, amount, kind) VALUES (" +
                          std::to_string(t % 10 + 1) + ", 1.2500, 'deposit')");
    if (t % 40 == 0) {
      scrapes.scrape();
      expect_strict_exposition(http.metrics(), env.dir);  // mid-sync, too
    }
  }
  return rows;
}

// Caught up: lag back to 0 and nothing pending (the sampler reads them every second). `m` is the
// scrape that showed it.
void wait_for_metrics_caught_up(Http& http, int rows, std::map<std::string, double>& m) {
  ASSERT_TRUE(wait_until(
      [&] {
        m = parse_metrics(http.metrics());
        return m["walfold_rows_folded_total"] == rows && m["walfold_replication_lag_bytes"] == 0 &&
               m["walfold_queue_pending_jobs"] == 0 && m["walfold_replication_lag_seconds"] == 0;
      },
      std::chrono::seconds(90), std::chrono::milliseconds(200)))
      << http.metrics();
}

// The counters of a caught-up sync of `rows` one-job commits (5 users, 10 accounts, the rest
// transactions), and the gauges of a healthy daemon.
void expect_counters_equal_what_was_written(std::map<std::string, double>& m, int rows) {
  EXPECT_EQ(m["walfold_rows_received_total"], rows);
  EXPECT_EQ(m["walfold_commits_received_total"], rows);
  EXPECT_EQ(m["walfold_jobs_enqueued_total"], rows);
  EXPECT_EQ(m["walfold_jobs_folded_total"], rows);
  // One observation per job folded; here every commit is one job.
  EXPECT_EQ(m["walfold_commit_to_mongodb_seconds_count"], rows);
  EXPECT_EQ(m["walfold_commit_to_mongodb_seconds_bucket{le=\"+Inf\"}"], rows);
  EXPECT_GT(m["walfold_commit_to_mongodb_seconds_sum"], 0);
  EXPECT_EQ(m["walfold_jobs_folded_total{priority=\"5\"}"], 200);  // transactions' class
  EXPECT_EQ(m["walfold_jobs_folded_total{priority=\"3\"}"], 15);   // users and accounts
  EXPECT_EQ(m["walfold_queue_keys{state=\"dead\"}"], 0);
  for (const char* s : {"postgresql", "redis", "mongodb"})
    EXPECT_EQ(m[std::string("walfold_server_up{server=\"") + s + "\"}"], 1) << s;
  EXPECT_EQ(m["walfold_slot_present"], 1);
  EXPECT_GT(m["walfold_confirmed_lsn"], 0);
  EXPECT_EQ(m["walfold_processes{role=\"reader+workers\"}"], 1);
  EXPECT_GT(m["walfold_mongodb_write_commands_total"], 0);
  EXPECT_EQ(m["walfold_rebuild_in_progress"], 0);
}

// Idle now: a heartbeat (every 500 ms here) goes out and its position comes back.
void expect_a_heartbeat_round_trip(Http& http) {
  std::map<std::string, double> m;
  ASSERT_TRUE(wait_until(
      [&] {
        m = parse_metrics(http.metrics());
        return m["walfold_heartbeats_total"] > 0 && m.count("walfold_heartbeat_round_trip_seconds");
      },
      std::chrono::seconds(30), std::chrono::milliseconds(200)))
      << http.metrics();
  EXPECT_GT(m["walfold_heartbeat_round_trip_seconds"], 0);
}

// The Grafana dashboard and the alert rules use only metrics walfold exposes, and promtool
// accepts the rules.
void expect_dashboard_and_alerts_use_exposed_metrics(Http& http) {
  const auto grafana = source_dir() + "/observe/grafana/";
  auto rules = run_command({"promtool", "check", "rules", grafana + "walfold-alerts.yml"}, 60);
  EXPECT_EQ(rules.status, 0) << rules.output;
  std::ifstream a(grafana + "walfold-alerts.yml"), d(grafana + "walfold-dashboard.json");
  std::string text((std::istreambuf_iterator<char>(a)), std::istreambuf_iterator<char>());
  text.append((std::istreambuf_iterator<char>(d)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(nlohmann::json::parse(text.substr(text.find("\n{")), nullptr, false).is_discarded());
  const auto exposed = http.metrics();
  std::regex name(R"(walfold_[a-z_]+)");
  int n = 0;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), name); it != std::sregex_iterator();
       ++it, ++n) {
    auto metric = it->str();
    for (const char* suffix : {"_bucket"})
      if (metric.size() > 7 && metric.ends_with(suffix)) metric.resize(metric.size() - 7);
    EXPECT_TRUE(contains(exposed, "# TYPE " + metric + " ")) << metric << " is not exposed";
  }
  EXPECT_GT(n, 20);
}

// The page's data: the same counters, and this process registered.
void expect_status_api_agrees(Http& http, int rows) {
  auto st = http.get("/api/status");
  ASSERT_TRUE(st && st->status == 200);
  auto j = nlohmann::json::parse(st->body);
  EXPECT_EQ(j["counters"]["rows_folded"].get<int>(), rows);
  ASSERT_EQ(j["processes"].size(), 1u) << st->body;
  EXPECT_EQ(j["processes"][0]["role"], "reader+workers");
  EXPECT_FALSE(j.contains("csrf")) << "no CSRF token (no admin) without http.admin";
}

TEST(Observe, MetricsDuringASyncEqualWhatWasWritten) {
  BankEnv env("http:\n  listen: 127.0.0.1:0\n", "", "  heartbeat_interval_ms: 500\n");
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  Process daemon({walfold_binary(), "run", "--config", env.config_path});
  const int port = http_port(daemon);
  ASSERT_GT(port, 0) << daemon.output();
  Http http(port);
  const int rows = write_rows_one_commit_each_while_scraping(env, http);
  ASSERT_TRUE(running_daemon_caught_up(env)) << daemon.output();
  std::map<std::string, double> m;
  ASSERT_NO_FATAL_FAILURE(wait_for_metrics_caught_up(http, rows, m));
  expect_counters_equal_what_was_written(m, rows);
  ASSERT_NO_FATAL_FAILURE(expect_a_heartbeat_round_trip(http));
  expect_strict_exposition(http.metrics(), env.dir);
  {
    SCOPED_TRACE("the Grafana dashboard and the alert rules");
    expect_dashboard_and_alerts_use_exposed_metrics(http);
  }
  ASSERT_NO_FATAL_FAILURE(expect_status_api_agrees(http, rows));
  stop_cleanly(daemon);
  // A clean stop leaves the registry at once.
  EXPECT_EQ(redis_cmd({"HLEN", env.queue_prefix() + ":procs"}), "0");
}

TEST(Observe, HealthReadinessTokenAndCsrf) {
  char tmpl[] = "/tmp/wf-token-XXXXXX";
  const std::string tdir = mkdtemp(tmpl);
  std::ofstream(tdir + "/token") << "s3cret-token\n";
  BankEnv env("http:\n  listen: 127.0.0.1:0\n  admin: true\n  token_file: " + tdir + "/token\n");
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  Process daemon({walfold_binary(), "run", "--config", env.config_path});
  const int port = http_port(daemon);
  ASSERT_GT(port, 0) << daemon.output();
  EXPECT_TRUE(contains(daemon.output(), "bearer token required"));
  EXPECT_FALSE(contains(daemon.output(), "s3cret-token")) << "the token is never logged";
  Http http(port);
  for (const char* path : {"/metrics", "/healthz", "/readyz", "/api/status", "/"}) {
    auto r = http.get(path);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401) << path;
  }
  http.token = "wrong";
  EXPECT_EQ(http.get("/metrics")->status, 401);
  http.token = "s3cret-token";
  EXPECT_EQ(http.get("/metrics")->status, 200);
  auto h = http.get("/healthz");
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(h->body, "ok\n");
  ASSERT_TRUE(wait_until([&] { return http.get("/readyz")->status == 200; },
                         std::chrono::seconds(60), std::chrono::milliseconds(200)))
      << http.get("/readyz")->body;
  // The page's sign-in form sets the token as a cookie.
  httplib::Client plain("127.0.0.1", port);
  auto login = plain.Post("/login", "token=s3cret-token", "application/x-www-form-urlencoded");
  ASSERT_TRUE(login);
  EXPECT_EQ(login->status, 303);
  EXPECT_TRUE(contains(login->get_header_value("Set-Cookie"), "HttpOnly"));
  EXPECT_EQ(plain.Get("/", {{"Cookie", "walfold_token=s3cret-token"}})->status, 200);

  // Admin actions need the CSRF token of /api/status, and a same-origin Origin.
  auto j = nlohmann::json::parse(http.get("/api/status")->body);
  ASSERT_TRUE(j.contains("csrf"));
  const std::string csrf = j["csrf"];
  auto post = [&](httplib::Headers extra) {
    return http.c.Post("/api/dead/retry", http.headers(extra), R"({"key":"a:1"})",
                       "application/json");
  };
  auto r = post({});
  EXPECT_EQ(r->status, 403);
  EXPECT_TRUE(contains(r->body, "X-CSRF-Token")) << r->body;
  r = post({{"X-CSRF-Token", csrf}, {"Origin", "http://evil.example"}});
  EXPECT_EQ(r->status, 403);
  EXPECT_TRUE(contains(r->body, "cross-origin")) << r->body;
  r = post({{"X-CSRF-Token", csrf}});
  EXPECT_EQ(r->status, 404) << r->body;  // accepted, but a:1 is not dead
  EXPECT_TRUE(contains(r->body, "not dead")) << r->body;

  // Redis down: not ready (healthy still: the loops turn), and ready again once it is back.
  servers_ctl({"stop-redis"});
  ASSERT_TRUE(wait_until(
      [&] {
        auto rz = http.get("/readyz");
        return rz && rz->status == 503 && contains(rz->body, "redis unreachable");
      },
      std::chrono::seconds(60), std::chrono::milliseconds(200)));
  EXPECT_EQ(parse_metrics(http.metrics())["walfold_server_up{server=\"redis\"}"], 0);
  servers_ctl({"start-redis"});
  EXPECT_TRUE(wait_until([&] { return http.get("/readyz")->status == 200; },
                         std::chrono::seconds(90), std::chrono::milliseconds(200)))
      << http.get("/readyz")->body;
  EXPECT_EQ(http.get("/healthz")->status, 200);
  stop_cleanly(daemon);
}

TEST(Observe, ANonLoopbackListenIsRefusedWithoutAllowRemote) {
  BankEnv env("http:\n  listen: 0.0.0.0:9731\n");
  auto r = env.cmd("run", {}, 60);
  EXPECT_EQ(r.status, 78) << r.output;
  EXPECT_TRUE(contains(r.output, "not a loopback address")) << r.output;
  BankEnv remote("http:\n  listen: 0.0.0.0:9731\n  allow_remote: true\n");
  r = remote.cmd("run", {}, 60);
  EXPECT_EQ(r.status, 78) << r.output;
  EXPECT_TRUE(contains(r.output, "needs http.token_file")) << r.output;
}

nlohmann::json status_json(const BankEnv& env, std::vector<std::string> extra, int& code) {
  extra.insert(extra.begin(), "--json");
  // stdout only: the log goes to stderr.
  auto r = run_command({"sh", "-c",
                        "\"$0\" status --config \"$1\" " +
                            [&] {
                              std::string s;
                              for (const auto& e : extra) s += "'" + e + "' ";
                              return s;
                            }() +
                            " 2>/dev/null",
                        walfold_binary(), env.config_path},
                       120);
  code = r.status;
  auto j = nlohmann::json::parse(r.output, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.output;
  return j;
}

bool has_problem(const nlohmann::json& j, int code) {
  for (const auto& p : j["problems"])
    if (p["code"] == code) return true;
  return false;
}

TEST(Observe, StatusJsonAndEveryExitCode) {
  BankEnv env("", "  retry: {initial_ms: 10, max_ms: 50, max_attempts: 3}\n");
  int code = -1;
  // No slot yet.
  auto j = status_json(env, {}, code);
  EXPECT_EQ(code, 3) << j.dump(1);
  EXPECT_FALSE(j["healthy"].get<bool>());
  EXPECT_TRUE(has_problem(j, 3));
  EXPECT_TRUE(j["mongodb"]["ok"].get<bool>());
  EXPECT_TRUE(j["redis"]["ok"].get<bool>());

  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(
      env.cmd("loadgen", {"--users", "10", "--transactions", "50", "--seed", "3", "--no-progress"})
          .status,
      0);
  run_until_caught_up(env);
  j = status_json(env, {}, code);
  EXPECT_EQ(code, 0) << j.dump(1);
  EXPECT_TRUE(j["healthy"].get<bool>());
  EXPECT_EQ(j["mongodb"]["checkpoint"]["lsn"], format_lsn(slot_confirmed(env)));
  EXPECT_EQ(j["postgresql"]["slot"]["confirmed_lsn"], format_lsn(slot_confirmed(env)));
  EXPECT_EQ(j["redis"]["queue"]["pending_jobs"], 0);

  // Written while walfold is stopped: lag over --max-lag 0, not over 1GiB.
  pg_query(env.dsn,
           "INSERT INTO transactions (account_id, amount, kind) VALUES (3, 1.0000, 'deposit')");
  j = status_json(env, {"--max-lag", "0"}, code);
  EXPECT_EQ(code, 1) << j.dump(1);
  EXPECT_GT(j["lag"]["bytes"].get<long long>(), 0);
  status_json(env, {"--max-lag", "1GiB"}, code);
  EXPECT_EQ(code, 0);
  auto bad = env.cmd("status", {"--max-lag", "soon"});
  EXPECT_EQ(bad.status, 64) << bad.output;

  // A dead key (a NaN amount is poison): exit 2, also when the lag is over the limit.
  pg_query(env.dsn,
           "INSERT INTO transactions (account_id, amount, kind) VALUES (1, 'NaN', 'deposit')");
  {
    Process daemon({walfold_binary(), "run", "--config", env.config_path});
    ASSERT_TRUE(daemon.wait_for_output("DEAD LETTER: key a:1", std::chrono::seconds(60)))
        << daemon.output();
    stop_cleanly(daemon);
  }
  j = status_json(env, {"--max-lag", "0"}, code);
  EXPECT_EQ(code, 2) << j.dump(1);
  EXPECT_TRUE(has_problem(j, 2));
  auto text = env.cmd("status", {});
  EXPECT_EQ(text.status, 2);
  EXPECT_TRUE(contains(text.output, "dead keys     1")) << text.output;
  EXPECT_TRUE(contains(text.output, "PROBLEM")) << text.output;
  EXPECT_TRUE(contains(text.output, "checkpoint    ")) << text.output;

  auto qs = run_command({"sh", "-c", "\"$0\" queue --config \"$1\" stats --json 2>/dev/null",
                         walfold_binary(), env.config_path},
                        60);
  ASSERT_EQ(qs.status, 0) << qs.output;
  auto q = nlohmann::json::parse(qs.output);
  EXPECT_EQ(q["dead_keys"], 1);
  ASSERT_FALSE(q["by_priority"].empty());
  EXPECT_EQ(q["oldest_pending"]["key"], "a:1");

  // A server unreachable (Redis on a port nobody listens on): 69, whatever else is wrong.
  {
    std::ifstream in(env.config_path);
    std::string cfg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    cfg = std::regex_replace(cfg, std::regex("port: " + std::to_string(servers().redis_port)),
                             "port: 1");
    std::ofstream(env.config_path) << cfg;
  }
  j = status_json(env, {}, code);
  EXPECT_EQ(code, 69) << j.dump(1);
  EXPECT_FALSE(j["redis"]["ok"].get<bool>());
  EXPECT_TRUE(j["postgresql"]["ok"].get<bool>());
}

TEST(Browser, StatusPageDuringASyncMatchesMetricsAndRetriesADeadKey) {
  BankEnv env("http:\n  listen: 127.0.0.1:0\n  admin: true\n",
              "  retry: {initial_ms: 10, max_ms: 50, max_attempts: 3}\n");
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  Process daemon({walfold_binary(), "run", "--config", env.config_path});
  const int port = http_port(daemon);
  ASSERT_GT(port, 0) << daemon.output();
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/";
  const std::string dir = artifacts_dir();
  const std::string script = source_dir() + "/tests/browser/status_page.py";
  // During a sync: loadgen writes while the page loads.
  Process load({walfold_binary(), "loadgen", "--config", env.config_path, "--users", "50",
                "--transactions", "3000", "--rate", "600", "--seed", "11", "--no-progress"});
  ASSERT_TRUE(wait_until(
      [&] { return parse_metrics(Http(port).metrics())["walfold_rows_folded_total"] > 0; },
      std::chrono::seconds(60)));
  auto r =
      run_command({"/usr/bin/python3", script, "load", url, dir + "/status-page-sync.png"}, 180);
  ASSERT_EQ(r.status, 0) << r.output;
  ASSERT_EQ(load.wait(std::chrono::seconds(120)), std::optional<int>(0)) << load.output();
  ASSERT_TRUE(running_daemon_caught_up(env)) << daemon.output();
  r = run_command({"/usr/bin/python3", script, "compare", url}, 180);
  EXPECT_EQ(r.status, 0) << r.output;

  // A poison job: MongoDB refuses account 1's document (a validator), so its key dies.
  mongo_command(servers().mongo_uri, env.mongo_db,
                R"({"collMod": "accounts", "validator": {"_id": {"$ne": 1}}})");
  pg_query(env.dsn,
           "INSERT INTO transactions (account_id, amount, kind) VALUES (1, 5.0000, 'deposit')");
  ASSERT_TRUE(daemon.wait_for_output("DEAD LETTER: key a:1", std::chrono::seconds(60)))
      << daemon.output();
  EXPECT_FALSE(balance_matches_postgres(env, 1));
  // Fixed; retried from the page (inspect, retry, confirm).
  mongo_command(servers().mongo_uri, env.mongo_db, R"({"collMod": "accounts", "validator": {}})");
  r = run_command({"/usr/bin/python3", script, "retry", url, "a:1", dir + "/status-page-retry.png"},
                  180);
  ASSERT_EQ(r.status, 0) << r.output;
  ASSERT_TRUE(
      wait_until([&] { return balance_matches_postgres(env, 1); }, std::chrono::seconds(60)));
  EXPECT_TRUE(contains(daemon.output(), "dead key a:1 retried from the status page"));
  r = run_command({"/usr/bin/python3", script, "load", url, dir + "/status-page.png"}, 180);
  EXPECT_EQ(r.status, 0) << r.output;
  stop_cleanly(daemon);
  expect_read_model_exact(env);
  std::cout << "status page screenshots: " << dir << "/status-page.png (also -sync, -retry)\n";
}

}  // namespace
}  // namespace walfold::test
