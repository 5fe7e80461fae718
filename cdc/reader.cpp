#include "cdc/reader.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <random>
#include <thread>

#include "cdc/assembler.h"
#include "cdc/deadlines.h"
#include "cdc/enqueuer.h"
#include "cdc/flush_ledger.h"
#include "cdc/preflight.h"
#include "cdc/replication_stream.h"
#include "cdc/wire.h"
#include "common/error.h"
#include "common/pg.h"
#include "reconcile/rebuild.h"
#include "reconcile/snapshot.h"

namespace walfold::cdc {

using Clock = std::chrono::steady_clock;

namespace {

// Another reader streams the slot: this one waits as a standby.
struct SlotBusy : UnavailableError {
  using UnavailableError::UnavailableError;
};
// The session ended on purpose (after a rebuild): reconnect at once.
struct Restart : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string random_epoch() {
  std::random_device rd;
  char buf[33];
  std::snprintf(buf, sizeof buf, "%08x%08x%08x%08x", rd(), rd(), rd(), rd());
  return buf;
}
}  // namespace

namespace {
// Progress::rebuilding while a snapshot load runs, on every exit path.
struct Rebuilding {
  explicit Rebuilding(Progress& p) : p_(p) { p_.rebuilding = true; }
  ~Rebuilding() { p_.rebuilding = false; }
  Rebuilding(const Rebuilding&) = delete;
  Rebuilding& operator=(const Rebuilding&) = delete;
  Progress& p_;
};
}  // namespace

// One connected streaming session; a reconnect builds a new one.
class Reader::Session {
 public:
  Session(Reader& owner)
      : owner_(owner),
        cfg_(owner.cfg_),
        assembler_(cfg_, owner.projection_,
                   [this](CommittedTransaction&& t) { on_commit(std::move(t)); }) {}

