// The flush rule (cdc/flush_ledger.h): the flush position sent to PostgreSQL is never above the
// end of the last message the reader processed, nor above the oldest commit still pending in
// Redis or not yet in Redis. Directed cases, then a property test that drives the ledger with
// random sequences of stream, queue and session events against an oracle that knows which
// commits are really done.
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <random>
#include <vector>

#include "cdc/flush_ledger.h"
#include "common/error.h"

using walfold::InternalError;
using walfold::Lsn;
using walfold::cdc::FlushLedger;

TEST(FlushLedger, NothingInFlightConfirmsEndOfLastCommit) {
  FlushLedger l(100, 0);
  l.data(200);
  l.commit(450, 500, false);
  l.pending_read(std::nullopt);
  EXPECT_EQ(l.bound(), 500u);
}

TEST(FlushLedger, PendingJobHoldsAtItsCommitLsn) {
  FlushLedger l(100, 0);
  l.commit(300, 310, true);
  l.commit(450, 500, true);
  l.sent_to_redis();
  l.redis_acknowledged();
  // replayed from 300 on restart, so 300 itself is not skipped
  l.pending_read(300);
  EXPECT_EQ(l.bound(), 300u);
  l.pending_read(std::nullopt);
  EXPECT_EQ(l.bound(), 500u);
}

TEST(FlushLedger, BufferedAndInFlightCommitsHold) {
  FlushLedger l(100, 0);
  l.pending_read(std::nullopt);
  l.commit(300, 310, true);
  EXPECT_EQ(l.bound(), 300u);
  l.sent_to_redis();
  l.commit(450, 500, true);
  EXPECT_EQ(l.bound(), 300u);
  l.redis_acknowledged();  // 300 is in Redis; nothing read yet says it was folded
  EXPECT_EQ(l.bound(), 300u);
  l.pending_read(std::nullopt);
  EXPECT_EQ(l.bound(), 450u);  // 450 is still buffered
}

TEST(FlushLedger, PendingReadWithABatchInFlightIsRefused) {
  FlushLedger l(100, 0);
  l.commit(300, 310, true);
  l.sent_to_redis();
  EXPECT_THROW(l.pending_read(std::nullopt), InternalError);
}

TEST(FlushLedger, TwoBatchesInFlightAreAcknowledgedOneAtATime) {
  // The reader sends a second batch while the first is in flight; Redis's reply to the first
  // says nothing about the second, which still holds the flush.
  FlushLedger l(100, 0);
  l.pending_read(std::nullopt);
  l.commit(300, 310, true);
  l.sent_to_redis();
  l.commit(450, 500, true);
  l.sent_to_redis();
  EXPECT_EQ(l.batches_in_flight(), 2u);
  l.redis_acknowledged();  // the batch of 300
  EXPECT_EQ(l.batches_in_flight(), 1u);
  EXPECT_THROW(l.pending_read(std::nullopt), InternalError) << "the batch of 450 is in flight";
  EXPECT_EQ(l.bound(), 300u);
  EXPECT_THROW(l.admit(301), InternalError);
  l.redis_acknowledged();  // the batch of 450
  l.pending_read(450);     // 300 folded, 450 not yet
  EXPECT_EQ(l.bound(), 450u);
  EXPECT_THROW(l.admit(451), InternalError);
  l.pending_read(std::nullopt);
  EXPECT_EQ(l.bound(), 500u);
}

// A batch that is only the front of the buffer (the reader cuts batches at
// reader.enqueue_batch_jobs, and under backpressure lets the rest grow): a commit split across
// batches holds the flush until its last part is in Redis, and the commits after the cut stay
// buffered.
TEST(FlushLedger, ACommitSplitAcrossBatchesHoldsUntilItsLastPart) {
  FlushLedger l(100, 0);
  l.pending_read(std::nullopt);
  l.commit(300, 310, true);  // 3 batches' worth of jobs
  l.sent_to_redis(300);      // its first part; 300 still has jobs in the buffer
  l.redis_acknowledged();
  l.pending_read(std::nullopt);  // e.g. the first part was folded already
  EXPECT_EQ(l.bound(), 300u) << "the rest of 300 is still buffered";
  EXPECT_THROW(l.admit(301), InternalError);
  l.commit(450, 500, true);
  l.sent_to_redis(300);  // the second part of 300, all still in flight
  EXPECT_EQ(l.bound(), 300u);
  l.sent_to_redis(450);  // the last part of 300; 450 is (partly) still buffered
  l.redis_acknowledged();
  l.redis_acknowledged();
  EXPECT_EQ(l.batches_in_flight(), 0u);
  l.pending_read(std::nullopt);
  EXPECT_EQ(l.bound(), 450u) << "300 is all in Redis and folded; 450 is still buffered";
  EXPECT_THROW(l.admit(451), InternalError);
  l.sent_to_redis();
  EXPECT_EQ(l.bound(), 450u) << "450 in flight";
  l.redis_acknowledged();
  l.pending_read(std::nullopt);
  EXPECT_EQ(l.bound(), 500u);
}

