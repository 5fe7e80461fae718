// Unit tests for the `http` configuration section (config/config.h), lag limits and the
// commit-to-MongoDB histogram (common/progress.h).

#include <gtest/gtest.h>

#include <string>

#include "common/error.h"
#include "common/progress.h"
#include "config/config.h"
#include "projections/registry.h"

namespace walfold {
namespace {

Config parse(const std::string& http) {
  return projections::parse_config("postgres:\n  dsn: \"host=x\"\n" + http, "test.yaml");
}

std::string error_of(const std::string& http) {
  try {
    parse(http);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(HttpConfig, OnByDefaultOnLoopback) {
  auto c = parse("");
  EXPECT_TRUE(c.http.enabled);
  EXPECT_EQ(c.http.host, "127.0.0.1");
  EXPECT_EQ(c.http.port, 9731);
  EXPECT_FALSE(c.http.allow_remote);
  EXPECT_FALSE(c.http.admin);
  EXPECT_TRUE(c.http.token_file.empty());
  EXPECT_FALSE(c.http.ready_max_lag.seconds);
  EXPECT_EQ(c.http.ready_max_lag.value, 256.0 * 1024 * 1024);
}

TEST(HttpConfig, ListenOffAndAddresses) {
  EXPECT_FALSE(parse("http:\n  listen: off\n").http.enabled);
  auto c = parse("http:\n  listen: \"[::1]:9000\"\n");
  EXPECT_EQ(c.http.host, "::1");
  EXPECT_EQ(c.http.port, 9000);
  EXPECT_EQ(parse("http:\n  listen: localhost:0\n").http.port, 0);
  EXPECT_NE(error_of("http:\n  listen: 127.0.0.1\n").find("must be HOST:PORT"), std::string::npos);
  EXPECT_NE(error_of("http:\n  listen: 127.0.0.1:99999\n").find("must be HOST:PORT"),
            std::string::npos);
  EXPECT_NE(error_of("http:\n  lisen: x\n").find("unknown key 'lisen'"), std::string::npos);
}

TEST(HttpConfig, ANonLoopbackAddressNeedsAllowRemoteAndAToken) {
  auto e = error_of("http:\n  listen: 0.0.0.0:9731\n");
  EXPECT_NE(e.find("not a loopback address"), std::string::npos) << e;
  EXPECT_NE(e.find("test.yaml:4:11"), std::string::npos) << e;  // file:line:column
  e = error_of("http:\n  listen: 192.0.2.10:9731\n  allow_remote: true\n");
  EXPECT_NE(e.find("needs http.token_file"), std::string::npos) << e;
  auto c = parse("http:\n  listen: 0.0.0.0:9731\n  allow_remote: true\n  token_file: /t\n");
  EXPECT_TRUE(c.http.allow_remote);
  EXPECT_EQ(c.http.token_file, "/t");
  EXPECT_TRUE(is_loopback_host("127.0.0.2"));
  EXPECT_TRUE(is_loopback_host("::1"));
  EXPECT_FALSE(is_loopback_host("0.0.0.0"));
  EXPECT_FALSE(is_loopback_host("::"));
}

TEST(HttpConfig, ReadyMaxLagInBytesOrSeconds) {
  auto c = parse("http:\n  ready_max_lag: 30s\n  admin: true\n");
  EXPECT_TRUE(c.http.ready_max_lag.seconds);
  EXPECT_EQ(c.http.ready_max_lag.value, 30);
  EXPECT_TRUE(c.http.admin);
  EXPECT_EQ(parse("http:\n  ready_max_lag: 64MiB\n").http.ready_max_lag.value, 64.0 * 1024 * 1024);
  EXPECT_NE(error_of("http:\n  ready_max_lag: 3 parsecs\n").find("ready_max_lag must be"),
            std::string::npos);
}

TEST(LagLimit, Units) {
  ASSERT_TRUE(parse_lag_limit("4096"));
  EXPECT_EQ(parse_lag_limit("4096")->value, 4096);
  EXPECT_FALSE(parse_lag_limit("4096")->seconds);
  ASSERT_TRUE(parse_lag_limit("1GiB"));
  EXPECT_EQ(parse_lag_limit("1GiB")->value, 1024.0 * 1024 * 1024);
  ASSERT_TRUE(parse_lag_limit("2KiB"));
  EXPECT_EQ(parse_lag_limit("2KiB")->value, 2048);
  ASSERT_TRUE(parse_lag_limit("500ms"));
  EXPECT_EQ(parse_lag_limit("500ms")->value, 0.5);
  ASSERT_TRUE(parse_lag_limit("2m"));
  EXPECT_TRUE(parse_lag_limit("2m")->seconds);
  EXPECT_EQ(parse_lag_limit("2m")->value, 120);
  EXPECT_FALSE(parse_lag_limit("1GB")) << "the units of the configuration: KiB, MiB, GiB";
  EXPECT_FALSE(parse_lag_limit("fast"));
  EXPECT_FALSE(parse_lag_limit("-1"));
  EXPECT_FALSE(parse_lag_limit("10 parsecs"));
}

TEST(LatencyHistogram, BucketsCountAndSum) {
  LatencyHistogram h;
  h.observe_us(1000);        // 1 ms: first bucket (<= 5 ms)
  h.observe_us(5000);        // exactly 5 ms: still the first (le is inclusive)
  h.observe_us(5001);        // second
  h.observe_us(-20);         // a clock skew: counted as 0
  h.observe_us(4000000000);  // 4000 s: above every bound
  EXPECT_EQ(h.count.load(), 5u);
  EXPECT_EQ(h.buckets[0].load(), 3u);
  EXPECT_EQ(h.buckets[1].load(), 1u);
  EXPECT_EQ(h.buckets[h.bounds.size()].load(), 1u);
  EXPECT_EQ(h.sum_us.load(), 1000u + 5000 + 5001 + 0 + 4000000000u);
}

TEST(Progress, ReconnectsAreCountedByTheServerNamed) {
  Progress p;
  p.count_reconnect("redis at 127.0.0.1:6379: connection refused");
  p.count_reconnect("postgresql at 127.0.0.1:5432: server closed the connection");
  p.count_reconnect("mongodb at mongodb://x: timeout");
  EXPECT_EQ(p.reconnects_redis.load(), 1u);
  EXPECT_EQ(p.reconnects_postgresql.load(), 1u);
  EXPECT_EQ(p.reconnects_mongodb.load(), 1u);
}

}  // namespace
}  // namespace walfold
