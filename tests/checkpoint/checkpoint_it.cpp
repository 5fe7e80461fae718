// Issue #3's checkpoint, snapshot, gap and reconcile scenarios, against real PostgreSQL and
// Redis (and the MongoDB stand-in or a real MongoDB). Each ends with `reconcile --verify` clean
// and the read model exactly equal to PostgreSQL.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/lsn.h"
#include "tests/harness/bank_env.h"

namespace walfold::test {
namespace {

constexpr int kExDataErr = 65;

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

void schema_only(const BankEnv& env) {
  std::ifstream f(source_dir() + "/examples/bank/schema.sql");
  std::stringstream sql;
  sql << f.rdbuf();
  pg_query(env.dsn, sql.str());
}

std::unique_ptr<Process> activity(const BankEnv& env, int n, int rate, int seed) {
  return std::make_unique<Process>(std::vector<std::string>{
      walfold_binary(), "loadgen", "--config", env.config_path, "--reuse", "--transactions",
      std::to_string(n), "--rate", std::to_string(rate), "--seed", std::to_string(seed),
      "--update-share", "0.1", "--delete-share", "0.05", "--no-progress"});
}

void wait_ok(Process& p, int seconds = 180) {
  auto st = p.wait(std::chrono::seconds(seconds));
  ASSERT_TRUE(st.has_value()) << "did not finish: " << p.output();
  ASSERT_EQ(*st, 0) << p.output();
}

std::string slot_confirmed_text(const BankEnv& env) {
  return format_lsn(slot_confirmed(env));
}

// The LSNs listed by `walfold checkpoints`, oldest first.
std::vector<std::string> history_lsns(const BankEnv& env) {
  auto r = env.cmd("checkpoints");
  EXPECT_EQ(r.status, 0) << r.output;
  std::vector<std::string> out;
  std::istringstream in(r.output);
  std::string line;
  bool hist = false;
  while (std::getline(in, line)) {
    if (contains(line, "history (oldest first)")) {
      hist = true;
      continue;
    }
    if (!hist) continue;
    std::istringstream w(line);
    std::string at, lsn;
    w >> at >> lsn;
    if (parse_lsn(lsn)) out.push_back(lsn);
  }
  return out;
}

TEST(Snapshot, ExistingHistoryIsLoadedWhileWritesContinue) {
  BankEnv env;
  schema_only(env);
  // History that predates walfold: it can only come from the snapshot.
  ASSERT_EQ(env.cmd("loadgen", {"--users", "150", "--transactions", "1500", "--seed", "31",
                                "--update-share", "0.1", "--delete-share", "0.05", "--no-progress"})
                .status,
            0);
  // Writes go on while setup creates the slot and loads the snapshot.
  auto load = activity(env, 1500, 300, 32);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto setup = env.cmd("setup");
  ASSERT_EQ(setup.status, 0) << setup.output;
  EXPECT_TRUE(contains(setup.output, "exported snapshot")) << setup.output;
  wait_ok(*load);
  run_until_caught_up(env);
  expect_read_model_exact(env);
  expect_verify_clean(env);
  auto cp = env.cmd("checkpoints");
  EXPECT_TRUE(contains(cp.output, "initial snapshot (setup)")) << cp.output;
  EXPECT_TRUE(contains(cp.output, "slot created")) << cp.output;
}

TEST(Snapshot, FirstRunCreatesTheSlotAndLoadsExistingRows) {
  BankEnv env;
  schema_only(env);
  ASSERT_EQ(env.cmd("loadgen",
                    {"--users", "50", "--transactions", "400", "--seed", "33", "--no-progress"})
                .status,
            0);
  pg_query(env.dsn, "CREATE PUBLICATION " + env.name + " FOR TABLE users, accounts, transactions");
  auto r = env.cmd("run", {"--stop-at-lsn", "current"}, 240);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "first start")) << r.output;
  expect_read_model_exact(env);
  expect_verify_clean(env);
}

