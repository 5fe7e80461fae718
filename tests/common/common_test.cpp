// Unit tests for common/: exact decimals, timestamps, LSNs and secret redaction.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common/decimal.h"
#include "common/log.h"
#include "common/lsn.h"
#include "common/timestamp.h"

namespace walfold {
namespace {

// ---------------------------------------------------------------------------------------------
// Decimal

Decimal dec(const std::string& text) {
  auto d = Decimal::parse(text);
  EXPECT_TRUE(d.has_value()) << "Decimal::parse rejected '" << text << "'";
  return d.value_or(Decimal());
}

TEST(Decimal, ParsesPostgresNumericText) {
  auto d = Decimal::parse("-123.4500");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->to_string(), "-123.4500");
  EXPECT_EQ(d->scale(), 4);
  EXPECT_EQ(d->sign(), -1);
  EXPECT_FALSE(d->is_zero());
  EXPECT_EQ(d->canonical(), "-123.45");

  auto zero = Decimal::parse("0");
  ASSERT_TRUE(zero);
  EXPECT_TRUE(zero->is_zero());
  EXPECT_EQ(zero->sign(), 0);
  EXPECT_EQ(zero->to_string(), "0");
  EXPECT_EQ(zero->scale(), 0);

  auto seven = Decimal::parse("7.");
  ASSERT_TRUE(seven);
  EXPECT_EQ(seven->to_string(), "7");
  EXPECT_EQ(seven->scale(), 0);
  EXPECT_EQ(seven->sign(), 1);

  EXPECT_EQ(dec("0.05").to_string(), "0.05");
  EXPECT_EQ(dec("0.05").scale(), 2);
  EXPECT_EQ(dec(".5").to_string(), "0.5");
  EXPECT_EQ(dec("+42").to_string(), "42");
  EXPECT_EQ(dec("000123.10").to_string(), "123.10");
  EXPECT_EQ(dec("-0.000").to_string(), "0.000");
  EXPECT_EQ(dec("-0.000").sign(), 0);
  EXPECT_EQ(dec("1000").to_string(), "1000");
}

TEST(Decimal, RejectsNonFiniteAndMalformed) {
  for (const char* bad :
       {"NaN", "nan",   "Infinity", "-Infinity", "inf", "1e5", "1E5", "",    "-",    "+",    ".",
        "-.",  "1.2.3", " 1",       "1 ",        "1,5", "12a", "--1", "+-1", "0x10", "1_000"}) {
    EXPECT_FALSE(Decimal::parse(bad).has_value()) << "accepted '" << bad << "'";
  }
}

TEST(Decimal, AtMost34SignificantDigits) {
  const std::string d34(34, '9');
  const std::string d35(35, '9');
  auto ok = Decimal::parse(d34);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->to_string(), d34);
  EXPECT_TRUE(Decimal::parse("-" + d34));
  EXPECT_FALSE(Decimal::parse(d35));
  EXPECT_FALSE(Decimal::parse("-" + d35));
  EXPECT_FALSE(Decimal::parse("1" + std::string(34, '0')));  // 35 digits, value 10^34
  // 35 significant digits spread around the point.
  EXPECT_FALSE(Decimal::parse(std::string(20, '1') + "." + std::string(15, '1')));
  EXPECT_TRUE(Decimal::parse(std::string(20, '1') + "." + std::string(14, '1')));
  // Leading zeros are not significant.
  auto lead = Decimal::parse("0000" + d34);
  ASSERT_TRUE(lead);
  EXPECT_EQ(lead->to_string(), d34);
  // Zeros right after the point are not significant either.
  auto small = Decimal::parse("0.000" + d34);
  ASSERT_TRUE(small);
  EXPECT_EQ(small->scale(), 37);
  EXPECT_EQ(small->to_string(), "0.000" + d34);
}

