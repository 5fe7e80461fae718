// The job queue in Redis, format 3 (lanes). Key layout (all under one hash tag, so every script
// touches one Redis Cluster slot); P = "<redis.prefix>:{<slot name>}". The unit of storage,
// readiness and lease is a *unit*: a lane "l:<n>" (ordering keys hash into `lanes` lanes, FNV-1a
// of the key modulo meta's `lanes`, lane_of_key()) or, while a key is detached, the key itself
// "k:<ordering key>":
//   P:l:<n>             LIST   the lane's jobs in arrival order (so each key's in commit order),
//   P:k:<ordering key>  LIST   a detached key's jobs; each entry "<score>:<enqueued ms>:<commit
//                              lsn, 16 hex>:<priority>:<key length>:<key><body>"
//   P:ready             ZSET   units with jobs and no owner, scored by head job (or lifted)
//   P:active            ZSET   claimed units, scored by lease deadline (ms)
//   P:owner             HASH   claimed unit -> fence token of its claim
//   P:lift              HASH   unit not in ready (claimed, delayed, dead) -> most urgent score
//                              enqueued meanwhile, applied when it goes back to ready
//   P:detached          HASH   ordering key -> its lane, for keys that failed (retried or dead)
//                              and have their own list until it empties (then they rejoin)
//   P:dlanes            HASH   lane -> number of its detached keys (enqueue looks there only)
//   P:delayed           ZSET   detached keys ("k:<key>") waiting out a retry backoff, scored by
//                              when they may run (ms)
//   P:attempts          HASH   key -> failed attempts of its current head job
//   P:dead              HASH   dead-lettered key -> JSON {attempts, reason, lsn, at_ms}; the key
//                              is detached and in no other set, its list and its commits' counts
//                              stay (blocked)
//   P:left              HASH   commit LSN (16 hex) -> list entries of that commit not yet folded
//                              (enqueue adds, ack and purge take off what they remove)
//   P:since             HASH   commit LSN (16 hex) -> Redis ms when its first job was enqueued
//                              (while it is pending: the age of the oldest pending commit)
//   P:pending           ZSET   the commit LSNs (16 hex) whose count in `left` is above zero
//                              (score 0, lexicographic = LSN order): its minimum is the oldest
//                              commit with an unfolded job, the checkpoint's bound
//   P:meta              HASH   epoch (random, set by the reader: its absence means Redis lost
//                              walfold's data), seq (jobs enqueued), done (jobs folded or
//                              purged; seq - done are queued), stamp (last arrival stamp), fence,
//                              enqueued_end_lsn, paused (present: claim nothing), format (this
//                              layout's version, kQueueFormat: set with the epoch; a queue marked
//                              with another format is refused, see check_format()), lanes (the
//                              lane count, set with the epoch; another one is refused)
// Per-key order holds because a key's jobs are in exactly one list at a time (its lane's, or its
// own while detached: enqueue sends them there, and it rejoins only once that list is empty), a
// unit has at most one owner and only the owner removes or moves entries. A unit is in exactly
// one of ready, active, delayed, dead while it has jobs (lanes are never delayed or dead: a
// failing key leaves its lane, so it holds up none of its lane mates).
// Score = arrival stamp (Redis ms * 256, strictly increasing) + priority * aging_ms * 256: a job
// of priority p sorts like a priority-0 job that arrived p * aging_ms later (bounded wait). The
// reader (the single writer) stamps and builds the entries itself, on its estimate of Redis's
// clock (offset measured once per JobQueue), continuing from meta's `stamp`.
// Costs (Redis calls): an enqueued batch makes one RPUSH per lane (the client's entries as they
// are; ~1,000 lanes take a 2,000-job batch in ~900 calls where one list per key took ~1,900 on
// the bulk backlog) and a few variadic calls per batch; a claim a few variadic calls in
// claim.lua, then one plain LRANGE per unit, pipelined (outside Lua); an ack one LPOP and one
// LINDEX per unit and a few variadic calls (a lane whose claimed entries are all done is popped
// unchecked; any other is checked entry by entry, and rebuilt if a key failed or was given back
// out of its order).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common/lsn.h"
#include "queue/enqueue.h"
#include "queue/redis.h"
#include "queue/settings.h"  // warn_about_redis_settings(), for `walfold run` at start

