// walfold reconcile --verify against the real servers: silent and 0 when the read model is in
// sync, the drifted record and exit 1 when a document was corrupted on purpose.
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace walfold::test