TEST(Decimal, PlusAlignsScalesAndKeepsTheLarger) {
  auto sum = dec("100.5000").plus(dec("0.25"));
  ASSERT_TRUE(sum);
  EXPECT_EQ(sum->to_string(), "100.7500");
  EXPECT_EQ(sum->scale(), 4);
  EXPECT_EQ(sum->canonical(), "100.75");

  auto sum2 = dec("0.25").plus(dec("100.5000"));
  ASSERT_TRUE(sum2);
  EXPECT_EQ(sum2->to_string(), "100.7500");

  auto neg = dec("10.00").plus(dec("-25.5"));
  ASSERT_TRUE(neg);
  EXPECT_EQ(neg->to_string(), "-15.50");
  EXPECT_EQ(neg->sign(), -1);

  auto zero = dec("12.30").plus(dec("-12.3"));
  ASSERT_TRUE(zero);
  EXPECT_TRUE(zero->is_zero());
  EXPECT_EQ(zero->to_string(), "0.00");
  EXPECT_EQ(zero->canonical(), "0");

  auto ints = dec("7").plus(dec("8"));
  ASSERT_TRUE(ints);
  EXPECT_EQ(ints->to_string(), "15");
}

TEST(Decimal, PlusOfManySmallAmountsIsExact) {
  // 0.1 ten thousand times: a double would drift, Decimal must not.
  Decimal total = dec("0");
  const Decimal tenth = dec("0.1");
  for (int i = 0; i < 10000; ++i) {
    auto next = total.plus(tenth);
    ASSERT_TRUE(next);
    total = *next;
  }
  EXPECT_EQ(total.to_string(), "1000.0");
  EXPECT_EQ(total.canonical(), "1000");
}

TEST(Decimal, Negated) {
  EXPECT_EQ(dec("12.50").negated().to_string(), "-12.50");
  EXPECT_EQ(dec("-12.50").negated().to_string(), "12.50");
  EXPECT_EQ(dec("0.00").negated().to_string(), "0.00");
  EXPECT_EQ(dec("0.00").negated().canonical(), "0");
  EXPECT_EQ(dec("5").negated().sign(), -1);
  auto back = dec("3.25").plus(dec("3.25").negated());
  ASSERT_TRUE(back);
  EXPECT_TRUE(back->is_zero());
}

TEST(Decimal, PlusOverflowPast34DigitsIsNullopt) {
  const std::string max34(34, '9');
  EXPECT_FALSE(dec(max34).plus(dec("1")));
  EXPECT_FALSE(dec("-" + max34).plus(dec("-1")));
  auto fits = dec(max34).plus(dec("-1"));
  ASSERT_TRUE(fits);
  EXPECT_EQ(fits->to_string(), std::string(33, '9') + "8");
  auto exact = dec(std::string(33, '9')).plus(dec("9" + std::string(33, '0')));
  ASSERT_TRUE(exact);  // 10^33 - 1 + 9 * 10^33 = 10^34 - 1: still 34 digits
  EXPECT_EQ(exact->to_string(), max34);
  // Rescaling alone overflows: 34 integer digits cannot take a fractional digit.
  EXPECT_FALSE(dec(max34).plus(dec("0.1")));
  EXPECT_FALSE(dec("0.1").plus(dec(max34)));
  // A 34-digit fraction plus an integer needs more digits.
  EXPECT_FALSE(dec("0." + max34).plus(dec("1")));
}

TEST(Decimal, CanonicalStripsTrailingZeros) {
  EXPECT_EQ(dec("100.5000").canonical(), "100.5");
  EXPECT_EQ(dec("100.000").canonical(), "100");
  EXPECT_EQ(dec("100").canonical(), "100");
  EXPECT_EQ(dec("-0.000").canonical(), "0");
  EXPECT_EQ(dec("-0").canonical(), "0");
  EXPECT_EQ(dec("0.0").canonical(), "0");
  EXPECT_EQ(dec("-1.10").canonical(), "-1.1");
  EXPECT_EQ(dec("0.0500").canonical(), "0.05");
  EXPECT_EQ(dec("7.").canonical(), "7");
  // Equal values print equally.
  EXPECT_EQ(dec("2.50").canonical(), dec("2.5000000").canonical());
}

