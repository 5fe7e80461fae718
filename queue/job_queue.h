// The job queue in Redis. Key layout (all under one hash tag, so every script touches one
// Redis Cluster slot); P = "<redis.prefix>:{<slot name>}":
//   P:k:<ordering key>  LIST   the key's jobs in commit order, each "<score>|<job body>"
//   P:ready             ZSET   ordering keys with jobs and no owner, scored by head job
//   P:active            ZSET   claimed ordering keys, scored by lease deadline (ms)
//   P:owner             HASH   claimed ordering key -> fence token of its claim
//   P:lift              HASH   claimed ordering key -> most urgent score enqueued meanwhile
//   P:pending           ZSET   "<commit lsn hex>:<key>" for every job not yet folded (score 0,
//                              lexicographic = LSN order): its minimum is the checkpoint
//   P:meta              HASH   epoch (random, set by the reader: its absence means Redis lost
//                              walfold's data), seq, fence, enqueued_end_lsn
// Per-key order holds because a key has at most one owner and is only trimmed at its head.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "common/lsn.h"
#include "queue/redis.h"

namespace walfold::queue {

struct EnqueueItem {
  std::string key;
  int priority;
  std::string member;  // Job::pending_member()
  std::string body;    // encode_job()
};

struct ClaimedKey {
  std::string key;
  std::vector<std::string> bodies;  // job bodies, head first (score prefix stripped)
};

struct Claim {
  std::int64_t fence = 0;
  std::vector<ClaimedKey> keys;
};

struct AckItem {
  std::string key;
  int jobs_done = 0;                 // removed from the head of the key's list
  std::vector<std::string> members;  // pending members of the done jobs
};

struct QueueCounts {
  long long ready_keys = 0, active_keys = 0, pending_jobs = 0;
};

class JobQueue {
 public:
  JobQueue(Redis& redis, std::string prefix);
  const std::string& prefix() const { return prefix_; }

  // Reader side.
  void enqueue(const std::vector<EnqueueItem>& items, Lsn completes_end_lsn);
  // The same without waiting: the batch is sent and Redis runs it while the caller goes on
  // reading WAL. enqueue_wait() collects its reply (re-sending it with EVAL if Redis lost the
  // script); every other call waits for it first. At most one batch is in flight.
  void enqueue_send(std::vector<EnqueueItem> items, Lsn completes_end_lsn);
  void enqueue_wait();
  bool enqueue_in_flight() const { return in_flight_.has_value(); }
  std::optional<Lsn> oldest_pending_commit();

  // Redis-loss detection (queue/scripts/epoch.lua). At the start of a reader session, with the
  // epoch and sequence number this process saw last: {epoch, 0 adopted | 1 first start |
  // 2 Redis lost data: the queue was emptied, replay everything after the checkpoint}. Workers
  // claim nothing until a queue has an epoch. state() reads the epoch, the last job sequence
  // number and the oldest pending commit in one atomic step.
  std::pair<std::string, int> ensure_epoch(const std::string& fresh, const std::string& known = "",
                                           long long known_seq = 0);
  struct State {
    std::optional<std::string> epoch;
    long long seq = 0;
    std::optional<Lsn> oldest_pending;
  };
  State state();
  // The sequence number Redis returned for the last enqueued batch (0 before any).
  long long last_seq() const { return last_seq_; }
  Lsn enqueued_end_lsn();

  // Worker side.
  Claim claim(int max_keys, int max_jobs, std::chrono::milliseconds lease);
  // Returns the keys whose ack was rejected (lease lost).
  std::vector<std::string> ack(std::int64_t fence, const std::vector<AckItem>& items);

  QueueCounts counts();

 private:
  struct InFlight {
    std::vector<EnqueueItem> items;
    Lsn end;
  };
  std::vector<std::string_view> enqueue_args(const std::vector<EnqueueItem>& items, Lsn end,
                                             std::deque<std::string>& owned) const;
  Redis& redis_;
  std::string prefix_;
  std::optional<InFlight> in_flight_;
  long long last_seq_ = 0;
};

// "<prefix>:{<slot>}"
std::string queue_prefix(const std::string& redis_prefix, const std::string& slot);

}  // namespace walfold::queue