TEST(FlushLedger, ABatchCutInsideTheBufferKeepsTheLaterCommitsBuffered) {
  FlushLedger l(100, 0);
  l.pending_read(std::nullopt);
  l.commit(300, 310, true);
  l.commit(450, 500, true);
  l.commit(600, 610, true);
  l.sent_to_redis(600);  // 300 and 450 whole, 600 not at all
  l.redis_acknowledged();
  l.pending_read(std::nullopt);
  EXPECT_EQ(l.bound(), 600u);
  l.sent_to_redis();
  l.redis_acknowledged();
  l.pending_read(600);  // 600 is pending in Redis
  EXPECT_EQ(l.bound(), 600u);
  l.pending_read(std::nullopt);
  EXPECT_EQ(l.bound(), 610u);
}

TEST(FlushLedger, KeepaliveCountsOnlyOutsideATransaction) {
  FlushLedger l(100, 0);
  l.pending_read(std::nullopt);
  l.commit(300, 310, false);
  l.keepalive(900, true);
  EXPECT_EQ(l.bound(), 310u);
  l.keepalive(900, false);
  EXPECT_EQ(l.bound(), 900u);
  EXPECT_EQ(l.received(), 900u);
}

// The bug of issue #9: past the stop position, XLogData was dropped unprocessed, and a later
// keepalive carried the flush position to the server's WAL end, past the dropped commits.
TEST(FlushLedger, DroppedDataFreezesTheProcessedEnd) {
  FlushLedger l(100, 0);
  l.data(200);
  l.commit(250, 260, false);
  l.dropped(300);            // a commit after the stop position, never decoded
  l.keepalive(5000, false);  // the server's WAL end, past the dropped data
  l.pending_read(std::nullopt);
  EXPECT_EQ(l.bound(), 260u);
  EXPECT_EQ(l.received(), 260u);
  EXPECT_THROW(l.admit(5000), InternalError);
  EXPECT_EQ(l.admit(260), 260u);
  EXPECT_EQ(l.admitted(), 260u);
}

TEST(FlushLedger, TheGateRefusesAndNamesThePositions) {
  FlushLedger l(0x1000, 0);
  l.pending_read(std::nullopt);
  l.commit(0x2000, 0x2010, true);
  try {
    l.admit(0x3000);
    FAIL() << "a flush past a buffered commit was admitted";
  } catch (const InternalError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("0/3000"), std::string::npos) << m;
    EXPECT_NE(m.find("at most 0/2000"), std::string::npos) << m;
    EXPECT_NE(m.find("buffered from 0/2000"), std::string::npos) << m;
  }
  EXPECT_EQ(l.admit(0x800), 0x800u) << "at or below the admitted position is always allowed";
  EXPECT_EQ(l.admitted(), 0x1000u);
}

TEST(FlushLedger, StartsAtTheSlotAndAtWhatAnEarlierSessionPutInRedis) {
  FlushLedger l(100, 700);
  EXPECT_EQ(l.bound(), 100u) << "until Redis's pending set is read";
  l.pending_read(std::nullopt);
  EXPECT_EQ(l.bound(), 700u);
  l.pending_read(400);  // an earlier session's commit at 400 is not folded yet
  EXPECT_EQ(l.bound(), 400u);
  FlushLedger fresh(100, 0);
  EXPECT_EQ(fresh.bound(), 100u);
}