TEST(Checkpoint, SavedInMongoAndStateDirAndNeverBehindTheSlot) {
  BankEnv env("", "", "  checkpoint_history_interval_ms: 0\n");
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(env.cmd("loadgen", {"--users", "40", "--transactions", "300", "--no-progress"}).status,
            0);
  run_until_caught_up(env);
  auto lsns = history_lsns(env);
  ASSERT_GE(lsns.size(), 2u);
  // The newest saved checkpoint is exactly what PostgreSQL confirmed.
  EXPECT_EQ(lsns.back(), slot_confirmed_text(env));
  std::ifstream state(env.dir + "/state/" + env.name + ".checkpoint");
  std::stringstream text;
  text << state.rdbuf();
  EXPECT_TRUE(contains(text.str(), "lsn=" + slot_confirmed_text(env))) << text.str();
  EXPECT_TRUE(contains(text.str(), "system_id=")) << text.str();
  expect_verify_clean(env);
}

TEST(Gap, DroppedSlotIsRefusedAndReconcileFullRebuilds) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(env.cmd("loadgen", {"--users", "60", "--transactions", "500", "--no-progress"}).status,
            0);
  run_until_caught_up(env);
  pg_query(env.dsn, "SELECT pg_drop_replication_slot('" + env.name + "')");
  // Changes the read model will never see through a slot.
  ASSERT_EQ(env.cmd("loadgen", {"--reuse", "--transactions", "300", "--seed", "7", "--update-share",
                                "0.1", "--delete-share", "0.05", "--no-progress"})
                .status,
            0);
  auto r = env.cmd("run", {"--stop-at-lsn", "current"}, 120);
  EXPECT_EQ(r.status, kExDataErr) << r.output;
  EXPECT_TRUE(contains(r.output, "is gone")) << r.output;
  EXPECT_TRUE(contains(r.output, "reconcile --full")) << r.output;
  EXPECT_EQ(env.cmd("setup").status, kExDataErr);  // setup does not paper over it either
  auto v = env.cmd("reconcile", {"--verify"});
  EXPECT_EQ(v.status, 1) << "the missed changes should show as drift: " << v.output;

  auto full = env.cmd("reconcile", {"--full"}, 240);
  ASSERT_EQ(full.status, 0) << full.output;
  expect_verify_clean(env);
  // And streaming goes on from the new slot.
  ASSERT_EQ(env.cmd("loadgen", {"--reuse", "--transactions", "200", "--seed", "8", "--no-progress"})
                .status,
            0);
  run_until_caught_up(env);
  expect_read_model_exact(env);
  expect_verify_clean(env);
}

