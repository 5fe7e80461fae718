#include "pipeline/reader_service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <random>

#include "cdc/preflight.h"
#include "cdc/replication_stream.h"
#include "common/backoff.h"
#include "common/error.h"
#include "common/pg.h"
#include "pipeline/rebuild.h"
#include "queue/job_queue.h"

namespace walfold::pipeline {

using cdc::SlotInfo;
using cdc::SystemIdentity;

namespace {

// Another reader streams the slot: this one waits as a standby.
struct SlotBusy : UnavailableError {
  using UnavailableError::UnavailableError;
};

std::string random_epoch() {
  std::random_device rd;
  char buf[33];
  std::snprintf(buf, sizeof buf, "%08x%08x%08x%08x", rd(), rd(), rd(), rd());
  return buf;
}

constexpr std::chrono::milliseconds kStandbyRetry{1000};

}  // namespace

// One session: the queue and the stream prepared, the replication loop run, and what ended it.
class ReaderService::Session : public cdc::ReaderHost {
 public:
  explicit Session(ReaderService& owner) : owner_(owner), cfg_(owner.cfg_) {}

  Next run(const Wakeup& stop) {
    const PgConnInfo dsn = postgres_conninfo(cfg_.postgres);
    redis_ = std::make_unique<queue::Redis>(cfg_.redis);
    queue_ = std::make_unique<queue::JobQueue>(
        *redis_, queue::queue_prefix(cfg_.redis.prefix, cfg_.postgres.slot),
        queue::queue_options(cfg_));
    cdc::SessionStart start;
    const bool replay = open_queue(start);
    stream_ = std::make_unique<cdc::ReplicationStream>(dsn);
    auto id = stream_->identify_system();
    auto slot = prepare_slot(dsn, id);
    // Replays (after Redis lost data, or `reconcile --from-lsn`) of what the server already had
    // when this session started go at priorities.replay, behind live traffic.
    if (replay || lost_while_down() || owner_.opts_.start_at) start.replay_until = id.xlogpos;
    start.confirmed = slot.confirmed_flush;
    start.rebuilt_lsn = owner_.rebuilt_lsn_;
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
        id.system_id, id.timeline, format_lsn(start.in_redis_through),
        format_lsn(slot.confirmed_flush));
    owner_.reconnect_backoff_reset_ = true;

    cdc::SessionEnd end;
    {
      cdc::Reader reader(source_settings(cfg_, dsn), owner_.source_.source, owner_.source_.router,
                         owner_.progress_, owner_.opts_, owner_.reached_stop_, *stream_, *queue_,
                         *this, start);
      end = reader.run(stop);
    }
    if (end.kind == cdc::SessionEnd::Kind::Stopped) return Next::Done;
    // A TRUNCATE: the stream is finished; its connection goes before the rebuild's snapshot.
    stream_.reset();
    owner_.rebuilt_lsn_ =
        rebuild_after_truncate(cfg_, owner_.projection_, owner_.pool_, owner_.store_,
                               owner_.progress_, end.confirmed, end.commit_lsn, end.tables);
    return Next::NextSession;
  }

  // The replication loop's questions (cdc::ReaderHost).
  std::optional<Lsn> oldest_pending() override {
    auto st = queue_->state();
    // Redis lost data since the last look: the pending set can no longer be trusted to bound
    // the checkpoint. Stop before confirming anything; the next session replays.
    owner_.last_seq_ = std::max(owner_.last_seq_, queue_->last_seq());
    if (!st.epoch || *st.epoch != *owner_.epoch_ || st.seq < owner_.last_seq_)
      throw UnavailableError("redis at " + redis_->address() + " lost walfold's queue (" +
                             (!st.epoch                     ? std::string("its epoch is gone")
                              : *st.epoch != *owner_.epoch_ ? std::string("its epoch changed")
                                                            : "the job sequence went back from " +
                                                                  std::to_string(owner_.last_seq_) +
                                                                  " to " + std::to_string(st.seq)) +
                             "); confirmed flush position stays at " + format_lsn(confirmed_) +
                             " and everything after it is replayed");
    owner_.last_seq_ = st.seq;
    return st.oldest_pending;
  }

  bool save_checkpoint(Lsn lsn) override {
    try {
      owner_.store_.save(lsn);
      confirmed_ = lsn;
      save_failing_ = false;
      return true;
    } catch (const UnavailableError& e) {
      if (!save_failing_)
        spdlog::warn("reader: cannot save the checkpoint {} ({}); PostgreSQL stays at {}",
                     format_lsn(lsn), e.what(), format_lsn(confirmed_));
      save_failing_ = true;
      return false;
    }
  }

