// Unit tests for the job encoding (queue/job.h).

#include "queue/job.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "common/error.h"
#include "queue/job_queue.h"

namespace walfold::queue {
namespace {

using namespace std::string_literals;

Value text(std::string s) {
  return Value{Value::Text, std::move(s)};
}
Value null() {
  return Value{Value::Null, {}};
}
Value unchanged() {
  return Value{Value::Unchanged, {}};
}
Value missing() {
  return Value{Value::Missing, {}};
}

// A job with several tables and every operation, NULL/unchanged/missing values and hostile
// text. The job format is generic: tables are indexes into some projection's table list and
// rows any width (these happen to look like the bank's).
Job sample_job() {
  Job j;
  j.commit_lsn = 0x16B374D848ULL;
  j.end_lsn = 0x16B374D9A0ULL;
  j.commit_time_us = 1795400397123456;
  j.key = "a:42";
  // table 0
  j.changes.push_back(
      {0,
       'I',
       {text("7"), text("Zoë | O'Brien, \"jr\"\n"), null(), text("2026-11-23 02:19:57.123456+00")},
       {}});
  j.changes.push_back({0,
                       'U',
                       {text("7"), text("Zoë O'Brien"), text("zoe@example.com"), unchanged()},
                       {text("7"), missing(), missing(), missing()}});
  j.changes.push_back({0, 'D', {}, {text("7"), null(), text("a,b|c"), text("")}});
  // table 1
  j.changes.push_back(
      {1, 'I', {text("42"), text("7"), text("EUR"), text("2026-01-01 00:00:00+00")}, {}});
  j.changes.push_back({1,
                       'U',
                       {text("42"), text("8"), unchanged(), null()},
                       {text("42"), text("7"), text("EUR"), text("2026-01-01 00:00:00+00")}});
  j.changes.push_back({1, 'D', {}, {text("42"), missing(), missing(), missing()}});
  // table 2
  j.changes.push_back({2,
                       'I',
                       {text("1001"), text("42"), text("-123.4500"), text("transfer"),
                        text("\0nul\0"s), text("2026-11-23 02:19:57+00")},
                       {}});
  j.changes.push_back(
      {2,
       'U',
       {text("1001"), text("42"), text("100.25"), text("deposit"), null(), unchanged()},
       {text("1001"), missing(), missing(), missing(), missing(), missing()}});
  j.changes.push_back({2,
                       'D',
                       {},
                       {text("1001"), text("42"), text("100.25"), text("10,|\n\r\t"), null(),
                        text(std::string(1000, 'x'))}});
  // a table far down some projection's list, with one column
  j.changes.push_back({70000, 'U', {text("x")}, {}});
  return j;
}

void expect_rows_equal(const std::vector<Value>& a, const std::vector<Value>& b,
                       const std::string& where) {
  ASSERT_EQ(a.size(), b.size()) << where;
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].kind, b[i].kind) << where << " field " << i;
    EXPECT_EQ(a[i].text, b[i].text) << where << " field " << i;
  }
}

void expect_jobs_equal(const Job& a, const Job& b) {
  EXPECT_EQ(a.commit_lsn, b.commit_lsn);
  EXPECT_EQ(a.end_lsn, b.end_lsn);
  EXPECT_EQ(a.commit_time_us, b.commit_time_us);
  EXPECT_EQ(a.key, b.key);
  ASSERT_EQ(a.changes.size(), b.changes.size());
  for (std::size_t i = 0; i < a.changes.size(); ++i) {
    const auto where = "change " + std::to_string(i);
    EXPECT_EQ(a.changes[i].table, b.changes[i].table) << where;
    EXPECT_EQ(a.changes[i].op, b.changes[i].op) << where;
    expect_rows_equal(a.changes[i].new_row, b.changes[i].new_row, where + " new");
    expect_rows_equal(a.changes[i].old_row, b.changes[i].old_row, where + " old");
  }
}

void expect_data_error(std::string_view encoded, const std::string& what) {
  try {
    decode_job(encoded);
    ADD_FAILURE() << what << ": decoded without error";
  } catch (const DataError&) {
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": threw something other than DataError: " << e.what();
  }
}

TEST(Job, RoundTrip) {
  const Job j = sample_job();
  const std::string enc = encode_job(j);
  Job back = decode_job(enc);
  expect_jobs_equal(j, back);
  // Encoding is deterministic.
  EXPECT_EQ(encode_job(back), enc);
}

TEST(Job, RoundTripExtremes) {
  Job j;
  j.commit_lsn = std::numeric_limits<std::uint64_t>::max();
  j.end_lsn = std::numeric_limits<std::uint64_t>::max();
  j.commit_time_us = -62135596800000000LL;  // negative: before 1970
  j.key = "u:|,\n\0x"s;
  expect_jobs_equal(j, decode_job(encode_job(j)));

  Job empty;  // zero changes, empty key
  expect_jobs_equal(empty, decode_job(encode_job(empty)));

  Job minmax;
  minmax.commit_time_us = std::numeric_limits<std::int64_t>::min();
  minmax.key = std::string(100000, 'k');
  minmax.changes.push_back({1, 'D', {}, {}});
  expect_jobs_equal(minmax, decode_job(encode_job(minmax)));
}

