#include "projections/worker.h"

#include <spdlog/spdlog.h>

#include <random>
#include <thread>

#include "common/error.h"
#include "projections/bank_fold.h"
#include "projections/sink.h"

namespace walfold::projections {

Worker::Worker(const Config& cfg, MongoPool& pool, int index, Progress& progress)
    : cfg_(cfg), pool_(pool), index_(index), progress_(progress) {}

std::size_t Worker::run_once() {
  if (!redis_) {
    redis_ = std::make_unique<queue::Redis>(cfg_.redis);
    queue_ = std::make_unique<queue::JobQueue>(
        *redis_, queue::queue_prefix(cfg_.redis.prefix, cfg_.postgres.slot));
  }
  auto claim =
      queue_->claim(cfg_.workers.batch_keys, cfg_.workers.batch_jobs_per_key, cfg_.workers.lease);
  if (claim.keys.empty()) return 0;

  struct KeyWork {
    const queue::ClaimedKey* claimed;
    std::vector<queue::Job> jobs;
    std::size_t folded = 0;  // jobs of this key in the plan
    bool failed = false;
  };
  std::vector<KeyWork> work;
  work.reserve(claim.keys.size());
  std::vector<std::string> keys;
  for (const auto& k : claim.keys) {
    KeyWork w{&k, {}, 0, false};
    try {
      for (const auto& body : k.bodies) w.jobs.push_back(queue::decode_job(body));
    } catch (const DataError& e) {
      spdlog::error(
          "worker {}: key {}: job {} cannot be decoded: {}; the key waits for its lease to "
          "expire and is retried",
          index_, k.key, w.jobs.size() + 1, e.what());
      ++progress_.fold_errors;
    }
    keys.push_back(k.key);
    work.push_back(std::move(w));
  }

  MongoSink sink(pool_);
  BankFold fold;
  try {
    for (auto& [id, snap] : sink.read_accounts(BankFold::accounts_needed(keys)))
      fold.set_account(id, snap);
    WritePlan plan;
    for (auto& w : work) {
      for (const auto& job : w.jobs) {
        try {
          fold.fold(job, plan);
          ++w.folded;
        } catch (const DataError& e) {
          // A job that cannot be folded exactly stops its key (later jobs of the same account
          // must not overtake it); other keys go on.
          spdlog::error(
              "worker {}: cannot fold job for key {} at commit LSN {}: {}; the key is "
              "held until its lease expires, then retried",
              index_, w.claimed->key, format_lsn(job.commit_lsn), e.what());
          ++progress_.fold_errors;
          w.failed = true;
          break;
        }
      }
    }
    sink.write(plan);
    progress_.mongo_write_commands += sink.stats().write_commands;
    progress_.mongo_statements += sink.stats().statements;
    progress_.changes_folded += plan.changes;
  } catch (...) {
    // Give the keys back at once so another attempt (ours after backoff, or another worker's)
    // can take them; their jobs keep their place and priority.
    std::vector<queue::AckItem> release;
    for (const auto& w : work) release.push_back({w.claimed->key, 0, {}});
    try {
      queue_->ack(claim.fence, release);
    } catch (const std::exception& e) {
      spdlog::warn("worker {}: could not release {} keys ({}); their leases will expire", index_,
                   release.size(), e.what());
    }
    throw;
  }

  std::vector<queue::AckItem> acks;
  std::size_t done = 0;
  for (const auto& w : work) {
    if (w.failed && w.folded == 0) continue;  // keep the lease: retried when it expires
    queue::AckItem a{w.claimed->key, static_cast<int>(w.folded), {}};
    for (std::size_t i = 0; i < w.folded; ++i) a.members.push_back(w.jobs[i].pending_member());
    done += w.folded;
    acks.push_back(std::move(a));
  }
  auto rejected = queue_->ack(claim.fence, acks);
  for (const auto& k : rejected)
    spdlog::warn(
        "worker {}: the lease on key {} expired before its acknowledgement; another worker "
        "redoes its jobs (the fold is idempotent)",
        index_, k);
  progress_.jobs_folded += done;
  return done;
}

void Worker::run(const std::atomic<bool>& stop) {
  std::mt19937 rng(std::random_device{}() + index_);
  auto idle = std::chrono::milliseconds(1);
  auto backoff = std::chrono::milliseconds(100);
  while (!stop.load()) {
    progress_.worker_tick = Progress::now_ns();
    try {
      if (run_once() > 0) {
        idle = std::chrono::milliseconds(1);
        backoff = std::chrono::milliseconds(100);
        continue;
      }
      std::this_thread::sleep_for(idle);
      idle = std::min(idle * 2, cfg_.workers.idle_poll_max);
    } catch (const std::exception& e) {
      if (dynamic_cast<const UnavailableError*>(&e)) {
        redis_.reset();
        queue_.reset();
      }
      auto jitter = std::chrono::milliseconds(
          std::uniform_int_distribution<int>(0, static_cast<int>(backoff.count() / 2))(rng));
      spdlog::warn("worker {}: {}; retrying in {} ms", index_, e.what(),
                   (backoff + jitter).count());
      for (auto slept = std::chrono::milliseconds(0); slept < backoff + jitter && !stop.load();
           slept += std::chrono::milliseconds(50))
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    }
  }
}

}  // namespace walfold::projections
