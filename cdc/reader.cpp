#include "cdc/reader.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <thread>

#include "cdc/assembler.h"
#include "cdc/preflight.h"
#include "cdc/replication_stream.h"
#include "cdc/wire.h"
#include "common/error.h"

namespace walfold::cdc {

using Clock = std::chrono::steady_clock;

Lsn safe_flush_lsn(const CheckpointInputs& in) {
  Lsn safe = in.enqueued_end;
  if (!in.in_transaction && !in.oldest_unenqueued && !in.oldest_pending)
    safe = std::max(safe, in.idle_wal_end);
  if (in.oldest_unenqueued) safe = std::min(safe, *in.oldest_unenqueued);
  if (in.oldest_pending) safe = std::min(safe, *in.oldest_pending);
  return safe;
}

namespace {
std::string random_epoch() {
  std::random_device rd;
  char buf[33];
  std::snprintf(buf, sizeof buf, "%08x%08x%08x%08x", rd(), rd(), rd(), rd());
  return buf;
}
}  // namespace

// One connected streaming session; a reconnect builds a new one.
class Reader::Session {
 public:
  Session(Reader& owner)
      : owner_(owner),
        cfg_(owner.cfg_),
        assembler_(cfg_, [this](CommittedTransaction&& t) { on_commit(std::move(t)); }) {}

  void run(const std::atomic<bool>& stop) {
    const std::string dsn = postgres_dsn_with_password(cfg_.postgres);
    redis_ = std::make_unique<queue::Redis>(cfg_.redis);
    queue_ = std::make_unique<queue::JobQueue>(
        *redis_, queue::queue_prefix(cfg_.redis.prefix, cfg_.postgres.slot));
    // Commits whose jobs are already in Redis (a restart of the reader alone) are not enqueued
    // again. If Redis lost its data, nothing it says about the past is trusted: everything from
    // the slot's confirmed position (never past an unfolded commit) is enqueued again.
    auto [epoch, epoch_state] =
        queue_->ensure_epoch(random_epoch(), owner_.epoch_.value_or(""), owner_.last_seq_);
    const bool lost = epoch_state == 2;
    if (lost)
      spdlog::error(
          "redis at {} lost walfold's queue: the queue was emptied and every change not yet folded "
          "is replayed from the slot's confirmed position, in commit order",
          redis_->address());
    else if (epoch_state == 1)
      spdlog::info("redis at {}: no queue state yet; streaming from the slot's confirmed position",
                   redis_->address());
    owner_.epoch_ = epoch;
    owner_.last_seq_ = queue_->state().seq;
    skip_through_ = lost ? 0 : queue_->enqueued_end_lsn();
    auto slot = read_slot(dsn, cfg_.postgres);  // fails loudly when lost or not pgoutput
    if (!slot.exists) {
      // A first start creates its slot; a slot that vanished after walfold used it is a gap.
      if (skip_through_ != 0) slot = check_slot(dsn, cfg_.postgres);
      create_slot(dsn, cfg_.postgres);
      slot = check_slot(dsn, cfg_.postgres);
    }
    enqueued_end_ = std::max(slot.confirmed_flush, skip_through_);
    confirmed_ = slot.confirmed_flush;

    stream_ = std::make_unique<ReplicationStream>(dsn);
    auto id = stream_->identify_system();
    stream_->start(cfg_.postgres.slot, cfg_.postgres.publication, 0);
    spdlog::info(
        "reader: streaming slot '{}' (publication '{}') from {} on {} (system {}, timeline {}); "
        "jobs already in redis through {}",
        cfg_.postgres.slot, cfg_.postgres.publication, format_lsn(slot.confirmed_flush),
        stream_->address(), id.system_id, id.timeline, format_lsn(skip_through_));
    owner_.reconnect_backoff_reset_ = true;

    auto next_status = Clock::now();
    while (!stop.load()) {
      owner_.progress_.reader_tick = Progress::now_ns();
      auto now = Clock::now();
      auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_status - now);
      if (!buffer_.empty())
        wait = std::min(
            wait, std::chrono::duration_cast<std::chrono::milliseconds>(buffer_deadline_ - now));
      // Waiting for a stop position: ask for the server's WAL end soon after the data stops.
      const auto longest = owner_.opts_.stop_at && !owner_.reached_stop_
                               ? std::chrono::milliseconds(20)
                               : std::chrono::milliseconds(100);
      wait = std::clamp(wait, std::chrono::milliseconds(0), longest);
      auto data = stream_->read(wait);
      if (!data.empty()) {
        handle(data);
      } else {
        flush_buffer();  // nothing more arrived: hand what we have to Redis now
        if (owner_.opts_.stop_at && !owner_.reached_stop_) ask_position();
      }
      if (!buffer_.empty() &&
          (buffer_.size() >= static_cast<std::size_t>(cfg_.reader.enqueue_batch_jobs) ||
           Clock::now() >= buffer_deadline_))
        flush_buffer();
      if (Clock::now() >= next_status) {
        send_status();
        next_status = Clock::now() + cfg_.reader.status_interval;
      }
    }
    flush_buffer();
    send_status();
    stream_->finish();
  }

