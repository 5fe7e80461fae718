// The flush rule, in one place. The flush position the reader sends to PostgreSQL (the slot's
// confirmed_flush_lsn, from which a restart streams again) is never above
//   - the end of the last message the reader *processed* (decoded, or a keepalive read while no
//     transaction was open and nothing before it was dropped) — not the last one it saw;
//   - the commit LSN of the oldest commit with jobs not yet handed to Redis (buffered), or handed
//     but not yet acknowledged by Redis (in flight);
//   - the commit LSN of the oldest job still pending in Redis (enqueued, not yet folded and
//     acknowledged by MongoDB), as of a read that follows every enqueue it counts.
// PostgreSQL skips, on a restart, only transactions whose commit LSN is below the confirmed flush
// position, so confirming a pending commit's own LSN loses nothing.
//
// FlushLedger is fed the reader's events and is the only source of flush positions: `bound()` is
// the highest position the rule allows, and `admit()` is the gate every standby status passes.
// A flush above the rule is a bug in the reader; `admit()` then throws InternalError (exit 70)
// instead of letting it reach PostgreSQL. Pure (no I/O), so tests drive it with any sequence of
// events (tests/cdc/flush_ledger_test.cpp).
#pragma once

#include <deque>
#include <optional>

#include "common/lsn.h"

namespace walfold::cdc {

class FlushLedger {
 public:
  // A new streaming session. `confirmed`: the slot's confirmed flush position (durable: MongoDB
  // held every commit below it when it was confirmed). `in_redis_through`: the end of the last
  // commit an earlier session of this process handed to Redis, which still has the same epoch
  // (those commits were processed then; the pending set bounds whatever of them is unfolded).
  FlushLedger(Lsn confirmed, Lsn in_redis_through);

  // An XLogData message handed to the decoder (its changes are assembled; a Commit in it is
  // reported through commit()).
  void data(Lsn start);
  // An XLogData message that was read but not processed (past the stop position), or a commit
  // held back (a TRUNCATE, before its rebuild): nothing read after it counts as processed, so no
  // later keepalive can carry the flush position past it.
  void dropped(Lsn start);
  // A keepalive: its WAL end counts as processed only outside a transaction and while nothing
  // was dropped (the stream is ordered: every message before it was handled).
  void keepalive(Lsn wal_end, bool in_transaction);
  // A Commit was decoded. `buffered`: it has jobs, now in the reader's buffer for Redis.
  void commit(Lsn commit_lsn, Lsn end_lsn, bool buffered);
  // The buffered commits were sent to Redis as one batch (not yet acknowledged). Several batches
  // may be in flight; Redis runs them in the order sent. With `rest_from`, the batch was only the
  // front of the buffer: the commits at or after that commit LSN still have jobs in the buffer
  // (the first of them possibly split across this batch and a later one), so they stay
  // buffered, and the batch holds the flush at the oldest commit it carries.
  void sent_to_redis(std::optional<Lsn> rest_from = std::nullopt);
  // Redis acknowledged the oldest batch in flight: its commits are in Redis (pending until
  // folded). The later batches stay in flight.
  void redis_acknowledged();
  // What Redis says is pending, read after redis_acknowledged() for every batch sent (throws
  // InternalError if a batch is still in flight: the read would not count it).
  void pending_read(std::optional<Lsn> oldest_pending);

  bool dropped_any() const { return frozen_; }
  // Batches sent to Redis and not yet acknowledged.
  std::size_t batches_in_flight() const { return in_flight_.size(); }
  // The write position to report: the end of what was processed.
  Lsn received() const { return received_; }
  // The highest flush position the rule allows now (never below what was already admitted).
  Lsn bound() const;
  // The highest flush position admitted so far (the slot's at the start).
  Lsn admitted() const { return admitted_; }
  // The gate: returns `flush` when the rule allows it and remembers it; throws InternalError
  // naming both positions otherwise. A flush at or below an admitted one is always allowed.
  Lsn admit(Lsn flush);

 private:
  std::optional<Lsn> in_flight_first() const;
  std::optional<Lsn> buffered_first() const;
  Lsn admitted_;
  Lsn processed_end_;
  Lsn received_;
  bool frozen_ = false;
  std::deque<Lsn> buffered_;  // commits with jobs in the reader's buffer, oldest first
  // Per batch sent to Redis and not yet acknowledged, oldest first: its oldest commit (none for a
  // batch of commits that did not count, after a drop).
  std::deque<std::optional<Lsn>> in_flight_;
  std::optional<Lsn> acked_first_;  // oldest commit acknowledged since the last pending read
  std::optional<Lsn> pending_;      // oldest pending commit as of the last read
};

}  // namespace walfold::cdc
