// The replication loop against a real PostgreSQL: reconnects, keepalives, and the rule that
// the flush position never passes what MongoDB has.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <thread>

#include "common/lsn.h"
#include "tests/harness/bank_env.h"

namespace walfold::test {
namespace {

TEST(Stream, ReaderAloneNeverConfirmsUnfoldedWork) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(env.cmd("loadgen", {"--users", "20", "--transactions", "200", "--no-progress"}).status,
            0);
  auto r = env.cmd("run", {"--role", "reader", "--stop-at-lsn", "current"});
  ASSERT_EQ(r.status, 0) << r.output;
  // Everything is in Redis but nothing is folded: the slot must still hold the oldest commit.
  auto oldest = redis_cmd({"ZRANGE", env.queue_prefix() + ":pending", "0", "0"});
  ASSERT_EQ(oldest.size(), 16u) << oldest;
  Lsn oldest_commit = std::stoull(oldest.substr(0, 16), nullptr, 16);
  EXPECT_LE(slot_confirmed(env), oldest_commit)
      << "confirmed " << format_lsn(slot_confirmed(env)) << " passes pending commit "
      << format_lsn(oldest_commit);
  // Folding then lets it move past everything.
  auto after = parse_lsn(pg_scalar(env.dsn, "SELECT pg_current_wal_lsn()"));
  ASSERT_EQ(env.cmd("run", {"--stop-at-lsn", "current"}).status, 0);
  EXPECT_GE(slot_confirmed(env), *after);
}

TEST(Stream, ReconnectsAfterPostgresRestartsMidStream) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  Process daemon({walfold_binary(), "run", "--config", env.config_path});
  ASSERT_TRUE(daemon.wait_for_output("reader: streaming slot", std::chrono::seconds(60)))
      << daemon.output();
  ASSERT_EQ(
      env.cmd("loadgen", {"--users", "50", "--transactions", "500", "--seed", "1", "--no-progress"})
          .status,
      0);
  servers_ctl({"restart-pg"});
  ASSERT_TRUE(daemon.wait_for_output("reconnecting in", std::chrono::seconds(60)))
      << daemon.output();
  ASSERT_TRUE(wait_until(
      [&] {
        return daemon.output().find("reader: streaming slot",
                                    daemon.output().find("reconnecting in")) != std::string::npos;
      },
      std::chrono::seconds(90)))
      << daemon.output();
  ASSERT_EQ(env.cmd("loadgen", {"--reuse", "--transactions", "500", "--seed", "2", "--no-progress"})
                .status,
            0);
  stop_cleanly(daemon);
  ASSERT_EQ(env.cmd("run", {"--stop-at-lsn", "current"}).status, 0);
  expect_reports_identical(env);
  expect_read_model_exact(env);
  expect_verify_clean(env);
}

TEST(Stream, RandomBankActivityAcrossAPostgresRestartEndsExact) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(env.cmd("loadgen", {"--users", "100", "--transactions", "0", "--no-progress"}).status,
            0);
  Process daemon({walfold_binary(), "run", "--config", env.config_path});
  ASSERT_TRUE(daemon.wait_for_output("reader: streaming slot", std::chrono::seconds(60)))
      << daemon.output();
  // Bank activity that is still running when PostgreSQL goes down: loadgen dies with it (its
  // connection is gone) after some commits; whatever committed is PostgreSQL's truth, and the
  // transaction in flight is rolled back by the server. Nothing is counted from loadgen's side.
  Process load({walfold_binary(), "loadgen", "--config", env.config_path, "--reuse",
                "--transactions", "4000", "--rate", "400", "--seed", "51", "--update-share", "0.1",
                "--delete-share", "0.05", "--no-progress"});
  std::this_thread::sleep_for(std::chrono::seconds(3));
  const auto before = pg_scalar(env.dsn, "SELECT count(*) FROM transactions");
  servers_ctl({"restart-pg"});
  auto load_st = load.wait(std::chrono::seconds(60));
  ASSERT_TRUE(load_st.has_value()) << "loadgen did not notice the restart";
  EXPECT_NE(*load_st, 0) << "loadgen was expected to lose its connection mid-run";
  ASSERT_TRUE(daemon.wait_for_output("reconnecting in", std::chrono::seconds(60)))
      << daemon.output();
  ASSERT_TRUE(wait_until(
      [&] {
        auto out = daemon.output();
        return out.find("reader: streaming slot", out.find("reconnecting in")) != std::string::npos;
      },
      std::chrono::seconds(90)))
      << daemon.output();
  // More activity on the restarted server, with the daemon streaming it live.
  auto lg =
      env.cmd("loadgen", {"--reuse", "--transactions", "1500", "--rate", "1000", "--seed", "52",
                          "--update-share", "0.1", "--delete-share", "0.05", "--no-progress"});
  ASSERT_EQ(lg.status, 0) << lg.output;
  EXPECT_GT(std::stoll(pg_scalar(env.dsn, "SELECT count(*) FROM transactions")),
            std::stoll(before));
  stop_cleanly(daemon);
  run_until_caught_up(env);
  expect_read_model_exact(env);
  expect_reports_identical(env);
  expect_verify_clean(env);
}