 private:
  void handle(std::span<const std::uint8_t> data) {
    auto msg = parse_copy_data(data);
    if (auto* x = std::get_if<XLogData>(&msg)) {
      if (owner_.reached_stop_) return;  // past the requested end: not ours to enqueue
      received_ = std::max(received_, x->data_start);
      decoder_.decode(x->payload, assembler_);
      return;
    }
    auto& k = std::get<Keepalive>(msg);
    if (!assembler_.in_transaction()) {
      received_ = std::max(received_, k.wal_end);
      if (buffer_.empty() && !in_flight_first_) idle_wal_end_ = std::max(idle_wal_end_, k.wal_end);
      if (owner_.opts_.stop_at && k.wal_end >= owner_.opts_.stop_at) reach_stop();
    }
    if (k.reply_requested) send_status(/*query_redis=*/false);
  }

  void on_commit(CommittedTransaction&& t) {
    auto& p = owner_.progress_;
    ++p.commits_seen;
    if (t.end_lsn <= skip_through_) return;  // already in Redis
    std::size_t changes = 0;
    for (std::size_t i = 0; i < t.jobs.size(); ++i) {
      auto& job = t.jobs[i];
      changes += job.changes.size();
      if (buffer_.empty()) {
        buffer_first_commit_ = t.commit_lsn;
        buffer_deadline_ = Clock::now() + cfg_.reader.enqueue_max_delay;
      }
      buffer_.push_back({job.key, t.priorities[i], job.pending_member(), queue::encode_job(job)});
    }
    p.changes_seen += changes;
    if (buffer_.empty())
      enqueued_end_ = std::max(enqueued_end_, t.end_lsn);  // nothing of ours in it
    else
      buffer_last_end_ = t.end_lsn;
    if (owner_.opts_.stop_at && t.end_lsn >= owner_.opts_.stop_at) reach_stop();
  }

  void reach_stop() {
    flush_buffer();
    sync_enqueued();
    if (!owner_.reached_stop_) {
      spdlog::info("reader: reached the requested stop position {} (received {})",
                   format_lsn(owner_.opts_.stop_at), format_lsn(received_));
      owner_.reached_stop_ = true;
    }
  }

  // Hands the buffered commits to Redis without waiting for Redis to run them: the reader goes
  // on reading WAL meanwhile. The batch counts as "not yet in Redis" for the checkpoint until
  // sync_enqueued() has Redis's reply.
  void flush_buffer() {
    if (buffer_.empty()) return;
    sync_enqueued();
    const std::size_t chunk = static_cast<std::size_t>(cfg_.reader.enqueue_batch_jobs);
    // Oversized batches (a huge transaction) go in chunks; only the last completes the commit.
    while (buffer_.size() > chunk) {
      std::vector<queue::EnqueueItem> part(std::make_move_iterator(buffer_.begin()),
                                           std::make_move_iterator(buffer_.begin() + chunk));
      buffer_.erase(buffer_.begin(), buffer_.begin() + chunk);
      owner_.progress_.jobs_enqueued += part.size();
      ++owner_.progress_.enqueue_calls;
      queue_->enqueue(part, 0);
    }
    owner_.progress_.jobs_enqueued += buffer_.size();
    ++owner_.progress_.enqueue_calls;
    in_flight_first_ = buffer_first_commit_;
    in_flight_end_ = buffer_last_end_;
    queue_->enqueue_send(std::move(buffer_), buffer_last_end_);
    buffer_.clear();
  }

  // Waits for Redis to acknowledge the batch in flight; its commits are then in Redis.
  void sync_enqueued() {
    if (!in_flight_first_) return;
    queue_->enqueue_wait();
    enqueued_end_ = std::max(enqueued_end_, in_flight_end_);
    in_flight_first_.reset();
  }

