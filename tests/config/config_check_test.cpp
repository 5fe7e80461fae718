// Every problem of a configuration at once (what `walfold check-config` prints), with exact
// messages; durations and sizes with units; did-you-mean; unterminated quotes at their own line.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "common/error.h"
#include "config/config.h"
#include "projections/registry.h"

namespace walfold {
namespace {

// The problems of `yaml` (read as "cfg.yaml"), formatted as check-config prints them.
std::vector<std::string> problems(const std::string& yaml) {
  auto r = projections::check_config_text(yaml, "cfg.yaml");
  std::vector<std::string> out;
  for (const auto& p : r.problems) out.push_back(format_problem("cfg.yaml", p));
  EXPECT_EQ(r.config.has_value(), out.empty());
  return out;
}

const std::string kPg = "postgres:\n  dsn: \"host=db dbname=bank\"\n";

TEST(ConfigCheck, EachClassOfErrorHasItsExactMessage) {
  EXPECT_EQ(problems(kPg + "  slott: a\n"),
            std::vector<std::string>{
                "cfg.yaml:3:3: unknown key 'slott' in postgres: did you mean 'slot'?"});
  EXPECT_EQ(problems(kPg + "  zzz: a\n"),
            std::vector<std::string>{"cfg.yaml:3:3: unknown key 'zzz' in postgres (expected one "
                                     "of: dsn, password_file, publication, slot)"});
  EXPECT_EQ(
      problems(kPg + "  slot: a\n  slot: b\n"),
      std::vector<std::string>{"cfg.yaml:4:3: duplicate key 'slot' in postgres (first at line 3)"});
  EXPECT_EQ(problems(kPg + "redis:\n  port: abc\n"),
            std::vector<std::string>{
                "cfg.yaml:4:9: redis.port has the wrong type (expected an integer)"});
  EXPECT_EQ(
      problems(kPg + "workers:\n  count: 1000\n"),
      std::vector<std::string>{"cfg.yaml:4:10: workers.count = 1000 is out of range [0, 256]"});
  EXPECT_EQ(problems(kPg + "workers:\n  lease_ms: 30 sec\n"),
            std::vector<std::string>{
                "cfg.yaml:4:13: workers.lease_ms '30 sec' is not a duration (a number of "
                "milliseconds, or a duration with a unit: 500ms, 30s, 2m, 1h)"});
  EXPECT_EQ(problems(kPg + "workers:\n  lease_ms: 500ms\n"),
            std::vector<std::string>{"cfg.yaml:4:13: workers.lease_ms = 500ms (500 ms) is out of "
                                     "range [1000, 3600000] ms"});
  EXPECT_EQ(problems(kPg + "reader:\n  max_transaction_mb: 256MB\n"),
            std::vector<std::string>{
                "cfg.yaml:4:23: reader.max_transaction_mb '256MB' is not a size (a number of MiB, "
                "or a size with a unit: 512KiB, 256MiB, 1GiB)"});
  EXPECT_EQ(problems(kPg + "reader:\n  max_transaction_mb: 1536KiB\n"),
            std::vector<std::string>{
                "cfg.yaml:4:23: reader.max_transaction_mb '1536KiB' is not a whole number of MiB"});
  EXPECT_EQ(problems("redis:\n  port: 1\n"),
            std::vector<std::string>{"cfg.yaml:1:1: missing section 'postgres'"});
  EXPECT_EQ(problems(kPg + "tables:\n  public.users: { model: user }\n"),
            std::vector<std::string>{"cfg.yaml:4:26: model 'user' is not one of users, accounts, "
                                     "transactions (did you mean 'users'?)"});
  EXPECT_EQ(problems(kPg + "log_level: inf\n"),
            std::vector<std::string>{"cfg.yaml:3:12: log_level 'inf' is not one of trace, debug, "
                                     "info, warn, error, critical, off (did you mean 'info'?)"});
  EXPECT_EQ(problems(kPg + "redis:\n  username: walfold\n"),
            std::vector<std::string>{"cfg.yaml:4:13: redis.username needs redis.password_file "
                                     "(AUTH takes a user and its password)"});
  EXPECT_EQ(problems(kPg + "mongodb:\n  username: walfold\n"),
            std::vector<std::string>{
                "cfg.yaml:4:13: mongodb.username and mongodb.password_file go together (set both, "
                "or neither and let the URI carry no credentials)"});
  EXPECT_EQ(problems("postgres:\n  dsn: [a]\n"),
            std::vector<std::string>{
                "cfg.yaml:2:8: postgres.dsn has the wrong type (expected a text value)"});
  EXPECT_EQ(problems(""), std::vector<std::string>{"cfg.yaml: the file is empty"});
}

// Several errors in one file: all of them, in file order, and nothing more (no error repeated as
// a consequence of another).
TEST(ConfigCheck, SeveralErrorsInOneFileAreAllReported) {
  const std::string yaml =
      "postgres:\n"                                       // 1
      "  dsn: \"host=db\"\n"                              // 2
      "  slott: walfold\n"                                // 3
      "redis:\n"                                          // 4
      "  port: 70000\n"                                   // 5
      "tables:\n"                                         // 6
      "  public.users: { model: users }\n"                // 7
      "  public.accounts: { model: acounts }\n"           // 8
      "  public.transactions: { model: transactions }\n"  // 9
      "workers:\n"                                        // 10
      "  lease_ms: soon\n"                                // 11
      "  count: 2\n"                                      // 12
      "log_level: loud\n";                                // 13
  EXPECT_EQ(problems(yaml),
            (std::vector<std::string>{
                "cfg.yaml:3:3: unknown key 'slott' in postgres: did you mean 'slot'?",
                "cfg.yaml:5:9: redis.port = 70000 is out of range [1, 65535]",
                "cfg.yaml:8:29: model 'acounts' is not one of users, accounts, transactions (did "
                "you mean 'accounts'?)",
                "cfg.yaml:11:13: workers.lease_ms 'soon' is not a duration (a number of "
                "milliseconds, or a duration with a unit: 500ms, 30s, 2m, 1h)",
                "cfg.yaml:13:12: log_level 'loud' is not one of trace, debug, info, warn, error, "
                "critical, off",
            }));
  // load_config/parse_config (what `walfold run` uses) throws them all, one per line.
  try {
    projections::parse_config(yaml, "cfg.yaml");
    ADD_FAILURE() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).find("cfg.yaml:3:3:"), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find("\ncfg.yaml:13:12: log_level 'loud'"), std::string::npos)
        << e.what();
  }
}