TEST(Decimal, CanonicalizeDecimal128Strings) {
  struct Case {
    const char* in;
    const char* out;
  } cases[] = {
      {"1.00E+3", "1000"}, {"1.5E-3", "0.0015"},  {"-0E+2", "0"},
      {"0E-6176", "0"},    {"1E+0", "1"},         {"12345E-2", "123.45"},
      {"-1.5E+1", "-15"},  {"100.5000", "100.5"}, {"-0.000", "0"},
      {"5e2", "500"},      {"1.50E-1", "0.15"},   {"-123.4500", "-123.45"},
      {"1.2E2", "120"},    {"7.", "7"},           {"0", "0"},
  };
  for (const auto& c : cases) {
    auto got = Decimal::canonicalize(c.in);
    ASSERT_TRUE(got) << c.in;
    EXPECT_EQ(*got, c.out) << c.in;
  }
}

TEST(Decimal, CanonicalizeRejectsNonFinite) {
  for (const char* bad : {"NaN", "-NaN", "Infinity", "-Infinity", "", "E5", "1E", "1E+", "1E+x",
                          "1.2.3E1", "abc", "1E5.5", "1EE5"}) {
    EXPECT_FALSE(Decimal::canonicalize(bad).has_value()) << "accepted '" << bad << "'";
  }
}

TEST(Decimal, CanonicalizeAgreesWithCanonical) {
  for (const char* s : {"0.10", "-5.000", "123456789.987654321", "1", "-0.0001"}) {
    auto c = Decimal::canonicalize(s);
    ASSERT_TRUE(c) << s;
    EXPECT_EQ(*c, dec(s).canonical()) << s;
  }
}

// ---------------------------------------------------------------------------------------------
// Timestamps

constexpr std::int64_t kSample = 1795400397123456;  // 2026-11-23T02:19:57.123456Z

TEST(Timestamp, ParsesPostgresForms) {
  EXPECT_EQ(parse_pg_timestamptz("2026-11-23 02:19:57.123456+00"), kSample);
  EXPECT_EQ(parse_pg_timestamptz("2026-11-23 02:19:57.123456+00:00"), kSample);
  EXPECT_EQ(parse_pg_timestamptz("2026-11-23 02:19:57.123456Z"), kSample);
  EXPECT_EQ(parse_pg_timestamptz("2026-11-23T02:19:57.123456Z"), kSample);
  EXPECT_EQ(parse_pg_timestamptz("2026-11-23T02:19:57.123456+00"), kSample);
  EXPECT_EQ(parse_pg_timestamptz("2026-11-23 02:19:57+00"), 1795400397000000);
  EXPECT_EQ(parse_pg_timestamptz("2026-11-23T02:19:57Z"), 1795400397000000);
}

TEST(Timestamp, Offsets) {
  EXPECT_EQ(parse_pg_timestamptz("2026-11-23 07:49:57.123456+05:30"), kSample);
  EXPECT_EQ(parse_pg_timestamptz("2026-11-23 07:49:57.123456+0530"), kSample);
  EXPECT_EQ(parse_pg_timestamptz("2026-11-22 18:19:57.123456-08"), kSample);
  EXPECT_EQ(parse_pg_timestamptz("2026-11-22 18:19:57.123456-08:00"), kSample);
  EXPECT_EQ(parse_pg_timestamptz("2026-11-23 02:19:57.123456+00:00:00"), kSample);
  // PostgreSQL prints historical offsets with seconds, e.g. LMT +00:09:21.
  EXPECT_EQ(parse_pg_timestamptz("2026-11-23 02:29:18.123456+00:09:21"), kSample);
  // An offset that moves the date across midnight and the epoch.
  EXPECT_EQ(parse_pg_timestamptz("1970-01-01 05:30:00+05:30"), 0);
  EXPECT_EQ(parse_pg_timestamptz("1969-12-31 16:00:00-08"), 0);
}

TEST(Timestamp, FractionalDigits) {
  const std::int64_t base = 1795400397000000;
  EXPECT_EQ(parse_pg_timestamptz("2026-11-23 02:19:57.1+00"), base + 100000);
  EXPECT_EQ(parse_pg_timestamptz("2026-11-23 02:19:57.12+00"), base + 120000);
  EXPECT_EQ(parse_pg_timestamptz("2026-11-23 02:19:57.123+00"), base + 123000);
  EXPECT_EQ(parse_pg_timestamptz("2026-11-23 02:19:57.1234+00"), base + 123400);
  EXPECT_EQ(parse_pg_timestamptz("2026-11-23 02:19:57.12345+00"), base + 123450);
  EXPECT_EQ(parse_pg_timestamptz("2026-11-23 02:19:57.123456+00"), base + 123456);
  EXPECT_EQ(parse_pg_timestamptz("2026-11-23 02:19:57.000001+00"), base + 1);
  EXPECT_EQ(parse_pg_timestamptz("2026-11-23 02:19:57.05Z"), base + 50000);
}

