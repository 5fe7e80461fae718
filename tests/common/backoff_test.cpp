// The one backoff every retrying loop uses (common/backoff.h).
#include "common/backoff.h"

#include <gtest/gtest.h>

#include <set>

namespace {

using walfold::Backoff;
using walfold::Server;
using ms = std::chrono::milliseconds;

TEST(Backoff, DoublesFromMinToMaxWithJitterWithinItsShare) {
  for (unsigned seed = 0; seed < 50; ++seed) {
    Backoff b(ms(100), ms(1000), 0.5, seed);
    const ms expected[] = {ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)};
    for (ms d : expected) {
      EXPECT_EQ(b.delay(), d);
      const ms w = b.next();
      EXPECT_GE(w, d) << "seed " << seed;
      EXPECT_LE(w, d + d / 2) << "seed " << seed;
    }
  }
}

TEST(Backoff, ResetStartsAgainAtMin) {
  Backoff b(ms(500), ms(30000), 0.25, 7);
  for (int i = 0; i < 10; ++i) b.next();
  EXPECT_EQ(b.delay(), ms(30000));
  b.reset();
  EXPECT_EQ(b.delay(), ms(500));
  EXPECT_LE(b.next(), ms(625));
}

TEST(Backoff, JitterSpreadsWaits) {
  // Two processes that failed together should not retry together: over many seeds the first
  // wait takes more than one value.
  std::set<long long> seen;
  for (unsigned seed = 0; seed < 50; ++seed)
    seen.insert(Backoff(ms(1000), ms(1000), 0.5, seed).next().count());
  EXPECT_GT(seen.size(), 10u);
}

TEST(Backoff, TheServerAMessageNames) {
  EXPECT_EQ(walfold::server_named_in("redis at 127.0.0.1:6379: refused", Server::None),
            Server::Redis);
  EXPECT_EQ(walfold::server_named_in("mongodb at x: down", Server::None), Server::MongoDB);
  EXPECT_EQ(walfold::server_named_in("postgresql at x: gone", Server::None), Server::PostgreSQL);
  EXPECT_EQ(walfold::server_named_in("replication stream ended", Server::PostgreSQL),
            Server::PostgreSQL);
  EXPECT_EQ(walfold::server_named_in("something else", Server::None), Server::None);
}

}  // namespace
