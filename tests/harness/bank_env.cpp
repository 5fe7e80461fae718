#include "tests/harness/bank_env.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "common/decimal.h"
#include "projections/mongo.h"

namespace walfold::test {
namespace {

std::string decimal_text(const bson_iter_t& it) {
  if (!BSON_ITER_HOLDS_DECIMAL128(&it)) throw std::runtime_error("money field is not Decimal128");
  bson_decimal128_t d;
  bson_iter_decimal128(&it, &d);
  char buf[BSON_DECIMAL128_STRING];
  bson_decimal128_to_string(&d, buf);
  auto c = Decimal::canonicalize(buf);
  if (!c) throw std::runtime_error(std::string("not a finite decimal: ") + buf);
  return *c;
}

template <typename Fn>
void for_each_doc(const std::string& uri, const std::string& db, const char* coll, Fn fn) {
  projections::mongo_global_init();
  mongo::Client client(mongoc_client_new(uri.c_str()));
  if (!client) throw std::runtime_error("bad mongo uri " + uri);
  mongo::Collection c(mongoc_client_get_collection(client.get(), db.c_str(), coll));
  mongo::StackBson filter;
  mongo::Cursor cur(mongoc_collection_find_with_opts(c.get(), filter.get(), nullptr, nullptr));
  const bson_t* doc;
  while (mongoc_cursor_next(cur.get(), &doc)) fn(doc);
  bson_error_t err;
  if (mongoc_cursor_error(cur.get(), &err))
    throw std::runtime_error(std::string("mongo read failed: ") + err.message);
}

}  // namespace

void corrupt_mongo_balance(const std::string& uri, const std::string& db, std::int64_t id,
                           const std::string& value) {
  projections::mongo_global_init();
  mongo::Client client(mongoc_client_new(uri.c_str()));
  if (!client) throw std::runtime_error("bad mongo uri " + uri);
  mongo::Collection c(mongoc_client_get_collection(client.get(), db.c_str(), "accounts"));
  mongo::StackBson filter, update;
  bson_t set;
  BSON_APPEND_INT64(filter.get(), "_id", id);
  bson_decimal128_t d;
  bson_decimal128_from_string(value.c_str(), &d);
  bson_append_document_begin(update.get(), "$set", -1, &set);
  BSON_APPEND_DECIMAL128(&set, "balance", &d);
  bson_append_document_end(update.get(), &set);
  bson_error_t err;
  bool ok =
      mongoc_collection_update_one(c.get(), filter.get(), update.get(), nullptr, nullptr, &err);
  if (!ok) throw std::runtime_error(std::string("corrupting the balance failed: ") + err.message);
}

void mongo_command(const std::string& uri, const std::string& db, const std::string& json) {
  projections::mongo_global_init();
  bson_error_t err;
  mongo::Bson cmd = mongo::Bson::adopt(bson_new_from_json(
      reinterpret_cast<const uint8_t*>(json.data()), static_cast<ssize_t>(json.size()), &err));
  if (!cmd) throw std::runtime_error("mongo_command: bad JSON " + json + ": " + err.message);
  mongo::Client client(mongoc_client_new(uri.c_str()));
  if (!client) throw std::runtime_error("bad mongo uri " + uri);
  mongo::StackBson reply;
  bool ok =
      mongoc_client_command_simple(client.get(), db.c_str(), cmd.get(), nullptr, reply.get(), &err);
  if (!ok) throw std::runtime_error("mongo_command " + json + " failed: " + err.message);
}

std::map<std::int64_t, MongoAccount> read_mongo_accounts(const std::string& uri,
                                                         const std::string& db) {
  std::map<std::int64_t, MongoAccount> out;
  for_each_doc(uri, db, "accounts", [&](const bson_t* doc) {
    bson_iter_t it;
    std::int64_t id = 0;
    bool deleted = false;
    MongoAccount a;
    bson_iter_init(&it, doc);
    while (bson_iter_next(&it)) {
      std::string k = bson_iter_key(&it);
      if (k == "_id") id = bson_iter_as_int64(&it);
      if (k == "deleted") deleted = bson_iter_as_bool(&it);
      if (k == "user_id") a.user_id = bson_iter_as_int64(&it);
      if (k == "balance") a.balance = decimal_text(it);
      if (k == "last_transactions") {
        bson_iter_t arr;
        bson_iter_recurse(&it, &arr);
        while (bson_iter_next(&arr)) {
          bson_iter_t e;
          bson_iter_recurse(&arr, &e);
          if (bson_iter_find(&e, "id")) a.last_ids.push_back(bson_iter_as_int64(&e));
        }
      }
    }
    if (!deleted) out[id] = a;
  });
  return out;
}

std::map<std::int64_t, std::map<std::string, std::string>> read_mongo_user_totals(
    const std::string& uri, const std::string& db) {
  std::map<std::int64_t, std::map<std::string, std::string>> out;
  for_each_doc(uri, db, "users", [&](const bson_t* doc) {
    bson_iter_t it;
    std::int64_t id = 0;
    bool deleted = false;
    std::map<std::string, std::string> totals;
    bson_iter_init(&it, doc);
    while (bson_iter_next(&it)) {
      std::string k = bson_iter_key(&it);
      if (k == "_id") id = bson_iter_as_int64(&it);
      if (k == "deleted") deleted = bson_iter_as_bool(&it);
      if (k == "balances") {
        bson_iter_t b;
        bson_iter_recurse(&it, &b);
        while (bson_iter_next(&b)) totals[bson_iter_key(&b)] = decimal_text(b);
      }
    }
    if (!deleted) out[id] = totals;
  });
  return out;
}

std::string canon(const std::string& s) {
  auto c = Decimal::canonicalize(s);
  if (!c) throw std::runtime_error("not a decimal: " + s);
  return *c;
}

// PostgreSQL's truth, computed here with SQL of the test's own (not the report code).
struct PgTruth {
  std::map<std::int64_t, std::string> balance;
  std::map<std::int64_t, std::vector<std::int64_t>> last3;
  std::map<std::int64_t, std::map<std::string, std::string>> user_totals;
};

PgTruth pg_truth(const std::string& dsn) {
  PgTruth t;
  for (auto& r :
       pg_query(dsn,
                "SELECT a.id, coalesce(sum(CASE t.kind WHEN 'deposit' THEN t.amount ELSE -t.amount "
                "END), 0) "
                "FROM accounts a LEFT JOIN transactions t ON t.account_id = a.id GROUP BY a.id"))
    t.balance[std::stoll(*r[0])] = canon(*r[1]);
  for (auto& r :
       pg_query(dsn,
                "SELECT account_id, id FROM (SELECT id, account_id, row_number() OVER (PARTITION "
                "BY account_id "
                "ORDER BY created_at DESC, id DESC) AS rn FROM transactions) x WHERE rn <= 3 "
                "ORDER BY account_id, rn"))
    t.last3[std::stoll(*r[0])].push_back(std::stoll(*r[1]));
  for (auto& r : pg_query(dsn,
                          "SELECT a.user_id, trim(a.currency), coalesce(sum(CASE t.kind WHEN "
                          "'deposit' THEN t.amount "
                          "ELSE -t.amount END), 0) FROM accounts a LEFT JOIN transactions t ON "
                          "t.account_id = a.id "
                          "GROUP BY a.user_id, trim(a.currency)"))
    t.user_totals[std::stoll(*r[0])][*r[1]] = canon(*r[2]);
  return t;
}

MongoPause::MongoPause() {
  servers_ctl({"pause-mongo"});
}
MongoPause::~MongoPause() {
  try {
    resume();
  } catch (...) {
  }
}
void MongoPause::resume() {
  if (paused_) servers_ctl({"resume-mongo"});
  paused_ = false;
}

void stop_cleanly(Process& daemon) {
  daemon.signal(SIGTERM);
  auto st = daemon.wait(std::chrono::seconds(90));
  ASSERT_TRUE(st.has_value()) << "walfold did not stop on SIGTERM: " << daemon.output();
  EXPECT_EQ(*st, 0) << daemon.output();
}

bool balance_matches_postgres(const BankEnv& env, std::int64_t id) {
  auto acc = read_mongo_accounts(servers().mongo_uri, env.mongo_db);
  auto want = pg_scalar(env.dsn,
                        "SELECT sum(CASE kind WHEN 'deposit' THEN amount ELSE -amount END) FROM "
                        "transactions WHERE account_id = " +
                            std::to_string(id));
  return acc.count(id) && acc[id].balance == *Decimal::canonicalize(want);
}

void expect_read_model_exact(const BankEnv& env) {
  const auto truth = pg_truth(env.dsn);
  const auto accounts = read_mongo_accounts(servers().mongo_uri, env.mongo_db);
  ASSERT_FALSE(truth.balance.empty());
  EXPECT_EQ(accounts.size(), truth.balance.size()) << "live accounts in MongoDB vs PostgreSQL";
  std::size_t mismatches = 0;
  for (const auto& [id, bal] : truth.balance) {
    auto it = accounts.find(id);
    if (it == accounts.end()) {
      ADD_FAILURE() << "account " << id << " missing in MongoDB";
      if (++mismatches > 10) return;
      continue;
    }
    if (it->second.balance != bal) {
      ADD_FAILURE() << "account " << id << ": MongoDB balance " << it->second.balance
                    << ", PostgreSQL " << bal;
      ++mismatches;
    }
    auto want = truth.last3.count(id) ? truth.last3.at(id) : std::vector<std::int64_t>{};
    if (it->second.last_ids != want) {
      std::string got, exp;
      for (auto x : it->second.last_ids) got += std::to_string(x) + " ";
      for (auto x : want) exp += std::to_string(x) + " ";
      ADD_FAILURE() << "account " << id << ": last_transactions [" << got
                    << "], PostgreSQL's newest 3 [" << exp << "]";
      ++mismatches;
    }
    if (mismatches > 10) return;
  }
  const auto users = read_mongo_user_totals(servers().mongo_uri, env.mongo_db);
  for (const auto& [uid, totals] : truth.user_totals) {
    auto it = users.find(uid);
    ASSERT_NE(it, users.end()) << "user " << uid << " missing in MongoDB";
    for (const auto& [cur, sum] : totals) {
      auto c = it->second.find(cur);
      ASSERT_NE(c, it->second.end()) << "user " << uid << " has no " << cur << " total in MongoDB";
      EXPECT_EQ(c->second, sum) << "user " << uid << " " << cur;
    }
    // Currencies the user no longer has an account in may remain, but only as zero.
    for (const auto& [cur, sum] : it->second) {
      if (!totals.count(cur)) {
        EXPECT_EQ(sum, "0") << "user " << uid << " stale " << cur << " total";
      }
    }
  }
}

// `walfold report` with its stdout alone (run_command interleaves stderr, where logs go).
static CmdResult report_stdout(const BankEnv& env, const std::string& from) {
  const std::string err_path = env.dir + "/report-" + from + ".stderr";
  auto r =
      run_command({"/bin/sh", "-c", "exec \"$0\" report --config \"$1\" --from \"$2\" 2>\"$3\"",
                   walfold_binary(), env.config_path, from, err_path},
                  300);
  if (r.status != 0) {
    std::ifstream f(err_path);
    r.output += std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  }
  return r;
}

void expect_reports_identical(const BankEnv& env) {
  auto pg = report_stdout(env, "postgres");
  auto mg = report_stdout(env, "mongo");
  ASSERT_EQ(pg.status, 0) << pg.output;
  ASSERT_EQ(mg.status, 0) << mg.output;
  ASSERT_GT(pg.output.size(), 100u);
  if (pg.output == mg.output) return;
  // Show the first differing lines.
  auto lines = [](const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
  };
  const auto a = lines(pg.output), b = lines(mg.output);
  std::string shown;
  int n = 0;
  for (size_t i = 0; i < std::max(a.size(), b.size()) && n < 5; ++i) {
    const std::string la = i < a.size() ? a[i] : "<none>", lb = i < b.size() ? b[i] : "<none>";
    if (la == lb) continue;
    shown +=
        "  line " + std::to_string(i + 1) + "\n  postgres: " + la + "\n  mongo:    " + lb + "\n";
    ++n;
  }
  ADD_FAILURE() << "reports differ (postgres " << pg.output.size() << " bytes, mongo "
                << mg.output.size() << " bytes); first differences:\n"
                << shown;
}

void expect_verify_clean(const BankEnv& env) {
  const std::string err_path = env.dir + "/verify.stderr";
  // Through a shell only to split the streams: `run_command` interleaves them.
  auto r = run_command({"/bin/sh", "-c", "exec \"$0\" reconcile --config \"$1\" --verify 2>\"$2\"",
                        walfold_binary(), env.config_path, err_path},
                       300);
  std::ifstream f(err_path);
  std::string log((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  // The first lines of the drift are enough to see what went wrong.
  std::string shown = r.output.substr(0, 4000);
  if (shown.size() < r.output.size())
    shown += "\n... (" + std::to_string(r.output.size()) + " bytes)";
  EXPECT_EQ(r.status, 0) << "reconcile --verify found drift or failed; stdout:\n"
                         << shown << "\nstderr:\n"
                         << log;
  EXPECT_TRUE(r.output.empty()) << "reconcile --verify printed drift:\n" << shown;
}

Lsn slot_confirmed(const BankEnv& env) {
  auto v = pg_scalar(
      env.dsn,
      "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '" + env.name + "'");
  auto l = parse_lsn(v);
  if (!l) throw std::runtime_error("no confirmed_flush_lsn: '" + v + "'");
  return *l;
}

bool running_daemon_caught_up(const BankEnv& env) {
  const Lsn end = *parse_lsn(pg_scalar(env.dsn, "SELECT pg_current_wal_lsn()"));
  return wait_until([&] { return slot_confirmed(env) >= end; }, std::chrono::seconds(120));
}

std::string slot_peek(const BankEnv& env, const std::string& select, char type) {
  return pg_scalar(env.dsn,
                   "SELECT " + select + " FROM pg_logical_slot_peek_binary_changes('" + env.name +
                       "', NULL, NULL, 'proto_version', '1', 'publication_names', '" + env.name +
                       "') WHERE get_byte(data, 0) = " + std::to_string(static_cast<int>(type)));
}

void run_until_caught_up(const BankEnv& env, std::vector<std::string> extra) {
  std::vector<std::string> args{"--stop-at-lsn", "current"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto r = env.cmd("run", args, 600);
  ASSERT_EQ(r.status, 0) << r.output;
}

}  // namespace walfold::test