  void run(const Wakeup& stop) {
    const PgConnInfo dsn = postgres_conninfo(cfg_.postgres);
    redis_ = std::make_unique<queue::Redis>(cfg_.redis);
    queue_ = std::make_unique<queue::JobQueue>(
        *redis_, queue::queue_prefix(cfg_.redis.prefix, cfg_.postgres.slot),
        queue::queue_options(cfg_));
    // Commits whose jobs are already in Redis (a restart of the reader alone) are not enqueued
    // again. If Redis lost its data, nothing it says about the past is trusted: everything from
    // the slot's confirmed position (never past an unfolded commit) is enqueued again.
    auto [epoch, epoch_state] =
        queue_->ensure_epoch(random_epoch(), owner_.epoch_.value_or(""), owner_.last_seq_);
    const bool lost = epoch_state == queue::EpochState::Lost;
    if (lost)
      spdlog::error(
          "redis at {} lost walfold's queue: the queue was emptied and every change not yet folded "
          "is replayed from the slot's confirmed position, in commit order",
          redis_->address());
    else if (epoch_state == queue::EpochState::FirstStart)
      spdlog::info("redis at {}: no queue state yet; streaming from the slot's confirmed position",
                   redis_->address());
    if (lost) ++owner_.progress_.redis_loss_recoveries;
    owner_.epoch_ = epoch;
    owner_.last_seq_ = queue_->state().seq;
    skip_through_ = lost ? 0 : queue_->enqueued_end_lsn();
    enqueuer_ = std::make_unique<Enqueuer>(*queue_);
    stream_ = std::make_unique<ReplicationStream>(dsn);
    auto id = stream_->identify_system();
    auto slot = prepare_slot(dsn, id);
    // No queue state at all, but the checkpoint moved past the slot's creation: walfold did
    // stream this slot through a queue, and Redis no longer has it (restarted without
    // persistence, flushed while walfold was down, or another server).
    bool lost_while_down = false;
    if (epoch_state == queue::EpochState::FirstStart) {
      auto saved = owner_.store_.load_mongo();
      lost_while_down = saved && !saved->loading && saved->lsn > saved->identity.created_lsn;
      if (lost_while_down)
        spdlog::error(
            "redis at {} holds no queue for slot '{}' although walfold's checkpoint is at {}: "
            "Redis lost walfold's queue while walfold was stopped (a restart without "
            "persistence, a FLUSHALL, another server). Every change not yet folded is replayed "
            "from the slot's confirmed position, in commit order",
            redis_->address(), cfg_.postgres.slot, format_lsn(saved->lsn));
      if (lost_while_down) ++owner_.progress_.redis_loss_recoveries;
    }
    // Replays (after Redis lost data, or `reconcile --from-lsn`) of what the server already had
    // when this session started go at priorities.replay, behind live traffic.
    if (lost || lost_while_down || owner_.opts_.start_at) replay_until_ = id.xlogpos;
    ledger_.emplace(slot.confirmed_flush, skip_through_);
    confirmed_ = slot.confirmed_flush;
    const Lsn start_at = std::max(owner_.opts_.start_at, slot.confirmed_flush);
    try {
      stream_->start(cfg_.postgres.slot, cfg_.postgres.publication, owner_.opts_.start_at);
    } catch (const PgError& e) {
      // 55006 object_in_use: another walsender streams the slot (ReplicationSlotAcquire's
      // "replication slot ... is active for PID ..."), whatever the server's language.
      if (e.sqlstate() == "55006") throw SlotBusy(e.what());
      throw;
    }
    if (owner_.standby_logged_)
      spdlog::warn("reader: slot '{}' is free again: this reader takes over", cfg_.postgres.slot);
    owner_.standby_logged_ = false;
    spdlog::info(
        "reader: streaming slot '{}' (publication '{}') from {} on {} (system {}, timeline {}); "
        "jobs already in redis through {}; checkpoint {}",
        cfg_.postgres.slot, cfg_.postgres.publication, format_lsn(start_at), stream_->address(),
        id.system_id, id.timeline, format_lsn(skip_through_), format_lsn(slot.confirmed_flush));
    owner_.reconnect_backoff_reset_ = true;

    // One clock reading per turn (now_), taken when read() returns: a catch-up turns once per
    // WAL message, and the deadlines need no finer time. The wait for WAL data lasts until the
    // earliest of them (cdc/deadlines.h), or until `stop` is set.
    now_ = Clock::now();
    deadlines_.emplace(
        Deadlines::Settings{cfg_.reader.status_interval, cfg_.reader.heartbeat_interval,
                            cfg_.reader.enqueue_max_delay},
        now_);
    while (!stop.is_set()) {
      Loop::turn();
      take_acks();
      deadlines_->set_stop_pending(owner_.opts_.stop_at && !owner_.reached_stop_);
      auto data = stream_->read(deadlines_->wait(now_, buffer_state()), stop.fd());
      now_ = Clock::now();
      if (!data.empty()) {
        handle(data);
        if (truncate_) rebuild_after_truncate(dsn);
      } else {
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
      if (deadlines_->heartbeat_due(now_)) heartbeat(dsn);
    }
    flush_buffer();
    send_status();
    stream_->finish();
  }

 private:
  void handle(std::span<const std::uint8_t> data) {
    auto msg = parse_copy_data(data);
    if (auto* x = std::get_if<XLogData>(&msg)) {
      if (owner_.reached_stop_) {
        // Past the requested end: not ours to enqueue, and so never ours to confirm.
        ledger_->dropped(x->data_start);
        return;
      }
      deadlines_->data_received(now_);
      ledger_->data(x->data_start);
      assembler_.set_replay(x->data_start < replay_until_);
      try {
        decoder_.decode(x->payload, assembler_);
      } catch (const DataError& e) {
        // An earlier batch's error, raised here by a flush the commit triggered: it is not this
        // record's, and keeps its own words and type.
        if (enqueuer_ && enqueuer_->failed()) throw;
        // Names the WAL position, so the operator can inspect it (pg_logical_slot_peek_*).
        throw DataError(std::string(e.what()) + " [slot '" + cfg_.postgres.slot +
                        "', WAL record at " + format_lsn(x->data_start) + "]");
      }
      return;
    }
    auto& k = std::get<Keepalive>(msg);
    ledger_->keepalive(k.wal_end, assembler_.in_transaction());
    if (heartbeat_lsn_ && k.wal_end >= *heartbeat_lsn_) {
      owner_.progress_.heartbeat_round_trip_us =
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - heartbeat_sent_)
              .count();
      heartbeat_lsn_.reset();
    }
    if (!assembler_.in_transaction() && !ledger_->dropped_any() && owner_.opts_.stop_at &&
        k.wal_end >= owner_.opts_.stop_at)
      reach_stop();
    if (k.reply_requested) deadlines_->reply_requested();  // answered in this turn
  }

