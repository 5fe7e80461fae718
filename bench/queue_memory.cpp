// Sustained enqueue/claim/ack load against a real Redis, printing Redis's used_memory every few
// seconds: finished jobs must leave nothing behind, so memory stays flat (issue #4). Not run in
// CI; results in bench/README.md.
//
//   bench_queue_memory --port P [--host H] [--minutes M] [--rate JOBS_PER_S] [--every S]
//   bench_queue_memory --port P --fill N     memory per queued job: N jobs, no workers
//   bench_queue_memory --port P --cost N [--per-commit K] [--claim-keys C] [--claim-jobs J]
//                                            [--lanes L] (the queue's lanes, default 1024)
//                                            Redis CPU per job (INFO cpu of the whole server, so
//                                            give it a Redis of its own): N jobs enqueued in
//                                            batches of 2,000 (K jobs per commit), then claimed
//                                            (C keys x J jobs, the worker's defaults) and acked
//
// One producer enqueues jobs of ~200 bytes over 20,000 accounts at a steady rate, in batches,
// with mixed priorities; two workers claim, "fold" and acknowledge them; 1% of settlements are
// transient failures (the key waits out a backoff and is retried), so the delayed and attempts
// structures are exercised too. The queue prefix is removed at the end.
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/lsn.h"
#include "queue/job_queue.h"
#include "queue/redis.h"

using namespace walfold;
using namespace std::chrono;

