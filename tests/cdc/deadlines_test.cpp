// The replication loop's deadlines (cdc/deadlines.h): one wait computed from all of them, as a
// pure function of the clock and the state; no clock is read here, time is a number.
#include <gtest/gtest.h>

#include "cdc/deadlines.h"

using walfold::cdc::Deadlines;
using ms = std::chrono::milliseconds;
using us = std::chrono::microseconds;

namespace {
const Deadlines::Clock::time_point t0{std::chrono::hours(1)};
Deadlines::Clock::time_point at(int millis) {
  return t0 + ms(millis);
}
Deadlines::Settings settings(int status = 1000, int heartbeat = 0, int enqueue = 5) {
  return {ms(status), ms(heartbeat), ms(enqueue)};
}
const Deadlines::Buffer idle{};                  // nothing buffered
const Deadlines::Buffer buffered{false, false};  // jobs waiting, room in Redis's pipeline
const Deadlines::Buffer backpressure{false, true};
}  // namespace

TEST(Deadlines, FirstStatusIsDueAtOnceThenEveryInterval) {
  Deadlines d(settings(1000), t0);
  EXPECT_TRUE(d.status_due(t0));
  EXPECT_EQ(d.wait(t0, idle), ms(0));
  d.status_sent(t0);
  EXPECT_FALSE(d.status_due(at(999)));
  EXPECT_TRUE(d.status_due(at(1000)));
  // Nothing else is pending: the wait is the whole interval, not a slice of it.
  EXPECT_EQ(d.wait(t0, idle), ms(1000));
  EXPECT_EQ(d.wait(at(250), idle), ms(750));
  EXPECT_EQ(d.wait(at(1000), idle), ms(0));
  EXPECT_EQ(d.wait(at(5000), idle), ms(0)) << "an overdue deadline waits 0, never negative";
}

TEST(Deadlines, LongIntervalsAreWaitedInOnePiece) {
  Deadlines d(settings(3'600'000, 0), t0);
  d.status_sent(t0);
  EXPECT_EQ(d.wait(t0, idle), ms(3'600'000));
}

