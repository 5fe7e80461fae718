#include "observe/observer.h"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <chrono>
#include <cmath>

#include "checkpoint/store.h"
#include "common/error.h"
#include "common/pg.h"
#include "observe/http_server.h"
#include "observe/status.h"
#include "queue/job.h"

namespace walfold::observe {
namespace {

constexpr std::size_t kHistoryPoints = 180;  // 15 minutes of 5 s points

std::int64_t unix_ms() {
  return Progress::unix_now_us() / 1000;
}

std::string_view view(const redisReply* r) {
  return r && r->str ? std::string_view(r->str, r->len) : std::string_view();
}

std::string hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

}  // namespace

// The lag probe: the server's flushed WAL end and the slot, in one query on a kept connection.
class LagProbe {
 public:
  explicit LagProbe(const Config& cfg) : cfg_(cfg) {}
  void probe(Sample& s) {
    try {
      if (!conn_)
        conn_ = std::make_unique<PgConn>(postgres_conninfo(cfg_.postgres),
                                         std::map<std::string, std::string>{}, "metrics");
      s.postgresql.address = conn_->address();
      auto r = conn_->exec_params(
          "SELECT pg_current_wal_flush_lsn()::text, s.confirmed_flush_lsn::text, s.wal_status, "
          "pg_wal_lsn_diff(pg_current_wal_flush_lsn(), s.confirmed_flush_lsn)::bigint "
          "FROM (SELECT 1) one LEFT JOIN pg_replication_slots s ON s.slot_name = $1",
          {cfg_.postgres.slot}, "lag probe");
      s.postgresql.ok = true;
      s.wal_end = parse_lsn(std::string(pg_value(*r, 0, 0))).value_or(0);
      s.slot_exists = !pg_is_null(*r, 0, 1);
      if (s.slot_exists) {
        s.slot_confirmed = parse_lsn(std::string(pg_value(*r, 0, 1))).value_or(0);
        s.wal_status = pg_is_null(*r, 0, 2) ? "" : std::string(pg_value(*r, 0, 2));
        s.lag_bytes = std::max<std::int64_t>(0, std::stoll(std::string(pg_value(*r, 0, 3))));
      }
    } catch (const std::exception& e) {
      s.postgresql.ok = false;
      s.postgresql.error = e.what();
      conn_.reset();
    }
    s.postgresql.probed = true;
  }

