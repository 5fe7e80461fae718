// Counters shared by the reader, the workers and the daemon (status, watchdog, benchmarks, the
// metrics of observe/), and the liveness of walfold's own loops that the watchdog supervises.
// Counters are atomics updated by the thread that counts; the HTTP and sampler threads only
// read them.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <string_view>

namespace walfold {

// The servers a loop can be blocked on.
enum class Server : int { None = 0, PostgreSQL, Redis, MongoDB };
inline const char* server_name(Server s) {
  switch (s) {
    case Server::PostgreSQL:
      return "postgresql";
    case Server::Redis:
      return "redis";
    case Server::MongoDB:
      return "mongodb";
    case Server::None:
      break;
  }
  return "no server";
}

// One of walfold's long-running loops (the reader, each worker). A loop is alive while it
// turns (turn() on every iteration, including backoff sleeps) or while it is blocked in a call
// to a server (ServerWait): the watchdog watches walfold's loops, never the servers' health.
struct Loop {
  std::atomic<std::int64_t> tick{0};           // steady_clock ns of the last turn
  std::atomic<int> waiting_on{0};              // a Server while blocked in a call to it
  std::atomic<std::int64_t> waiting_since{0};  // steady_clock ns the outermost call began
  std::atomic<bool> finished{false};           // its thread returned (e.g. at a stop position)

  static std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  // The loop of the calling thread (nullptr when it runs none, e.g. a command-line tool).
  static Loop*& current() {
    static thread_local Loop* loop = nullptr;
    return loop;
  }
  // Records a turn of the calling thread's loop, if it runs one.
  static void turn() {
    if (Loop* l = current()) l->tick = now_ns();
  }
};

// Binds the calling thread to `loop` for its lifetime.
class LoopThread {
 public:
  explicit LoopThread(Loop& loop) : previous_(Loop::current()) {
    loop.tick = Loop::now_ns();
    Loop::current() = &loop;
  }
  ~LoopThread() {
    Loop::current()->finished = true;
    Loop::current() = previous_;
  }
  LoopThread(const LoopThread&) = delete;
  LoopThread& operator=(const LoopThread&) = delete;

 private:
  Loop* previous_;
};

// Marks the calling thread's loop as blocked on `server` for its lifetime (nested waits keep the
// outermost start; the innermost server is shown). Leaving the outermost wait counts as a turn.
class ServerWait {
 public:
  explicit ServerWait(Server server) : loop_(Loop::current()) {
    if (!loop_) return;
    outer_ = static_cast<Server>(loop_->waiting_on.load());
    // The start first: whoever sees the wait also sees when it began.
    if (outer_ == Server::None) loop_->waiting_since = Loop::now_ns();
    loop_->waiting_on = static_cast<int>(server);
  }
  ~ServerWait() {
    if (!loop_) return;
    // The turn first: whoever sees the wait over also sees a fresh tick.
    if (outer_ == Server::None) loop_->tick = Loop::now_ns();
    loop_->waiting_on = static_cast<int>(outer_);
  }
  ServerWait(const ServerWait&) = delete;
  ServerWait& operator=(const ServerWait&) = delete;

 private:
  Loop* loop_;
  Server outer_ = Server::None;
};

// Commit-to-MongoDB latency: fixed buckets (upper bounds in seconds, Prometheus style:
// cumulative when exposed), a count and a sum in microseconds.
struct LatencyHistogram {
  static constexpr std::array<double, 15> bounds{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                                 2.5,   5,    10,    30,   60,  300,  1800};
  std::array<std::atomic<std::uint64_t>, bounds.size() + 1> buckets{};  // last: above all
  std::atomic<std::uint64_t> count{0}, sum_us{0};

  void observe_us(std::int64_t us) {
    if (us < 0) us = 0;  // clocks of two hosts: never a negative latency
    std::size_t i = 0;
    while (i < bounds.size() && static_cast<double>(us) > bounds[i] * 1e6) ++i;
    ++buckets[i];
    sum_us += static_cast<std::uint64_t>(us);
    ++count;
  }
};

struct Progress {
  // Reader
  std::atomic<std::uint64_t> commits_seen{0}, changes_seen{0}, jobs_enqueued{0}, enqueue_calls{0};
  std::atomic<std::uint64_t> received_lsn{0}, confirmed_lsn{0}, heartbeats{0};
  std::atomic<bool> standby{false};  // another reader streams the slot
  // Reader sessions that ended on a server error, by the server named in it; Redis losing
  // walfold's queue (detected, replayed); read-model rebuilds after a TRUNCATE.
  std::atomic<std::uint64_t> reconnects_postgresql{0}, reconnects_redis{0}, reconnects_mongodb{0},
      redis_loss_recoveries{0}, rebuilds{0};
  // Microseconds from writing the last heartbeat message until its WAL position reached the
  // reader in the stream (-1: none yet); whether a snapshot load (initial load, rebuild after a
  // TRUNCATE) is running now.
  std::atomic<std::int64_t> heartbeat_round_trip_us{-1};
  std::atomic<bool> rebuilding{false};
  std::atomic<std::uint64_t> snapshot_documents{0};  // written by snapshot loads, acknowledged
  // Workers
  std::atomic<std::uint64_t> jobs_folded{0}, changes_folded{0}, mongo_write_commands{0},
      mongo_statements{0}, fold_errors{0};
  // Jobs by priority class (0..255): enqueued by the reader, folded, retried after a failure
  // (backoff) and dead-lettered by the workers.
  using ByPriority = std::array<std::atomic<std::uint64_t>, 256>;
  ByPriority enqueued_by_priority{}, folded_by_priority{}, retried_by_priority{},
      dead_by_priority{};
  // From the commit timestamp of a job's transaction (Begin/Commit message) to MongoDB's
  // acknowledgement of the fold; one observation per job folded.
  LatencyHistogram commit_to_mongodb;
  // Liveness of the reader and of each worker (added before their threads start).
  Loop reader;
  std::deque<Loop> workers;

  static std::int64_t now_ns() { return Loop::now_ns(); }
  static std::int64_t unix_now_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  static void add(ByPriority& a, int priority, std::uint64_t n = 1) {
    a[static_cast<std::size_t>(priority) & 255] += n;
  }
  // Counts a reader reconnect under the server its error names ("postgresql at ...", ...).
  void count_reconnect(std::string_view error) {
    if (error.find("redis") != std::string_view::npos)
      ++reconnects_redis;
    else if (error.find("mongodb") != std::string_view::npos)
      ++reconnects_mongodb;
    else
      ++reconnects_postgresql;
  }
};

}  // namespace walfold