TEST(Timestamp, RejectsGarbage) {
  for (const char* bad : {
           "",
           "garbage",
           "2026-11-23",
           "2026-11-23 02:19",
           "2026/11/23 02:19:57+00",
           "2026-11-23_02:19:57+00",
           "2026-11-23 02:19:57.+00",
           "2026-11-23 02:19:57.",
           "2026-11-23 02:19:57+",
           "2026-11-23 02:19:57+0",
           "2026-11-23 02:19:57+00:",
           "2026-11-23 02:19:57+00:3",
           "2026-11-23 02:19:57 +00",
           "2026-11-23 02:19:57+00 ",
           "2026-11-23 02:19:57+00x",
           "2026-11-23 02:19:57ZZ",
           "2026-11-23 02:19:57UTC",
           "2026-13-01 00:00:00+00",
           "2026-00-01 00:00:00+00",
           "2026-11-00 00:00:00+00",
           "2026-11-32 00:00:00+00",
           "2026-11-23 24:00:00+00",
           "2026-11-23 02:60:00+00",
           "2026-11-23 02:19:61+00",
           "2026-1-23 02:19:57+00",
           "20261123 021957",
           "2026-11-23 02:19:57.123abc+00",
           "0044-03-15 12:00:00+00 BC",
           "infinity",
           "-infinity",
       }) {
    EXPECT_FALSE(parse_pg_timestamptz(bad).has_value()) << "accepted '" << bad << "'";
  }
}

TEST(Timestamp, FormatsAlwaysSixFractionalDigits) {
  EXPECT_EQ(format_timestamp_us(kSample), "2026-11-23T02:19:57.123456Z");
  EXPECT_EQ(format_timestamp_us(0), "1970-01-01T00:00:00.000000Z");
  EXPECT_EQ(format_timestamp_us(1), "1970-01-01T00:00:00.000001Z");
  EXPECT_EQ(format_timestamp_us(1795400397000000), "2026-11-23T02:19:57.000000Z");
}

TEST(Timestamp, FormatsPre1970) {
  EXPECT_EQ(format_timestamp_us(-1), "1969-12-31T23:59:59.999999Z");
  EXPECT_EQ(format_timestamp_us(-1000000), "1969-12-31T23:59:59.000000Z");
  EXPECT_EQ(format_timestamp_us(-86400000000LL), "1969-12-31T00:00:00.000000Z");
  EXPECT_EQ(format_timestamp_us(-14182940000000LL), "1969-07-20T20:17:40.000000Z");
  EXPECT_EQ(format_timestamp_us(-2208988800000000LL), "1900-01-01T00:00:00.000000Z");
  EXPECT_EQ(format_timestamp_us(-62135596800000000LL), "0001-01-01T00:00:00.000000Z");
  EXPECT_EQ(parse_pg_timestamptz("1969-12-31 23:59:59.999999+00"), -1);
  EXPECT_EQ(parse_pg_timestamptz("1969-12-31 23:59:59.5+00"), -500000);
  EXPECT_EQ(parse_pg_timestamptz("1969-07-20 20:17:40+00"), -14182940000000LL);
  EXPECT_EQ(parse_pg_timestamptz("1900-01-01 00:00:00+00"), -2208988800000000LL);
}

TEST(Timestamp, LeapDay) {
  EXPECT_EQ(parse_pg_timestamptz("2024-02-29 12:00:00+00"), 1709208000000000);
  EXPECT_EQ(format_timestamp_us(1709208000000000), "2024-02-29T12:00:00.000000Z");
  EXPECT_EQ(format_timestamp_us(1709208000000000 + 12 * 3600 * 1000000LL),
            "2024-03-01T00:00:00.000000Z");
  EXPECT_EQ(format_timestamp_us(1709208000000000 - 36 * 3600 * 1000000LL),
            "2024-02-28T00:00:00.000000Z");
  // 2000 was a leap year, 1900 and 2100 were not.
  EXPECT_EQ(format_timestamp_us(*parse_pg_timestamptz("2000-02-29 00:00:00+00")),
            "2000-02-29T00:00:00.000000Z");
  EXPECT_EQ(
      format_timestamp_us(*parse_pg_timestamptz("2100-02-28 00:00:00+00") + 86400LL * 1000000),
      "2100-03-01T00:00:00.000000Z");
  EXPECT_EQ(
      format_timestamp_us(*parse_pg_timestamptz("1900-02-28 00:00:00+00") + 86400LL * 1000000),
      "1900-03-01T00:00:00.000000Z");
}