TEST(QueueEntry, ParsesTheListEntryFormat) {
  // Format 3: "<score>:<enqueued ms>:<commit lsn, 16 hex>:<priority>:<key length>:<key><body>";
  // the key and the body may hold anything.
  auto e = parse_entry("450000000000123:1764000000000:00000016b374d848:7:3:a:1b:o\0dy"s);
  EXPECT_EQ(e.score, 450000000000123.0);
  EXPECT_EQ(e.enqueued_ms, 1764000000000LL);
  EXPECT_EQ(e.commit_lsn, Lsn{0x16B374D848ULL});
  EXPECT_EQ(e.priority, 7);
  EXPECT_EQ(e.key, "a:1");
  EXPECT_EQ(e.body, "b:o\0dy"s);
  EXPECT_EQ(parse_entry("1:2:ffffffffffffffff:0:0:").commit_lsn,
            std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(parse_entry("1:2:ffffffffffffffff:0:0:").body, "");
  EXPECT_EQ(parse_entry("1:2:ffffffffffffffff:0:2:k:").key, "k:");
  // The format before issue #12 ("<score>:<priority>:<ms>:<member length>:<member><body>"),
  // format 2's (no key), a key longer than the entry, and damaged entries are refused, not
  // misread.
  for (std::string bad : {"450000000000123:7:1764000000000:21:00000016b374d848:a:42J1",
                          "1:2:00000016b374d848:7:J2body", "1:2:00000016b374d848:7:9:a:1", "",
                          "1:2:", "1:2:00000016b374d848", "1:2:00000016b374d84:7:x",
                          "1:2:00000016b374d8zz:7:x", "1:2:00000016b374d848:x:y", "x:2:3"})
    EXPECT_THROW(parse_entry(bad), DataError) << bad;
  // Pending commits are kept as lsn_key()s: they sort as LSNs.
  EXPECT_LT(lsn_key(0xFF), lsn_key(0x100));
  EXPECT_LT(lsn_key(0xFFFFFFFFULL), lsn_key(0x100000000ULL));
}

TEST(Job, DecodeRejectsWrongMagic) {
  std::string enc = encode_job(sample_job());
  expect_data_error("", "empty");
  expect_data_error("J", "half magic");
  expect_data_error("J3" + enc.substr(2), "J3");
  expect_data_error("J1" + enc.substr(2), "J1 (the old format)");
  expect_data_error("j2" + enc.substr(2), "j2");
  expect_data_error("X" + enc, "prefixed");
  expect_data_error(enc.substr(1), "magic cut");
}

TEST(Job, DecodeRejectsEveryTruncation) {
  const std::string enc = encode_job(sample_job());
  ASSERT_GT(enc.size(), 100u);
  for (std::size_t n = 0; n < enc.size(); ++n) {
    // A fresh copy of exactly n bytes so a read past the end is visible to sanitizers.
    const std::string prefix = enc.substr(0, n);
    expect_data_error(prefix, "prefix of " + std::to_string(n) + " bytes");
  }
  EXPECT_NO_THROW(decode_job(enc));
}

TEST(Job, DecodeRejectsTrailingBytes) {
  const std::string enc = encode_job(sample_job());
  expect_data_error(enc + "x", "trailing x");
  expect_data_error(enc + "0,"s, "trailing number");
  expect_data_error(enc + '\0', "trailing NUL");
  expect_data_error(enc + enc, "doubled");
}

// Builds an encoding by hand: "J2" commit, end, time, key, changes.
std::string header(const std::string& key, int changes) {
  return "J2"
         "1,2,3," +
         std::to_string(key.size()) + "," + key + std::to_string(changes) + ",";
}

TEST(Job, HandBuiltEncodingDecodes) {
  // One insert into table 1: 4 fields (text "1", NULL, unchanged, missing), empty old row.
  std::string enc = header("a:1", 1) + "1,I4,t1,1num0,";
  Job j = decode_job(enc);
  EXPECT_EQ(j.commit_lsn, 1u);
  EXPECT_EQ(j.end_lsn, 2u);
  EXPECT_EQ(j.commit_time_us, 3);
  EXPECT_EQ(j.key, "a:1");
  ASSERT_EQ(j.changes.size(), 1u);
  EXPECT_EQ(j.changes[0].table, 1u);
  EXPECT_EQ(j.changes[0].op, 'I');
  ASSERT_EQ(j.changes[0].new_row.size(), 4u);
  EXPECT_EQ(j.changes[0].new_row[0].kind, Value::Text);
  EXPECT_EQ(j.changes[0].new_row[0].text, "1");
  EXPECT_EQ(j.changes[0].new_row[1].kind, Value::Null);
  EXPECT_EQ(j.changes[0].new_row[2].kind, Value::Unchanged);
  EXPECT_EQ(j.changes[0].new_row[3].kind, Value::Missing);
  EXPECT_TRUE(j.changes[0].old_row.empty());
  EXPECT_EQ(encode_job(j), enc);
}

TEST(Job, DecodeRejectsBadOp) {
  for (char op : {'X', 'i', 'T', '\0', '0'})
    expect_data_error(header("a:1", 1) + "1," + op + "0,0,", std::string("op ") + op);
}

TEST(Job, DecodeRejectsBadTable) {
  for (const char* t : {"x,", "-1,", ",", "4294967296,", "u"})
    expect_data_error(header("a:1", 1) + t + "I0,0,", std::string("table ") + t);
  EXPECT_EQ(decode_job(header("a:1", 1) + "4294967295,I0,0,").changes[0].table, 4294967295u);
}

TEST(Job, DecodeRejectsBadValueKind) {
  expect_data_error(header("a:1", 1) + "1,I4,t1,1nqm0,", "kind q");
  expect_data_error(header("a:1", 1) + "1,I4,T1,1num0,", "kind T");
}

TEST(Job, RowsOfAnyWidthUpToPostgresLimit) {
  // The queue does not know a projection's tables: a row's width is checked by the fold
  // (FoldTest.RefusesRowsOfTheWrongWidth), only PostgreSQL's column limit here.
  EXPECT_NO_THROW(decode_job(header("a:1", 1) + "2,I6,nnnnnn0,"));
  EXPECT_NO_THROW(decode_job(header("a:1", 1) + "0,U4,nnnn4,mmmm"));
  EXPECT_NO_THROW(decode_job(header("a:1", 1) + "9,I1600," + std::string(1600, 'n') + "0,"));
  expect_data_error(header("a:1", 1) + "9,I1601," + std::string(1601, 'n') + "0,", "1601 columns");
  expect_data_error(header("a:1", 1) + "2,D0,1,", "old row shorter than its count");
}

TEST(Job, OldFormatBodyIsRefusedWithAClearError) {
  // A body of walfold before the generic job format (a bank model letter per change), as left
  // in Redis by the previous version: refused, saying what it is and what to do.
  const std::string old = "J11,2,3,3,a:11,aI4,t1,1num0,";
  try {
    decode_job(old);
    FAIL() << "an old-format body decoded";
  } catch (const DataError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("old format J1"), std::string::npos) << m;
    EXPECT_NE(m.find("drain the queue"), std::string::npos) << m;
    EXPECT_NE(m.find("reconcile --full"), std::string::npos) << m;
  }
  // And what this version writes is not that format.
  EXPECT_EQ(encode_job(Job{}).substr(0, 2), "J2");
}