TEST(Stream, AnswersKeepalivesUnderAShortSenderTimeout) {
  // Status updates only every 60 s: the connection survives a 2 s wal_sender_timeout only if
  // walfold answers the server's keepalives that ask for a reply.
  BankEnv env;
  std::string cfg = env.dir + "/slow-status.yaml";
  run_command({"bash", "-c",
               "sed 's/status_interval_ms: 200/status_interval_ms: 60000/' " + env.config_path +
                   " > " + cfg},
              10);
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  const std::string admin = pg_admin_dsn();
  pg_query(admin, "ALTER SYSTEM SET wal_sender_timeout = '2s'");
  pg_query(admin, "SELECT pg_reload_conf()");
  struct Restore {
    std::string dsn;
    ~Restore() {
      pg_query(dsn, "ALTER SYSTEM RESET wal_sender_timeout");
      pg_query(dsn, "SELECT pg_reload_conf()");
    }
  } restore{admin};
  Process daemon({walfold_binary(), "run", "--config", cfg});
  ASSERT_TRUE(daemon.wait_for_output("reader: streaming slot", std::chrono::seconds(60)))
      << daemon.output();
  std::this_thread::sleep_for(std::chrono::seconds(7));
  auto out = daemon.output();
  EXPECT_EQ(out.find("reconnecting"), std::string::npos) << out;
  EXPECT_EQ(pg_scalar(env.dsn, "SELECT active FROM pg_replication_slots WHERE slot_name = '" +
                                   env.name + "'"),
            "t");
  daemon.signal(SIGTERM);
  EXPECT_TRUE(daemon.wait(std::chrono::seconds(60)).has_value());
}

}  // namespace
}  // namespace walfold::test

namespace walfold::test {
namespace {

TEST(Stream, IdleSlotAdvancesWhileOtherDatabasesWriteWal) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  Process daemon({walfold_binary(), "run", "--config", env.config_path});
  ASSERT_TRUE(daemon.wait_for_output("reader: streaming slot", std::chrono::seconds(60)))
      << daemon.output();
  const std::string other = fresh_pg_database("busy");
  pg_query(other, "CREATE TABLE noise (id bigserial primary key, payload text)");
  const Lsn start = slot_confirmed(env);
  Lsn written = 0;
  for (int i = 0; i < 5; ++i) {
    pg_query(other,
             "INSERT INTO noise (payload) SELECT repeat('x', 200) FROM generate_series(1, 5000)");
    written = *parse_lsn(pg_scalar(other, "SELECT pg_current_wal_lsn()"));
  }
  // Nothing of ours changed, yet the slot must not hold the other database's WAL.
  EXPECT_TRUE(wait_until([&] { return slot_confirmed(env) >= written; }, std::chrono::seconds(30)))
      << "confirmed " << format_lsn(slot_confirmed(env)) << " (started at " << format_lsn(start)
      << "), WAL written up to " << format_lsn(written);
  daemon.signal(SIGTERM);
  EXPECT_TRUE(daemon.wait(std::chrono::seconds(60)).has_value());
}

}  // namespace
}  // namespace walfold::test
