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

namespace {

struct Options {
  RedisConfig rc;
  double minutes = 10, every = 10;
  int rate = 5000;
  long long fill = 0, cost = 0, per_commit = 1;
  int claim_keys = 256, claim_jobs = 64, lanes = queue::kDefaultLanes;
};

// Returns false (after saying why) on an unknown option.
bool parse_options(int argc, char** argv, Options& o) {
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    const char* v = argv[i + 1];
    if (a == "--host")
      o.rc.host = v;
    else if (a == "--port")
      o.rc.port = std::atoi(v);
    else if (a == "--minutes")
      o.minutes = std::atof(v);
    else if (a == "--rate")
      o.rate = std::atoi(v);
    else if (a == "--every")
      o.every = std::atof(v);
    else if (a == "--fill")
      o.fill = std::atoll(v);
    else if (a == "--cost")
      o.cost = std::atoll(v);
    else if (a == "--per-commit")
      o.per_commit = std::max(1LL, std::atoll(v));
    else if (a == "--claim-keys")
      o.claim_keys = std::atoi(v);
    else if (a == "--claim-jobs")
      o.claim_jobs = std::atoi(v);
    else if (a == "--lanes")
      o.lanes = std::max(1, std::atoi(v));
    else {
      std::fprintf(stderr, "unknown option %s\n", argv[i]);
      return false;
    }
  }
  return true;
}

// One queue under a prefix of its own on the bench's Redis, removed at the end.
class Bench {
 public:
  explicit Bench(const Options& o)
      : o_(o),
        admin_(o.rc),
        prefix_(queue::queue_prefix("bench" + std::to_string(::getpid()), "mem")) {
    opts_.retry = {50, 1000, 10};
    opts_.lanes = o.lanes;
    queue::JobQueue(admin_, prefix_, opts_).ensure_epoch("bench");
  }
  ~Bench() { cleanup(); }

  void cost();
  void fill();
  void sustained();

 private:
  long long used() {
    auto info = admin_.command({"INFO", "memory"});
    std::string s(info->str, info->len);
    auto at = s.find("used_memory:");
    return std::atoll(s.c_str() + at + std::strlen("used_memory:"));
  }
  void cleanup() {
    auto keys = admin_.command({"KEYS", prefix_ + ":*"});
    for (size_t i = 0; i < keys->elements; ++i)
      admin_.command({"DEL", std::string(keys->element[i]->str, keys->element[i]->len)});
  }
  // Redis's own CPU seconds (user + sys), from INFO cpu.
  double redis_cpu() {
    auto info = admin_.command({"INFO", "cpu"});
    std::string s(info->str, info->len);
    auto field = [&](const char* name) {
      auto at = s.find(name);
      return at == std::string::npos ? 0.0 : std::atof(s.c_str() + at + std::strlen(name));
    };
    return field("used_cpu_user:") + field("used_cpu_sys:");
  }
  // Claims and acknowledges everything queued; returns the jobs folded and counts the claims.
  long long drain(queue::JobQueue& q, long long& claims);

  const Options& o_;
  queue::Redis admin_;
  const std::string prefix_;
  queue::QueueOptions opts_;
};

long long Bench::drain(queue::JobQueue& q, long long& claims) {
  long long folded = 0;
  for (;;) {
    auto c = q.claim(o_.claim_keys, o_.claim_jobs, milliseconds(600000));
    if (c.keys.empty()) break;
    ++claims;
    std::vector<queue::AckItem> acks;
    for (const auto& k : c.keys) {
      acks.push_back({k.key, static_cast<int>(k.bodies.size())});
      folded += static_cast<long long>(k.bodies.size());
    }
    q.settle(c.fence, acks);
  }
  return folded;
}

void Bench::cost() {
  queue::JobQueue q(admin_, prefix_, opts_);
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
  for (long long n = 0; n < o_.cost;) {
    std::vector<queue::EnqueueItem> items;
    for (int i = 0; i < 2000 && n < o_.cost; ++i, ++n) {
      std::string key = "a:" + std::to_string(rng() % 20000);
      items.push_back(
          {key, static_cast<int>(rng() % 8), static_cast<Lsn>(1 + n / o_.per_commit), body_of()});
    }
    q.enqueue(items, static_cast<Lsn>(1 + n / o_.per_commit));
    ++calls;
  }
  const double c1 = redis_cpu();
  long long claims = 0;
  const long long folded = drain(q, claims);
  const double c2 = redis_cpu();
  std::printf(
      "%lld jobs (%lld per commit, 200-byte varied bodies, 20000 keys, %d lanes): enqueue %.2f "
      "us "
      "of Redis CPU per job (%lld calls); claim+ack %.2f us per folded job (%lld claims of up to "
      "%d lanes x %d jobs, %lld jobs folded); pending after: %lld\n",
      o_.cost, o_.per_commit, o_.lanes, (c1 - c0) * 1e6 / double(o_.cost), calls,
      (c2 - c1) * 1e6 / double(std::max(1LL, folded)), claims, o_.claim_keys, o_.claim_jobs, folded,
      q.counts().pending_jobs);
}

void Bench::fill() {
  queue::JobQueue q(admin_, prefix_, opts_);
  const std::string body(200, 'j');
  const long long before = used();
  std::mt19937 rng(1);
  for (Lsn lsn = 1; lsn <= static_cast<Lsn>(o_.fill);) {
    std::vector<queue::EnqueueItem> items;
    for (int i = 0; i < 1000 && lsn <= static_cast<Lsn>(o_.fill); ++i, ++lsn) {
      std::string key = "a:" + std::to_string(rng() % 20000);
      items.push_back({key, static_cast<int>(rng() % 8), lsn, body});
    }
    q.enqueue(items, lsn);
  }
  const long long after = used();
  std::printf(
      "%lld jobs with 200-byte bodies over 20000 keys: used_memory +%lld bytes, %.0f "
      "bytes per job (%.0f besides the body)\n",
      o_.fill, after - before, double(after - before) / double(o_.fill),
      double(after - before) / double(o_.fill) - 200);
}

void Bench::sustained() {
  std::atomic<bool> stop{false};
  std::atomic<long long> enqueued{0}, folded{0}, retried{0};
  const auto end = steady_clock::now() + duration<double>(o_.minutes * 60);
  std::thread producer([&] {
    queue::Redis r(o_.rc);
    queue::JobQueue q(r, prefix_, opts_);
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
      next += microseconds(1000000LL * batch / o_.rate);
      std::this_thread::sleep_until(next);
    }
  });
  std::vector<std::thread> workers;
  for (int w = 0; w < 2; ++w)
    workers.emplace_back([&, w] {
      queue::Redis r(o_.rc);
      queue::JobQueue q(r, prefix_, opts_);
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
    auto pending = admin_.command({"ZCARD", prefix_ + ":pending"})->integer;
    std::printf("%8.0f %12lld %12lld %10lld %8lld %14lld\n",
                duration<double>(steady_clock::now() - start).count(), enqueued.load(),
                folded.load(), pending, retried.load(), used());
    std::fflush(stdout);
    std::this_thread::sleep_for(duration<double>(o_.every));
  }
  stop = true;
  producer.join();
  for (auto& t : workers) t.join();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse_options(argc, argv, o)) return 64;
  Bench bench(o);
  if (o.cost > 0)
    bench.cost();
  else if (o.fill > 0)
    bench.fill();
  else
    bench.sustained();
  return 0;
}