TEST(Gap, InvalidatedSlotIsRefusedAndReconcileFullRebuilds) {
  // PostgreSQL invalidates a slot (wal_status = 'lost') when it may keep no more WAL for it
  // (max_slot_wal_keep_size) and a checkpoint removes segments the slot still needed. The
  // setting is cluster-wide: integration tests run one at a time and every other test drops
  // its slot when it ends, so only this test's (inactive) slot is exposed while it is small.
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(env.cmd("loadgen", {"--users", "40", "--transactions", "300", "--no-progress"}).status,
            0);
  run_until_caught_up(env);
  const std::string admin = pg_admin_dsn();
  struct Restore {
    std::string dsn;
    ~Restore() {
      pg_query(dsn, "ALTER SYSTEM RESET max_slot_wal_keep_size");
      pg_query(dsn, "SELECT pg_reload_conf()");
    }
  } restore{admin};
  pg_query(admin, "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
  pg_query(admin, "SELECT pg_reload_conf()");
  // Changes the slot would have carried, then WAL segments until a checkpoint drops them.
  ASSERT_EQ(env.cmd("loadgen", {"--reuse", "--transactions", "300", "--seed", "9", "--update-share",
                                "0.1", "--delete-share", "0.05", "--no-progress"})
                .status,
            0);
  auto wal_status = [&] {
    return pg_scalar(env.dsn, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = '" +
                                  env.name + "'");
  };
  ASSERT_TRUE(wait_until(
      [&] {
        for (int i = 0; i < 3; ++i) {
          pg_query(admin, "SELECT pg_logical_emit_message(false, 'walfold-test', 'wal')");
          pg_query(admin, "SELECT pg_switch_wal()");
        }
        pg_query(admin, "CHECKPOINT");
        return wal_status() == "lost";
      },
      std::chrono::seconds(60)))
      << "the slot was not invalidated: wal_status " << wal_status();

  auto r = env.cmd("run", {"--stop-at-lsn", "current"}, 120);
  EXPECT_EQ(r.status, kExDataErr) << r.output;
  EXPECT_TRUE(contains(r.output, "wal_status = 'lost'")) << r.output;
  EXPECT_TRUE(contains(r.output, "reconcile --full")) << r.output;
  // status describes the lost slot (instead of failing on it) and says so in its exit code.
  auto st = env.cmd("status");
  EXPECT_EQ(st.status, 4) << st.output;
  EXPECT_TRUE(contains(st.output, "is lost (wal_status 'lost')")) << st.output;
  EXPECT_TRUE(contains(st.output, "run `walfold reconcile --full`")) << st.output;
  auto v = env.cmd("reconcile", {"--verify"});
  EXPECT_EQ(v.status, 1) << "the lost changes should show as drift: " << v.output;

  auto full = env.cmd("reconcile", {"--full"}, 240);
  ASSERT_EQ(full.status, 0) << full.output;
  EXPECT_EQ(wal_status(), "reserved");
  expect_verify_clean(env);
  ASSERT_EQ(
      env.cmd("loadgen", {"--reuse", "--transactions", "200", "--seed", "10", "--no-progress"})
          .status,
      0);
  run_until_caught_up(env);
  expect_read_model_exact(env);
  expect_verify_clean(env);
}

TEST(Gap, AStateDirLeftByAnotherPostgresSystemIsNamedAsSuch) {
  // A state directory that outlived its deployment (same slot name, another PostgreSQL
  // cluster, an empty MongoDB) is not reported as "the slot is gone" but as what it is.
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  pg_query(env.dsn, "SELECT pg_drop_replication_slot('" + env.name + "')");
  mongo_command(servers().mongo_uri, env.mongo_db, R"({"dropDatabase": 1})");
  const std::string file = env.dir + "/state/" + env.name + ".checkpoint";
  ASSERT_EQ(run_command({"sed", "-i", "s/^system_id=.*/system_id=1234/", file}, 10).status, 0);
  for (const char* sub : {"setup", "run"}) {
    auto r = sub == std::string("run") ? env.cmd("run", {"--stop-at-lsn", "current"}, 120)
                                       : env.cmd("setup");
    EXPECT_EQ(r.status, kExDataErr) << sub << ": " << r.output;
    EXPECT_TRUE(contains(r.output, "on another PostgreSQL system (1234")) << sub << r.output;
    EXPECT_TRUE(contains(r.output, "leftover of another deployment")) << sub << r.output;
    EXPECT_TRUE(contains(r.output, file)) << sub << r.output;
  }
  // Removing the leftover, as the message says, lets a new deployment start.
  std::filesystem::remove(file);
  std::filesystem::remove(env.dir + "/state/" + env.name + ".history");
  ASSERT_EQ(env.cmd("setup").status, 0);
  ASSERT_EQ(env.cmd("loadgen", {"--users", "10", "--transactions", "100", "--no-progress"}).status,
            0);
  run_until_caught_up(env);
  expect_read_model_exact(env);
  expect_verify_clean(env);
}

TEST(Gap, RecreatedOrAdvancedSlotIsRefused) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(env.cmd("loadgen", {"--users", "20", "--transactions", "100", "--no-progress"}).status,
            0);
  run_until_caught_up(env);
  ASSERT_EQ(env.cmd("loadgen", {"--reuse", "--transactions", "50", "--no-progress"}).status, 0);
  // Something else moves the slot past walfold's checkpoint.
  pg_query(env.dsn, "SELECT pg_replication_slot_advance('" + env.name + "', pg_current_wal_lsn())");
  auto r = env.cmd("run", {"--stop-at-lsn", "current"}, 120);
  EXPECT_EQ(r.status, kExDataErr) << r.output;
  EXPECT_TRUE(contains(r.output, "past walfold's checkpoint")) << r.output;
  // Dropped and created again by hand: same refusal.
  pg_query(env.dsn, "SELECT pg_drop_replication_slot('" + env.name + "')");
  pg_query(env.dsn, "SELECT pg_create_logical_replication_slot('" + env.name + "', 'pgoutput')");
  ASSERT_EQ(env.cmd("loadgen", {"--reuse", "--transactions", "20", "--no-progress"}).status, 0);
  pg_query(env.dsn, "SELECT pg_replication_slot_advance('" + env.name + "', pg_current_wal_lsn())");
  r = env.cmd("run", {"--stop-at-lsn", "current"}, 120);
  EXPECT_EQ(r.status, kExDataErr) << r.output;
  EXPECT_TRUE(contains(r.output, "past walfold's checkpoint")) << r.output;
  ASSERT_EQ(env.cmd("reconcile", {"--full"}, 240).status, 0);
  expect_verify_clean(env);
}