namespace {

// A WAL of transactions; each is a Begin, some changes and a Commit, in LSN order. The server
// streams them in order; keepalives carry a position no later than the next unsent commit.
struct Txn {
  Lsn begin, commit, end;
  int changes;
  bool jobs;
  int parts;  // the reader's batches may cut its jobs into this many parts
};

struct Sim {
  std::mt19937 rng;
  std::vector<Txn> wal;
  // The stream: message k of transaction t (0 = Begin, changes..., last = Commit).
  std::size_t next_txn = 0;
  int next_msg = 0;
  bool in_txn = false;
  bool stopped = false;
  // The oracle's truth per transaction: processed, and which parts of its jobs were folded (a
  // part enqueued twice, once per delivery, is the same jobs).
  std::vector<bool> processed;
  std::vector<std::vector<bool>> folded;
  // Reader and queue state: the buffer, batches and Redis hold parts (transaction, part).
  using Part = std::pair<std::size_t, int>;
  std::vector<Part> buffered;
  std::deque<std::vector<Part>> in_flight;  // batches sent, oldest first
  std::deque<Part> in_redis;                // enqueued, not folded
  Lsn redis_end = 0;                        // the queue's recorded enqueued end (for a new session)
  Lsn skip_through = 0;
  FlushLedger ledger{0, 0};

  explicit Sim(unsigned seed) : rng(seed) {
    Lsn pos = 1000;
    const int n = 30 + static_cast<int>(rng() % 30);
    for (int i = 0; i < n; ++i) {
      Txn t;
      t.begin = pos;
      t.changes = static_cast<int>(rng() % 4);
      t.commit = pos + 10 + static_cast<Lsn>(t.changes) * 10;
      t.end = t.commit + 8;
      t.jobs = rng() % 10 < 7;
      t.parts = 1 + static_cast<int>(rng() % 3);
      // other WAL (other databases, unpublished tables) between transactions
      pos = t.end + (rng() % 3 == 0 ? 100 : 0);
      wal.push_back(t);
    }
    processed.assign(wal.size(), false);
    for (const auto& t : wal) folded.emplace_back(static_cast<std::size_t>(t.parts), false);
  }

  bool done(std::size_t i) const {
    return processed[i] && (!wal[i].jobs || std::all_of(folded[i].begin(), folded[i].end(),
                                                        [](bool f) { return f; }));
  }
  // The highest flush PostgreSQL may hear: the commit LSN of the first transaction not done
  // (it is streamed again from there), or past the WAL when everything is done.
  Lsn limit() const {
    for (std::size_t i = 0; i < wal.size(); ++i)
      if (!done(i)) return wal[i].commit;
    return ~Lsn(0);
  }
  Lsn wal_end() const { return wal.back().end + 100; }
  // A keepalive position the server could send now: at or after what it sent, and at most the
  // next commit it has not sent.
  Lsn keepalive_position() {
    if (next_txn >= wal.size()) return wal_end();
    const Txn& t = wal[next_txn];
    Lsn sent = next_msg == 0 ? (next_txn ? wal[next_txn - 1].end : 900)
                             : t.begin + static_cast<Lsn>(next_msg - 1) * 10;
    Lsn upto = t.commit;
    return sent + rng() % (upto - sent + 1);
  }

