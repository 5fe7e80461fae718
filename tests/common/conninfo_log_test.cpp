// Connection strings are checked without ever being quoted back (bug #10: libpq's parse error
// printed part of an unquoted password), tools refuse a password on the command line, errors
// map to exit codes in one place, and under journald each log line carries its priority.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/log.h"
#include "common/pg.h"

namespace walfold {
namespace {

TEST(Conninfo, ProblemsAreDescribedWithoutQuotingTheString) {
  // Each string is malformed; "Qv7" and "Tail8" stand for pieces of a password.
  const std::vector<std::string> bad = {
      "host=db user=walfold password=Qv7 Tail8 dbname=bank",
      "host=db password=Qv7 Tail8",
      "host=db password='Qv7 Tail8",
      "Qv7Tail8 host=db",  // (has an "=": a connection string, not a database name)
      "host=db Qv7Tail8=x",
      "postgresql://walfold:Qv7Tail8@[::1/bank",
      "postgresql://walfold@db/bank?password=Qv7%zzTail8",
      "postgresql://walfold@db/bank?Qv7Tail8",
      "postgresql://walfold@db/bank?a=Qv7=Tail8",
      "postgresql://walfold@db/bank?Qv7Tail8=1",
  };
  for (const auto& dsn : bad) {
    const std::string problem = conninfo_problem(dsn);
    EXPECT_FALSE(problem.empty()) << dsn;
    EXPECT_EQ(problem.find("Qv7"), std::string::npos) << dsn << " -> " << problem;
    EXPECT_EQ(problem.find("Tail8"), std::string::npos) << dsn << " -> " << problem;
    EXPECT_NE(problem.find("not shown"), std::string::npos) << problem;
  }
  // Where the problem is, by the last valid keyword before it.
  EXPECT_NE(conninfo_problem("host=db password=Qv7 Tail8").find("after the value of 'password'"),
            std::string::npos)
      << conninfo_problem("host=db password=Qv7 Tail8");
  EXPECT_NE(conninfo_problem("host=db Qv7Tail8=x").find("after the value of 'host'"),
            std::string::npos);

  for (const std::string good :
       {"host=db dbname=bank user=walfold", "host='db' dbname='my bank' password='a b\\'c'",
        "postgresql://walfold@db:5432/bank", "postgresql://walfold@db/bank?sslmode=require",
        "service=walfold", "bank", ""})
    EXPECT_EQ(conninfo_problem(good), "") << good;
}

TEST(Conninfo, PasswordInTheStringIsRecognisedInEveryForm) {
  EXPECT_TRUE(conninfo_has_password("host=db password=x"));
  EXPECT_TRUE(conninfo_has_password("host=db password='a b'"));
  EXPECT_TRUE(conninfo_has_password("postgresql://walfold:x@db/bank"));
  EXPECT_TRUE(conninfo_has_password("postgresql://walfold@db/bank?password=x"));
  EXPECT_FALSE(conninfo_has_password("host=db user=walfold"));
  EXPECT_FALSE(conninfo_has_password("postgresql://walfold@db/bank?sslmode=require"));
  EXPECT_FALSE(conninfo_has_password("service=walfold"));
}

TEST(Errors, ExitCodesAreMappedInOnePlace) {
  EXPECT_EQ(exit_status_for(ConfigError("x")).code, 78);
  EXPECT_EQ(exit_status_for(UsageError("x")).code, 64);
  EXPECT_EQ(exit_status_for(AuthError("x")).code, 77);
  EXPECT_EQ(exit_status_for(UnavailableError("x")).code, 69);
  EXPECT_EQ(exit_status_for(DataError("x")).code, 65);
  EXPECT_EQ(exit_status_for(std::runtime_error("x")).code, 70);
  EXPECT_EQ(exit_status_for(TransientError("x")).code, 69);
  EXPECT_EQ(exit_status_for(InternalError("x")).code, 70);
  EXPECT_EQ(exit_status_for(FileError(FileError::CannotCreate, "x")).code, 73);
  EXPECT_EQ(exit_status_for(FileError(FileError::Io, "x")).code, 74);
  EXPECT_EQ(exit_status_for(PermissionError("x")).code, 77);
  EXPECT_EQ(exit_status_for(DataError("NaN")).message, "walfold: data error: NaN");
}

// Each kind's retry class comes from the one table; an exception of no known kind is never
// retried (a bug does not pass by waiting).
TEST(Errors, RetryClassesComeFromTheTable) {
  EXPECT_EQ(error_class(UnavailableError("x")).retry, RetryClass::Reconnect);
  EXPECT_EQ(error_class(TransientError("x")).retry, RetryClass::Backoff);
  for (auto k : {ErrorKind::Usage, ErrorKind::Data, ErrorKind::Internal, ErrorKind::CannotCreate,
                 ErrorKind::Io, ErrorKind::Permission, ErrorKind::Auth, ErrorKind::Config})
    EXPECT_EQ(error_class(k).retry, RetryClass::Never) << error_class(k).name;
  EXPECT_EQ(error_class(std::runtime_error("x")).retry, RetryClass::Never);
  EXPECT_EQ(error_class(std::runtime_error("x")).kind, ErrorKind::Internal);
  // Every kind has its own row (kind -> row is not the fallback).
  for (auto k : {ErrorKind::Usage, ErrorKind::Data, ErrorKind::Unavailable, ErrorKind::Transient,
                 ErrorKind::Internal, ErrorKind::CannotCreate, ErrorKind::Io, ErrorKind::Permission,
                 ErrorKind::Auth, ErrorKind::Config})
    EXPECT_EQ(error_class(k).kind, k);
}

// libpq's errors by SQLSTATE (common/pg.cpp), most specific row first.
TEST(Errors, PostgresErrorsAreKindedBySqlstate) {
  EXPECT_EQ(PgError("x", "08006").error_kind(), ErrorKind::Unavailable);  // connection failure
  EXPECT_EQ(PgError("x", "57P01").error_kind(), ErrorKind::Unavailable);  // admin shutdown
  EXPECT_EQ(PgError("x", "53300").error_kind(), ErrorKind::Unavailable);  // too many connections
  EXPECT_EQ(PgError("x", "58030").error_kind(), ErrorKind::Unavailable);  // io error
  EXPECT_EQ(PgError("x", "28P01").error_kind(), ErrorKind::Auth);         // bad password
  EXPECT_EQ(PgError("x", "42501").error_kind(), ErrorKind::Auth);         // no privilege
  EXPECT_EQ(PgError("x", "40001").error_kind(), ErrorKind::Transient);    // serialization
  EXPECT_EQ(PgError("x", "40P01").error_kind(), ErrorKind::Transient);    // deadlock
  EXPECT_EQ(PgError("x", "57014").error_kind(), ErrorKind::Transient);    // cancelled
  EXPECT_EQ(PgError("x", "55006").error_kind(), ErrorKind::Transient);    // slot in use
  EXPECT_EQ(PgError("x", "42P01").error_kind(), ErrorKind::Internal);     // no such table
  EXPECT_EQ(PgError("x", "42").error_kind(), ErrorKind::Internal);        // not a SQLSTATE
  EXPECT_EQ(PgError("x", "").error_kind(), ErrorKind::Internal);
  EXPECT_EQ(exit_status_for(PgError("x", "42501")).code, 77);
}

TEST(Log, SingleLineJoinsContinuationLines) {
  EXPECT_EQ(single_line("FATAL:  no\nDETAIL:\tmore\n\tand more\n"),
            "FATAL:  no DETAIL:\tmore and more");
  EXPECT_EQ(single_line("plain"), "plain");
}

// stderr pointed at a file whose device:inode JOURNAL_STREAM names, as systemd does.
TEST(Log, UnderJournaldEachLineCarriesItsPriorityAndStaysOneEntry) {
  char path[] = "/tmp/wf-journal-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  struct stat st {};
  ASSERT_EQ(fstat(fd, &st), 0);
  const std::string stream = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  std::fflush(stderr);
  const int saved = dup(STDERR_FILENO);
  ASSERT_GE(saved, 0);
  ASSERT_GE(dup2(fd, STDERR_FILENO), 0);
  setenv("JOURNAL_STREAM", stream.c_str(), 1);
  const auto previous = spdlog::default_logger();
  {
    const bool journal = stderr_is_journal();
    init_logging("debug");
    spdlog::debug("a debug line");
    spdlog::info("an info line");
    spdlog::warn("a warning");
    spdlog::error("postgresql: connection failed: FATAL:  no\nDETAIL:  second line\n");
    spdlog::critical("the end");
    report_fatal("last words\nwith a second line");
    spdlog::default_logger()->flush();
    std::fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    EXPECT_TRUE(journal) << "JOURNAL_STREAM=" << stream << " should match stderr";
  }
  spdlog::set_default_logger(previous);
  unsetenv("JOURNAL_STREAM");
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  close(fd);
  unlink(path);
  const std::vector<std::string> want = {
      "<7>[debug] a debug line",
      "<6>[info] an info line",
      "<4>[warning] a warning",
      "<3>[error] postgresql: connection failed: FATAL:  no DETAIL:  second line",
      "<2>[critical] the end",
      "<3>walfold: last words with a second line",
  };
  EXPECT_EQ(lines, want);
}

TEST(Log, AJournalStreamOfAnotherFileIsNotTheJournal) {
  setenv("JOURNAL_STREAM", "1:2", 1);
  EXPECT_FALSE(stderr_is_journal());
  setenv("JOURNAL_STREAM", "garbage", 1);
  EXPECT_FALSE(stderr_is_journal());
  unsetenv("JOURNAL_STREAM");
  EXPECT_FALSE(stderr_is_journal());
}

}  // namespace
}  // namespace walfold
