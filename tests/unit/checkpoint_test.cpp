// The checkpoint arithmetic: the flush position sent to PostgreSQL never passes a commit whose
// jobs are still pending in Redis or not yet handed to Redis.
#include <gtest/gtest.h>

#include "cdc/reader.h"

using walfold::cdc::CheckpointInputs;
using walfold::cdc::safe_flush_lsn;

TEST(Checkpoint, NothingInFlightConfirmsEndOfLastEnqueuedCommit) {
  CheckpointInputs in;
  in.enqueued_end = 500;
  EXPECT_EQ(safe_flush_lsn(in), 500u);
}

TEST(Checkpoint, PendingJobHoldsAtItsCommitLsn) {
  CheckpointInputs in;
  in.enqueued_end = 500;
  in.oldest_pending = 300;  // replayed from 300 on restart, so 300 itself is not skipped
  EXPECT_EQ(safe_flush_lsn(in), 300u);
}

TEST(Checkpoint, UnenqueuedCommitHolds) {
  CheckpointInputs in;
  in.enqueued_end = 500;
  in.oldest_unenqueued = 450;
  EXPECT_EQ(safe_flush_lsn(in), 450u);
  in.oldest_pending = 200;
  EXPECT_EQ(safe_flush_lsn(in), 200u);
}

TEST(Checkpoint, IdleWalEndOnlyWhenNothingInFlight) {
  CheckpointInputs in;
  in.enqueued_end = 500;
  in.idle_wal_end = 900;
  EXPECT_EQ(safe_flush_lsn(in), 900u);
  in.in_transaction = true;
  EXPECT_EQ(safe_flush_lsn(in), 500u);
  in.in_transaction = false;
  in.oldest_pending = 400;
  EXPECT_EQ(safe_flush_lsn(in), 400u);
  in.oldest_pending.reset();
  in.oldest_unenqueued = 600;
  EXPECT_EQ(safe_flush_lsn(in), 500u);
}

TEST(Checkpoint, IdleWalEndBehindEnqueuedEndNeverGoesBack) {
  CheckpointInputs in;
  in.enqueued_end = 500;
  in.idle_wal_end = 100;
  EXPECT_EQ(safe_flush_lsn(in), 500u);
}