TEST(Reconcile, FromLsnReplaysAReplayableLsnAndRefusesATooOldOne) {
  BankEnv env("", "", "  checkpoint_history_interval_ms: 0\n");
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(env.cmd("loadgen", {"--users", "60", "--transactions", "300", "--no-progress"}).status,
            0);
  run_until_caught_up(env);
  const std::string too_old = history_lsns(env).front();

  // More activity reaches Redis (reader only: nothing folded, the slot stays at X) and then
  // Redis loses part of the queue in a way its epoch cannot show.
  ASSERT_EQ(env.cmd("loadgen", {"--reuse", "--transactions", "400", "--seed", "9", "--update-share",
                                "0.1", "--no-progress"})
                .status,
            0);
  auto reader = env.cmd("run", {"--role", "reader", "--stop-at-lsn", "current"}, 120);
  ASSERT_EQ(reader.status, 0) << reader.output;
  // The newest saved checkpoint is where the slot is: nothing enqueued was confirmed.
  auto lsns = history_lsns(env);
  const std::string x = lsns.back();
  ASSERT_EQ(x, slot_confirmed_text(env)) << env.cmd("checkpoints").output;
  ASSERT_LT(*parse_lsn(too_old), *parse_lsn(x));
  ASSERT_GT(std::stoll(redis_cmd({"ZCARD", env.queue_prefix() + ":pending"})), 0);
  auto keys = redis_cmd({"KEYS", env.queue_prefix() + ":[kl]:*"});  // the queue's lists
  std::istringstream kin(keys);
  std::string key;
  int deleted = 0;
  while (std::getline(kin, key) && deleted < 10) {
    if (key.empty()) continue;
    redis_cmd({"DEL", key});
    ++deleted;
  }
  ASSERT_GT(deleted, 0) << keys;

  auto old = env.cmd("reconcile", {"--from-lsn", too_old}, 120);
  EXPECT_EQ(old.status, kExDataErr) << old.output;
  EXPECT_TRUE(contains(old.output, "oldest replayable LSN is " + x)) << old.output;

  auto replay = env.cmd("reconcile", {"--from-lsn", x}, 240);
  ASSERT_EQ(replay.status, 0) << replay.output;
  expect_read_model_exact(env);
  expect_verify_clean(env);
}