  void on_commit(CommittedTransaction&& t) {
    auto& p = owner_.progress_;
    ++p.commits_seen;
    if (t.end_lsn <= skip_through_) {  // already in Redis
      ledger_->commit(t.commit_lsn, t.end_lsn, false);
      return;
    }
    if (!t.truncated.empty()) {
      if (t.commit_lsn < owner_.rebuilt_lsn_) {
        spdlog::info(
            "reader: TRUNCATE of {} at {} is already covered by the rebuild at {}; skipping it",
            t.truncated.front(), format_lsn(t.commit_lsn), format_lsn(owner_.rebuilt_lsn_));
        ledger_->commit(t.commit_lsn, t.end_lsn, false);
        return;
      }
      // Held: the read loop rebuilds before it reads anything else, and nothing from this
      // commit on is confirmed by this session.
      ledger_->dropped(t.commit_lsn);
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
    ledger_->commit(t.commit_lsn, t.end_lsn, !t.jobs.empty());
    // Redis records it as enqueued with the batch that carries the last buffered job so far.
    if (!buffer_.empty()) commit_ends_.emplace_back(buffered_jobs_, t.end_lsn);
    if (owner_.opts_.stop_at && t.end_lsn >= owner_.opts_.stop_at) reach_stop();
  }

  void reach_stop() {
    flush_buffer();
    sync_enqueued();
    if (!owner_.reached_stop_) {
      spdlog::info("reader: reached the requested stop position {} (received {})",
                   format_lsn(owner_.opts_.stop_at), format_lsn(ledger_->received()));
      owner_.reached_stop_ = true;
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
    const std::size_t cap = static_cast<std::size_t>(cfg_.reader.enqueue_batch_jobs);
    while (!buffer_.empty()) {
      const bool full = buffer_.size() >= cap;
      if (!force && !full && !deadlines_->enqueue_due(now_)) return;
      if (enqueuer_->outstanding() >= kEnqueueDepth) {
        if (!force && !full) return;  // grows while Redis works
        wait_ack();
        continue;
      }
      hand_over(std::min(cap, buffer_.size()));
    }
  }
  void flush_buffer() { pump(true); }
  Deadlines::Buffer buffer_state() const {
    return {buffer_.empty(), enqueuer_->outstanding() >= kEnqueueDepth};
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
    owner_.progress_.jobs_enqueued += batch.size();
    ++owner_.progress_.enqueue_calls;
    if (buffer_.empty())
      ledger_->sent_to_redis();
    else
      ledger_->sent_to_redis(buffer_.front().commit_lsn);  // the rest stays buffered
    enqueuer_->send(std::move(batch), completes);
  }

  // Redis's acknowledgements that arrived (without waiting); their commits are in Redis.
  void take_acks() {
    for (auto n = enqueuer_->take_acks(); n > 0; --n) ledger_->redis_acknowledged();
  }
  // Waits for the oldest outstanding batch's acknowledgement.
  void wait_ack() {
    for (auto n = enqueuer_->wait_one(); n > 0; --n) ledger_->redis_acknowledged();
  }
  // Waits for every outstanding batch; the JobQueue is then this thread's again.
  void sync_enqueued() {
    for (auto n = enqueuer_->wait_all(); n > 0; --n) ledger_->redis_acknowledged();
  }

  // Without traffic PostgreSQL reports its WAL end only in keepalives: ask for one.
  void ask_position() {
    deadlines_->asked(now_);
    send_standby(true);
  }

  void send_status(bool query_redis = true) {
    if (query_redis) {
      sync_enqueued();
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
      ledger_->pending_read(st.oldest_pending);
      // The rule's bound, through the gate before anything (MongoDB, the state directory,
      // PostgreSQL) hears of it.
      const Lsn candidate = ledger_->admit(ledger_->bound());
      if (candidate > confirmed_) {
        // MongoDB (and the state directory) hear of the checkpoint before PostgreSQL does.
        try {
          owner_.store_.save(candidate);
          confirmed_ = candidate;
          save_failing_ = false;
        } catch (const UnavailableError& e) {
          if (!save_failing_)
            spdlog::warn("reader: cannot save the checkpoint {} ({}); PostgreSQL stays at {}",
                         format_lsn(candidate), e.what(), format_lsn(confirmed_));
          save_failing_ = true;
        }
      }
      owner_.confirmed_ = confirmed_;
      owner_.progress_.confirmed_lsn = confirmed_;
    }
    send_standby(false);
  }

  // Every standby status update goes out here, through the flush rule's gate
  // (cdc/flush_ledger.h): write = what was processed, flush = apply = the saved checkpoint.
  void send_standby(bool reply_requested) {
    const Lsn flush = ledger_->admit(confirmed_);
    const Lsn write = std::max(ledger_->received(), flush);
    owner_.progress_.received_lsn = write;
    stream_->send_status(write, flush, flush, reply_requested);
  }

  // The slot against the saved checkpoint (see reader.h). Creates it, with the initial
  // snapshot, on a first start.
  SlotInfo prepare_slot(const PgConnInfo& dsn, const SystemIdentity& id) {
    auto& store = owner_.store_;
    auto slot = read_slot(dsn, cfg_.postgres);  // fails loudly when lost or not pgoutput
    if (slot.exists && slot.active_pid != 0) throw_busy(slot.active_pid);
    if (slot.wal_status == "unreserved")
      spdlog::error(
          "reader: replication slot '{}' holds more WAL than max_slot_wal_keep_size allows "
          "(wal_status 'unreserved'): the next checkpoint may invalidate it, after which only "
          "`walfold reconcile --full` recovers; catching up now",
          cfg_.postgres.slot);
    auto saved = store.load_mongo();
    if (saved && saved->loading) {
      spdlog::warn(
          "reader: the initial load of slot '{}' (started {}) did not finish; dropping the slot "
          "and loading again",
          cfg_.postgres.slot, checkpoint::format_time_ms(saved->saved_at_ms));
      if (slot.exists) drop_slot(dsn, cfg_.postgres);
      Rebuilding busy(owner_.progress_);
      reconcile::initial_load(cfg_, owner_.pool_, store, "initial snapshot (retried)",
                              &owner_.progress_.snapshot_documents);
      return check_slot(dsn, cfg_.postgres);
    }
    auto local = store.load_state_dir();
    if (!slot.exists) {
      if (saved || local || skip_through_ != 0) {
        throw checkpoint::missing_slot_error(cfg_.postgres.slot, saved, local, store.state_file(),
                                             id.system_id);
      }
      spdlog::info("reader: first start: slot '{}' does not exist yet", cfg_.postgres.slot);
      Rebuilding busy(owner_.progress_);
      reconcile::initial_load(cfg_, owner_.pool_, store, "initial snapshot",
                              &owner_.progress_.snapshot_documents);
      return check_slot(dsn, cfg_.postgres);
    }
    if (!saved) {
      if (local)
        throw DataError(
            "MongoDB (" + owner_.pool_.address() + ", database '" + cfg_.mongodb.database +
            "') holds no checkpoint for slot '" + cfg_.postgres.slot + "', but " +
            store.state_file() + " says the read model was at " + format_lsn(local->lsn) +
            ": the read model was dropped, or this is another MongoDB. Rebuild it with `walfold "
            "reconcile --full`");
      spdlog::warn(
          "reader: slot '{}' was not created by walfold (no checkpoint in MongoDB or {}); adopting "
          "it at its confirmed position {}. Rows written before it was created are not in the "
          "read model: `walfold reconcile --repair` adds them",
          cfg_.postgres.slot, store.state_file(), format_lsn(slot.confirmed_flush));
      store.begin({cfg_.postgres.slot, id.system_id, slot.confirmed_flush, checkpoint::now_ms()},
                  false, "slot adopted");
      return slot;
    }
    if (saved->identity.system_id != id.system_id)
      throw DataError("replication slot '" + cfg_.postgres.slot + "' is on PostgreSQL system " +
                      id.system_id + ", but walfold's checkpoint belongs to system " +
                      saved->identity.system_id +
                      " (a server restored or promoted from another cluster): the read model "
                      "cannot be continued from this slot. Rebuild it with `walfold reconcile "
                      "--full`");
    if (slot.confirmed_flush > saved->lsn)
      throw DataError(
          "replication slot '" + cfg_.postgres.slot + "' is confirmed up to " +
          format_lsn(slot.confirmed_flush) + ", past walfold's checkpoint " +
          format_lsn(saved->lsn) + " (slot created at " + format_lsn(saved->identity.created_lsn) +
          " on " + checkpoint::format_time_ms(saved->identity.created_at_ms) +
          "): the slot was recreated or advanced by something else, or MongoDB was restored "
          "from an older backup, so changes in between never reached the read model. Refusing "
          "to skip ahead: run `walfold reconcile --full`");
    owner_.rebuilt_lsn_ = std::max(owner_.rebuilt_lsn_, saved->rebuilt_lsn);
    return slot;
  }

  [[noreturn]] void throw_busy(int pid) {
    throw SlotBusy("replication slot '" + cfg_.postgres.slot + "' is streamed by PID " +
                   std::to_string(pid) + " (another walfold reader)");
  }

  // A TRUNCATE of a bank table cannot be followed row by row: the read model is rebuilt from
  // the tables, inside a snapshot taken after it, then streaming goes on from where it was. The
  // documents the rebuild writes carry its position, so the commits streamed again between the
  // TRUNCATE and the snapshot change nothing.
  void rebuild_after_truncate(const PgConnInfo& dsn) {
    auto t = std::move(*truncate_);
    truncate_.reset();
    flush_buffer();
    sync_enqueued();
    send_status();
    std::string tables;
    for (const auto& n : t.truncated) tables += (tables.empty() ? "" : ", ") + n;
    stream_->finish();
    stream_.reset();
    spdlog::error(
        "reader: TRUNCATE of {} in the transaction at {}: rebuilding the read model from the "
        "tables (logged in the checkpoint history)",
        tables, format_lsn(t.commit_lsn));
    Rebuilding busy(owner_.progress_);
    auto snap = reconcile::create_temporary_snapshot(dsn, cfg_.postgres.slot, "rebuild");
    auto st = reconcile::load_read_model(cfg_, owner_.pool_, snap.name, snap.consistent_point,
                                         &owner_.progress_.snapshot_documents);
    owner_.store_.finish_load(confirmed_,
                              "rebuilt after TRUNCATE of " + tables + " at " +
                                  format_lsn(t.commit_lsn) + " (snapshot " +
                                  format_lsn(snap.consistent_point) + ")",
                              snap.consistent_point);
    owner_.rebuilt_lsn_ = snap.consistent_point;
    spdlog::warn(
        "reader: rebuild after TRUNCATE done: {} accounts, {} users, {} transactions at {} ({} "
        "documents tombstoned) in {:.1f} s; streaming resumes",
        st.accounts, st.users, st.transactions, format_lsn(snap.consistent_point), st.tombstoned,
        st.seconds);
    ++owner_.progress_.rebuilds;
    throw Restart("rebuilt after TRUNCATE");
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
      ++owner_.progress_.heartbeats;
      deadlines_->heartbeat_written(now);
      spdlog::debug("reader: heartbeat written ({} so far)", owner_.progress_.heartbeats.load());
    } catch (const std::exception& e) {
      spdlog::warn("reader: heartbeat failed: {}", e.what());
      heartbeat_conn_.reset();
    }
  }

  Reader& owner_;
  const Config& cfg_;
  Decoder decoder_;
  Assembler assembler_;
  std::unique_ptr<ReplicationStream> stream_;
  std::unique_ptr<queue::Redis> redis_;
  std::unique_ptr<queue::JobQueue> queue_;
  std::unique_ptr<Enqueuer> enqueuer_;  // after queue_: stops before the queue goes
  std::vector<queue::EnqueueItem> buffer_;
  // Jobs ever buffered and handed over in this session, and per buffered commit the count of
  // jobs buffered through it with its end LSN (the batch reaching that count completes it).
  std::size_t buffered_jobs_ = 0, handed_jobs_ = 0;
  std::deque<std::pair<std::size_t, Lsn>> commit_ends_;
  std::optional<FlushLedger> ledger_;   // the flush rule's state; set once the slot is known
  Clock::time_point now_{};             // the loop's clock, read once per turn
  std::optional<Deadlines> deadlines_;  // every deadline of the loop; set when it starts
  std::unique_ptr<PgConn> heartbeat_conn_;
  std::optional<Lsn> heartbeat_lsn_;  // the last heartbeat's position, until the stream shows it
  Clock::time_point heartbeat_sent_{};
  std::optional<CommittedTransaction> truncate_;
  Lsn replay_until_ = 0;
  bool save_failing_ = false;
  Lsn skip_through_ = 0, confirmed_ = 0;
};

Reader::Reader(const Config& cfg, const projections::Projection& projection,
               projections::MongoPool& pool, Progress& progress, ReaderOptions opts)
    : cfg_(cfg),
      projection_(projection),
      pool_(pool),
      store_(cfg, pool),
      progress_(progress),
      opts_(opts) {}
Reader::~Reader() = default;

Lsn Reader::confirmed() const {
  return confirmed_;
}

namespace {
constexpr std::chrono::milliseconds kStandbyRetry{1000};

// The server an UnavailableError's message starts with ("redis at ...", "mongodb ..."); the
// replication connection's otherwise. Only for the watchdog's account of the wait.
Server server_named_in(std::string_view what) {
  if (what.starts_with("redis")) return Server::Redis;
  if (what.starts_with("mongodb")) return Server::MongoDB;
  return Server::PostgreSQL;
}

// Waits `d`, or until `stop` is set: one wait, counted by the watchdog as waiting on `server`
// (for it to come back, or to free the slot), not as a loop that stopped turning.
void pause(const Wakeup& stop, std::chrono::milliseconds d, Server server) {
  Loop::turn();
  ServerWait waiting(server);
  stop.wait_for(d);
}
}  // namespace

void Reader::run(const Wakeup& stop) {
  std::mt19937 rng(std::random_device{}());
  auto backoff = cfg_.reader.reconnect_min;
  while (!stop.is_set()) {
    progress_.standby = false;
    try {
      Session s(*this);
      s.run(stop);
      return;
    } catch (const Restart&) {
      continue;
    } catch (const SlotBusy& e) {
      // Standby: try again every second, so the takeover follows the active reader's death
      // within seconds (PostgreSQL frees the slot when its connection closes; it says so to
      // nobody, so asking again is the only way to know).
      if (!standby_logged_)
        spdlog::warn("reader: standby: {}; taking over when it is free", e.what());
      standby_logged_ = true;
      progress_.standby = true;
      pause(stop, kStandbyRetry, Server::PostgreSQL);
      continue;
    } catch (const UnavailableError& e) {
      if (reconnect_backoff_reset_) backoff = cfg_.reader.reconnect_min;
      reconnect_backoff_reset_ = false;
      auto jitter = std::chrono::milliseconds(
          std::uniform_int_distribution<int>(0, static_cast<int>(backoff.count() / 4))(rng));
      spdlog::error("reader: {}; reconnecting in {} ms", e.what(), (backoff + jitter).count());
      progress_.count_reconnect(e.what());
      pause(stop, backoff + jitter, server_named_in(e.what()));
      backoff = std::min(backoff * 2, cfg_.reader.reconnect_max);
    }
  }
}

}  // namespace walfold::cdc
