// reconcile --verify's comparison: drift per record (section and id), nothing when clean.
#include <gtest/gtest.h>

#include <sstream>

#include "reconcile/verify.h"

using walfold::projections::Counts;
using walfold::reconcile::compare_records;
using walfold::reconcile::Record;

namespace {

const std::vector<Record> kPg = {
    {"account", "1",
     "account 1 user 1 currency USD balance 10\n"
     "  tx 3 deposit 5 2026-11-23T02:19:57.000001Z\n"
     "  tx 2 deposit 5 2026-11-23T02:19:56.000001Z\n"},
    {"account", "2", "account 2 user 1 currency EUR balance 0\n"},
    {"account", "10", "account 10 user 1 currency EUR balance 0\n"},
    {"user", "1", "user 1 name \"A\" email \"a@x\" accounts 1,2,10 totals EUR=0 USD=10\n"},
};

TEST(Verify, IdenticalRecordsPrintNothing) {
  std::ostringstream out;
  auto r = compare_records(kPg, kPg, out);
  EXPECT_EQ(out.str(), "");
  EXPECT_EQ(r.drifted, 0u);
  EXPECT_EQ(r.compared, (Counts{{"account", 3}, {"user", 1}}));
}

TEST(Verify, ABalanceAWindowAMissingAndAnExtraRecordAreDrift) {
  std::vector<Record> mg = {
      {"account", "1",
       "account 1 user 1 currency USD balance 10\n"
       "  tx 2 deposit 5 2026-11-23T02:19:56.000001Z\n"},               // window differs
      {"account", "3", "account 3 user 1 currency EUR balance 0\n"},    // extra; 2 missing
      {"account", "10", "account 10 user 1 currency EUR balance 0\n"},  // equal
      {"user", "1", "user 1 name \"A\" email \"a@x\" accounts 1,2,10 totals EUR=0 USD=11\n"},
  };
  std::ostringstream out;
  auto r = compare_records(kPg, mg, out);
  EXPECT_EQ(r.drifted, 4u) << out.str();
  auto s = out.str();
  EXPECT_NE(s.find("drift: account 1\n"), std::string::npos) << s;
  EXPECT_NE(s.find("drift: account 2\n  postgres: account 2"), std::string::npos) << s;
  EXPECT_NE(s.find("  mongo:    (none)"), std::string::npos) << s;
  EXPECT_NE(s.find("drift: account 3\n  postgres: (none)"), std::string::npos) << s;
  EXPECT_NE(s.find("drift: user 1"), std::string::npos) << s;
  EXPECT_NE(s.find("USD=11"), std::string::npos) << s;
  EXPECT_EQ(s.find("drift: account 10"), std::string::npos) << s;
  // Numeric ids in numeric order (2 before 3), sections in their order.
  EXPECT_LT(s.find("drift: account 2\n"), s.find("drift: account 3\n")) << s;
  EXPECT_LT(s.find("drift: account 3\n"), s.find("drift: user 1\n")) << s;
}

TEST(Verify, NonNumericIdsMatchByText) {
  std::vector<Record> pg = {{"person", "ada@example.test", "person ada@example.test x\n"}};
  std::vector<Record> mg = {{"person", "ada@example.test", "person ada@example.test y\n"}};
  std::ostringstream out;
  EXPECT_EQ(compare_records(pg, mg, out).drifted, 1u);
  EXPECT_NE(out.str().find("drift: person ada@example.test\n"), std::string::npos) << out.str();
}

}  // namespace