TEST(Job, DecodeRejectsMalformedNumbers) {
  expect_data_error("J2-1,2,3,0,0,", "negative lsn");
  expect_data_error("J2 1,2,3,0,0,", "blank");
  expect_data_error("J21;2,3,0,0,", "bad separator");
  expect_data_error("J2,2,3,0,0,", "empty number");
  expect_data_error("J2x,2,3,0,0,", "not a number");
  expect_data_error("J2184467440737095516150,2,3,0,0,", "lsn beyond 64 bits");
}

TEST(Job, DecodeRejectsHugeLengths) {
  const std::string max = std::to_string(std::numeric_limits<std::uint64_t>::max());
  expect_data_error("J21,2,3," + max + ",a:1" + "0,", "key length 2^64-1");
  expect_data_error(
      "J21,2,3,1000000,a:1"
      "0,",
      "key length past the end");
  expect_data_error("J21,2,3,4,a:1", "key length one past the end");
  expect_data_error("J21,2,3,99999999999999999999999,a:1", "key length beyond 64 bits");
  expect_data_error(header("a:1", 0).substr(0, header("a:1", 0).size() - 2) + max + ",",
                    "change count 2^64-1");
  expect_data_error(header("a:1", 0).substr(0, header("a:1", 0).size() - 2) + "1000000000,",
                    "change count 10^9");
  expect_data_error(header("a:1", 1) + "1,I" + max + ",", "field count 2^64-1");
  expect_data_error(header("a:1", 1) + "1,I4,t" + max + ",x", "text length 2^64-1");
  expect_data_error(header("a:1", 1) + "1,I4,t" + std::to_string(1ULL << 63) + ",x",
                    "text length 2^63");
  expect_data_error(header("a:1", 1) + "1,I4,t5,abc", "text length past the end");
}

TEST(Job, DecodeNeverCrashesOnMutations) {
  // Flip each byte of a valid encoding to a few values: must either decode or throw DataError.
  const std::string enc = encode_job(sample_job());
  for (std::size_t i = 0; i < enc.size(); ++i) {
    for (char c : {'\0', ',', '9', 'x', '\xff'}) {
      std::string m = enc;
      if (m[i] == c) continue;
      m[i] = c;
      try {
        decode_job(m);
      } catch (const DataError&) {
      } catch (const std::exception& e) {
        ADD_FAILURE() << "byte " << i << " -> " << int(c) << ": " << e.what();
      }
    }
  }
}

}  // namespace
}  // namespace walfold::queue