TEST(ConfigCheck, DidYouMean) {
  EXPECT_EQ(closest_name("slott", {"dsn", "password_file", "slot", "publication"}), "slot");
  EXPECT_EQ(closest_name("pasword_file", {"dsn", "password_file", "slot"}), "password_file");
  EXPECT_EQ(closest_name("lease", {"lease_ms", "count"}), "");  // 3 edits: no guess
  EXPECT_EQ(closest_name("ab", {"db"}), "");                    // too short to guess
  EXPECT_EQ(closest_name("prot", {"host", "port", "db"}), "port");
  EXPECT_EQ(problems(kPg + "workers:\n  lease_mss: 30s\n"),
            std::vector<std::string>{
                "cfg.yaml:4:3: unknown key 'lease_mss' in workers: did you mean 'lease_ms'?"});
}

TEST(ConfigCheck, DurationsAndSizesWithUnits) {
  EXPECT_EQ(parse_duration_ms("500ms"), 500);
  EXPECT_EQ(parse_duration_ms("30s"), 30000);
  EXPECT_EQ(parse_duration_ms("2m"), 120000);
  EXPECT_EQ(parse_duration_ms("1h"), 3600000);
  EXPECT_EQ(parse_duration_ms("1d"), 86400000);
  for (const char* bad : {"", "s", "30", "1.5s", "30 s", "-1s", "30sec", "1y"})
    EXPECT_EQ(parse_duration_ms(bad), std::nullopt) << bad;
  EXPECT_EQ(parse_size_bytes("256MiB"), 256LL << 20);
  EXPECT_EQ(parse_size_bytes("1GiB"), 1LL << 30);
  EXPECT_EQ(parse_size_bytes("512KiB"), 512LL << 10);
  EXPECT_EQ(parse_size_bytes("10B"), 10);
  for (const char* bad : {"", "256", "256MB", "256 MiB", "1.5GiB", "256mib"})
    EXPECT_EQ(parse_size_bytes(bad), std::nullopt) << bad;

  Config c = projections::parse_config(
      kPg +
          "reader:\n  status_interval_ms: 2s\n  heartbeat_interval_ms: 1m\n"
          "  enqueue_max_delay_ms: 5\n  max_transaction_mb: 1GiB\n"
          "workers:\n  lease_ms: 30s\n  idle_poll_max_ms: \"20ms\"\n"
          "  retry:\n    initial_ms: 250ms\n    max_ms: 1h\n"
          "priorities:\n  aging_ms: 2s\n",
      "cfg.yaml");
  EXPECT_EQ(c.reader.status_interval.count(), 2000);
  EXPECT_EQ(c.reader.heartbeat_interval.count(), 60000);
  EXPECT_EQ(c.reader.enqueue_max_delay.count(), 5);  // a plain integer keeps its unit: ms
  EXPECT_EQ(c.reader.max_transaction_mb, 1024);
  EXPECT_EQ(c.workers.lease.count(), 30000);
  EXPECT_EQ(c.workers.idle_poll_max.count(), 20);
  EXPECT_EQ(c.workers.retry.initial.count(), 250);
  EXPECT_EQ(c.workers.retry.max.count(), 3600000);
  EXPECT_EQ(c.priorities.aging.count(), 2000);
  c = projections::parse_config(kPg + "reader:\n  max_transaction_mb: 300\n", "cfg.yaml");
  EXPECT_EQ(c.reader.max_transaction_mb, 300);  // MiB, as before
  c = projections::parse_config(kPg + "reader:\n  max_transaction_mb: 256MiB\n", "cfg.yaml");
  EXPECT_EQ(c.reader.max_transaction_mb, 256);
}

