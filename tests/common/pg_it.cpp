// common/pg against a real PostgreSQL: error messages and SQLSTATE, prepared statements, text
// arrays, and single-row streaming (including a callback that throws and a query that fails
// half-way, after which the connection is still usable).
#include "common/pg.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>

#include "tests/harness/servers.h"

namespace walfold::test {
namespace {

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

TEST(Pg, FailedStatementsNameServerContextAndSqlstate) {
  PgConn c(fresh_pg_database("pg"));
  try {
    c.exec("SELECT * FROM no_such_table", "reading things");
    FAIL() << "no error";
  } catch (const PgError& e) {
    std::string what = e.what();
    EXPECT_EQ(e.sqlstate(), "42P01");
    EXPECT_TRUE(starts_with(what, "postgresql at " + c.address() + ": reading things: ")) << what;
    EXPECT_NE(what.find("\"no_such_table\" does not exist [SQLSTATE 42P01]"), std::string::npos)
        << what;
  }
  // Without a context: the statement's first words and libpq's message, as before.
  try {
    c.exec("SELECT * FROM no_such_table");
    FAIL() << "no error";
  } catch (const PgError& e) {
    std::string what = e.what();
    EXPECT_EQ(e.sqlstate(), "42P01");
    EXPECT_TRUE(starts_with(
        what, "postgresql at " + c.address() + ": 'SELECT * FROM no_such_table' failed: "))
        << what;
  }
  EXPECT_EQ(c.scalar("SELECT 1"), "1");
}

// A refusal by privilege is an Auth error (exit 77: a restart cannot grant it), a statement of
// walfold's that fails on its own is Internal: the kinds come from the server's SQLSTATE.
TEST(Pg, RefusedPrivilegeIsAnAuthErrorBySqlstate) {
  const std::string dsn = fresh_pg_database("pgpriv");
  PgConn admin(dsn);
  const std::string role = "wf_no_priv_" + std::to_string(getpid());  // roles are cluster-wide
  admin.exec("CREATE TABLE secret_rows (id int)");
  admin.exec("DROP ROLE IF EXISTS " + role);
  admin.exec("CREATE ROLE " + role);
  admin.exec("SET ROLE " + role);
  try {
    admin.exec("SELECT * FROM secret_rows");
    FAIL() << "no error";
  } catch (const PgError& e) {
    EXPECT_EQ(e.sqlstate(), "42501") << e.what();
    EXPECT_EQ(e.error_kind(), ErrorKind::Auth) << e.what();
    EXPECT_EQ(exit_status_for(e).code, 77) << e.what();
  }
  admin.exec("RESET ROLE");
  admin.exec("DROP ROLE " + role);
  try {
    admin.exec("SELECT 1 / 0");
    FAIL() << "no error";
  } catch (const PgError& e) {
    EXPECT_EQ(e.error_kind(), ErrorKind::Internal) << e.what();
  }
}

// Sets (or, with nullptr, unsets) an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    value ? setenv(name, value, 1) : unsetenv(name);
  }
  ~ScopedEnv() { old_ ? setenv(name_, old_->c_str(), 1) : unsetenv(name_); }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// A DSN's own options and application_name, or else PGOPTIONS and PGAPPNAME, are kept;
// walfold's session settings (UTC, ISO dates, which its timestamp parsing relies on) are added
// after them.
TEST(Pg, TheDsnsOrEnvironmentsOptionsAndApplicationNameAreKept) {
  const std::string db = fresh_pg_database("pg");
  {
    ScopedEnv app("PGAPPNAME", nullptr), opts("PGOPTIONS", nullptr);
    PgConn plain(db);
    EXPECT_EQ(plain.scalar("SELECT current_setting('application_name')"), "walfold");
    EXPECT_EQ(plain.scalar("SHOW TimeZone"), "UTC");
    PgConn c(dsn_with(dsn_with(db, "application_name", "bank-sync"), "options",
                      "-c statement_timeout=4321 -c TimeZone=Asia/Tokyo"));
    EXPECT_EQ(c.scalar("SELECT current_setting('application_name')"), "bank-sync");
    EXPECT_EQ(c.scalar("SHOW statement_timeout"), "4321ms");
    EXPECT_EQ(c.scalar("SHOW TimeZone"), "UTC");
    EXPECT_EQ(c.scalar("SHOW DateStyle"), "ISO, MDY");
  }
  {
    ScopedEnv app("PGAPPNAME", "from-env"), opts("PGOPTIONS", "-c work_mem=7MB");
    PgConn c(db);
    EXPECT_EQ(c.scalar("SELECT current_setting('application_name')"), "from-env");
    EXPECT_EQ(c.scalar("SHOW work_mem"), "7MB");
    EXPECT_EQ(c.scalar("SHOW TimeZone"), "UTC");
    PgConn own(dsn_with(db, "application_name", "bank-sync"));
    EXPECT_EQ(own.scalar("SELECT current_setting('application_name')"), "bank-sync");
  }
}

TEST(Pg, PreparedStatementsTakeNullsAndTextArrays) {
  PgConn c(fresh_pg_database("pg"));
  c.prepare("wf_pick", "SELECT ($1::text[])[$2::int], $3::text IS NULL", "preparing wf_pick");
  std::vector<std::string> elements{"plain", "quote \" and back\\slash", "{braces}, comma"};
  for (int i = 0; i < 3; ++i) {
    PgResult r = c.exec_prepared(
        "wf_pick", {pg_text_array(elements), std::to_string(i + 1), std::nullopt}, "picking");
    EXPECT_EQ(pg_value(*r, 0, 0), elements[i]);
    EXPECT_EQ(pg_value(*r, 0, 1), "t");
  }
  EXPECT_THROW(c.exec_prepared("wf_missing", {}, "running wf_missing"), PgError);
}

TEST(Pg, StreamDeliversSingleRowsAndLeavesTheConnectionUsable) {
  PgConn c(fresh_pg_database("pg"));
  long rows = 0, sum = 0;
  c.stream(
      "SELECT g, CASE WHEN g % 2 = 0 THEN NULL ELSE g END FROM generate_series(1, 5000) g",
      [&](const PGresult& row) {
        ASSERT_EQ(PQntuples(&row), 1);
        ++rows;
        sum += std::stol(std::string(pg_value(row, 0, 0)));
        EXPECT_EQ(pg_is_null(row, 0, 1), rows % 2 == 0);
      },
      "counting");
  EXPECT_EQ(rows, 5000);
  EXPECT_EQ(sum, 5000L * 5001 / 2);

  // The callback throws: the query is abandoned and the exception comes through.
  rows = 0;
  EXPECT_THROW(c.stream(
                   "SELECT g FROM generate_series(1, 1000000) g",
                   [&](const PGresult&) {
                     if (++rows == 10) throw std::runtime_error("enough");
                   },
                   "abandoning"),
               std::runtime_error);
  EXPECT_EQ(rows, 10);
  EXPECT_EQ(c.scalar("SELECT 2"), "2");

  // The query fails after some rows were delivered.
  try {
    c.stream(
        "SELECT 1 / (3000 - g) FROM generate_series(1, 5000) g", [](const PGresult&) {},
        "dividing");
    FAIL() << "no error";
  } catch (const PgError& e) {
    EXPECT_EQ(e.sqlstate(), "22012") << e.what();
    EXPECT_NE(std::string(e.what()).find(": dividing: division by zero"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(c.scalar("SELECT 3"), "3");
}

}  // namespace
}  // namespace walfold::test