TEST(Timestamp, RoundTrips) {
  std::mt19937_64 rng(12345);
  // Years 0001..9999.
  std::uniform_int_distribution<std::int64_t> dist(-62135596800000000LL, 253402300799999999LL);
  std::vector<std::int64_t> values = {0,
                                      1,
                                      -1,
                                      kSample,
                                      1709208000000000,
                                      -62135596800000000LL,
                                      253402300799999999LL,
                                      951782400000000 /* 2000-02-29 */};
  for (int i = 0; i < 5000; ++i) values.push_back(dist(rng));
  for (auto us : values) {
    auto text = format_timestamp_us(us);
    ASSERT_EQ(text.size(), 27u) << text;
    auto back = parse_pg_timestamptz(text);
    ASSERT_TRUE(back) << text;
    EXPECT_EQ(*back, us) << text;
  }
}

// ---------------------------------------------------------------------------------------------
// LSNs

TEST(Lsn, FormatAndParse) {
  EXPECT_EQ(format_lsn(0), "0/0");
  EXPECT_EQ(format_lsn(0x16B374D848ULL), "16/B374D848");
  EXPECT_EQ(format_lsn(0xFFFFFFFFFFFFFFFFULL), "FFFFFFFF/FFFFFFFF");
  EXPECT_EQ(format_lsn(0x100000000ULL), "1/0");
  EXPECT_EQ(format_lsn(0xABCULL), "0/ABC");

  EXPECT_EQ(parse_lsn("0/0"), 0u);
  EXPECT_EQ(parse_lsn("16/B374D848"), 0x16B374D848ULL);
  EXPECT_EQ(parse_lsn("16/b374d848"), 0x16B374D848ULL);
  EXPECT_EQ(parse_lsn("FFFFFFFF/FFFFFFFF"), 0xFFFFFFFFFFFFFFFFULL);
  EXPECT_EQ(parse_lsn("00000001/00000000"), 0x100000000ULL);
}

TEST(Lsn, RoundTrip) {
  std::mt19937_64 rng(7);
  std::vector<Lsn> values = {0, 1, 0xFFFFFFFFu, 0x100000000ULL, 0xFFFFFFFFFFFFFFFFULL};
  for (int i = 0; i < 2000; ++i) values.push_back(rng() >> (rng() % 64));
  for (Lsn v : values) {
    auto text = format_lsn(v);
    auto back = parse_lsn(text);
    ASSERT_TRUE(back) << text;
    EXPECT_EQ(*back, v) << text;
  }
}

TEST(Lsn, ParseRejects) {
  for (const char* bad :
       {"", "/", "1/", "/1", "x/1", "1/x", "123456789/1", "1/123456789", "1", "1//1", "1/2/3",
        " 1/1", "1/1 ", "-1/1", "+1/1", "0x1/1", "1/-1", "G/0"}) {
    EXPECT_FALSE(parse_lsn(bad).has_value()) << "accepted '" << bad << "'";
  }
}

TEST(Lsn, ParseKeyTakesExactlySixteenLowercaseHexDigits) {
  EXPECT_EQ(parse_lsn_key("00000016b374d848"), 0x16B374D848ULL);
  EXPECT_EQ(parse_lsn_key(""), std::nullopt);
  EXPECT_EQ(parse_lsn_key("16b374d848"), std::nullopt);         // not fixed width
  EXPECT_EQ(parse_lsn_key("00000016B374D848"), std::nullopt);   // uppercase
  EXPECT_EQ(parse_lsn_key("00000016b374d84g"), std::nullopt);   // not hex
  EXPECT_EQ(parse_lsn_key("00000016b374d8480"), std::nullopt);  // too long
}