// yaml-cpp takes an unclosed quote as running on to the next quote or the end of the file: on
// the last line it was accepted silently, mid-file it swallowed the keys after it (or was
// reported lines later). Each is now reported at the line and column where it opens, and the
// rest of the file is still checked.
TEST(ConfigCheck, UnterminatedQuoteIsReportedAtItsOwnLine) {
  EXPECT_EQ(problems("postgres:\n  dsn: host=db\n  slot: \"abc\n"),
            std::vector<std::string>{
                "cfg.yaml:3:9: unterminated quoted value: the \" opened here is not closed on "
                "this line (a quoted value must end on the line it starts)"});
  EXPECT_EQ(problems("postgres:\n  dsn: \"host=db\n  slot: a\nredis:\n  host: \"b\"\n"
                     "  port: x\n"),
            (std::vector<std::string>{
                "cfg.yaml:2:8: unterminated quoted value: the \" opened here is not closed on "
                "this line (a quoted value must end on the line it starts)",
                "cfg.yaml:6:9: redis.port has the wrong type (expected an integer)"}));
  EXPECT_EQ(problems("postgres:\n  dsn: 'host=db\n  slot: a\n"),
            std::vector<std::string>{
                "cfg.yaml:2:8: unterminated quoted value: the ' opened here is not closed on "
                "this line (a quoted value must end on the line it starts)"});
  // Not quotes that open a value: inside plain text, comments, escapes, '' in single quotes,
  // flow collections, block scalars.
  Config c = projections::parse_config(
      "# don't \"worry\"\n"
      "postgres:\n"
      "  dsn: host=db password='a b' dbname=it's  # it's \"fine\n"
      "redis:\n"
      "  host: 'it''s'\n"
      "mongodb:\n"
      "  database: \"a\\\"b\"  # \"\n"
      "tables:\n"
      "  public.users: { model: 'users', priority: 3 }\n"
      "  public.accounts: {model: \"accounts\"}\n"
      "  public.transactions: { model: transactions }\n"
      "state_dir: |\n"
      "  /var/lib/walfold's \"dir\n",
      "cfg.yaml_ok");
  EXPECT_EQ(c.postgres.dsn, "host=db password='a b' dbname=it's");
  EXPECT_EQ(c.redis.host, "it's");
  EXPECT_EQ(c.mongodb.database, "a\"b");
  EXPECT_EQ(c.state_dir, "/var/lib/walfold's \"dir\n");
}