// A typo in --from-lsn used to skip every change between the checkpoint and that LSN and exit 0
// (issue #9): beyond the WAL's end it is refused always, past the checkpoint unless --force,
// naming the commits it would skip; nothing is changed by a refusal.
TEST(Reconcile, FromLsnPastTheCheckpointOrTheWalEndIsRefused) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(env.cmd("loadgen", {"--users", "30", "--transactions", "100", "--no-progress"}).status,
            0);
  run_until_caught_up(env);
  ASSERT_EQ(env.cmd("loadgen", {"--reuse", "--transactions", "50", "--seed", "4", "--no-progress"})
                .status,
            0);
  const std::string checkpoint = slot_confirmed_text(env);

  auto typo = env.cmd("reconcile", {"--from-lsn", "FF/0"}, 120);
  EXPECT_EQ(typo.status, 64) << typo.output;
  EXPECT_TRUE(contains(typo.output, "is beyond the current WAL end")) << typo.output;
  EXPECT_EQ(slot_confirmed_text(env), checkpoint);

  const std::string ahead = pg_scalar(env.dsn, "SELECT pg_current_wal_lsn()");
  auto past = env.cmd("reconcile", {"--from-lsn", ahead}, 120);
  EXPECT_EQ(past.status, 64) << past.output;
  EXPECT_TRUE(contains(past.output, "past walfold's newest saved checkpoint " + checkpoint))
      << past.output;
  EXPECT_TRUE(contains(past.output, "50 commits of the published tables")) << past.output;
  EXPECT_TRUE(contains(past.output, "--force")) << past.output;
  EXPECT_EQ(slot_confirmed_text(env), checkpoint);
  // Nothing was skipped: a catch-up folds the 50 commits.
  run_until_caught_up(env);
  expect_read_model_exact(env);
  expect_verify_clean(env);

  // --force skips them on purpose; verify then shows the drift, and a rebuild fixes it.
  ASSERT_EQ(env.cmd("loadgen", {"--reuse", "--transactions", "20", "--seed", "5", "--no-progress"})
                .status,
            0);
  const std::string later = pg_scalar(env.dsn, "SELECT pg_current_wal_lsn()");
  auto forced = env.cmd("reconcile", {"--from-lsn", later, "--force"}, 240);
  ASSERT_EQ(forced.status, 0) << forced.output;
  EXPECT_TRUE(contains(forced.output, "20 commits of the published tables")) << forced.output;
  EXPECT_EQ(env.cmd("reconcile", {"--verify"}).status, 1);
  ASSERT_EQ(env.cmd("reconcile", {"--full"}, 240).status, 0);
  expect_verify_clean(env);
}

TEST(Reconcile, RepairFixesCorruptedDocumentsWhileTheDaemonRuns) {
  BankEnv env("", "", "  heartbeat_interval_ms: 300\n");
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(env.cmd("loadgen", {"--users", "80", "--transactions", "600", "--no-progress"}).status,
            0);
  Process daemon({walfold_binary(), "run", "--config", env.config_path});
  ASSERT_TRUE(daemon.wait_for_output("reader: streaming slot", std::chrono::seconds(60)))
      << daemon.output();
  auto load = activity(env, 400, 40, 41);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  corrupt_mongo_balance(servers().mongo_uri, env.mongo_db, 3, "123456.789");
  corrupt_mongo_balance(servers().mongo_uri, env.mongo_db, 11, "-5");
  // A document the daemon changed after a repair's snapshot is left for a later run.
  std::string outputs;
  for (int i = 0; i < 30 && !(contains(outputs, "repaired: account 3\n") &&
                              contains(outputs, "repaired: account 11\n"));
       ++i) {
    auto r = env.cmd("reconcile", {"--repair"}, 120);
    outputs += r.output;
    ASSERT_TRUE(r.status == 0 || r.status == 1) << r.output;
  }
  EXPECT_TRUE(contains(outputs, "repaired: account 3\n")) << outputs;
  EXPECT_TRUE(contains(outputs, "repaired: account 11\n")) << outputs;
  wait_ok(*load);
  // Quiet now (the daemon still runs): nothing left to repair, and the read model is exact.
  auto again = env.cmd("reconcile", {"--repair"}, 120);
  EXPECT_EQ(again.status, 0) << again.output;
  EXPECT_FALSE(contains(again.output, "repaired:")) << again.output;
  stop_cleanly(daemon);
  run_until_caught_up(env);
  expect_read_model_exact(env);
  expect_verify_clean(env);
  // Without the daemon, repair cannot know that everything before its snapshot is folded.
  auto stopped = env.cmd("reconcile", {"--repair", "--wait", "2"}, 60);
  EXPECT_EQ(stopped.status, 69) << stopped.output;
  EXPECT_TRUE(contains(stopped.output, "did not reach the snapshot")) << stopped.output;
}