int main(int argc, char** argv) {
  RedisConfig rc;
  double minutes = 10, every = 10;
  int rate = 5000;
  long long fill = 0, cost = 0, per_commit = 1;
  int claim_keys = 256, claim_jobs = 64, lanes = queue::kDefaultLanes;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--host")
      rc.host = argv[i + 1];
    else if (a == "--port")
      rc.port = std::atoi(argv[i + 1]);
    else if (a == "--minutes")
      minutes = std::atof(argv[i + 1]);
    else if (a == "--rate")
      rate = std::atoi(argv[i + 1]);
    else if (a == "--every")
      every = std::atof(argv[i + 1]);
    else if (a == "--fill")
      fill = std::atoll(argv[i + 1]);
    else if (a == "--cost")
      cost = std::atoll(argv[i + 1]);
    else if (a == "--per-commit")
      per_commit = std::max(1LL, std::atoll(argv[i + 1]));
    else if (a == "--claim-keys")
      claim_keys = std::atoi(argv[i + 1]);
    else if (a == "--claim-jobs")
      claim_jobs = std::atoi(argv[i + 1]);
    else if (a == "--lanes")
      lanes = std::max(1, std::atoi(argv[i + 1]));
    else {
      std::fprintf(stderr, "unknown option %s\n", argv[i]);
      return 64;
    }
  }
  const std::string prefix = queue::queue_prefix("bench" + std::to_string(::getpid()), "mem");
  queue::Redis admin(rc);
  queue::QueueOptions opts;
  opts.retry = {50, 1000, 10};
  opts.lanes = lanes;
  queue::JobQueue(admin, prefix, opts).ensure_epoch("bench");

  auto used = [&] {
    auto info = admin.command({"INFO", "memory"});
    std::string s(info->str, info->len);
    auto at = s.find("used_memory:");
    return std::atoll(s.c_str() + at + std::strlen("used_memory:"));
  };
  auto cleanup = [&] {
    auto keys = admin.command({"KEYS", prefix + ":*"});
    for (size_t i = 0; i < keys->elements; ++i)
      admin.command({"DEL", std::string(keys->element[i]->str, keys->element[i]->len)});
  };
  // Redis's own CPU seconds (user + sys), from INFO cpu.
  auto redis_cpu = [&] {
    auto info = admin.command({"INFO", "cpu"});
    std::string s(info->str, info->len);
    auto field = [&](const char* name) {
      auto at = s.find(name);
      return at == std::string::npos ? 0.0 : std::atof(s.c_str() + at + std::strlen(name));
    };
    return field("used_cpu_user:") + field("used_cpu_sys:");
  };
  if (cost > 0) {
    queue::JobQueue q(admin, prefix, opts);
    std::mt19937 rng(1);
    // Bodies of 200 varied bytes, as encoded jobs are (ids, amounts, timestamps): identical
    // bodies would make Lua's string interning (which hashes a sample of a long string's bytes)
    // collide on every entry and measure that instead.
    auto body_of = [&] {
      std::string b(200, ' ');
      for (auto& ch : b) ch = static_cast<char>('0' + rng() % 64);
      return b;
    };
    const double c0 = redis_cpu();
    long long calls = 0;
    for (long long n = 0; n < cost;) {
      std::vector<queue::EnqueueItem> items;
      for (int i = 0; i < 2000 && n < cost; ++i, ++n) {
        std::string key = "a:" + std::to_string(rng() % 20000);
        items.push_back(
            {key, static_cast<int>(rng() % 8), static_cast<Lsn>(1 + n / per_commit), body_of()});
      }
      q.enqueue(items, static_cast<Lsn>(1 + n / per_commit));
      ++calls;
    }
    const double c1 = redis_cpu();
    long long folded = 0, claims = 0;
    for (;;) {
      auto c = q.claim(claim_keys, claim_jobs, milliseconds(600000));
      if (c.keys.empty()) break;
      ++claims;
      std::vector<queue::AckItem> acks;
      for (const auto& k : c.keys) {
        acks.push_back({k.key, static_cast<int>(k.bodies.size())});
        folded += static_cast<long long>(k.bodies.size());
      }
      q.settle(c.fence, acks);
    }
    const double c2 = redis_cpu();
    std::printf(
        "%lld jobs (%lld per commit, 200-byte varied bodies, 20000 keys, %d lanes): enqueue %.2f "
        "us "
        "of Redis CPU per job (%lld calls); claim+ack %.2f us per folded job (%lld claims of up to "
        "%d lanes x %d jobs, %lld jobs folded); pending after: %lld\n",
        cost, per_commit, lanes, (c1 - c0) * 1e6 / double(cost), calls,
        (c2 - c1) * 1e6 / double(std::max(1LL, folded)), claims, claim_keys, claim_jobs, folded,
        q.counts().pending_jobs);
    cleanup();
    return 0;
  }
  if (fill > 0) {
    queue::JobQueue q(admin, prefix, opts);
    const std::string body(200, 'j');
    const long long before = used();
    std::mt19937 rng(1);
    for (Lsn lsn = 1; lsn <= static_cast<Lsn>(fill);) {
      std::vector<queue::EnqueueItem> items;
      for (int i = 0; i < 1000 && lsn <= static_cast<Lsn>(fill); ++i, ++lsn) {
        std::string key = "a:" + std::to_string(rng() % 20000);
        items.push_back({key, static_cast<int>(rng() % 8), lsn, body});
      }
      q.enqueue(items, lsn);
    }
    const long long after = used();
    std::printf(
        "%lld jobs with 200-byte bodies over 20000 keys: used_memory +%lld bytes, %.0f "
        "bytes per job (%.0f besides the body)\n",
        fill, after - before, double(after - before) / double(fill),
        double(after - before) / double(fill) - 200);
    cleanup();
    return 0;
  }

  std::atomic<bool> stop{false};
  std::atomic<long long> enqueued{0}, folded{0}, retried{0};
  const auto end = steady_clock::now() + duration<double>(minutes * 60);

  std::thread producer([&] {
    queue::Redis r(rc);
    queue::JobQueue q(r, prefix, opts);
    std::mt19937 rng(1);
    const std::string body(200, 'j');
    Lsn lsn = 1;
    const int batch = 250;
    auto next = steady_clock::now();
    while (!stop) {
      std::vector<queue::EnqueueItem> items;
      for (int i = 0; i < batch; ++i, ++lsn) {
        std::string key = "a:" + std::to_string(rng() % 20000);
        items.push_back({key, static_cast<int>(rng() % 8), lsn, body});
      }
      q.enqueue(items, lsn);
      enqueued += batch;
      next += microseconds(1000000LL * batch / rate);
      std::this_thread::sleep_until(next);
    }
  });
  std::vector<std::thread> workers;
  for (int w = 0; w < 2; ++w)
    workers.emplace_back([&, w] {
      queue::Redis r(rc);
      queue::JobQueue q(r, prefix, opts);
      std::mt19937 rng(100 + w);
      while (!stop) {
        auto c = q.claim(64, 32, milliseconds(30000));
        if (c.keys.empty()) {
          std::this_thread::sleep_for(milliseconds(2));
          continue;
        }
        std::vector<queue::AckItem> acks;
        for (const auto& k : c.keys) {
          if (rng() % 100 == 0) {
            acks.push_back({k.key, 0, queue::Outcome::Retry, "bench: transient"});
            ++retried;
          } else {
            acks.push_back({k.key, static_cast<int>(k.bodies.size())});
            folded += static_cast<long long>(k.bodies.size());
          }
        }
        q.settle(c.fence, acks);
      }
    });

  const auto start = steady_clock::now();
  std::printf("%8s %12s %12s %10s %8s %14s\n", "seconds", "enqueued", "folded", "pending",
              "retried", "used_memory");
  while (steady_clock::now() < end) {
    auto pending = admin.command({"ZCARD", prefix + ":pending"})->integer;
    std::printf("%8.0f %12lld %12lld %10lld %8lld %14lld\n",
                duration<double>(steady_clock::now() - start).count(), enqueued.load(),
                folded.load(), pending, retried.load(), used());
    std::fflush(stdout);
    std::this_thread::sleep_for(duration<double>(every));
  }
  stop = true;
  producer.join();
  for (auto& t : workers) t.join();
  cleanup();
  return 0;
}