  void deliver() {
    if (next_txn >= wal.size()) return;
    const Txn& t = wal[next_txn];
    const int last = t.changes + 1;
    const Lsn start = next_msg == 0      ? t.begin
                      : next_msg == last ? t.commit
                                         : t.begin + static_cast<Lsn>(next_msg) * 10;
    if (stopped) {
      ledger.dropped(start);
    } else {
      ledger.data(start);
      if (next_msg == 0) in_txn = true;
      if (next_msg == last) {
        in_txn = false;
        const std::size_t i = next_txn;
        if (t.end <= skip_through) {
          ledger.commit(t.commit, t.end, false);
        } else {
          ledger.commit(t.commit, t.end, t.jobs);
          if (t.jobs)
            for (int p = 0; p < t.parts; ++p) buffered.emplace_back(i, p);
        }
        processed[i] = true;
      }
    }
    if (++next_msg > last) {
      next_msg = 0;
      ++next_txn;
    }
  }
  // A batch is sent while others may still be in flight (any depth); Redis runs them in order
  // and each reply acknowledges the oldest. It is the whole buffer or, when `cut`, a front part
  // of it (possibly ending inside a transaction's jobs); the rest stays buffered.
  void send(bool cut = false) {
    std::size_t n = buffered.size();
    if (cut && n > 1) n = 1 + rng() % (n - 1);
    if (n < buffered.size())
      ledger.sent_to_redis(wal[buffered[n].first].commit);
    else
      ledger.sent_to_redis();
    in_flight.emplace_back(buffered.begin(), buffered.begin() + static_cast<std::ptrdiff_t>(n));
    buffered.erase(buffered.begin(), buffered.begin() + static_cast<std::ptrdiff_t>(n));
  }
  void ack() {
    ledger.redis_acknowledged();
    if (in_flight.empty()) return;
    for (auto part : in_flight.front()) {
      in_redis.push_back(part);
      // The batch with a transaction's last part records its end as enqueued (completes_end).
      if (part.second == wal[part.first].parts - 1)
        redis_end = std::max(redis_end, wal[part.first].end);
    }
    in_flight.pop_front();
  }
  void ack_all() {
    while (!in_flight.empty()) ack();
  }
  void fold() {
    if (in_redis.empty()) return;
    auto at = rng() % in_redis.size();
    folded[in_redis[at].first][static_cast<std::size_t>(in_redis[at].second)] = true;
    in_redis.erase(in_redis.begin() + static_cast<std::ptrdiff_t>(at));
  }
  void status() {
    ack_all();
    std::optional<Lsn> oldest;
    for (auto [i, p] : in_redis) oldest = std::min(oldest.value_or(wal[i].commit), wal[i].commit);
    ledger.pending_read(oldest);
    ledger.admit(ledger.bound());
  }
  // A new session: what was buffered or in flight is lost (never acknowledged by Redis), the
  // server streams again from the first transaction committed at or after the confirmed
  // position, and commits up to Redis's recorded end are skipped.
  void reconnect() {
    const Lsn confirmed = ledger.admitted();
    for (auto [i, p] : buffered) processed[i] = false;
    for (const auto& b : in_flight)
      for (auto [i, p] : b) processed[i] = false;
    buffered.clear();
    in_flight.clear();
    skip_through = redis_end;
    ledger = FlushLedger(confirmed, skip_through);
    next_txn = 0;
    while (next_txn < wal.size() && wal[next_txn].commit < confirmed) ++next_txn;
    next_msg = 0;
    in_txn = false;
    stopped = false;
  }

  void check(const char* after) {
    ASSERT_LE(ledger.bound(), limit()) << "after " << after;
    ASSERT_LE(ledger.admitted(), limit()) << "after " << after;
    FlushLedger copy = ledger;
    if (copy.bound() < ~Lsn(0)) {
      EXPECT_THROW(copy.admit(copy.bound() + 1), InternalError);
    }
  }
};

}  // namespace

TEST(FlushLedger, PropertyNoEventSequenceConfirmsAnUnfoldedCommit) {
  for (unsigned seed = 1; seed <= 400; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Sim s(seed);
    for (int step = 0; step < 600; ++step) {
      const unsigned e = s.rng() % 100;
      const char* what;
      if (e < 40) {
        s.deliver();
        what = "data";
      } else if (e < 55) {
        s.ledger.keepalive(s.keepalive_position(), s.in_txn);
        what = "keepalive";
      } else if (e < 59) {
        s.send();
        what = "enqueue sent";
      } else if (e < 63) {
        s.send(/*cut=*/true);
        what = "front of the buffer sent";
      } else if (e < 70) {
        s.ack();
        what = "enqueue acknowledged";
      } else if (e < 82) {
        s.fold();
        what = "job folded";
      } else if (e < 94) {
        s.status();
        what = "status";
      } else if (e < 97) {
        s.stopped = true;
        what = "stop position reached";
      } else {
        s.reconnect();
        what = "reconnect";
      }
      s.check(what);
      if (testing::Test::HasFatalFailure()) return;
    }
    // Liveness: a session that runs to the end and folds everything confirms the end.
    s.reconnect();
    while (s.next_txn < s.wal.size()) s.deliver();
    s.send();
    s.ack_all();
    while (!s.in_redis.empty()) s.fold();
    s.ledger.keepalive(s.wal_end(), false);
    s.status();
    s.check("drain");
    EXPECT_EQ(s.ledger.admitted(), s.wal_end());
  }
}
