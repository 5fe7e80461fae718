#include "daemon/run.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cdc/preflight.h"
#include "cdc/reader.h"
#include "common/error.h"
#include "common/log.h"
#include "common/pg.h"
#include "common/progress.h"
#include "observe/observer.h"
#include "projections/mongo.h"
#include "projections/sink.h"
#include "projections/worker.h"
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

}  // namespace

int run(const Config& cfg, const std::string& config_path, const RunOptions& opts) {
  // Signals are taken synchronously by this thread; every other thread inherits the mask.
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&sigs, s);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  const bool reader_role = opts.role != Role::Worker;
  const bool worker_role = opts.role != Role::Reader;
  const int nworkers = worker_role ? (opts.workers >= 0 ? opts.workers : cfg.workers.count) : 0;

  Progress progress;
  std::atomic<bool> stop_reader{false}, stop_workers{false};
  std::atomic<int> fatal{0};

  cdc::ReaderOptions ropts;
  ropts.start_at = opts.start_at;
  if (reader_role) {
    cdc::verify_source(cfg);
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
  }

  // READY=1 means every server was reached and accepted walfold's credentials: PostgreSQL
  // (verify_source above, for the reader), Redis (connect, AUTH, SELECT, PING) and MongoDB (the
  // reader saves its checkpoint there; workers write the read model). A refusal (AuthError) is
  // permanent: exit 77 before READY.
  queue::Redis(cfg.redis).command({"PING"});
  queue::warn_about_redis_settings(cfg.redis);
  auto pool = std::make_unique<projections::MongoPool>(cfg.mongodb);
  pool->ping();
  if (worker_role) projections::MongoSink(*pool).ensure_indexes();

  cdc::Reader reader(cfg, *pool, progress, ropts);
  std::vector<std::unique_ptr<projections::Worker>> workers;
  for (int i = 0; i < nworkers; ++i)
    workers.push_back(std::make_unique<projections::Worker>(cfg, *pool, i, progress));
  // Declared after everything the threads use, so they are joined before those die.
  Joiner worker_threads, reader_thread;
  struct StopAll {
    std::atomic<bool>& a;
    std::atomic<bool>& b;
    ~StopAll() { a = b = true; }
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
      }
    });
  }
  // /metrics, /healthz, /readyz, the status page, the process registry, STATUS= (observe/);
  // after the loops exist (it reads them), stopped before they are joined.
  observe::Observer observer(cfg, progress, *pool, reader_role, nworkers);
  observer.start();
  spdlog::info("run: role {}, {} worker(s), slot '{}', redis {}, mongodb {} (database '{}')",
               opts.role == Role::All      ? "all"
               : opts.role == Role::Reader ? "reader"
                                           : "worker",
               nworkers, cfg.postgres.slot,
               cfg.redis.unix_socket.empty() ? cfg.redis.host + ":" + std::to_string(cfg.redis.port)
                                             : cfg.redis.unix_socket,
               redact_secrets(cfg.mongodb.uri), cfg.mongodb.database);
  sd_notify(0, "READY=1\nSTATUS=streaming");

  std::uint64_t watchdog_us = 0;
  bool watchdog = sd_watchdog_enabled(0, &watchdog_us) > 0;
  auto last_ping = Progress::now_ns();
  std::unique_ptr<queue::Redis> redis;
  std::unique_ptr<queue::JobQueue> queue;
  std::int64_t drained_since = 0;
  std::int64_t blocked_since = 0;
  bool paused_warned = false;
  bool stuck_logged = false;
  int exit_code = 0;

  while (true) {
    timespec ts{0, 50 * 1000 * 1000};
    int sig = sigtimedwait(&sigs, nullptr, &ts);
    if (sig == SIGTERM || sig == SIGINT) {
      spdlog::info("run: signal {} received, stopping", sig);
      sd_notify(0, "STOPPING=1");
      break;
    }
    if (sig == SIGHUP) {
      sd_notify(0, "RELOADING=1");
      try {
        auto fresh = load_config(config_path);
        spdlog::set_level(spdlog::level::from_str(fresh.log_level));
        spdlog::info(
            "run: reloaded {}: log level '{}' applied; other settings apply after a restart",
            config_path, fresh.log_level);
      } catch (const std::exception& e) {
        spdlog::error("run: reload failed, keeping the running configuration: {}", e.what());
      }
      sd_notify(0, "READY=1");
    }
    if (fatal.load()) {
      exit_code = fatal.load();
      break;
    }
    auto now = Progress::now_ns();
    if (watchdog && now - last_ping > static_cast<std::int64_t>(watchdog_us) * 1000 / 3) {
      // Feed the watchdog only while every loop is alive (a wedged thread stops the pings).
      const auto limit = static_cast<std::int64_t>(watchdog_us) * 1000 / 2;
      std::string stuck;
      if (reader_role) {
        if (auto why = stuck_reason(progress.reader, now, limit); !why.empty())
          stuck = "the reader " + why;
      }
      for (std::size_t i = 0; stuck.empty() && i < progress.workers.size(); ++i)
        if (auto why = stuck_reason(progress.workers[i], now, limit); !why.empty())
          stuck = "worker " + std::to_string(i) + " " + why;
      if (stuck.empty()) {
        sd_notify(0, "WATCHDOG=1");
        stuck_logged = false;
      } else if (!stuck_logged) {
        spdlog::error("run: {}: not feeding the watchdog (systemd restarts walfold)", stuck);
        stuck_logged = true;
      }
      last_ping = now;
    }
    if (ropts.stop_at && reader.reached_stop() && nworkers == 0) {
      spdlog::info("run: everything up to {} is in redis (reader only: not waiting for workers)",
                   format_lsn(ropts.stop_at));
      break;
    }
    if (ropts.stop_at && reader.reached_stop()) {
      // Stop once the queue is empty and the reader had time to confirm it.
      try {
        if (!queue) {
          redis = std::make_unique<queue::Redis>(cfg.redis);
          queue = std::make_unique<queue::JobQueue>(
              *redis, queue::queue_prefix(cfg.redis.prefix, cfg.postgres.slot));
        }
        const auto c = queue->counts();
        if (c.pending_jobs > 0) {
          drained_since = 0;
          // Every key with jobs left is dead: nothing more can be folded until an operator acts,
          // so the run ends (with EX_DATAERR) instead of waiting forever.
          const bool only_dead =
              c.dead_keys > 0 && c.ready_keys == 0 && c.active_keys == 0 && c.delayed_keys == 0;
          if (!only_dead) {
            blocked_since = 0;
          } else if (blocked_since == 0) {
            blocked_since = now;
          } else if (now - blocked_since > 1'000'000'000) {
            spdlog::error(
                "run: cannot reach {}: {} pending jobs wait behind {} dead keys (`walfold queue "
                "dead list`; retry or purge them, then run again)",
                format_lsn(ropts.stop_at), c.pending_jobs, c.dead_keys);
            exit_code = 65;
            break;
          }
          if (c.paused && !paused_warned) {
            spdlog::warn("run: the queue is paused: waiting for `walfold queue resume` to reach {}",
                         format_lsn(ropts.stop_at));
            paused_warned = true;
          }
        } else if (drained_since == 0) {
          drained_since = now;
        } else if (now - drained_since > 100'000'000) {
          spdlog::info("run: caught up to {} and the queue is empty", format_lsn(ropts.stop_at));
          break;
        }
      } catch (const std::exception& e) {
        spdlog::warn("run: checking the queue: {}", e.what());
        queue.reset();
        redis.reset();
      }
    }
  }
  // The reader flushes what it buffered and sends its last status; workers finish their batch.
  stop_reader = true;
  reader_thread.join();
  stop_workers = true;
  worker_threads.join();
  spdlog::info(
      "run: stopped; confirmed flush position {} ({} commits seen, {} jobs enqueued, {} jobs "
      "folded, "
      "{} MongoDB write commands for {} changes)",
      format_lsn(reader.confirmed()), progress.commits_seen.load(), progress.jobs_enqueued.load(),
      progress.jobs_folded.load(), progress.mongo_write_commands.load(),
      progress.changes_folded.load());
  return exit_code;
}

}  // namespace walfold::daemon