// The read model's copies of transaction rows are what a window recompute reads after a
// correction: a drifted copy would put a wrong entry into last_transactions later on, so
// --repair compares and rewrites them too.
TEST(Reconcile, RepairFixesDriftedTransactionCopies) {
  BankEnv env("", "", "  heartbeat_interval_ms: 300\n");
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(env.cmd("loadgen", {"--users", "30", "--transactions", "300", "--no-progress"}).status,
            0);
  Process daemon({walfold_binary(), "run", "--config", env.config_path});
  ASSERT_TRUE(daemon.wait_for_output("reader: streaming slot", std::chrono::seconds(60)))
      << daemon.output();
  ASSERT_TRUE(running_daemon_caught_up(env)) << daemon.output();

  // An account with at least four transactions: its oldest is outside the window, its second
  // newest inside it.
  const std::string acct = pg_scalar(env.dsn,
                                     "SELECT account_id FROM transactions GROUP BY account_id "
                                     "HAVING count(*) >= 4 ORDER BY account_id LIMIT 1");
  ASSERT_FALSE(acct.empty());
  auto nth = [&](const char* order, int offset) {
    return pg_scalar(env.dsn, "SELECT id FROM transactions WHERE account_id = " + acct +
                                  " ORDER BY created_at " + order + ", id " + order +
                                  " LIMIT 1 OFFSET " + std::to_string(offset));
  };
  const std::string oldest = nth("ASC", 0), second_newest = nth("DESC", 1), newest = nth("DESC", 0);
  const std::string bogus = "900000001";
  const auto& db = env.mongo_db;
  const auto& uri = servers().mongo_uri;
  auto set = [&](const std::string& id, const std::string& fields) {
    mongo_command(uri, db,
                  R"({"update": "transactions", "updates": [{"q": {"_id": {"$numberLong": ")" + id +
                      R"("}}, "u": {"$set": )" + fields + "}}]}");
  };
  set(oldest, R"({"amount": {"$numberDecimal": "999999"}})");
  set(second_newest, R"({"deleted": true})");
  // A copy of a row PostgreSQL never had, newer than anything in the account.
  mongo_command(uri, db,
                R"({"insert": "transactions", "documents": [{"_id": {"$numberLong": ")" + bogus +
                    R"("}, "account_id": {"$numberLong": ")" + acct +
                    R"("}, "kind": "deposit", "amount": {"$numberDecimal": "5"},)"
                    R"( "created_at": {"$date": {"$numberLong": "4102444800000"}},)"
                    R"( "created_at_us": {"$numberLong": "4102444800000000"}, "transfer_id": null,)"
                    R"( "deleted": false, "applied_lsn": {"$numberLong": "1"}, "left": {}}]})");

  auto r = env.cmd("reconcile", {"--repair"}, 120);
  ASSERT_EQ(r.status, 0) << r.output;
  // Each named by its canonical record (projections/bank/canonical.h), the snapshot's below.
  const std::string was = "repaired: transaction " + oldest + "\n  was:      transaction " +
                          oldest + " account " + acct;
  EXPECT_TRUE(contains(r.output, was + " deposit 999999 ") ||
              contains(r.output, was + " withdrawal 999999 "))
      << r.output;
  EXPECT_TRUE(
      contains(r.output, "repaired: transaction " + second_newest + "\n  was:      deleted\n"))
      << r.output;
  EXPECT_TRUE(contains(
      r.output, "repaired: transaction " + bogus +
                    " (not in PostgreSQL)\n  was:      transaction " + bogus + " account " + acct +
                    " deposit 5 2100-01-01T00:00:00.000000Z transfer -\n  now:      tombstone\n"))
      << r.output;
  EXPECT_FALSE(contains(r.output, "repaired: account")) << r.output;
  auto again = env.cmd("reconcile", {"--repair"}, 120);
  EXPECT_EQ(again.status, 0) << again.output;
  EXPECT_FALSE(contains(again.output, "repaired:")) << again.output;

  // A correction of the newest row recomputes the account's window from the copies: with the
  // drift left in place it would show the phantom row and lose the second newest.
  pg_query(env.dsn, "UPDATE transactions SET amount = amount + 1 WHERE id = " + newest);
  ASSERT_TRUE(running_daemon_caught_up(env)) << daemon.output();
  stop_cleanly(daemon);
  expect_read_model_exact(env);
  expect_verify_clean(env);
}

