// The replication loop's deadlines, all in one place, and the one wait they give.
//
// Like pg_recvlogical, which computes its select() timeout from the next status update, the next
// fsync and the end position, the reader computes one wake-up from everything it has to do at a
// time of its own:
//   - status:    the periodic standby status (and checkpoint), every reader.status_interval_ms;
//   - reply:     a keepalive that asked for a reply: due at once;
//   - enqueue:   the oldest buffered job has waited reader.enqueue_max_delay_ms; under
//                backpressure (Redis has every batch it may have in flight) it is no deadline:
//                the buffer waits for room, and Redis's acknowledgement wakes the loop (the
//                Enqueuer's acked_fd(), waited on next to the replication socket);
//   - heartbeat: the published tables were idle for reader.heartbeat_interval_ms;
//   - ask:       the server's WAL end, asked for (a status with reply requested) once no WAL
//                data came for kAskForStop (and as often) while a stop position is not reached
//                yet, and likewise with kAskAfterHeartbeat during kHeartbeatAskWindow after a
//                heartbeat.
// The loop waits for WAL data (or its stop flag) until the earliest of them, so nothing is polled
// in between and nothing is late by more than the time it takes to handle one message.
//
// A pure function of the clock and the state it is told about (tests/cdc/deadlines_test.cpp).
#pragma once

#include <chrono>
#include <optional>

namespace walfold::cdc {

class Deadlines {
 public:
  using Clock = std::chrono::steady_clock;
  using ms = std::chrono::milliseconds;

  static constexpr ms kAskForStop{20};
  static constexpr ms kAskAfterHeartbeat{100};
  static constexpr ms kHeartbeatAskWindow{1000};

  struct Settings {
    ms status_interval{1000};
    ms heartbeat_interval{0};  // 0: no heartbeats
    ms enqueue_max_delay{5};
  };
  // The reader's buffer for Redis as the enqueue deadline sees it.
  struct Buffer {
    bool empty = true;
    bool backpressure = false;  // every batch that may be in flight is
  };

  // A new session at `now`: the first status is due at once; the tables count as active now.
  Deadlines(const Settings& s, Clock::time_point now);

  // What happened (each at the loop's clock reading).
  void status_sent(Clock::time_point now) { next_status_ = now + s_.status_interval; }
  void data_received(Clock::time_point now) { last_data_ = now; }
  // A heartbeat was tried (successfully or not: the next try waits a whole interval).
  void heartbeat_tried(Clock::time_point now) { last_heartbeat_ = now; }
  // A heartbeat was written: its position is asked for during kHeartbeatAskWindow.
  void heartbeat_written(Clock::time_point now) { ask_until_ = now + kHeartbeatAskWindow; }
  void asked(Clock::time_point now) { last_ask_ = now; }
  void reply_requested() { reply_ = true; }
  void replied() { reply_ = false; }
  // The buffer went from empty to holding jobs.
  void buffer_started(Clock::time_point now) { buffer_due_ = now + s_.enqueue_max_delay; }
  // Waiting for a stop position the stream has not reached yet.
  void set_stop_pending(bool pending) { stop_pending_ = pending; }

  // What is due at `now`.
  bool status_due(Clock::time_point now) const { return now >= next_status_; }
  bool reply_due() const { return reply_; }
  bool enqueue_due(Clock::time_point now) const { return now >= buffer_due_; }
  bool heartbeat_due(Clock::time_point now) const;
  // Asking for the WAL end is due (the loop asks only when the WAL is idle).
  bool ask_due(Clock::time_point now) const;

  // The earliest deadline.
  Clock::time_point next(Clock::time_point now, Buffer buffer) const;
  // How long the loop may wait for WAL data at `now`: until next(), in whole milliseconds
  // rounded up (a wait never ends before its deadline), 0 when something is due.
  ms wait(Clock::time_point now, Buffer buffer) const;

 private:
  std::optional<Clock::time_point> heartbeat_at() const;
  std::optional<Clock::time_point> ask_at() const;

  Settings s_;
  Clock::time_point next_status_, last_data_, last_heartbeat_{}, last_ask_{}, ask_until_{};
  Clock::time_point buffer_due_{};
  bool reply_ = false;
  bool stop_pending_ = false;
};

}  // namespace walfold::cdc
