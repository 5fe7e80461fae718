// The observer of a `walfold run` process: a sampler thread that, once a second, reads what the
// metrics and the status page show (one cached lag probe in PostgreSQL, one pipelined read of
// the queue counts and the process registry in Redis, a MongoDB ping and the saved checkpoint
// every few seconds) and updates systemd's STATUS=; and the HTTP server (observe/http_server.h).
// A scrape reads only the cached sample and the atomic counters of common/progress.h.
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/progress.h"
#include "config/config.h"
#include "projections/mongo.h"
#include "queue/job_queue.h"

namespace walfold::observe {

struct ProcessInfo {
  std::string id;    // "<host>:<pid>"
  std::string host;  // gethostname()
  long pid = 0;
  bool reader = false;  // runs the reader (role all or reader)
  int workers = 0;
  std::string version;
  std::int64_t started_ms = 0;  // Unix ms
  std::string http;             // "host:port" of its HTTP server, "" when off
};

struct ServerState {
  bool ok = false;
  bool probed = false;  // false until the first probe finished
  std::string address;
  std::string error;  // the last failure, secrets redacted by the layers below
};

// What the sampler last saw (copied out under a mutex).
struct Sample {
  std::int64_t at_ms = 0;  // Unix ms of the sample
  ServerState postgresql, redis, mongodb;
  // PostgreSQL (the lag probe)
  bool slot_exists = false;
  std::string wal_status;
  Lsn wal_end = 0, slot_confirmed = 0;
  std::optional<std::int64_t> lag_bytes;
  // Redis
  std::optional<queue::QueueCounts> counts;
  std::optional<double> oldest_pending_age_s;
  Lsn enqueued_end = 0;
  nlohmann::json processes = nlohmann::json::array();
  // MongoDB: the saved checkpoint
  std::optional<Lsn> checkpoint_lsn;
  std::int64_t checkpoint_saved_ms = 0;
  nlohmann::json checkpoint_history = nlohmann::json::array();
  // The status page's extras (computed only while someone looks at the page)
  nlohmann::json by_priority = nlohmann::json::array();
  nlohmann::json dead = nlohmann::json::array();
};

// One point of the charts (every 5 s, the last 15 minutes).
struct HistoryPoint {
  std::int64_t at_ms = 0;
  std::optional<std::int64_t> lag_bytes;
  std::uint64_t rows_folded = 0, jobs_enqueued = 0, jobs_folded = 0;
};

class HttpServer;
class LagProbe;

class Observer {
 public:
  Observer(const Config& cfg, Progress& progress, projections::MongoPool& pool, bool reader,
           int workers);
  ~Observer();
  Observer(const Observer&) = delete;
  Observer& operator=(const Observer&) = delete;

  // Starts the sampler and (unless http.listen is off) the HTTP server; a listen address that
  // cannot be bound is logged as an error and the process runs without it (a token file that
  // cannot be read throws ConfigError). Returns after the first sample.
  void start();
  void stop();

  const Config& config() const { return cfg_; }
  const Progress& progress() const { return progress_; }
  const ProcessInfo& process() const { return info_; }
  Sample sample() const;
  std::vector<HistoryPoint> history() const;
  std::string role() const;  // reader, standby, worker, reader+workers, standby+workers

  // /healthz: the loops are turning. /readyz: streaming (or folding), servers reachable, lag
  // under http.ready_max_lag. Each returns the reasons when it is not.
  std::vector<std::string> health_problems() const;
  std::vector<std::string> readiness_problems() const;
  std::optional<double> lag_seconds(const Sample& s) const;

  // Prometheus text exposition (observe/metrics.cpp).
  std::string metrics_text() const;
  // The status page's data (GET /api/status).
  nlohmann::json status_json();
  // Dead-letter operations of the page (http.admin): through the observer's Redis connection.
  nlohmann::json dead_inspect(const std::string& key);
  bool dead_retry(const std::string& key);
  long long dead_purge(const std::string& key);

 private:
  void loop();
  void take_sample(bool slow);
  // The parts of a sample: Redis (counts, registry, and the page's slower views when `page`),
  // MongoDB (reachability, checkpoint), then the fold rate, history and systemd status.
  void sample_redis(Sample& s, bool slow, bool page);
  void register_process(queue::JobQueue& q, Sample& s);  // redis_mu_ held
  void sample_mongodb(Sample& s);
  void record(const Sample& s, bool slow);
  void notify_systemd(const Sample& s);
  queue::JobQueue& queue_locked();  // redis_mu_ held

  const Config& cfg_;
  Progress& progress_;
  projections::MongoPool& pool_;
  ProcessInfo info_;
  std::int64_t started_ns_ = 0;  // steady clock
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<LagProbe> probe_;  // the kept PostgreSQL connection of the lag probe

  mutable std::mutex mu_;  // sample_, history_
  Sample sample_;
  std::deque<HistoryPoint> history_;
  std::atomic<std::int64_t> page_seen_ms_{0};  // the page asked for data (Unix ms)

  std::mutex redis_mu_;  // the observer's own Redis connection
  std::unique_ptr<queue::Redis> redis_;
  std::unique_ptr<queue::JobQueue> queue_;

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread thread_;
  std::int64_t last_status_ns_ = 0;
  std::uint64_t last_rows_folded_ = 0;
  std::int64_t last_rate_ns_ = 0;
  double fold_rate_ = 0;
};

}  // namespace walfold::observe