  // Without traffic PostgreSQL reports its WAL end only in keepalives: ask for one.
  void ask_position() {
    auto now = Clock::now();
    if (now - last_ask_ < std::chrono::milliseconds(20)) return;
    last_ask_ = now;
    stream_->send_status(received_, confirmed_, confirmed_, true);
  }

  void send_status(bool query_redis = true) {
    if (query_redis) {
      sync_enqueued();
      CheckpointInputs in;
      auto st = queue_->state();
      // Redis lost data since the last look: the pending set can no longer be trusted to bound
      // the checkpoint. Stop before confirming anything; the next session replays.
      owner_.last_seq_ = std::max(owner_.last_seq_, queue_->last_seq());
      if (!st.epoch || *st.epoch != *owner_.epoch_ || st.seq < owner_.last_seq_)
        throw UnavailableError("redis at " + redis_->address() + " lost walfold's queue (" +
                               (!st.epoch ? std::string("its epoch is gone")
                                : *st.epoch != *owner_.epoch_
                                    ? std::string("its epoch changed")
                                    : "the job sequence went back from " +
                                          std::to_string(owner_.last_seq_) + " to " +
                                          std::to_string(st.seq)) +
                               "); confirmed flush position stays at " + format_lsn(confirmed_) +
                               " and everything after it is replayed");
      owner_.last_seq_ = st.seq;
      in.oldest_pending = st.oldest_pending;
      if (!buffer_.empty()) in.oldest_unenqueued = buffer_first_commit_;
      if (in_flight_first_)
        in.oldest_unenqueued =
            std::min(in.oldest_unenqueued.value_or(*in_flight_first_), *in_flight_first_);
      in.enqueued_end = enqueued_end_;
      in.idle_wal_end = idle_wal_end_;
      in.in_transaction = assembler_.in_transaction();
      confirmed_ = std::max(confirmed_, safe_flush_lsn(in));
      owner_.confirmed_ = confirmed_;
      owner_.progress_.confirmed_lsn = confirmed_;
    }
    owner_.progress_.received_lsn = received_;
    stream_->send_status(std::max(received_, confirmed_), confirmed_, confirmed_, false);
  }

  Reader& owner_;
  const Config& cfg_;
  Decoder decoder_;
  Assembler assembler_;
  std::unique_ptr<ReplicationStream> stream_;
  std::unique_ptr<queue::Redis> redis_;
  std::unique_ptr<queue::JobQueue> queue_;
  std::vector<queue::EnqueueItem> buffer_;
  Lsn buffer_first_commit_ = 0, buffer_last_end_ = 0;
  std::optional<Lsn> in_flight_first_;  // first commit of the batch Redis has not acknowledged
  Lsn in_flight_end_ = 0;
  Clock::time_point buffer_deadline_{}, last_ask_{};
  Lsn skip_through_ = 0, enqueued_end_ = 0, idle_wal_end_ = 0, received_ = 0, confirmed_ = 0;
};

Reader::Reader(const Config& cfg, Progress& progress, ReaderOptions opts)
    : cfg_(cfg), progress_(progress), opts_(opts) {}
Reader::~Reader() = default;

Lsn Reader::confirmed() const {
  return confirmed_;
}

void Reader::run(const std::atomic<bool>& stop) {
  std::mt19937 rng(std::random_device{}());
  auto backoff = cfg_.reader.reconnect_min;
  while (!stop.load()) {
    try {
      Session s(*this);
      s.run(stop);
      return;
    } catch (const UnavailableError& e) {
      if (reconnect_backoff_reset_) backoff = cfg_.reader.reconnect_min;
      reconnect_backoff_reset_ = false;
      auto jitter = std::chrono::milliseconds(
          std::uniform_int_distribution<int>(0, static_cast<int>(backoff.count() / 4))(rng));
      spdlog::error("reader: {}; reconnecting in {} ms", e.what(), (backoff + jitter).count());
      for (auto slept = std::chrono::milliseconds(0); slept < backoff + jitter && !stop.load();
           slept += std::chrono::milliseconds(50)) {
        progress_.reader_tick = Progress::now_ns();
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      backoff = std::min(backoff * 2, cfg_.reader.reconnect_max);
    }
  }
}

}  // namespace walfold::cdc
