// One isolated walfold installation for an integration test: its own PostgreSQL database,
// slot, publication, Redis key prefix and MongoDB database, and a config file for the binary.
#pragma once

#include <mongoc/mongoc.h>

#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/decimal.h"
#include "common/lsn.h"
#include "tests/harness/servers.h"

namespace walfold::test {

struct BankEnv {
  std::string name = unique_name("wf");
  std::string dsn = fresh_pg_database("bank");
  std::string dir;
  std::string config_path;
  std::string mongo_db = name;
  std::string redis_prefix = "wft";

  // `workers_yaml`, `reader_yaml`: extra lines inside those sections (e.g. "  lease_ms: 2000\n").
  explicit BankEnv(const std::string& extra_yaml = "", const std::string& workers_yaml = "",
                   const std::string& reader_yaml = "") {
    const auto& s = servers();
    char tmpl[] = "/tmp/wf-env-XXXXXX";
    dir = mkdtemp(tmpl);
    config_path = dir + "/walfold.yaml";
    std::ofstream f(config_path);
    f << "postgres:\n  dsn: \"" << dsn << "\"\n  slot: " << name << "\n  publication: " << name
      << "\n"
      << "redis:\n  host: " << s.redis_host << "\n  port: " << s.redis_port
      << "\n  prefix: " << redis_prefix << "\n"
      << "mongodb:\n  uri: \"" << s.mongo_uri << "\"\n  database: " << mongo_db << "\n"
      << "reader:\n  status_interval_ms: 200\n"
      << reader_yaml << "workers:\n  count: 2\n  batch_keys: 64\n"
      << workers_yaml << "log_level: info\n"
      << "state_dir: " << dir
      << "/state\n"
      // No HTTP server unless the test configures one (two daemons would want one port).
      << (extra_yaml.find("http:") == std::string::npos ? "http:\n  listen: off\n" : "")
      << extra_yaml;
  }
  ~BankEnv() {
    try {
      pg_query(dsn,
               "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE "
               "slot_name = '" +
                   name + "' AND NOT active");
    } catch (...) {
    }
  }

  CmdResult walfold(std::vector<std::string> args, int timeout_s = 300) const {
    std::vector<std::string> argv{walfold_binary()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, timeout_s);
  }
  CmdResult cmd(const std::string& sub, std::vector<std::string> more = {},
                int timeout_s = 300) const {
    std::vector<std::string> args{sub, "--config", config_path};
    args.insert(args.end(), more.begin(), more.end());
    return walfold(args, timeout_s);
  }
  std::string queue_prefix() const { return redis_prefix + ":{" + name + "}"; }
  // A copy of the configuration (dir/<variant>.yaml) with the text `from` replaced by `to`.
  std::string config_variant(const std::string& variant, const std::string& from,
                             const std::string& to) const {
    std::ifstream in(config_path);
    std::string yaml((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto at = yaml.find(from);
    if (at == std::string::npos) throw std::runtime_error("'" + from + "' not in " + config_path);
    yaml.replace(at, from.size(), to);
    const std::string path = dir + "/" + variant + ".yaml";
    std::ofstream(path) << yaml;
    return path;
  }
};

// Reads every live account of the read model straight from MongoDB (not through the report
// code): id -> canonical balance and the ids of last_transactions in stored order.
struct MongoAccount {
  std::string balance;
  std::vector<std::int64_t> last_ids;
  std::int64_t user_id = 0;
};
std::map<std::int64_t, MongoAccount> read_mongo_accounts(const std::string& uri,
                                                         const std::string& db);
// users: id -> currency -> canonical total
std::map<std::int64_t, std::map<std::string, std::string>> read_mongo_user_totals(
    const std::string& uri, const std::string& db);

// Sets accounts.<id>.balance to Decimal128(value) directly in MongoDB (corruption on purpose).
void corrupt_mongo_balance(const std::string& uri, const std::string& db, std::int64_t id,
                           const std::string& value);

// Runs a database command given as (relaxed) extended JSON, e.g. {"collMod": "accounts", ...}.
void mongo_command(const std::string& uri, const std::string& db, const std::string& json);

// Pauses the shared MongoDB stand-in (SIGSTOP) for its lifetime: resume() or the destructor
// resumes it, so no failure leaves it stopped for the tests after.
struct MongoPause {
  MongoPause();
  ~MongoPause();
  MongoPause(const MongoPause&) = delete;
  MongoPause& operator=(const MongoPause&) = delete;
  void resume();

 private:
  bool paused_ = true;
};

// SIGTERM, then a clean exit (status 0) within 90 s; the daemon's output on failure.
void stop_cleanly(Process& daemon);
// Account `id`'s balance in MongoDB equals the sum of its transactions in PostgreSQL.
bool balance_matches_postgres(const BankEnv& env, std::int64_t id);

// The read model equals PostgreSQL: every live account's balance (exact) and last three
// transactions, every user's totals; computed with the test's own SQL and read straight from
// MongoDB. Reports failures through gtest.
void expect_read_model_exact(const BankEnv& env);
// `report --from postgres` and `report --from mongo` are byte-identical.
void expect_reports_identical(const BankEnv& env);
// `walfold reconcile --verify` exits 0 and prints nothing on stdout (no drift); otherwise the
// failure shows the drift it printed and its log (stderr is kept apart so the log lines do
// not count as output).
void expect_verify_clean(const BankEnv& env);
// What the (idle) slot would stream from its confirmed position, decoded through pgoutput
// without consuming it: `select` over the changes (columns lsn, xid, data) whose message type is
// `type` ('I' an insert, 'C' a commit), e.g. "count(*)" or "max(lsn)".
std::string slot_peek(const BankEnv& env, const std::string& select, char type);
// The slot's confirmed_flush_lsn (throws when the slot is missing).
Lsn slot_confirmed(const BankEnv& env);
// Waits (up to 120 s) until the running daemon has confirmed everything written so far.
bool running_daemon_caught_up(const BankEnv& env);
// `walfold run --stop-at-lsn current` (plus extra arguments) exits 0.
void run_until_caught_up(const BankEnv& env, std::vector<std::string> extra = {});

}  // namespace walfold::test