TEST(Deadlines, WaitRoundsUpSoItNeverEndsBeforeItsDeadline) {
  Deadlines d(settings(1000), t0);
  d.status_sent(t0);
  EXPECT_EQ(d.wait(t0 + us(999'200), idle), ms(1));
  EXPECT_EQ(d.wait(t0 + us(1500), idle), ms(999));
}

TEST(Deadlines, KeepaliveReplyIsDueAtOnceUntilSent) {
  Deadlines d(settings(), t0);
  d.status_sent(t0);
  EXPECT_FALSE(d.reply_due());
  d.reply_requested();
  EXPECT_TRUE(d.reply_due());
  EXPECT_EQ(d.wait(at(10), idle), ms(0));
  d.replied();
  EXPECT_FALSE(d.reply_due());
  EXPECT_EQ(d.wait(at(10), idle), ms(990));
}

TEST(Deadlines, BufferedJobsWaitAtMostTheEnqueueDelay) {
  Deadlines d(settings(1000, 0, 5), t0);
  d.status_sent(t0);
  d.buffer_started(at(100));
  EXPECT_FALSE(d.enqueue_due(at(104)));
  EXPECT_TRUE(d.enqueue_due(at(105)));
  EXPECT_EQ(d.wait(at(101), buffered), ms(4));
  EXPECT_EQ(d.wait(at(101), idle), ms(899)) << "an empty buffer has no deadline";
  EXPECT_EQ(d.wait(at(200), buffered), ms(0));
}

// Under backpressure the buffer waits for Redis's acknowledgement (a file descriptor the loop
// waits on), not for a deadline: a due buffer would otherwise make every wait 0 (a busy loop)
// or a short poll.
TEST(Deadlines, BackpressureIsNoDeadlineTheAcknowledgementWakesTheLoop) {
  Deadlines d(settings(1000, 0, 50), t0);
  d.status_sent(t0);
  d.buffer_started(at(0));
  EXPECT_EQ(d.wait(at(10), backpressure), ms(990));
  EXPECT_EQ(d.wait(at(100), backpressure), ms(900)) << "a due buffer under backpressure waits";
  EXPECT_EQ(d.wait(at(100), buffered), ms(0)) << "once Redis has room it is due at once";
}

TEST(Deadlines, HeartbeatAfterTheTablesWereIdleForItsInterval) {
  Deadlines d(settings(1000, 10'000), t0);
  d.status_sent(t0);
  EXPECT_FALSE(d.heartbeat_due(at(9999)));
  EXPECT_TRUE(d.heartbeat_due(at(10'000)));
  d.data_received(at(5000));
  EXPECT_FALSE(d.heartbeat_due(at(10'000))) << "data moves it";
  EXPECT_TRUE(d.heartbeat_due(at(15'000)));
  d.heartbeat_tried(at(15'000));
  EXPECT_FALSE(d.heartbeat_due(at(24'999))) << "a whole interval between tries";
  EXPECT_TRUE(d.heartbeat_due(at(25'000)));
  // The heartbeat is the earliest deadline when the status is further away.
  Deadlines e(settings(60'000, 10'000), t0);
  e.status_sent(t0);
  EXPECT_EQ(e.wait(at(2000), idle), ms(8000));
}

TEST(Deadlines, NoHeartbeatWhenDisabled) {
  Deadlines d(settings(1000, 0), t0);
  EXPECT_FALSE(d.heartbeat_due(at(1'000'000)));
}

TEST(Deadlines, StopPositionAsksOnceTheWalWasIdleAndNoMoreOftenThanItsCadence) {
  Deadlines d(settings(1000), t0);
  d.status_sent(t0);
  EXPECT_FALSE(d.ask_due(at(500))) << "no stop position, no heartbeat: never asks";
  d.set_stop_pending(true);
  d.data_received(at(100));
  EXPECT_FALSE(d.ask_due(at(110)));
  EXPECT_TRUE(d.ask_due(at(120)));
  EXPECT_EQ(d.wait(at(110), idle), ms(10));
  d.asked(at(120));
  EXPECT_FALSE(d.ask_due(at(139)));
  EXPECT_TRUE(d.ask_due(at(140)));
  EXPECT_EQ(d.wait(at(125), idle), ms(15));
  // Data keeps coming: the ask moves with it, so a catch-up is not interrupted by asks.
  d.data_received(at(139));
  EXPECT_FALSE(d.ask_due(at(150)));
  EXPECT_EQ(d.wait(at(150), idle), ms(9));
  d.set_stop_pending(false);
  EXPECT_FALSE(d.ask_due(at(500)));
  EXPECT_EQ(d.wait(at(500), idle), ms(500));
}

TEST(Deadlines, AfterAHeartbeatAsksForItsPositionForAWhile) {
  Deadlines d(settings(5000, 10'000), t0);
  d.status_sent(at(10'000));  // next status at 15000
  d.heartbeat_tried(at(10'000));
  d.heartbeat_written(at(10'000));
  EXPECT_TRUE(d.ask_due(at(10'000)));
  d.asked(at(10'000));
  EXPECT_FALSE(d.ask_due(at(10'099)));
  EXPECT_TRUE(d.ask_due(at(10'100)));
  EXPECT_EQ(d.wait(at(10'050), idle), ms(50));
  d.asked(at(10'950));
  EXPECT_FALSE(d.ask_due(at(11'050))) << "the window is over";
  // Past the window, the next deadline is the status (15950; the next heartbeat is at 20000).
  d.status_sent(at(10'950));
  EXPECT_EQ(d.wait(at(11'000), idle), ms(4950));
}

TEST(Deadlines, TheWaitIsTheEarliestOfAll) {
  Deadlines d(settings(1000, 300, 50), t0);
  d.status_sent(t0);  // status at 1000, heartbeat at 300
  d.set_stop_pending(true);
  d.data_received(at(0));   // ask at 20
  d.buffer_started(at(5));  // enqueue at 55
  EXPECT_EQ(d.wait(at(1), buffered), ms(19));
  d.asked(at(20));  // ask at 40
  EXPECT_EQ(d.wait(at(21), buffered), ms(19));
  d.set_stop_pending(false);
  EXPECT_EQ(d.wait(at(21), buffered), ms(34));
  EXPECT_EQ(d.wait(at(21), idle), ms(279));
}
