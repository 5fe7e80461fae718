// walfold reconcile --verify against the real servers: silent and 0 when the read model is in
// sync, the drifted record and exit 1 when a document was corrupted on purpose.
#include <gtest/gtest.h>

#include <map>
#include <sstream>
#include <string>

#include "tests/harness/bank_env.h"

namespace walfold::test {
namespace {

TEST(Reconcile, VerifyIsSilentWhenCleanAndNamesACorruptedAccount) {
  BankEnv env;
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  ASSERT_EQ(
      env.cmd("loadgen", {"--users", "50", "--transactions", "600", "--seed", "8", "--no-progress"})
          .status,
      0);
  run_until_caught_up(env);
  auto clean = env.cmd("reconcile", {"--verify"});
  EXPECT_EQ(clean.status, 0) << clean.output;
  EXPECT_EQ(clean.output.find("drift:"), std::string::npos) << clean.output;
  EXPECT_NE(clean.output.find("0 drifted"), std::string::npos) << clean.output;

  corrupt_mongo_balance(servers().mongo_uri, env.mongo_db, 7, "123456.789");
  auto drift = env.cmd("reconcile", {"--verify"});
  EXPECT_EQ(drift.status, 1) << drift.output;
  EXPECT_NE(drift.output.find("drift: account 7\n"), std::string::npos) << drift.output;
  EXPECT_NE(drift.output.find("balance 123456.789"), std::string::npos) << drift.output;
  EXPECT_NE(drift.output.find("1 drifted"), std::string::npos) << drift.output;
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// The records of a verify or repair output: "<header>section id" -> label -> the record's lines
// under that label (a label's continuation lines are indented by 12 spaces), e.g. "drift: " ->
// {"account 1" -> {"postgres:" -> "...", "mongo:" -> "..."}}.
using Blocks = std::map<std::string, std::map<std::string, std::string>>;
Blocks blocks(const std::string& output, const std::string& header) {
  Blocks out;
  std::istringstream in(output);
  std::string line, name, label;
  while (std::getline(in, line)) {
    if (line.rfind(header, 0) == 0) {
      name = line.substr(header.size());
      name = name.substr(0, name.find(" ("));  // "(not in PostgreSQL)"
      label.clear();
    } else if (!name.empty() && line.rfind("            ", 0) == 0 && !label.empty()) {
      out[name][label] += line.substr(12) + "\n";
    } else if (!name.empty() && line.rfind("  ", 0) == 0 && line.size() > 12) {
      label = line.substr(2, line.find(':') - 1);
      out[name][label] += line.substr(12) + "\n";
    } else {
      name.clear();
    }
  }
  return out;
}

// A document tampered in a field the report shows is named by verify and by repair with the
// same record: verify's "mongo:" side is repair's "was:", its "postgres:" side repair's "now:"
// (one printer per record kind, projections/bank/canonical.h).
TEST(Reconcile, VerifyAndRepairNameATamperedDocumentWithTheSameRecord) {
  BankEnv env("", "", "  heartbeat_interval_ms: 300\n");
  ASSERT_EQ(env.cmd("setup", {"--schema"}).status, 0);
  pg_query(env.dsn,
           "INSERT INTO users (id, full_name, email) VALUES (1, 'Ada \"A\" L', 'ada@example.test'),"
           " (2, 'Bob', 'bob@example.test');"
           "INSERT INTO accounts (id, user_id, currency) VALUES (1, 1, 'USD'), (2, 1, 'EUR'),"
           " (3, 2, 'USD');"
           "INSERT INTO transactions (account_id, amount, kind, created_at) VALUES "
           "(1, 10, 'deposit', '2026-01-02 03:04:05.25+00'), "
           "(1, 2.5, 'withdrawal', '2026-01-02 03:04:06+00'), "
           "(3, 7, 'deposit', '2026-01-02 03:04:07+00')");
  Process daemon({walfold_binary(), "run", "--config", env.config_path});
  ASSERT_TRUE(running_daemon_caught_up(env)) << daemon.output();
  expect_verify_clean(env);

  corrupt_mongo_balance(servers().mongo_uri, env.mongo_db, 1, "123");
  mongo_command(servers().mongo_uri, env.mongo_db,
                R"({"update": "users", "updates": [{"q": {"_id": {"$numberLong": "2"}},)"
                R"( "u": {"$set": {"full_name": "Mallory"}}}]})");
  auto verify = env.cmd("reconcile", {"--verify"});
  EXPECT_EQ(verify.status, 1) << verify.output;
  auto repair = env.cmd("reconcile", {"--repair"}, 120);
  EXPECT_EQ(repair.status, 0) << repair.output;

  const Blocks drift = blocks(verify.output, "drift: "),
               repaired = blocks(repair.output, "repaired: ");
  ASSERT_EQ(drift.size(), 2u) << verify.output;
  ASSERT_EQ(repaired.size(), 2u) << repair.output;
  for (const auto& [name, sides] : drift) {
    SCOPED_TRACE(name);
    ASSERT_EQ(repaired.count(name), 1u) << verify.output << repair.output;
    const auto& r = repaired.at(name);
    EXPECT_EQ(sides.at("mongo:"), r.at("was:")) << verify.output << repair.output;
    EXPECT_EQ(sides.at("postgres:"), r.at("now:")) << verify.output << repair.output;
  }
  EXPECT_EQ(drift.at("account 1").at("mongo:"),
            "account 1 user 1 currency USD balance 123\n"
            "  tx 2 withdrawal 2.5 2026-01-02T03:04:06.000000Z\n"
            "  tx 1 deposit 10 2026-01-02T03:04:05.250000Z\n")
      << verify.output;
  EXPECT_EQ(drift.at("user 2").at("mongo:"),
            "user 2 name \"Mallory\" email \"bob@example.test\" accounts 3 totals USD=7\n")
      << verify.output;

  // A document the record readers refuse (verify stops on it, exit 65) is rewritten by repair,
  // which says why it could not read it.
  mongo_command(servers().mongo_uri, env.mongo_db,
                R"({"update": "accounts", "updates": [{"q": {"_id": {"$numberLong": "3"}},)"
                R"( "u": {"$set": {"balance": "seven"}}}]})");
  EXPECT_EQ(env.cmd("reconcile", {"--verify"}).status, 65);
  repair = env.cmd("reconcile", {"--repair"}, 120);
  EXPECT_EQ(repair.status, 0) << repair.output;
  EXPECT_TRUE(contains(repair.output, "repaired: account 3\n  was:      unreadable (MongoDB "))
      << repair.output;
  EXPECT_TRUE(contains(repair.output,
                       "field balance is not a Decimal128)\n  now:      account 3 "
                       "user 2 currency USD balance 7\n"))
      << repair.output;
  stop_cleanly(daemon);
  expect_verify_clean(env);
}

}  // namespace
}  // namespace walfold::test
