// reconcile --verify's comparison: drift per account and per user, nothing when clean.
#include <gtest/gtest.h>

#include <sstream>

#include "reconcile/verify.h"

using walfold::reconcile::compare_reports;

namespace {

const char* kPg =
    "account 1 user 1 currency USD balance 10\n"
    "  tx 3 deposit 5 2026-11-23T02:19:57.000001Z\n"
    "  tx 2 deposit 5 2026-11-23T02:19:56.000001Z\n"
    "account 2 user 1 currency EUR balance 0\n"
    "user 1 name \"A\" email \"a@x\" accounts 1,2 totals EUR=0 USD=10\n";

TEST(Verify, IdenticalReportsPrintNothing) {
  std::ostringstream out;
  auto r = compare_reports(kPg, kPg, out);
  EXPECT_EQ(out.str(), "");
  EXPECT_EQ(r.drifted, 0u);
  EXPECT_EQ(r.accounts, 2u);
  EXPECT_EQ(r.users, 1u);
}

TEST(Verify, ABalanceAWindowAMissingAndAnExtraRecordAreDrift) {
  std::string mg =
      "account 1 user 1 currency USD balance 10\n"
      "  tx 2 deposit 5 2026-11-23T02:19:56.000001Z\n"  // window differs
      "account 3 user 1 currency EUR balance 0\n"       // extra; account 2 missing
      "user 1 name \"A\" email \"a@x\" accounts 1,2 totals EUR=0 USD=11\n";
  std::ostringstream out;
  auto r = compare_reports(kPg, mg, out);
  EXPECT_EQ(r.drifted, 4u) << out.str();
  auto s = out.str();
  EXPECT_NE(s.find("drift: account 1\n"), std::string::npos) << s;
  EXPECT_NE(s.find("drift: account 2\n  postgres: account 2"), std::string::npos) << s;
  EXPECT_NE(s.find("  mongo:    (none)"), std::string::npos) << s;
  EXPECT_NE(s.find("drift: account 3\n  postgres: (none)"), std::string::npos) << s;
  EXPECT_NE(s.find("drift: user 1"), std::string::npos) << s;
  EXPECT_NE(s.find("USD=11"), std::string::npos) << s;
}

}  // namespace