TEST(Truncate, TruncateOfABankTableRebuildsTheReadModel) {
  BankEnv env("", "", "  checkpoint_history_interval_ms: 0\n");
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(env.cmd("loadgen", {"--users", "30", "--transactions", "200", "--no-progress"}).status,
            0);
  run_until_caught_up(env);
  ASSERT_EQ(env.cmd("loadgen", {"--reuse", "--transactions", "100", "--seed", "5", "--no-progress"})
                .status,
            0);
  pg_query(env.dsn, "TRUNCATE transactions");
  ASSERT_EQ(env.cmd("loadgen", {"--reuse", "--transactions", "100", "--seed", "6", "--no-progress"})
                .status,
            0);
  auto r = env.cmd("run", {"--stop-at-lsn", "current"}, 240);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "TRUNCATE of public.transactions")) << r.output;
  EXPECT_TRUE(contains(r.output, "rebuild after TRUNCATE done")) << r.output;
  expect_read_model_exact(env);
  expect_verify_clean(env);
  auto cp = env.cmd("checkpoints");
  EXPECT_TRUE(contains(cp.output, "rebuilt after TRUNCATE of public.transactions")) << cp.output;
  // A restart does not rebuild again.
  auto again = env.cmd("run", {"--stop-at-lsn", "current"}, 120);
  ASSERT_EQ(again.status, 0) << again.output;
  EXPECT_FALSE(contains(again.output, "rebuild after TRUNCATE done")) << again.output;
  expect_verify_clean(env);
}

TEST(Heartbeat, IdleTablesStillAdvanceTheSlot) {
  BankEnv env("", "", "  heartbeat_interval_ms: 200\n");
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  const Lsn before = slot_confirmed(env);
  Process daemon({walfold_binary(), "--log-level", "debug", "run", "--config", env.config_path});
  ASSERT_TRUE(daemon.wait_for_output("reader: heartbeat", std::chrono::seconds(30)))
      << daemon.output();
  // The heartbeats themselves are WAL in this database: the slot moves with no table writes.
  EXPECT_TRUE(wait_until([&] { return slot_confirmed(env) > before; }, std::chrono::seconds(30)))
      << format_lsn(before) << " " << format_lsn(slot_confirmed(env));
  stop_cleanly(daemon);
}

TEST(Standby, SecondReaderTakesOverWhenTheFirstIsKilled) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(env.cmd("loadgen", {"--users", "60", "--transactions", "0", "--no-progress"}).status,
            0);
  Process first({walfold_binary(), "run", "--config", env.config_path});
  ASSERT_TRUE(first.wait_for_output("reader: streaming slot", std::chrono::seconds(60)))
      << first.output();
  Process second({walfold_binary(), "run", "--config", env.config_path});
  ASSERT_TRUE(second.wait_for_output("standby", std::chrono::seconds(60))) << second.output();
  auto load = activity(env, 1200, 300, 51);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  first.signal(SIGKILL);
  ASSERT_TRUE(second.wait_for_output("this reader takes over", std::chrono::seconds(30)))
      << second.output();
  wait_ok(*load);
  stop_cleanly(second);
  run_until_caught_up(env);
  expect_read_model_exact(env);
  expect_verify_clean(env);
}

}  // namespace
}  // namespace walfold::test
