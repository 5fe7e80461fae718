#include "cdc/reader.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>

#include "cdc/assembler.h"
#include "cdc/deadlines.h"
#include "cdc/enqueuer.h"
#include "cdc/flush_ledger.h"
#include "cdc/replication_stream.h"
#include "cdc/wire.h"
#include "common/error.h"
#include "common/pg.h"

namespace walfold::cdc {

using Clock = std::chrono::steady_clock;

// One connected streaming session; a reconnect builds a new one.
class Reader::Session {
 public:
  Session(const SourceSettings& settings, const Source& source, const Router& router,
          Progress& progress, const ReaderOptions& opts, std::atomic<bool>& reached_stop,
          ReplicationStream& stream, queue::EnqueueSink& queue, ReaderHost& host,
          const SessionStart& start)
      : settings_(settings),
        progress_(progress),
        opts_(opts),
        reached_stop_(reached_stop),
        stream_(stream),
        host_(host),
        assembler_(source, router, settings_.assembly,
                   [this](CommittedTransaction&& t) { on_commit(std::move(t)); }),
        enqueuer_(queue),
        ledger_(start.confirmed, start.in_redis_through),
        skip_through_(start.in_redis_through),
        replay_until_(start.replay_until),
        rebuilt_lsn_(start.rebuilt_lsn),
        confirmed_(start.confirmed) {}

  SessionEnd run(const Wakeup& stop) {
    // One clock reading per turn (now_), taken when read() returns: a catch-up turns once per
    // WAL message, and the deadlines need no finer time. The wait for WAL data lasts until the
    // earliest of them (cdc/deadlines.h), or until `stop` is set.
    now_ = Clock::now();
    deadlines_.emplace(Deadlines::Settings{settings_.status_interval, settings_.heartbeat_interval,
                                           settings_.enqueue_max_delay},
                       now_);
    while (!stop.is_set()) {
      walfold::Loop::turn();
      take_acks();
      deadlines_->set_stop_pending(opts_.stop_at && !reached_stop_);
      // Woken by WAL data, a deadline, the stop flag, or Redis acknowledging a batch (which
      // matters under backpressure: the buffer waits for room, not for a deadline).
      const int wake[] = {stop.fd(), enqueuer_.acked_fd()};
      auto data = stream_.read(deadlines_->wait(now_, buffer_state()), wake);
      now_ = Clock::now();
      if (!data.empty()) {
        handle(data);
        if (truncate_) return end_for_truncate();
      } else if (!acked()) {
        flush_buffer();  // nothing more arrived: hand what we have to Redis now
        if (deadlines_->ask_due(now_)) ask_position();
      }
      if (deadlines_->reply_due()) {
        send_status(/*query_redis=*/false);
        deadlines_->replied();
      }
      pump(false);
      if (deadlines_->status_due(now_)) {
        send_status();
        now_ = Clock::now();
        deadlines_->status_sent(now_);
      }
      if (deadlines_->heartbeat_due(now_)) heartbeat(settings_.conninfo);
    }
    flush_buffer();
    send_status();
    stream_.finish();
    return {SessionEnd::Kind::Stopped, 0, {}, confirmed_};
  }

  Lsn confirmed() const { return confirmed_; }

 private:
  void handle(std::span<const std::uint8_t> data) {
    auto msg = parse_copy_data(data);
    if (auto* x = std::get_if<XLogData>(&msg)) {
      if (reached_stop_) {
        // Past the requested end: not ours to enqueue, and so never ours to confirm.
        ledger_.dropped(x->data_start);
        return;
      }
      deadlines_->data_received(now_);
      ledger_.data(x->data_start);
      assembler_.set_replay(x->data_start < replay_until_);
      try {
        decoder_.decode(x->payload, assembler_);
      } catch (const DataError& e) {
        // An earlier batch's error, raised here by a flush the commit triggered: it is not this
        // record's, and keeps its own words and type.
        if (enqueuer_.failed()) throw;
        // Names the WAL position, so the operator can inspect it (pg_logical_slot_peek_*).
        throw DataError(std::string(e.what()) + " [slot '" + settings_.slot + "', WAL record at " +
                        format_lsn(x->data_start) + "]");
      }
      return;
    }
    auto& k = std::get<Keepalive>(msg);
    ledger_.keepalive(k.wal_end, assembler_.in_transaction());
    if (heartbeat_lsn_ && k.wal_end >= *heartbeat_lsn_) {
      progress_.heartbeat_round_trip_us =
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - heartbeat_sent_)
              .count();
      heartbeat_lsn_.reset();
    }
    if (!assembler_.in_transaction() && !ledger_.dropped_any() && opts_.stop_at &&
        k.wal_end >= opts_.stop_at)
      reach_stop();
    if (k.reply_requested) deadlines_->reply_requested();  // answered in this turn
  }

