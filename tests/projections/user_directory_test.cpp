// The user directory projection without servers: its privacy transforms (HMAC-SHA256 against
// RFC 4231's vectors, the pseudonym's stability), its configuration and its errors, its table
// and its ordering keys (an email change moves the document).
#include <gtest/gtest.h>

#include <regex>

#include "common/error.h"
#include "config/config.h"
#include "projections/registry.h"
#include "projections/user_directory/transforms.h"
#include "projections/user_directory/user_directory.h"

namespace {

using namespace walfold;
using namespace walfold::projections::user_directory;
using queue::Value;

// RFC 4231 section 4.2 (test case 1) and 4.3 (test case 2), HMAC-SHA-256.
TEST(UserDirectoryTransforms, HmacSha256KnownAnswers) {
  EXPECT_EQ(hmac_sha256_hex(std::string(20, '\x0b'), "Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // Test case 6: a key longer than the block size is hashed first.
  EXPECT_EQ(hmac_sha256_hex(std::string(131, '\xaa'),
                            "Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(UserDirectoryTransforms, PseudonymIsStablePerUserAndKeyed) {
  const std::string a = pseudonym("salt-1", "42");
  EXPECT_TRUE(std::regex_match(a, std::regex("Usuario_[0-9]{1,20}"))) << a;
  EXPECT_EQ(pseudonym("salt-1", "42"), a);  // the same user, the same name, every time
  EXPECT_NE(pseudonym("salt-1", "43"), a);  // another user
  EXPECT_NE(pseudonym("salt-2", "42"), a);  // another salt: not guessable from the id alone
  // Not the hash of the id under the same salt (a separate key), so hashed columns and the
  // pseudonym cannot be matched up.
  EXPECT_EQ(a.find(hmac_sha256_hex("salt-1", "42").substr(0, 8)), std::string::npos);
}

TEST(UserDirectoryTransforms, NamesRoundTrip) {
  for (auto t : {Transform::Keep, Transform::Drop, Transform::Hash, Transform::Pseudonym}) {
    Transform back{};
    ASSERT_TRUE(parse_transform(transform_name(t), back));
    EXPECT_EQ(back, t);
  }
  Transform t{};
  EXPECT_FALSE(parse_transform("encrypt", t));
}

const std::string kPg = "postgres: {dsn: x}\n";
const std::string kDirectory = kPg +
                               "projection: user_directory\n"
                               "user_directory:\n"
                               "  collection: people\n"
                               "  salt_file: /nonexistent/salt\n"
                               "  columns:\n"
                               "    full_name: pseudonym\n"
                               "    email: hash\n"
                               "    phone: drop\n"
                               "    city: keep\n";

std::vector<std::string> problems(const std::string& yaml) {
  std::vector<std::string> out;
  for (const auto& p : projections::check_config_text(yaml, "cfg.yaml").problems)
    out.push_back(format_problem("cfg.yaml", p));
  return out;
}

std::string all_problems(const std::string& yaml) {
  std::string s;
  for (const auto& p : problems(yaml)) s += p + "\n";
  return s;
}

TEST(UserDirectoryConfig, SectionParsedAndDefaultTable) {
  Config c = projections::parse_config(kDirectory, "cfg.yaml");
  EXPECT_EQ(c.projection, "user_directory");
  ASSERT_EQ(c.tables.size(), 1u);
  ASSERT_NE(c.table_for("users"), nullptr);
  EXPECT_EQ(c.table_for("users")->name, "users");
  const auto* s = dynamic_cast<const Settings*>(c.projection_settings.get());
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->collection, "people");
  EXPECT_EQ(s->salt_file, "/nonexistent/salt");
  using P = std::pair<std::string, Transform>;
  EXPECT_EQ(s->columns, (std::vector<P>{{"email", Transform::Hash},
                                        {"full_name", Transform::Pseudonym},
                                        {"phone", Transform::Drop},
                                        {"city", Transform::Keep}}));
}

TEST(UserDirectoryConfig, BankStaysTheDefault) {
  Config c = projections::parse_config(kPg, "cfg.yaml");
  EXPECT_EQ(c.projection, "bank");
  EXPECT_EQ(c.projection_settings, nullptr);
  EXPECT_EQ(c.tables.size(), 3u);
}

TEST(UserDirectoryConfig, ErrorsNameFileLineAndChoices) {
  // A model the projection does not have: the models it has are listed.
  EXPECT_EQ(problems(kPg + "projection: user_directory\ntables:\n  public.people: {model: "
                           "accounts}\n"),
            (std::vector<std::string>{"cfg.yaml:4:26: model 'accounts' is not one of users"}));
  EXPECT_EQ(problems(kPg + "projection: user_dir\n"),
            (std::vector<std::string>{
                "cfg.yaml:2:13: projection 'user_dir' is not one of bank, user_directory"}));
  EXPECT_EQ(problems(kPg + "projection: bnak\n"),
            (std::vector<std::string>{"cfg.yaml:2:13: projection 'bnak' is not one of bank, "
                                      "user_directory (did you mean 'bank'?)"}));
  // The directory's section under another projection.
  EXPECT_EQ(problems(kPg + "user_directory: {collection: x}\n"),
            (std::vector<std::string>{"cfg.yaml:2:17: section 'user_directory' configures the "
                                      "user_directory projection, but projection is 'bank'"}));
  const std::string head = kPg + "projection: user_directory\nuser_directory:\n";
  EXPECT_EQ(problems(head + "  salt_file: s\n  columns: {full_name: pseudonim}\n"),
            (std::vector<std::string>{
                "cfg.yaml:5:24: user_directory.columns.full_name 'pseudonim' is not one of keep, "
                "drop, hash, pseudonym (did you mean 'pseudonym'?)"}));
  EXPECT_EQ(problems(head + "  columns: {email: hash}\n"),
            (std::vector<std::string>{"cfg.yaml:4:3: user_directory.salt_file is required: hash "
                                      "and pseudonym are keyed with its content"}));
  EXPECT_NE(all_problems(head + "  salt_file: s\n  columns: {email: drop}\n")
                .find("cfg.yaml:5:20: user_directory.columns.email: the email is the document's "
                      "key; it can be kept or hashed, not drop"),
            std::string::npos);
  EXPECT_NE(all_problems(head + "  columns: {id: hash}\n").find("the id identifies the row"),
            std::string::npos);
  EXPECT_NE(all_problems(head + "  colums: {}\n").find("did you mean 'columns'?"),
            std::string::npos);
  // The bank's rule keys are not the directory's.
  EXPECT_NE(all_problems(kPg + "projection: user_directory\npriorities:\n  rules:\n    - {kind: "
                               "x, priority: 1}\n")
                .find("unknown key 'kind' in priorities.rules[0]"),
            std::string::npos);
}

// A users row as the directory's table carries it: id, email, full_name, city (phone dropped).
std::vector<Value> row(const char* id, const char* email, const char* name = "Ana") {
  auto t = [](const char* s) {
    Value v;
    v.kind = Value::Text;
    v.text = s;
    return v;
  };
  return {t(id), t(email), t(name), t("Lisboa")};
}

TEST(UserDirectoryProjection, TableKeysAndMoves) {
  Config c = projections::parse_config(kDirectory, "cfg.yaml");
  const auto* s = dynamic_cast<const Settings*>(c.projection_settings.get());
  ASSERT_NE(s, nullptr);
  UserDirectoryProjection p(*s, "the-salt");
  ASSERT_EQ(p.tables().size(), 1u);
  const auto& t = p.tables()[0];
  EXPECT_EQ(t.model, "users");
  EXPECT_TRUE(t.replica_identity_full);
  std::vector<std::string> cols;
  for (const auto& col : t.columns) cols.push_back(col.name);
  // The dropped column is never carried: not in a job, not in Redis.
  EXPECT_EQ(cols, (std::vector<std::string>{"id", "email", "full_name", "city"}));

  const std::string ana = "d:" + hmac_sha256_hex("the-salt", "ana@example.org");
  const std::string new_ana = "d:" + hmac_sha256_hex("the-salt", "ana@example.com");
  projections::ChangeContext where{"public.users", 0x100};
  queue::Change ins{0, 'I', row("1", "ana@example.org"), {}};
  EXPECT_EQ(p.route(ins, where).key, ana);
  EXPECT_TRUE(p.route(ins, where).old_key.empty());
  // A rename keeps the key; an email change moves the document.
  queue::Change rename{0, 'U', row("1", "ana@example.org", "Ana B"), row("1", "ana@example.org")};
  EXPECT_EQ(p.route(rename, where).key, ana);
  EXPECT_TRUE(p.route(rename, where).old_key.empty());
  queue::Change move{0, 'U', row("1", "ana@example.com"), row("1", "ana@example.org")};
  EXPECT_EQ(p.route(move, where).key, new_ana);
  EXPECT_EQ(p.route(move, where).old_key, ana);
  queue::Change del{0, 'D', {}, row("1", "ana@example.com")};
  EXPECT_EQ(p.route(del, where).key, new_ana);
  // No email: no key, a data error naming the row.
  queue::Change bad{0, 'I', row("7", "x"), {}};
  bad.new_row[1].kind = Value::Null;
  try {
    p.route(bad, where);
    ADD_FAILURE() << "a row without an email was keyed";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("id=7 without an email"), std::string::npos) << e.what();
  }
  // Transforms per field: pseudonym from the id, hash keyed, keep as is.
  EXPECT_EQ(p.transformed(1, "Ana", "1"), pseudonym("the-salt", "1"));
  EXPECT_EQ(p.transformed(0, "ana@example.org", "1"), ana.substr(2));
  EXPECT_EQ(p.transformed(2, "Lisboa", "1"), "Lisboa");
}

TEST(UserDirectoryProjection, EmptySaltRefused) {
  Config c = projections::parse_config(kDirectory, "cfg.yaml");
  const auto* s = dynamic_cast<const Settings*>(c.projection_settings.get());
  ASSERT_NE(s, nullptr);
  EXPECT_THROW(UserDirectoryProjection(*s, ""), ConfigError);
  // The registry reads the salt file and never quotes it: a missing one is a ConfigError.
  EXPECT_THROW(projections::projection_for(c), ConfigError);
}

}  // namespace