 private:
  const Config& cfg_;
  std::unique_ptr<PgConn> conn_;
};

Observer::Observer(const Config& cfg, Progress& progress, projections::MongoPool& pool, bool reader,
                   int workers)
    : cfg_(cfg), progress_(progress), pool_(pool) {
  info_.host = hostname();
  info_.pid = static_cast<long>(getpid());
  info_.id = info_.host + ":" + std::to_string(info_.pid);
  info_.reader = reader;
  info_.workers = workers;
  info_.version = WALFOLD_VERSION;
  info_.started_ms = unix_ms();
  started_ns_ = Progress::now_ns();
  if (cfg.http.enabled) info_.http = cfg.http.host + ":" + std::to_string(cfg.http.port);
}

Observer::~Observer() {
  stop();
}

std::string Observer::role() const {
  std::string r = info_.reader ? (progress_.standby.load() ? "standby" : "reader") : "";
  if (info_.workers > 0) r += r.empty() ? "worker" : "+workers";
  return r.empty() ? "idle" : r;
}

void Observer::start() {
  take_sample(true);
  if (cfg_.http.enabled) {
    http_ = std::make_unique<HttpServer>(*this);
    try {
      http_->start();
      info_.http = cfg_.http.host + ":" + std::to_string(http_->port());
    } catch (const UnavailableError& e) {
      // Monitoring must not stop the data path: the sync goes on, loudly without its server
      // (Prometheus sees the target down).
      spdlog::error("{}; walfold runs without its HTTP server", e.what());
      http_.reset();
      info_.http.clear();
    }
  }
  thread_ = std::thread([this] { loop(); });
}

void Observer::stop() {
  {
    std::lock_guard<std::mutex> l(stop_mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (http_) http_->stop();
  if (thread_.joinable()) thread_.join();
  try {  // a clean stop leaves the registry at once
    std::lock_guard<std::mutex> l(redis_mu_);
    if (redis_) redis_->command({"HDEL", queue_->prefix() + ":procs", info_.id});
  } catch (const std::exception&) {
  }
}

Sample Observer::sample() const {
  std::lock_guard<std::mutex> l(mu_);
  return sample_;
}

std::vector<HistoryPoint> Observer::history() const {
  std::lock_guard<std::mutex> l(mu_);
  return {history_.begin(), history_.end()};
}

queue::JobQueue& Observer::queue_locked() {
  if (!queue_) {
    redis_ = std::make_unique<queue::Redis>(cfg_.redis);
    queue_ = std::make_unique<queue::JobQueue>(
        *redis_, queue::queue_prefix(cfg_.redis.prefix, cfg_.postgres.slot),
        queue::queue_options(cfg_));
  }
  return *queue_;
}

void Observer::loop() {
  int n = 0;
  while (true) {
    {
      std::unique_lock<std::mutex> l(stop_mu_);
      if (stop_cv_.wait_for(l, std::chrono::seconds(1), [this] { return stopping_; })) return;
    }
    try {
      take_sample(++n % 5 == 0);
    } catch (const std::exception& e) {
      spdlog::warn("observe: sampling failed: {}", e.what());
    }
  }
}

void Observer::take_sample(bool slow) {
  if (!probe_) probe_ = std::make_unique<LagProbe>(cfg_);
  Sample s;
  {
    std::lock_guard<std::mutex> l(mu_);
    s = sample_;  // keeps the slow parts between slow samples
  }
  s.at_ms = unix_ms();
  probe_->probe(s);
  sample_redis(s, slow, s.at_ms - page_seen_ms_.load() < 30000);
  if (slow || !s.mongodb.probed) sample_mongodb(s);
  record(s, slow);
}

// This process's entry in the registry (refreshed), and the live entries of the others; an
// entry whose heartbeat is older than the registry's TTL (or unreadable) is forgotten.
void Observer::register_process(queue::JobQueue& q, Sample& s) {
  const std::string procs = q.prefix() + ":procs";
  nlohmann::json me{{"id", info_.id},
                    {"host", info_.host},
                    {"pid", info_.pid},
                    {"role", role()},
                    {"workers", info_.workers},
                    {"version", info_.version},
                    {"started_ms", info_.started_ms},
                    {"heartbeat_ms", s.at_ms},
                    {"http", info_.http},
                    {"confirmed_lsn", format_lsn(progress_.confirmed_lsn.load())},
                    {"jobs_folded", progress_.jobs_folded.load()}};
  const std::string me_text = me.dump();
  redis_->append({"HSET", procs, info_.id, me_text});
  redis_->append({"PEXPIRE", procs, std::to_string(kRegistryTtlMs * 4)});
  redis_->append({"HGETALL", procs});
  redis_->read_reply();
  redis_->read_reply();
  auto all = redis_->read_reply();
  s.processes = nlohmann::json::array();
  if (all->type != REDIS_REPLY_ARRAY) return;
  for (std::size_t i = 0; i + 1 < all->elements; i += 2) {
    const std::string id(view(all->element[i]));
    auto p = nlohmann::json::parse(view(all->element[i + 1]), nullptr, false);
    if (!is_live_process(p, s.at_ms)) {
      redis_->command({"HDEL", procs, id});  // gone (or unreadable): forget it
      continue;
    }
    s.processes.push_back(std::move(p));
  }
}

// Redis: the counts, the oldest pending job's age, the process registry; for the status page
// (asked for within 30 s) the counts by priority and the dead letters, on slow samples or when
// they visibly changed.
void Observer::sample_redis(Sample& s, bool slow, bool page) {
  std::lock_guard<std::mutex> l(redis_mu_);
  try {
    auto& q = queue_locked();
    s.redis.address = redis_->address();
    s.counts = q.counts();
    s.enqueued_end = q.enqueued_end_lsn();
    register_process(q, s);
    s.oldest_pending_age_s = oldest_pending_age_seconds(*redis_, q.prefix());
    const bool keys = s.counts && (s.counts->ready_keys + s.counts->active_keys +
                                   s.counts->delayed_keys + s.counts->dead_keys) > 0;
    if (page && (slow || (s.by_priority.empty() && keys))) {
      auto st = q.stats();
      s.by_priority = nlohmann::json::array();
      for (const auto& [p, c] : st.by_priority)
        s.by_priority.push_back({{"priority", p},
                                 {"ready", c.ready},
                                 {"active", c.active},
                                 {"delayed", c.delayed},
                                 {"dead", c.dead},
                                 {"jobs", c.jobs}});
    }
    if (page &&
        (slow || (s.counts && static_cast<long long>(s.dead.size()) != s.counts->dead_keys))) {
      s.dead = nlohmann::json::array();
      for (const auto& d : q.dead_letters())
        s.dead.push_back(
            {{"key", d.key},
             {"attempts", d.attempts},
             {"reason", d.reason},
             {"lsn", d.lsn.empty() ? std::string() : format_lsn(parse_lsn_key(d.lsn).value_or(0))},
             {"at_ms", d.at_ms},
             {"jobs", d.jobs}});
    }
    s.redis.ok = true;
    s.redis.error.clear();
  } catch (const std::exception& e) {
    s.redis.ok = false;
    s.redis.error = e.what();
    s.counts.reset();
    queue_.reset();
    redis_.reset();
  }
  s.redis.probed = true;
}

void Observer::sample_mongodb(Sample& s) {
  s.mongodb.address = pool_.address();
  try {
    pool_.ping();
    s.mongodb.ok = true;
    s.mongodb.error.clear();
    checkpoint::Store store(cfg_, pool_);
    if (auto c = store.load_mongo()) {
      s.checkpoint_lsn = c->lsn;
      s.checkpoint_saved_ms = c->saved_at_ms;
      s.checkpoint_history = nlohmann::json::array();
      const std::size_t from = c->history.size() > 20 ? c->history.size() - 20 : 0;
      for (std::size_t i = from; i < c->history.size(); ++i)
        s.checkpoint_history.push_back({{"lsn", format_lsn(c->history[i].lsn)},
                                        {"at_ms", c->history[i].at_ms},
                                        {"event", c->history[i].event}});
    }
  } catch (const std::exception& e) {
    s.mongodb.ok = false;
    s.mongodb.error = e.what();
  }
  s.mongodb.probed = true;
}

// The fold rate since the last sample, the sample itself, a history point on slow samples, and
// systemd's STATUS= every 5 s.
void Observer::record(const Sample& s, bool slow) {
  const auto now_ns = Progress::now_ns();
  const auto rows = progress_.changes_folded.load();
  if (last_rate_ns_ != 0 && now_ns > last_rate_ns_)
    fold_rate_ = static_cast<double>(rows - last_rows_folded_) * 1e9 /
                 static_cast<double>(now_ns - last_rate_ns_);
  last_rows_folded_ = rows;
  last_rate_ns_ = now_ns;
  {
    std::lock_guard<std::mutex> l(mu_);
    sample_ = s;
    if (slow || history_.empty()) {
      history_.push_back({s.at_ms, s.lag_bytes, rows, progress_.jobs_enqueued.load(),
                          progress_.jobs_folded.load()});
      while (history_.size() > kHistoryPoints) history_.pop_front();
    }
  }
  if (now_ns - last_status_ns_ >= 5'000'000'000LL || last_status_ns_ == 0) {
    last_status_ns_ = now_ns;
    notify_systemd(s);
  }
}

std::optional<double> Observer::lag_seconds(const Sample& s) const {
  return s.oldest_pending_age_s;
}

void Observer::notify_systemd(const Sample& s) {
  std::string status;
  if (info_.reader && progress_.standby.load()) {
    status = "standby: another reader streams slot '" + cfg_.postgres.slot + "'";
  } else {
    status = "confirmed " + format_lsn(progress_.confirmed_lsn.load()) + ", lag " +
             (s.lag_bytes ? std::to_string(*s.lag_bytes) + " bytes" : std::string("?"));
    if (s.oldest_pending_age_s) {
      char buf[32];
      std::snprintf(buf, sizeof buf, " (%.1f s)", *s.oldest_pending_age_s);
      status += buf;
    }
    status +=
        ", folding " + std::to_string(static_cast<long long>(std::llround(fold_rate_))) + " rows/s";
    if (s.counts && s.counts->dead_keys > 0)
      status += ", " + std::to_string(s.counts->dead_keys) + " dead keys";
  }
  sd_notify(0, ("STATUS=" + status).c_str());
}

std::vector<std::string> Observer::health_problems() const {
  std::vector<std::string> out;
  const auto now = Progress::now_ns();
  constexpr std::int64_t limit = 30'000'000'000LL;
  // As the watchdog sees a loop (daemon/run.cpp): alive while it turns, while it is blocked in
  // a call to a server, or once it finished; one that has not turned yet counts from the
  // observer's start.
  auto stuck = [&](const Loop& loop) {
    if (loop.finished.load() || loop.waiting_on.load() != 0) return false;
    return now - std::max(loop.tick.load(), started_ns_) > limit;
  };
  if (info_.reader && stuck(progress_.reader))
    out.push_back("the reader loop has not turned for 30 s");
  for (std::size_t i = 0; i < progress_.workers.size(); ++i)
    if (stuck(progress_.workers[i]))
      out.push_back("worker " + std::to_string(i) + " has not turned for 30 s");
  if (unix_ms() - sample().at_ms > 30000) out.push_back("the sampler has not run for 30 s");
  return out;
}

std::vector<std::string> Observer::readiness_problems() const {
  auto out = health_problems();
  const auto s = sample();
  if (info_.reader && progress_.standby.load())
    out.push_back("standby: another reader streams the slot");
  if (info_.reader && !s.postgresql.ok)
    out.push_back("postgresql unreachable: " + s.postgresql.error);
  if (info_.reader && s.postgresql.ok && !s.slot_exists)
    out.push_back("replication slot '" + cfg_.postgres.slot + "' is missing");
  if (s.slot_exists && s.wal_status == "lost")
    out.push_back("replication slot '" + cfg_.postgres.slot + "' is lost");
  if (!s.redis.ok) out.push_back("redis unreachable: " + s.redis.error);
  if (!s.mongodb.ok) out.push_back("mongodb unreachable: " + s.mongodb.error);
  const auto& lim = cfg_.http.ready_max_lag;
  if (!lim.seconds && s.lag_bytes && static_cast<double>(*s.lag_bytes) > lim.value)
    out.push_back("lag " + std::to_string(*s.lag_bytes) + " bytes is over http.ready_max_lag " +
                  format_lag_limit(lim));
  if (lim.seconds && s.oldest_pending_age_s && *s.oldest_pending_age_s > lim.value)
    out.push_back("lag " + std::to_string(*s.oldest_pending_age_s) +
                  " s is over http.ready_max_lag " + format_lag_limit(lim));
  return out;
}

nlohmann::json Observer::dead_inspect(const std::string& key) {
  std::lock_guard<std::mutex> l(redis_mu_);
  auto& q = queue_locked();
  auto d = q.dead_letter(key);
  if (!d) return nullptr;
  nlohmann::json jobs = nlohmann::json::array();
  for (const auto& e : q.entries(key, 20)) {
    nlohmann::json j{{"lsn", format_lsn(e.commit_lsn)},
                     {"priority", e.priority},
                     {"enqueued_ms", e.enqueued_ms}};
    try {
      auto job = queue::decode_job(e.body);
      j["commit_time_us"] = job.commit_time_us;
      j["changes"] = job.changes.size();
    } catch (const DataError& err) {
      j["error"] = err.what();
    }
    jobs.push_back(std::move(j));
  }
  return {{"key", d->key},     {"attempts", d->attempts}, {"reason", d->reason},
          {"at_ms", d->at_ms}, {"jobs_waiting", d->jobs}, {"jobs", jobs}};
}

bool Observer::dead_retry(const std::string& key) {
  std::lock_guard<std::mutex> l(redis_mu_);
  const bool ok = queue_locked().retry_dead(key);
  if (ok) spdlog::info("queue: dead key {} retried from the status page", key);
  return ok;
}

long long Observer::dead_purge(const std::string& key) {
  std::lock_guard<std::mutex> l(redis_mu_);
  const auto n = queue_locked().purge_dead(key);
  if (n >= 0)
    spdlog::warn(
        "queue: dead key {} purged from the status page: {} job(s) dropped; the read model "
        "misses them until `walfold reconcile --repair`",
        key, n);
  return n;
}

nlohmann::json Observer::status_json() {
  page_seen_ms_ = unix_ms();
  const auto s = sample();
  auto server = [](const ServerState& st) {
    return nlohmann::json{{"ok", st.ok}, {"address", st.address}, {"error", st.error}};
  };
  nlohmann::json j;
  j["now_ms"] = unix_ms();
  j["sampled_ms"] = s.at_ms;
  j["process"] = {{"id", info_.id},
                  {"role", role()},
                  {"version", info_.version},
                  {"started_ms", info_.started_ms},
                  {"workers", info_.workers}};
  j["slot"] = {{"name", cfg_.postgres.slot},
               {"exists", s.slot_exists},
               {"wal_status", s.wal_status},
               {"confirmed_lsn", format_lsn(s.slot_confirmed)}};
  j["lsn"] = {{"received", format_lsn(progress_.received_lsn.load())},
              {"enqueued", format_lsn(s.enqueued_end)},
              {"confirmed", format_lsn(progress_.confirmed_lsn.load())},
              {"wal_end", format_lsn(s.wal_end)}};
  j["lag"] = {{"bytes", s.lag_bytes ? nlohmann::json(*s.lag_bytes) : nlohmann::json(nullptr)},
              {"seconds", s.oldest_pending_age_s ? nlohmann::json(*s.oldest_pending_age_s)
                                                 : nlohmann::json(nullptr)}};
  j["servers"] = {{"postgresql", server(s.postgresql)},
                  {"redis", server(s.redis)},
                  {"mongodb", server(s.mongodb)}};
  j["counters"] = {{"commits_received", progress_.commits_seen.load()},
                   {"rows_received", progress_.changes_seen.load()},
                   {"jobs_enqueued", progress_.jobs_enqueued.load()},
                   {"jobs_folded", progress_.jobs_folded.load()},
                   {"rows_folded", progress_.changes_folded.load()},
                   {"mongodb_write_commands", progress_.mongo_write_commands.load()},
                   {"fold_errors", progress_.fold_errors.load()},
                   {"heartbeats", progress_.heartbeats.load()}};
  j["fold_rate_rows_per_second"] = fold_rate_;
  nlohmann::json q = nullptr;
  if (s.counts)
    q = {{"pending_jobs", s.counts->pending_jobs},
         {"ready_keys", s.counts->ready_keys},
         {"active_keys", s.counts->active_keys},
         {"delayed_keys", s.counts->delayed_keys},
         {"dead_keys", s.counts->dead_keys},
         {"paused", s.counts->paused},
         {"by_priority", s.by_priority}};
  j["queue"] = q;
  j["dead"] = s.dead;
  j["checkpoint"] = {
      {"lsn", s.checkpoint_lsn ? nlohmann::json(format_lsn(*s.checkpoint_lsn)) : nullptr},
      {"saved_ms", s.checkpoint_saved_ms},
      {"history", s.checkpoint_history}};
  j["processes"] = s.processes;
  nlohmann::json h = nlohmann::json::array();
  for (const auto& p : history())
    h.push_back({{"at_ms", p.at_ms},
                 {"lag_bytes", p.lag_bytes ? nlohmann::json(*p.lag_bytes) : nullptr},
                 {"rows_folded", p.rows_folded},
                 {"jobs_enqueued", p.jobs_enqueued},
                 {"jobs_folded", p.jobs_folded}});
  j["history"] = h;
  j["health"] = health_problems();
  j["readiness"] = readiness_problems();
  j["admin"] = cfg_.http.admin;
  return j;
}

}  // namespace walfold::observe