TEST(Lsn, KeyIsFixedWidthLowercaseHexAndSortsLikeNumbers) {
  EXPECT_EQ(lsn_key(0), "0000000000000000");
  EXPECT_EQ(lsn_key(0x16B374D848ULL), "00000016b374d848");
  EXPECT_EQ(lsn_key(0xFFFFFFFFFFFFFFFFULL), "ffffffffffffffff");

  std::mt19937_64 rng(99);
  std::vector<Lsn> values = {
      0, 9, 10, 15, 16, 0xFF, 0x100, 0xFFFFFFFFu, 0x100000000ULL, 0xFFFFFFFFFFFFFFFFULL};
  for (int i = 0; i < 1000; ++i) values.push_back(rng() >> (rng() % 64));
  for (Lsn v : values) {
    auto k = lsn_key(v);
    ASSERT_EQ(k.size(), 16u);
    EXPECT_EQ(parse_lsn_key(k), v) << k;  // round trip
    for (char c : k) EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << k;
  }
  std::vector<Lsn> by_number = values;
  std::sort(by_number.begin(), by_number.end());
  std::vector<std::string> keys;
  for (Lsn v : values) keys.push_back(lsn_key(v));
  std::sort(keys.begin(), keys.end());
  ASSERT_EQ(keys.size(), by_number.size());
  for (std::size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(keys[i], lsn_key(by_number[i]));
}

// ---------------------------------------------------------------------------------------------
// Secret redaction

TEST(Redact, KeywordPassword) {
  EXPECT_EQ(redact_secrets("host=a password=secret user=b"), "host=a password=*** user=b");
  EXPECT_EQ(redact_secrets("password=secret"), "password=***");
  EXPECT_EQ(redact_secrets("host=a PASSWORD=secret"), "host=a PASSWORD=***");
  EXPECT_EQ(redact_secrets("host=a password = secret user=b"), "host=a password = *** user=b");
}

TEST(Redact, QuotedPasswordWithSpaces) {
  auto out = redact_secrets("host=a password='my secret pw' user=b");
  EXPECT_EQ(out, "host=a password=*** user=b");
  EXPECT_EQ(out.find("secret"), std::string::npos);
  auto esc = redact_secrets(R"(password='it\'s a \\ secret' dbname=x)");
  EXPECT_EQ(esc, "password=*** dbname=x");
  EXPECT_EQ(esc.find("secret"), std::string::npos);
}

TEST(Redact, Uris) {
  EXPECT_EQ(redact_secrets("postgresql://u:pw@h/db"), "postgresql://u:***@h/db");
  EXPECT_EQ(redact_secrets("postgres://walfold:s3cr3t@127.0.0.1:5432/bank?sslmode=require"),
            "postgres://walfold:***@127.0.0.1:5432/bank?sslmode=require");
  EXPECT_EQ(redact_secrets("mongodb://u:pw@h:1/?x"), "mongodb://u:***@h:1/?x");
  EXPECT_EQ(redact_secrets("mongodb+srv://admin:hunter2@cluster0.example.net/db"),
            "mongodb+srv://admin:***@cluster0.example.net/db");
  EXPECT_EQ(redact_secrets("redis://:pw@h:6379/0"), "redis://:***@h:6379/0");
  // In a longer message.
  auto msg = redact_secrets("cannot connect to mongodb://u:topsecret@h:1/?x: refused");
  EXPECT_EQ(msg.find("topsecret"), std::string::npos) << msg;
  EXPECT_NE(msg.find("mongodb://u:***@h:1/?x"), std::string::npos) << msg;
}

TEST(Redact, NoSecretsUnchanged) {
  for (const char* s :
       {"", "host=a port=5432 dbname=bank user=b", "postgresql://u@h/db", "postgresql://h:5432/db",
        "mongodb://127.0.0.1:27017", "mongodb://127.0.0.1:27017/?replicaSet=rs0",
        "redis at 127.0.0.1:6379 is unreachable", "password_file=/run/x",
        "plain text with no secrets", "user@example.com"}) {
    EXPECT_EQ(redact_secrets(s), s);
  }
}

}  // namespace
}  // namespace walfold
