#include "daemon/run.h"

#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "common/log.h"
#include "common/pg.h"
#include "common/progress.h"
#include "common/wakeup.h"
#include "observe/observer.h"
#include "pipeline/reader_service.h"
#include "pipeline/source_adapter.h"
#include "pipeline/worker_service.h"
#include "projections/mongo.h"
#include "projections/registry.h"
#include "queue/job_queue.h"

namespace walfold::daemon {
namespace {

// Writes a logical message synchronously and returns the WAL position after it: everything
// committed before this call is below it (a transaction that writes nothing would not flush).
Lsn current_wal_end(const Config& cfg) {
  PgConn c(postgres_conninfo(cfg.postgres), {}, "stop position");
  c.exec("SELECT pg_logical_emit_message(true, 'walfold', 'stop-at')");
  // The insert position, not the write position: with synchronous_commit = off a commit that
  // already returned to its client may lie past pg_current_wal_lsn(). The walsender sends only
  // flushed WAL, so wait (a WAL writer cycle, normally) until that position is flushed.
  auto v = c.scalar("SELECT pg_current_wal_insert_lsn()");
  auto lsn = v ? parse_lsn(*v) : std::nullopt;
  if (!lsn)
    throw UnavailableError("postgresql at " + c.address() +
                           ": cannot read pg_current_wal_insert_lsn()");
  for (int i = 0;; ++i) {
    auto f = c.scalar("SELECT pg_current_wal_flush_lsn()");
    auto flushed = f ? parse_lsn(*f) : std::nullopt;
    if (flushed && *flushed >= *lsn) break;
    if (i > 1000)
      throw UnavailableError("postgresql at " + c.address() + ": WAL up to " + format_lsn(*lsn) +
                             " was not flushed within 10 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return *lsn;
}

// A call to a server is bounded by that client's own timeouts (libpq's, hiredis' 30 s, MongoDB's
// socketTimeoutMS); one that lasts longer than this means a timeout failed to fire.
constexpr std::int64_t kLongestServerCallNs = 300'000'000'000;  // 5 minutes

// Why `loop` is stuck, or "" when it is not: a loop is alive while it turns (within `limit_ns`)
// or while it is blocked in a call to a server. A server outage is never walfold being stuck.
std::string stuck_reason(const Loop& loop, std::int64_t now, std::int64_t limit_ns) {
  if (loop.finished.load()) return {};
  const auto server = static_cast<Server>(loop.waiting_on.load());
  if (server != Server::None) {
    const auto waited = now - loop.waiting_since.load();
    if (waited <= std::max(limit_ns, kLongestServerCallNs)) return {};
    return "has been in one call to " + std::string(server_name(server)) + " for " +
           std::to_string(waited / 1'000'000'000) + " s";
  }
  const auto idle = now - loop.tick.load();
  if (idle <= limit_ns) return {};
  return "has not turned for " + std::to_string(idle / 1'000'000) +
         " ms and is not waiting on a server";
}

// Joins on every exit path, so an exception cannot leave a joinable std::thread behind.
struct Joiner {
  std::vector<std::thread> list;
  void join() {
    for (auto& t : list)
      if (t.joinable()) t.join();
    list.clear();
  }
  ~Joiner() { join(); }
};

// SIGTERM, SIGINT and SIGHUP are taken synchronously by the supervising thread (signalfd);
// every thread started after this inherits the mask.
sigset_t block_control_signals() {
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&sigs, s);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  return sigs;
}

// The reader's options: where to start, and where to stop (--stop-at-lsn; "current" is the WAL
// end now). Checks the source (PostgreSQL) first.
cdc::ReaderOptions reader_options(const Config& cfg, const RunOptions& opts, bool reader_role) {
  cdc::ReaderOptions ropts;
  ropts.start_at = opts.start_at;
  if (!reader_role) return ropts;
  pipeline::verify_source(cfg, *projections::projection_for(cfg));
  if (opts.stop_at == "current") {
    ropts.stop_at = current_wal_end(cfg);
  } else if (!opts.stop_at.empty()) {
    auto l = parse_lsn(opts.stop_at);
    if (!l)
      throw ConfigError("--stop-at-lsn '" + opts.stop_at +
                        "' is not an LSN like 16/B374D848 or 'current'");
    ropts.stop_at = *l;
  }
  if (ropts.stop_at)
    spdlog::info("run: will stop once everything up to {} is folded", format_lsn(ropts.stop_at));
  return ropts;
}

// READY=1 means every server was reached and accepted walfold's credentials: PostgreSQL
// (verify_source, for the reader), Redis (connect, AUTH, SELECT, PING) and MongoDB (the reader
// saves its checkpoint there; workers write the read model). A refusal (AuthError) is permanent:
// it ends the run before READY. Workers prepare the projection's read model first (its indexes:
// SnapshotLoad::prepare, idempotent).
std::unique_ptr<projections::MongoPool> connect_stores(const Config& cfg,
                                                       const projections::Projection& projection,
                                                       bool worker_role) {
  queue::Redis(cfg.redis).command({"PING"});
  queue::warn_about_redis_settings(cfg.redis);
  auto pool = std::make_unique<projections::MongoPool>(cfg.mongodb);
  pool->ping();
  if (const auto* load = projection.snapshot_load(); worker_role && load) load->prepare(*pool);
  return pool;
}

const char* role_name(Role r) {
  return r == Role::All ? "all" : r == Role::Reader ? "reader" : "worker";
}

void log_started(const Config& cfg, Role role, int nworkers) {
  spdlog::info("run: role {}, {} worker(s), slot '{}', redis {}, mongodb {} (database '{}')",
               role_name(role), nworkers, cfg.postgres.slot,
               cfg.redis.unix_socket.empty() ? cfg.redis.host + ":" + std::to_string(cfg.redis.port)
                                             : cfg.redis.unix_socket,
               redact_secrets(cfg.mongodb.uri), cfg.mongodb.database);
}

void log_stopped(const pipeline::ReaderService& reader, const Progress& progress) {
  spdlog::info(
      "run: stopped; confirmed flush position {} ({} commits seen, {} jobs enqueued, {} jobs "
      "folded, "
      "{} MongoDB write commands for {} changes)",
      format_lsn(reader.confirmed()), progress.commits_seen.load(), progress.jobs_enqueued.load(),
      progress.jobs_folded.load(), progress.mongo_write_commands.load(),
      progress.changes_folded.load());
}

// SIGHUP: the log level is applied from the file again; other settings need a restart.
void reload(const std::string& config_path) {
  sd_notify(0, "RELOADING=1");
  try {
    auto fresh = projections::load_config(config_path);
    spdlog::set_level(spdlog::level::from_str(fresh.log_level));
    spdlog::info("run: reloaded {}: log level '{}' applied; other settings apply after a restart",
                 config_path, fresh.log_level);
  } catch (const std::exception& e) {
    spdlog::error("run: reload failed, keeping the running configuration: {}", e.what());
  }
  sd_notify(0, "READY=1");
}

// systemd's watchdog (WatchdogSec=): fed only while every loop is alive, so a wedged thread
// stops the pings and systemd restarts walfold.
class Watchdog {
 public:
  Watchdog(const Progress& progress, bool reader_role)
      : progress_(progress), reader_role_(reader_role) {
    enabled_ = sd_watchdog_enabled(0, &interval_us_) > 0;
    last_ping_ = Progress::now_ns();
  }

  // When the next ping is due (steady ns), or nullopt without a watchdog.
  std::optional<std::int64_t> next_at() const {
    if (!enabled_) return std::nullopt;
    return last_ping_ + static_cast<std::int64_t>(interval_us_) * 1000 / 3 + 1;
  }

  void tick(std::int64_t now) {
    if (!enabled_ || now - last_ping_ <= static_cast<std::int64_t>(interval_us_) * 1000 / 3) return;
    const std::string stuck = stuck_loop(now, static_cast<std::int64_t>(interval_us_) * 1000 / 2);
    if (stuck.empty()) {
      sd_notify(0, "WATCHDOG=1");
      stuck_logged_ = false;
    } else if (!stuck_logged_) {
      spdlog::error("run: {}: not feeding the watchdog (systemd restarts walfold)", stuck);
      stuck_logged_ = true;
    }
    last_ping_ = now;
  }

 private:
  // The first loop that is stuck, described, or "".
  std::string stuck_loop(std::int64_t now, std::int64_t limit) const {
    if (reader_role_)
      if (auto why = stuck_reason(progress_.reader, now, limit); !why.empty())
        return "the reader " + why;
    for (std::size_t i = 0; i < progress_.workers.size(); ++i)
      if (auto why = stuck_reason(progress_.workers[i], now, limit); !why.empty())
        return "worker " + std::to_string(i) + " " + why;
    return {};
  }

  const Progress& progress_;
  const bool reader_role_;
  bool enabled_ = false;
  std::uint64_t interval_us_ = 0;
  std::int64_t last_ping_ = 0;
  bool stuck_logged_ = false;
};

// --stop-at-lsn: once the reader has handed everything up to the stop position to Redis, the
// run ends when the queue is empty (and the reader had time to confirm it), or with a data error
// when only dead keys hold jobs (nothing more can be folded until an operator acts).
class StopAtLsn {
 public:
  static constexpr std::int64_t kQueueCheckNs = 50'000'000;
  StopAtLsn(const Config& cfg, Lsn stop_at, int nworkers)
      : cfg_(cfg), stop_at_(stop_at), nworkers_(nworkers) {}

  // When to look again (steady ns): not before the reader reached the stop position (it says
  // so through the supervisor's events); then the queue is read every kQueueCheckNs, as Redis
  // does not say when it drains.
  std::optional<std::int64_t> next_at(const pipeline::ReaderService& reader,
                                      std::int64_t now) const {
    if (!stop_at_ || !reader.reached_stop()) return std::nullopt;
    return nworkers_ == 0 ? now : now + kQueueCheckNs;
  }

  // The exit code when the run should end now.
  std::optional<int> check(const pipeline::ReaderService& reader, std::int64_t now) {
    if (!stop_at_ || !reader.reached_stop()) return std::nullopt;
    if (nworkers_ == 0) {
      spdlog::info("run: everything up to {} is in redis (reader only: not waiting for workers)",
                   format_lsn(stop_at_));
      return EXIT_SUCCESS;
    }
    try {
      return check_queue(now);
    } catch (const std::exception& e) {
      spdlog::warn("run: checking the queue: {}", e.what());
      queue_.reset();
      redis_.reset();
      return std::nullopt;
    }
  }

 private:
  std::optional<int> check_queue(std::int64_t now) {
    if (!queue_) {
      redis_ = std::make_unique<queue::Redis>(cfg_.redis);
      queue_ = std::make_unique<queue::JobQueue>(
          *redis_, queue::queue_prefix(cfg_.redis.prefix, cfg_.postgres.slot));
    }
    const auto c = queue_->counts();
    if (c.pending_jobs == 0) {
      if (drained_since_ == 0) {
        drained_since_ = now;
      } else if (now - drained_since_ > 100'000'000) {
        spdlog::info("run: caught up to {} and the queue is empty", format_lsn(stop_at_));
        return EXIT_SUCCESS;
      }
      return std::nullopt;
    }
    drained_since_ = 0;
    if (auto code = check_dead_only(c, now)) return code;
    if (c.paused && !paused_warned_) {
      spdlog::warn("run: the queue is paused: waiting for `walfold queue resume` to reach {}",
                   format_lsn(stop_at_));
      paused_warned_ = true;
    }
    return std::nullopt;
  }

  // Every key with jobs left is dead (for over a second): the run ends with a data error instead
  // of waiting forever.
  std::optional<int> check_dead_only(const queue::QueueCounts& c, std::int64_t now) {
    const bool only_dead =
        c.dead_keys > 0 && c.ready_keys == 0 && c.active_keys == 0 && c.delayed_keys == 0;
    if (!only_dead) {
      blocked_since_ = 0;
    } else if (blocked_since_ == 0) {
      blocked_since_ = now;
    } else if (now - blocked_since_ > 1'000'000'000) {
      const DataError e("cannot reach " + format_lsn(stop_at_) + ": " +
                        std::to_string(c.pending_jobs) + " pending jobs wait behind " +
                        std::to_string(c.dead_keys) +
                        " dead keys (`walfold queue dead list`; retry or purge them, then run "
                        "again)");
      spdlog::error("run: {}", e.what());
      return exit_status_for(e).code;
    }
    return std::nullopt;
  }

  const Config& cfg_;
  const Lsn stop_at_;
  const int nworkers_;
  std::unique_ptr<queue::Redis> redis_;
  std::unique_ptr<queue::JobQueue> queue_;
  std::int64_t drained_since_ = 0;
  std::int64_t blocked_since_ = 0;
  bool paused_warned_ = false;
};

// What the supervising thread watches until the run ends.
struct Supervised {
  const Config& cfg;
  const std::string& config_path;
  const sigset_t& sigs;
  const Progress& progress;
  const pipeline::ReaderService& reader;
  const std::atomic<int>& fatal;  // a thread's exit code when it failed
  Wakeup& events;                 // notified when a thread failed or the reader reached stop_at
  bool reader_role;
  int nworkers;
  Lsn stop_at;
};

// The control signals as a descriptor to poll (they stay blocked in every thread).
class SignalFd {
 public:
  explicit SignalFd(const sigset_t& sigs) : fd_(::signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK)) {
    if (fd_ < 0) throw InternalError(std::string("signalfd: ") + std::strerror(errno));
  }
  ~SignalFd() { ::close(fd_); }
  SignalFd(const SignalFd&) = delete;
  SignalFd& operator=(const SignalFd&) = delete;
  int fd() const { return fd_; }
  // The next pending signal, or 0.
  int take() {
    signalfd_siginfo si;
    if (::read(fd_, &si, sizeof si) != static_cast<ssize_t>(sizeof si)) return 0;
    return static_cast<int>(si.ssi_signo);
  }

 private:
  int fd_;
};

// The poll() timeout until `at` (steady ns; -1: none), rounded up to whole ms.
int timeout_until(std::optional<std::int64_t> at, std::int64_t now) {
  if (!at) return -1;
  if (*at <= now) return 0;
  const auto ms = (*at - now + 999'999) / 1'000'000;
  return static_cast<int>(std::min<std::int64_t>(ms, std::numeric_limits<int>::max()));
}

std::optional<std::int64_t> earliest(std::optional<std::int64_t> a, std::optional<std::int64_t> b) {
  if (!a) return b;
  if (!b) return a;
  return std::min(*a, *b);
}

// Waits for a stop signal, a failed thread or the stop position, and for the watchdog's next
// ping: one poll() on the signals and the threads' events, until the earliest deadline (none
// at all without a watchdog or a stop position: it sleeps until something happens). Reloads
// on SIGHUP. Returns the exit code.
int supervise(const Supervised& s) {
  Watchdog watchdog(s.progress, s.reader_role);
  StopAtLsn stop(s.cfg, s.stop_at, s.nworkers);
  SignalFd signals(s.sigs);
  while (true) {
    const auto before = Progress::now_ns();
    pollfd p[2] = {{signals.fd(), POLLIN, 0}, {s.events.fd(), POLLIN, 0}};
    const int timeout =
        timeout_until(earliest(watchdog.next_at(), stop.next_at(s.reader, before)), before);
    if (::poll(p, 2, timeout) < 0 && errno != EINTR)
      throw InternalError(std::string("poll: ") + std::strerror(errno));
    while (int sig = signals.take()) {
      if (sig == SIGTERM || sig == SIGINT) {
        spdlog::info("run: signal {} received, stopping", sig);
        sd_notify(0, "STOPPING=1");
        return EXIT_SUCCESS;
      }
      if (sig == SIGHUP) reload(s.config_path);
    }
    s.events.clear();  // what it announced is read below
    if (int code = s.fatal.load()) return code;
    const auto now = Progress::now_ns();
    watchdog.tick(now);
    if (auto code = stop.check(s.reader, now)) return *code;
  }
}

}  // namespace

int run(const Config& cfg, const std::string& config_path, const RunOptions& opts) {
  const sigset_t sigs = block_control_signals();
  const bool reader_role = opts.role != Role::Worker;
  const bool worker_role = opts.role != Role::Reader;
  const int nworkers = worker_role ? (opts.workers >= 0 ? opts.workers : cfg.workers.count) : 0;

  Progress progress;
  Wakeup stop_reader;   // ends the reader's waits at once
  Wakeup stop_workers;  // ends the workers' backoffs at once
  std::atomic<int> fatal{0};
  Wakeup events;  // a thread failed, or the reader reached the stop position
  cdc::ReaderOptions ropts = reader_options(cfg, opts, reader_role);
  ropts.reached = &events;
  const auto projection_owner = projections::projection_for(cfg);
  const auto& projection = *projection_owner;
  auto pool = connect_stores(cfg, projection, worker_role);
  pipeline::ReaderService reader(cfg, projection, *pool, progress, ropts);
  std::vector<std::unique_ptr<pipeline::WorkerService>> workers;
  for (int i = 0; i < nworkers; ++i)
    workers.push_back(
        std::make_unique<pipeline::WorkerService>(cfg, projection, *pool, i, progress));
  // Declared after everything the threads use, so they are joined before those die.
  Joiner worker_threads, reader_thread;
  struct StopAll {
    Wakeup& a;
    Wakeup& b;
    ~StopAll() {
      a.notify();
      b.notify();
    }
  } stop_all{stop_reader, stop_workers};
  for (int i = 0; i < nworkers; ++i) progress.workers.emplace_back();
  for (int i = 0; i < nworkers; ++i)
    worker_threads.list.emplace_back([&, i] {
      LoopThread loop(progress.workers[static_cast<std::size_t>(i)]);
      workers[i]->run(stop_workers);
    });
  if (reader_role) {
    reader_thread.list.emplace_back([&] {
      LoopThread loop(progress.reader);
      try {
        reader.run(stop_reader);
      } catch (const std::exception& e) {
        spdlog::critical("reader: {}", e.what());
        fatal = exit_status_for(e).code;  // the one mapping of errors to exit codes
        events.notify();
      }
    });
  }
  // /metrics, /healthz, /readyz, the status page, the process registry, STATUS= (observe/);
  // after the loops exist (it reads them), stopped before they are joined.
  observe::Observer observer(cfg, progress, *pool, reader_role, nworkers);
  observer.start();
  log_started(cfg, opts.role, nworkers);
  sd_notify(0, "READY=1\nSTATUS=streaming");

  const int exit_code = supervise({cfg, config_path, sigs, progress, reader, fatal, events,
                                   reader_role, nworkers, ropts.stop_at});
  // The reader flushes what it buffered and sends its last status; workers finish their batch.
  stop_reader.notify();
  reader_thread.join();
  stop_workers.notify();
  worker_threads.join();
  log_stopped(reader, progress);
  return exit_code;
}

}  // namespace walfold::daemon