TEST(ConfigCheck, ConfigPathResolution) {
  ::unsetenv("WALFOLD_CONFIG");
  EXPECT_EQ(resolve_config_path(""), "/etc/walfold/walfold.yaml");
  ::setenv("WALFOLD_CONFIG", "/srv/w.yaml", 1);
  EXPECT_EQ(resolve_config_path(""), "/srv/w.yaml");
  EXPECT_EQ(resolve_config_path("/opt/x.yaml"), "/opt/x.yaml");
  ::unsetenv("WALFOLD_CONFIG");
}

TEST(ConfigCheck, ExitCodesAreMappedInOnePlace) {
  EXPECT_EQ(exit_status_for(UsageError("u")).code, 64);
  EXPECT_EQ(exit_status_for(DataError("d")).code, 65);
  EXPECT_EQ(exit_status_for(UnavailableError("x")).code, 69);
  EXPECT_EQ(exit_status_for(std::runtime_error("r")).code, 70);
  EXPECT_EQ(exit_status_for(FileError(FileError::CannotCreate, "c")).code, 73);
  EXPECT_EQ(exit_status_for(FileError(FileError::Io, "i")).code, 74);
  EXPECT_EQ(exit_status_for(PermissionError("p")).code, 77);
  EXPECT_EQ(exit_status_for(ConfigError("f")).code, 78);
  EXPECT_EQ(exit_status_for(ConfigError("f")).message, "walfold: configuration error: f");
}

}  // namespace
}  // namespace walfold

namespace walfold {
namespace {

// config/ links no projection: it checks a file against the specs its caller passes (here one
// written in the test), not against a list of its own.
TEST(ConfigCheck, TheProjectionsAreTheSpecsTheCallerPasses) {
  ProjectionConfigSpec widgets;
  widgets.name = "widgets";
  widgets.models = {"widgets"};
  widgets.default_tables = {{"public", "widgets", "widgets", 4}};
  const ProjectionSpecs specs{&widgets};

  Config c = parse_config("projection: widgets\n" + kPg, "w.yaml", specs);
  EXPECT_EQ(c.projection, "widgets");
  ASSERT_EQ(c.tables.size(), 1u);
  EXPECT_EQ(c.tables.at("public.widgets").model, "widgets");
  EXPECT_EQ(c.tables.at("public.widgets").priority, 4);

  // The default projection (bank) is not among them: refused like any unknown name.
  auto r = check_config_text(kPg, "w.yaml", specs);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(format_problem("w.yaml", r.problems[0]),
            "w.yaml: projection 'bank' is not one of widgets");
  EXPECT_FALSE(r.config.has_value());

  // `tables:` models are the passed spec's.
  r = check_config_text("projection: widgets\n" + kPg + "tables:\n  public.w: { model: gadget }\n",
                        "w.yaml", specs);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(format_problem("w.yaml", r.problems[0]),
            "w.yaml:5:22: model 'gadget' is not one of widgets");
}

}  // namespace
}  // namespace walfold