  void on_commit(CommittedTransaction&& t) {
    auto& p = progress_;
    ++p.commits_seen;
    if (t.end_lsn <= skip_through_) {  // already in Redis
      ledger_.commit(t.commit_lsn, t.end_lsn, false);
      return;
    }
    if (!t.truncated.empty()) {
      if (t.commit_lsn < rebuilt_lsn_) {
        spdlog::info(
            "reader: TRUNCATE of {} at {} is already covered by the rebuild at {}; skipping it",
            t.truncated.front(), format_lsn(t.commit_lsn), format_lsn(rebuilt_lsn_));
        ledger_.commit(t.commit_lsn, t.end_lsn, false);
        return;
      }
      // Held: the session ends before it reads anything else, and nothing from this commit on
      // is confirmed by it.
      ledger_.dropped(t.commit_lsn);
      truncate_ = std::move(t);
      return;
    }
    std::size_t changes = 0;
    if (buffer_.empty() && !t.jobs.empty()) deadlines_->buffer_started(now_);
    for (std::size_t i = 0; i < t.jobs.size(); ++i) {
      auto& job = t.jobs[i];
      changes += job.changes.size();
      auto body = queue::encode_job(job);
      buffer_.push_back({std::move(job.key), t.priorities[i], job.commit_lsn, std::move(body)});
      Progress::add(p.enqueued_by_priority, t.priorities[i]);
    }
    buffered_jobs_ += t.jobs.size();
    p.changes_seen += changes;
    ledger_.commit(t.commit_lsn, t.end_lsn, !t.jobs.empty());
    // Redis records it as enqueued with the batch that carries the last buffered job so far.
    if (!buffer_.empty()) commit_ends_.emplace_back(buffered_jobs_, t.end_lsn);
    if (opts_.stop_at && t.end_lsn >= opts_.stop_at) reach_stop();
  }

  void reach_stop() {
    flush_buffer();
    sync_enqueued();
    if (!reached_stop_) {
      spdlog::info("reader: reached the requested stop position {} (received {})",
                   format_lsn(opts_.stop_at), format_lsn(ledger_.received()));
      reached_stop_ = true;
      if (opts_.reached) opts_.reached->notify();
    }
  }

  // Jobs go to Redis in batches handed to the Enqueuer (cdc/enqueuer.h), whose thread sends them
  // and reads the replies while this loop goes on reading and decoding WAL. A batch counts as
  // "not yet in Redis" for the checkpoint until its acknowledgement is taken (oldest first).
  //
  // A batch is due when it holds reader.enqueue_batch_jobs jobs, when its oldest job waited
  // reader.enqueue_max_delay, or when forced (the WAL went idle, a stop, a status, SIGTERM). At
  // most kEnqueueDepth batches are outstanding (one running in Redis, the next on its socket).
  // Under backpressure (that many outstanding: Redis is the slower side) a due batch that is not
  // full stays in the buffer and grows while the reader reads on, so batches get bigger exactly
  // when Redis is slow (fewer script calls per job); only a full batch, or a forced one, waits for
  // Redis. A batch is at most enqueue_batch_jobs jobs: a bigger commit goes in several, and only
  // the batch with a commit's last job records that commit as enqueued in Redis.
  static constexpr std::size_t kEnqueueDepth = 2;
  void pump(bool force) {
    take_acks();
    const std::size_t cap = static_cast<std::size_t>(settings_.enqueue_batch_jobs);
    while (!buffer_.empty()) {
      const bool full = buffer_.size() >= cap;
      if (!force && !full && !deadlines_->enqueue_due(now_)) return;
      if (enqueuer_.outstanding() >= kEnqueueDepth) {
        if (!force && !full) return;  // grows while Redis works
        wait_ack();
        continue;
      }
      hand_over(std::min(cap, buffer_.size()));
    }
  }
  void flush_buffer() { pump(true); }
  Deadlines::Buffer buffer_state() const {
    return {buffer_.empty(), enqueuer_.outstanding() >= kEnqueueDepth};
  }