 private:
  // Redis's epoch (the Redis-loss detector). Commits whose jobs are already in Redis (a restart
  // of the reader alone) are not enqueued again. If Redis lost its data, nothing it says about
  // the past is trusted: everything from the slot's confirmed position (never past an unfolded
  // commit) is enqueued again. Returns whether this is a replay.
  bool open_queue(cdc::SessionStart& start) {
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
    first_queue_ = epoch_state == queue::EpochState::FirstStart;
    owner_.epoch_ = epoch;
    owner_.last_seq_ = queue_->state().seq;
    skip_through_ = lost ? 0 : queue_->enqueued_end_lsn();
    start.in_redis_through = skip_through_;
    return lost;
  }

  // No queue state at all, but the checkpoint moved past the slot's creation: walfold did
  // stream this slot through a queue, and Redis no longer has it (restarted without
  // persistence, flushed while walfold was down, or another server).
  bool lost_while_down() {
    if (!first_queue_) return false;
    auto saved = owner_.store_.load_mongo();
    const bool lost = saved && !saved->loading && saved->lsn > saved->identity.created_lsn;
    if (!lost) return false;
    spdlog::error(
        "redis at {} holds no queue for slot '{}' although walfold's checkpoint is at {}: "
        "Redis lost walfold's queue while walfold was stopped (a restart without "
        "persistence, a FLUSHALL, another server). Every change not yet folded is replayed "
        "from the slot's confirmed position, in commit order",
        redis_->address(), cfg_.postgres.slot, format_lsn(saved->lsn));
    ++owner_.progress_.redis_loss_recoveries;
    return true;
  }

  // The slot against the saved checkpoint (see reader_service.h). Creates it, with the initial
  // snapshot, on a first start.
  SlotInfo prepare_slot(const PgConnInfo& dsn, const SystemIdentity& id) {
    auto& store = owner_.store_;
    auto slot = cdc::read_slot(dsn, cfg_.postgres.slot);  // fails loudly when lost or not pgoutput
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
      if (slot.exists) cdc::drop_slot(dsn, cfg_.postgres.slot);
      Rebuilding busy(owner_.progress_);
      initial_load(cfg_, owner_.projection_, owner_.pool_, store, "initial snapshot (retried)",
                   &owner_.progress_.snapshot_documents);
      return cdc::check_slot(dsn, cfg_.postgres.slot);
    }
    auto local = store.load_state_dir();
    if (!slot.exists) {
      if (saved || local || skip_through_ != 0) {
        throw checkpoint::missing_slot_error(cfg_.postgres.slot, saved, local, store.state_file(),
                                             id.system_id);
      }
      spdlog::info("reader: first start: slot '{}' does not exist yet", cfg_.postgres.slot);
      Rebuilding busy(owner_.progress_);
      initial_load(cfg_, owner_.projection_, owner_.pool_, store, "initial snapshot",
                   &owner_.progress_.snapshot_documents);
      return cdc::check_slot(dsn, cfg_.postgres.slot);
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

  ReaderService& owner_;
  const Config& cfg_;
  std::unique_ptr<queue::Redis> redis_;
  std::unique_ptr<queue::JobQueue> queue_;  // outlives the cdc::Reader (its Enqueuer uses it)
  std::unique_ptr<cdc::ReplicationStream> stream_;
  bool first_queue_ = false, save_failing_ = false;
  Lsn skip_through_ = 0, confirmed_ = 0;
};

bool reconnects_after(const std::exception& e) {
  return error_class(e).retry != RetryClass::Never;
}

ReaderService::ReaderService(const Config& cfg, const projections::Projection& projection,
                             mongo::MongoPool& pool, Progress& progress, cdc::ReaderOptions opts)
    : cfg_(cfg),
      projection_(projection),
      source_(cfg, projection),
      pool_(pool),
      store_(cfg, pool),
      progress_(progress),
      opts_(opts) {}
ReaderService::~ReaderService() = default;

void ReaderService::run(const Wakeup& stop) {
  // Jitter up to a quarter of the delay.
  Backoff backoff(cfg_.reader.reconnect_min, cfg_.reader.reconnect_max, 0.25);
  while (!stop.is_set()) {
    progress_.standby = false;
    try {
      Session s(*this);
      if (s.run(stop) == Next::Done) return;
      continue;  // rebuilt after a TRUNCATE: stream again at once
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
    } catch (const std::exception& e) {
      if (!reconnects_after(e)) throw;
      if (reconnect_backoff_reset_) backoff.reset();  // the last session streamed
      reconnect_backoff_reset_ = false;
      const auto wait = backoff.next();
      spdlog::error("reader: {}; reconnecting in {} ms", e.what(), wait.count());
      progress_.count_reconnect(e.what());
      pause(stop, wait, server_named_in(e.what(), Server::PostgreSQL));
    }
  }
}

}  // namespace walfold::pipeline
