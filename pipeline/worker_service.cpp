#include "pipeline/worker_service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

#include "common/backoff.h"
#include "common/error.h"
#include "queue/wake.h"

namespace walfold::pipeline {

WorkerService::WorkerService(const Config& cfg, const projections::Projection& projection,
                             mongo::MongoPool& pool, int index, Progress& progress)
    : cfg_(cfg), projection_(projection), pool_(pool), index_(index), progress_(progress) {}

std::size_t WorkerService::run_once() {
  if (!redis_) {
    redis_ = std::make_unique<queue::Redis>(cfg_.redis);
    queue_ = std::make_unique<queue::JobQueue>(
        *redis_, queue::queue_prefix(cfg_.redis.prefix, cfg_.postgres.slot),
        queue::queue_options(cfg_));
  }
  // After a batch failed as a whole for a reason that may belong to one key, keys are taken one
  // at a time for a while, so the others get through and the culprit is told apart.
  // (A claimed unit is a lane, which holds several keys: only its first key is folded then.)
  const bool isolating = isolate_ > 0;
  const int max_keys = isolating ? 1 : cfg_.workers.batch_keys;
  auto claim = queue_->claim(max_keys, cfg_.workers.batch_jobs_per_key, cfg_.workers.lease);
  if (claim.keys.empty()) return 0;
  if (isolate_ > 0) --isolate_;
  auto work = decode(claim);
  if (isolating)  // only the first key is attempted; the others go back untouched
    for (std::size_t i = 1; i < work.size(); ++i)
      work[i] = KeyWork{work[i].claimed, {}, 0, false, {}};
  try {
    fold_and_write(work);
  } catch (const std::exception& e) {
    release_after(claim, work, e);
    throw;
  }
  return acknowledge(claim, work);
}

// Whole jobs up to batch_max_changes rows (at least one job); the rest are given back unfolded
// with the acknowledgement and claimed again, in order, by the next batch.
std::vector<WorkerService::KeyWork> WorkerService::decode(const queue::Claim& claim) const {
  std::vector<KeyWork> work;
  work.reserve(claim.keys.size());
  const auto budget = static_cast<std::size_t>(cfg_.workers.batch_max_changes);
  std::size_t taken = 0;
  for (const auto& k : claim.keys) {
    KeyWork w{&k, {}, 0, false, {}};
    try {
      for (const auto& body : k.bodies) {
        if (taken > 0 && taken >= budget) break;
        w.jobs.push_back(queue::decode_job(body));
        taken += w.jobs.back().changes.size();
      }
    } catch (const DataError& e) {
      // The jobs before it can still be folded; the key stops at this one.
      w.poison = true;
      w.reason = std::string("the job cannot be decoded: ") + e.what();
    }
    work.push_back(std::move(w));
  }
  return work;
}

std::vector<std::string> WorkerService::attempted_keys(const std::vector<KeyWork>& work) {
  std::vector<std::string> keys;
  for (const auto& w : work)
    if (!w.jobs.empty()) keys.push_back(w.claimed->key);
  return keys;
}

void WorkerService::fold_and_write(std::vector<KeyWork>& work) {
  auto batch = projection_.start_batch(pool_);
  std::vector<const queue::Job*> jobs;
  for (const auto& w : work)
    for (const auto& j : w.jobs) jobs.push_back(&j);
  batch->prefetch(attempted_keys(work), jobs);
  for (auto& w : work) {
    for (const auto& job : w.jobs) {
      try {
        batch->fold(job);
        ++w.folded;
      } catch (const DataError& e) {
        // A job that cannot be folded exactly stops its key (later jobs of the same key must
        // not overtake it); other keys go on.
        w.poison = true;
        w.reason = e.what();
        break;
      }
    }
  }
  batch->write();
  // MongoDB acknowledged the fold: each folded job's commit-to-MongoDB latency.
  const auto acked_us = Progress::unix_now_us();
  for (const auto& w : work)
    for (std::size_t j = 0; j < w.folded; ++j)
      progress_.commit_to_mongodb.observe_us(acked_us - w.jobs[j].commit_time_us);
  const auto stats = batch->stats();
  progress_.mongo_write_commands += stats.write_commands;
  progress_.mongo_statements += stats.statements;
  progress_.changes_folded += stats.changes;
}

// Nothing of the batch is known to be in MongoDB. MongoDB errors (unreachable, conflicts,
// elections) are transient: every attempted key waits out a backoff and is retried, forever. A
// data error of a one-key batch (its document cannot be read exactly, a write that cannot be
// built, a document MongoDB refuses) is that key's poison; in a larger batch it is not
// attributable: keys are then claimed one at a time for a while. Keys left out by
// batch_max_changes were not attempted and just go back.
void WorkerService::release_after(const queue::Claim& claim, const std::vector<KeyWork>& work,
                                  const std::exception& e) {
  const auto& cls = error_class(e);  // common/error.h: the one table
  const bool data = cls.kind == ErrorKind::Data;
  const bool unavailable = cls.retry == RetryClass::Reconnect;
  const std::size_t attempted = attempted_keys(work).size();
  if (!unavailable && attempted > 1) isolate_ = static_cast<int>(attempted);
  std::vector<queue::AckItem> release;
  for (const auto& w : work) {
    queue::AckItem a{w.claimed->key, 0};
    a.outcome = w.jobs.empty()           ? queue::Outcome::GiveBack  // not attempted
                : data && attempted == 1 ? queue::Outcome::Poison
                                         : queue::Outcome::Retry;
    a.reason = e.what();
    release.push_back(std::move(a));
  }
  try {
    auto settled = queue_->settle(claim.fence, release);
    count_held(claim, settled);
    report(settled, e.what());
  } catch (const std::exception& e2) {
    spdlog::warn("worker {}: could not release {} keys ({}); their leases will expire", index_,
                 release.size(), e2.what());
  }
}

std::size_t WorkerService::acknowledge(const queue::Claim& claim,
                                       const std::vector<KeyWork>& work) {
  std::vector<queue::AckItem> acks;
  std::size_t done = 0;
  for (const auto& w : work) {
    queue::AckItem a{w.claimed->key, static_cast<int>(w.folded)};
    if (w.poison) {
      a.outcome = queue::Outcome::Poison;
      a.reason = w.reason;
      ++progress_.fold_errors;
    }
    done += w.folded;
    for (std::size_t j = 0; j < w.folded; ++j)
      Progress::add(progress_.folded_by_priority, w.claimed->priorities[j]);
    acks.push_back(std::move(a));
  }
  auto settled = queue_->settle(claim.fence, acks);
  for (const auto& k : settled.rejected)
    spdlog::warn(
        "worker {}: the lease on key {} expired before its acknowledgement; another worker "
        "redoes its jobs (the fold is idempotent)",
        index_, k);
  for (const auto& w : work) {
    if (!w.poison) continue;
    const std::string lsn = w.claimed->commits.size() > w.folded
                                ? format_lsn(w.claimed->commits[w.folded])
                                : std::string("?");
    for (const auto& d : settled.delayed)
      if (d.key == w.claimed->key)
        spdlog::error(
            "worker {}: key {}: the job at commit LSN {} cannot be folded (attempt {} of {}): "
            "{}; the key is retried in {} ms, its later jobs wait",
            index_, d.key, lsn, d.attempts, cfg_.workers.retry.max_attempts, w.reason, d.delay_ms);
  }
  report(settled, "");
  count_held(claim, settled);
  progress_.jobs_folded += done;
  return done;
}

// Retried and dead-lettered jobs, by the priority class of the key's head job when claimed.
void WorkerService::count_held(const queue::Claim& claim, const queue::AckResult& r) {
  auto priority = [&](const std::string& key) {
    for (const auto& k : claim.keys)
      if (k.key == key && !k.priorities.empty()) return k.priorities.front();
    return 0;
  };
  for (const auto& d : r.delayed) Progress::add(progress_.retried_by_priority, priority(d.key));
  for (const auto& d : r.dead) Progress::add(progress_.dead_by_priority, priority(d.key));
}

void WorkerService::report(const queue::AckResult& r, const std::string& batch_error) {
  for (const auto& d : r.dead) {
    auto dl = queue_->dead_letter(d.key);
    spdlog::error(
        "DEAD LETTER: key {} is dead after {} failed attempts at commit LSN {}: {}. Its later "
        "jobs wait and the checkpoint stays before it. Inspect: `walfold queue dead inspect {}`; "
        "then `walfold queue dead retry {}` (after a fix) or `purge` (loses its changes until "
        "`walfold reconcile --repair`)",
        d.key, d.attempts,
        dl && !dl->lsn.empty() ? format_lsn(parse_lsn_key(dl->lsn).value_or(0)) : "?",
        dl ? dl->reason : std::string("?"), d.key, d.key);
  }
  if (!batch_error.empty())
    for (const auto& d : r.delayed)
      spdlog::debug("worker {}: key {} retried in {} ms (attempt {}): {}", index_, d.key,
                    d.delay_ms, d.attempts, batch_error);
}

void WorkerService::run(const Wakeup& stop) {
  // Idle: wait until the reader has enqueued (queue/wake.h), at most workers.idle_poll_max.
  queue::WakeWait wake(queue::queue_prefix(cfg_.redis.prefix, cfg_.postgres.slot));
  // After Redis or MongoDB failed: kBackoffMin doubling to kBackoffMax, jitter up to half.
  Backoff backoff(kBackoffMin, kBackoffMax, 0.5,
                  std::random_device{}() + static_cast<unsigned>(index_));
  while (!stop.is_set()) {
    Loop::turn();
    try {
      if (run_once() > 0) {
        backoff.reset();
        continue;
      }
      wake.wait(*redis_, cfg_.workers.idle_poll_max);
    } catch (const std::exception& e) {
      if (error_class(e).retry == RetryClass::Reconnect) {
        redis_.reset();
        queue_.reset();
      }
      const auto wait = backoff.next();
      spdlog::warn("worker {}: {}; retrying in {} ms", index_, e.what(), wait.count());
      pause(stop, wait, server_named_in(e.what(), Server::MongoDB));
    }
  }
}

}  // namespace walfold::pipeline