  // The first `n` buffered jobs go to Redis as one batch.
  void hand_over(std::size_t n) {
    std::vector<queue::EnqueueItem> batch;
    if (n >= buffer_.size()) {
      batch.swap(buffer_);
    } else {
      const auto cut = buffer_.begin() + static_cast<std::ptrdiff_t>(n);
      batch.assign(std::make_move_iterator(buffer_.begin()), std::make_move_iterator(cut));
      buffer_.erase(buffer_.begin(), cut);
    }
    handed_jobs_ += batch.size();
    Lsn completes = 0;  // the end of the last commit whose last job is in this batch
    while (!commit_ends_.empty() && commit_ends_.front().first <= handed_jobs_) {
      completes = commit_ends_.front().second;
      commit_ends_.pop_front();
    }
    progress_.jobs_enqueued += batch.size();
    ++progress_.enqueue_calls;
    if (buffer_.empty())
      ledger_.sent_to_redis();
    else
      ledger_.sent_to_redis(buffer_.front().commit_lsn);  // the rest stays buffered
    enqueuer_.send(std::move(batch), completes);
  }

  // Redis's acknowledgements that arrived (without waiting); their commits are in Redis.
  void take_acks() {
    for (auto n = enqueuer_.take_acks(); n > 0; --n) ledger_.redis_acknowledged();
  }
  // Whether the wait just ended because Redis acknowledged a batch (not because the WAL went
  // idle): then the loop takes the acks and goes on (pump() hands the buffer over if it is due),
  // and does not force the buffer out as it does when the WAL is idle.
  bool acked() {
    if (!enqueuer_.acks_pending()) return false;
    take_acks();
    return true;
  }
  // Waits for the oldest outstanding batch's acknowledgement.
  void wait_ack() {
    for (auto n = enqueuer_.wait_one(); n > 0; --n) ledger_.redis_acknowledged();
  }
  // Waits for every outstanding batch; the queue is then this thread's again.
  void sync_enqueued() {
    for (auto n = enqueuer_.wait_all(); n > 0; --n) ledger_.redis_acknowledged();
  }

  // Without traffic PostgreSQL reports its WAL end only in keepalives: ask for one.
  void ask_position() {
    deadlines_->asked(now_);
    send_standby(true);
  }

  void send_status(bool query_redis = true) {
    if (query_redis) {
      sync_enqueued();
      // What Redis holds unfolded (the host checks first that Redis lost nothing since the
      // last look: otherwise it throws, and nothing is confirmed).
      ledger_.pending_read(host_.oldest_pending());
      // The rule's bound, through the gate before anything (MongoDB, the state directory,
      // PostgreSQL) hears of it.
      const Lsn candidate = ledger_.admit(ledger_.bound());
      // MongoDB (and the state directory) hear of the checkpoint before PostgreSQL does.
      if (candidate > confirmed_ && host_.save_checkpoint(candidate)) confirmed_ = candidate;
      progress_.confirmed_lsn = confirmed_;
    }
    send_standby(false);
  }

  // Every standby status update goes out here, through the flush rule's gate
  // (cdc/flush_ledger.h): write = what was processed, flush = apply = the saved checkpoint.
  void send_standby(bool reply_requested) {
    const Lsn flush = ledger_.admit(confirmed_);
    const Lsn write = std::max(ledger_.received(), flush);
    progress_.received_lsn = write;
    stream_.send_status(write, flush, flush, reply_requested);
  }