namespace walfold::queue {

// The version of the key layout above and of the job bodies in it (queue/job.h), kept in meta's
// `format` (set when the epoch is). A build meets a queue written in another format (an upgrade
// or a downgrade with jobs still queued) and refuses it with a DataError (exit 65, not
// restarted by systemd) saying how to drain or empty it: the reader at the start of a session,
// `walfold queue`, `walfold check-config`, and claim.lua for workers. A queue without the marker
// was written before it existed (format 1: one list per key, J1 bodies): adopted and marked when
// it holds no job, refused as format '1' when it does. Bump it whenever the layout or the body
// format changes (and write the upgrade note in README.md).
// 1: one list per key with J1 bodies (unmarked); 2: the same layout with J2 bodies; 3: lanes
// (the layout above) with J2 bodies.
inline constexpr const char* kQueueFormat = "3";
// The format of a queue without the marker.
inline constexpr const char* kUnmarkedQueueFormat = "1";

// What ensure_epoch() found (queue/scripts/epoch.lua).
enum class EpochState {
  Adopted,     // the queue this process (or its predecessor) wrote: go on
  FirstStart,  // no queue state: stream from the slot's confirmed position
  Lost,        // Redis lost walfold's data: the queue was emptied, replay after the checkpoint
};

// One job as stored in a key's list.
struct QueueEntry {
  double score = 0;
  int priority = 0;
  long long enqueued_ms = 0;  // Redis clock when it was enqueued
  Lsn commit_lsn = 0;
  std::string key;  // its ordering key
  std::string body;
};
// Parses a list entry; throws DataError on a malformed one.
QueueEntry parse_entry(std::string_view entry);

struct ClaimedKey {
  std::string key;
  std::vector<std::string> bodies;  // job bodies, head first
  std::vector<Lsn> commits;         // their commit LSNs
  std::vector<int> priorities;      // their priorities
  std::vector<long long> enqueued_ms;
};

struct Claim {
  std::int64_t fence = 0;
  std::vector<ClaimedKey> keys;
};

// What happened to the job after the done ones (the key's new head).
enum class Outcome {
  GiveBack,  // nothing wrong (or not attempted): the key goes back to ready
  Retry,     // transient failure (MongoDB unavailable, a write error): backoff, never dead
  Poison,    // cannot be folded (undecodable, impossible fold): backoff, dead at max_attempts
};

struct AckItem {
  AckItem() = default;
  AckItem(std::string k, int done, Outcome o = Outcome::GiveBack, std::string why = {},
          double j = -1)
      : key(std::move(k)), jobs_done(done), outcome(o), reason(std::move(why)), jitter(j) {}
  std::string key;
  // Removed from the head of the key's list; ack.lua reads their commits from what it removes.
  int jobs_done = 0;
  Outcome outcome = Outcome::GiveBack;
  std::string reason;  // for Retry/Poison: logged and kept with a dead letter
  double jitter = -1;  // backoff fraction in [0, 1]; < 0: uniformly random (tests pin it)
};

struct AckResult {
  struct Held {
    std::string key;
    long long attempts = 0;  // failed attempts of the key's head job so far
    long long delay_ms = 0;  // backoff before it may be claimed again (delayed only)
  };
  std::vector<std::string> rejected;  // lease lost: untouched
  std::vector<Held> delayed;          // waiting out a backoff
  std::vector<Held> dead;             // went to the dead letters
};

struct RetryPolicy {
  long long initial_ms = 100, max_ms = 60000;
  int max_attempts = 10;  // poison failures of one head job before it is dead
};

// The number of lanes a queue hashes its ordering keys into (kept in meta's `lanes`).
inline constexpr int kDefaultLanes = 1024;

struct QueueOptions {
  long long aging_ms = 1000;  // priorities.aging_ms
  RetryPolicy retry;          // workers.retry
  int lanes = kDefaultLanes;  // a queue is never read or written with another lane count
};

struct QueueCounts {
  long long ready_keys = 0, active_keys = 0, pending_jobs = 0, delayed_keys = 0, dead_keys = 0;
  long long pending_commits = 0;  // commits with jobs not yet folded
  bool paused = false;
};

struct DeadLetter {
  std::string key;
  long long attempts = 0;
  std::string reason;
  std::string lsn;  // commit LSN of the head job, 16 hex digits ('' if unknown)
  long long at_ms = 0;
  long long jobs = 0;  // jobs waiting in the key (the dead one first)
};

// Counts by priority class (the head job's priority) and state, for `walfold queue stats`.
struct QueueStats {
  struct Class {
    long long ready = 0, active = 0, delayed = 0, dead = 0;  // keys
    long long jobs = 0;                                      // jobs queued in those keys
  };
  std::map<int, Class> by_priority;
  QueueCounts counts;
  std::optional<long long> oldest_pending_age_ms;  // of the oldest pending commit's job
  std::optional<Lsn> oldest_pending_commit;
  std::optional<std::string> oldest_pending_key;  // a key holding one of its jobs
};

class JobQueue : public EnqueueSink {
 public:
  JobQueue(Redis& redis, std::string prefix, QueueOptions options = {});
  const std::string& prefix() const { return prefix_; }

