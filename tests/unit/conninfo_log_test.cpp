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