  // A TRUNCATE of a projected table cannot be followed row by row: everything before it goes to
  // Redis and is confirmed as far as the rule allows (the TRUNCATE's commit is held), the stream
  // ends, and the pipeline rebuilds the read model from the tables (pipeline/rebuild.h).
  SessionEnd end_for_truncate() {
    auto t = std::move(*truncate_);
    truncate_.reset();
    flush_buffer();
    sync_enqueued();
    send_status();
    stream_.finish();
    return {SessionEnd::Kind::Truncated, t.commit_lsn, std::move(t.truncated), confirmed_};
  }

  // While the published tables are idle, a logical message in this database keeps the slot
  // moving (the reader confirms the WAL end once nothing is in flight).
  void heartbeat(const PgConnInfo& dsn) {
    const auto now = now_;
    deadlines_->heartbeat_tried(now);
    try {
      if (!heartbeat_conn_)
        heartbeat_conn_ =
            std::make_unique<PgConn>(dsn, std::map<std::string, std::string>{}, "heartbeat");
      // Transactional: PostgreSQL 15 answers a transaction that is empty for the publication
      // with a keepalive carrying its position, which the reader then confirms.
      auto at = heartbeat_conn_->scalar(
          "SELECT pg_logical_emit_message(true, 'walfold_heartbeat', '')::text");
      if (auto lsn = at ? parse_lsn(*at) : std::nullopt) {
        heartbeat_lsn_ = *lsn;
        heartbeat_sent_ = now;
      }
      ++progress_.heartbeats;
      deadlines_->heartbeat_written(now);
      spdlog::debug("reader: heartbeat written ({} so far)", progress_.heartbeats.load());
    } catch (const std::exception& e) {
      spdlog::warn("reader: heartbeat failed: {}", e.what());
      heartbeat_conn_.reset();
    }
  }

  const SourceSettings settings_;  // a copy: the session's, fixed when it starts
  Progress& progress_;
  const ReaderOptions& opts_;
  std::atomic<bool>& reached_stop_;
  ReplicationStream& stream_;
  ReaderHost& host_;
  Decoder decoder_;
  Assembler assembler_;
  Enqueuer enqueuer_;  // stops (its thread joined) before the queue it uses goes
  std::vector<queue::EnqueueItem> buffer_;
  // Jobs ever buffered and handed over in this session, and per buffered commit the count of
  // jobs buffered through it with its end LSN (the batch reaching that count completes it).
  std::size_t buffered_jobs_ = 0, handed_jobs_ = 0;
  std::deque<std::pair<std::size_t, Lsn>> commit_ends_;
  FlushLedger ledger_;                  // the flush rule's state
  std::optional<Deadlines> deadlines_;  // every deadline of the loop; set when it starts
  Clock::time_point now_{};             // the loop's clock, read once per turn
  std::unique_ptr<PgConn> heartbeat_conn_;
  std::optional<Lsn> heartbeat_lsn_;  // the last heartbeat's position, until the stream shows it
  Clock::time_point heartbeat_sent_{};
  std::optional<CommittedTransaction> truncate_;
  Lsn skip_through_ = 0, replay_until_ = 0, rebuilt_lsn_ = 0, confirmed_ = 0;
};

Reader::Reader(const SourceSettings& settings, const Source& source, const Router& router,
               Progress& progress, const ReaderOptions& opts, std::atomic<bool>& reached_stop,
               ReplicationStream& stream, queue::EnqueueSink& queue, ReaderHost& host,
               const SessionStart& start)
    : session_(std::make_unique<Session>(settings, source, router, progress, opts, reached_stop,
                                         stream, queue, host, start)) {}
Reader::~Reader() = default;

SessionEnd Reader::run(const Wakeup& stop) {
  return session_->run(stop);
}

Lsn Reader::confirmed() const {
  return session_->confirmed();
}

}  // namespace walfold::cdc