  // Reader side.
  void enqueue(const std::vector<EnqueueItem>& items, Lsn completes_end_lsn);
  // The same without waiting: the batch is sent (EVAL with the script's text, so Redis can never
  // answer NOSCRIPT and need a re-send out of order) and Redis runs it while the caller goes on
  // reading WAL; several batches may be in flight. Each batch sent while another is in flight
  // names its predecessor, and enqueue.lua applies it only if the predecessor was applied: a
  // batch that failed (e.g. Redis over maxmemory) is never overtaken by the next one.
  // enqueue_wait_one() collects the oldest batch's reply, enqueue_wait() all of them; every
  // other call waits for all first. On an error the replies of the later batches are read too
  // (the connection stays usable) and the first error is thrown.
  void enqueue_send(const std::vector<EnqueueItem>& items, Lsn completes_end_lsn) override;
  void enqueue_wait_one() override;
  void enqueue_wait();
  std::size_t enqueue_in_flight() const { return in_flight_; }
  std::optional<Lsn> oldest_pending_commit();

  // Redis-loss detection (queue/scripts/epoch.lua). At the start of a reader session, with the
  // epoch and sequence number this process saw last: the epoch and what was found (EpochState).
  // Throws DataError (before touching anything) if the queue is in another format than
  // kQueueFormat. Workers claim nothing until a queue has an epoch. state() reads the epoch, the
  // last job sequence number and the oldest pending commit in one atomic step.
  // Empties every queue key and starts epoch `fresh`, as after a detected loss: everything after
  // the slot's confirmed position is enqueued again (reconcile --full / --from-lsn). A queue in
  // another format is emptied too (every key under the prefix).
  void reset(const std::string& fresh);
  std::pair<std::string, EpochState> ensure_epoch(const std::string& fresh,
                                                  const std::string& known = "",
                                                  long long known_seq = 0);
  // Throws DataError if Redis holds this queue in another format than kQueueFormat (the message
  // says what to do); returns the format found ("" if the queue has no marker or no state yet).
  std::string check_format();
  struct State {
    std::optional<std::string> epoch;
    long long seq = 0;
    std::optional<Lsn> oldest_pending;
  };
  State state();
  // The sequence number Redis returned for the last enqueued batch (0 before any).
  long long last_seq() const { return last_seq_; }
  Lsn enqueued_end_lsn();

  // Worker side. Claims up to max_keys units (lanes or detached keys, see above) with up to
  // max_jobs jobs each, and returns their jobs grouped by ordering key (a lane's keys in the order
  // they first appear in it).
  Claim claim(int max_keys, int max_jobs, std::chrono::milliseconds lease);
  // Settles claimed keys (queue/scripts/ack.lua): removes the done jobs, then gives each key
  // back, delays it (Retry, Poison) or dead-letters it (Poison at the attempt limit).
  AckResult settle(std::int64_t fence, const std::vector<AckItem>& items);
  // The same; returns the keys whose ack was rejected (lease lost).
  std::vector<std::string> ack(std::int64_t fence, const std::vector<AckItem>& items);

  QueueCounts counts();

  // Operators (`walfold queue`).
  QueueStats stats();
  std::vector<DeadLetter> dead_letters();
  std::optional<DeadLetter> dead_letter(const std::string& key);
  // Up to `limit` jobs of a key, head first.
  std::vector<QueueEntry> entries(const std::string& key, long long limit);
  // false if the key is not dead.
  bool retry_dead(const std::string& key);
  // Jobs dropped, or -1 if the key is not dead.
  long long purge_dead(const std::string& key);
  void set_paused(bool paused);
  // Redis's clock in ms.
  long long redis_time_ms();

 private:
  std::vector<std::string_view> enqueue_args(const std::vector<EnqueueItem>& items, Lsn end,
                                             std::deque<std::string>& owned);
  // A member of P:pending (16 hex digits); throws DataError naming the key otherwise.
  std::optional<Lsn> pending_lsn(std::string_view member) const;
  Redis& redis_;
  std::string prefix_;
  QueueOptions options_;
  std::mt19937_64 rng_;
  std::size_t in_flight_ = 0;
  long long last_seq_ = 0;
  std::string batch_id_;       // random per JobQueue; batches are "<id>:<counter>"
  long long batch_count_ = 0;  // the last batch's counter
  // Arrival stamps (see enqueue.lua): the last one given, and the offset of Redis's clock from
  // this host's, both learned from Redis at the first enqueue (meta's `stamp`, TIME).
  void learn_clock();
  bool clock_known_ = false;
  long long stamp_ = 0;
  long long redis_offset_ms_ = 0;
  // The last claim's lanes, each with the keys of its claimed entries in lane order: its settle
  // tells ack.lua which lanes are done whole (their claimed entries pop without being checked).
  std::int64_t last_fence_ = 0;
  std::vector<std::pair<std::string, std::vector<std::string>>> last_lanes_;
};

// The lane of an ordering key: FNV-1a of its bytes modulo `lanes`.
std::uint32_t lane_of_key(std::string_view key, int lanes);
// "<prefix>:{<slot>}"
std::string queue_prefix(const std::string& redis_prefix, const std::string& slot);
// The queue settings of a configuration (priorities.aging_ms, workers.retry).
QueueOptions queue_options(const Config& cfg);

}  // namespace walfold::queue
