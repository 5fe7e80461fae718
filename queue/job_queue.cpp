#include "queue/job_queue.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdlib>
#include <deque>
#include <unordered_map>

#include "common/error.h"
#include "queue/scripts.h"
#include "queue/wake.h"

namespace walfold::queue {
namespace {

const RedisScript& enqueue_script() {
  static const RedisScript s("enqueue", scripts::enqueue);
  return s;
}
const RedisScript& claim_script() {
  static const RedisScript s("claim", scripts::claim);
  return s;
}
const RedisScript& checkpoint_script() {
  static const RedisScript s("checkpoint", scripts::checkpoint);
  return s;
}
const RedisScript& epoch_script() {
  static const RedisScript s("epoch", scripts::epoch);
  return s;
}
const RedisScript& ack_script() {
  static const RedisScript s("ack", scripts::ack);
  return s;
}
const RedisScript& dead_script() {
  static const RedisScript s("dead", scripts::dead);
  return s;
}

using reply::array;
using reply::at;
using reply::integer;
using reply::text;
using reply::text_or_nil;

// One number followed by ':' at `pos`; advances past the ':'.
template <typename T>
bool take_number(std::string_view s, std::size_t& pos, T& out) {
  auto r = std::from_chars(s.data() + pos, s.data() + s.size(), out);
  if (r.ec != std::errc{} || r.ptr == s.data() + s.size() || *r.ptr != ':') return false;
  pos = static_cast<std::size_t>(r.ptr - s.data()) + 1;
  return true;
}

// Minimal reader for the JSON ack.lua writes with cjson: {"attempts":3,"reason":"...",...}.
std::string json_field(std::string_view json, std::string_view name) {
  std::string needle = "\"" + std::string(name) + "\":";
  auto at = json.find(needle);
  if (at == std::string_view::npos) return {};
  std::size_t i = at + needle.size();
  std::string out;
  if (i < json.size() && json[i] == '"') {
    for (++i; i < json.size() && json[i] != '"'; ++i) {
      if (json[i] == '\\' && i + 1 < json.size()) {
        char e = json[++i];
        switch (e) {
          case 'n':
            out += '\n';
            break;
          case 't':
            out += '\t';
            break;
          case 'r':
            out += '\r';
            break;
          case 'u':
            // cjson escapes control characters as a 'u' and four hex digits.
            if (i + 4 < json.size()) {
              unsigned v = 0;
              std::from_chars(json.data() + i + 1, json.data() + i + 5, v, 16);
              out += static_cast<char>(v);
              i += 4;
            }
            break;
          default:
            out += e;
        }
      } else {
        out += json[i];
      }
    }
    return out;
  }
  while (i < json.size() && json[i] != ',' && json[i] != '}') out += json[i++];
  return out;
}

// A TIME reply in ms.
long long time_ms(const redisReply* t) {
  return std::stoll(std::string(text(at(t, 0, "TIME"), "TIME"))) * 1000 +
         std::stoll(std::string(text(at(t, 1, "TIME"), "TIME"))) / 1000;
}

long long to_ll(const std::string& s) {
  long long v = 0;
  // cjson writes large integers as floats (1.7e+12): read them as doubles.
  if (s.find_first_of(".eE") != std::string::npos) return static_cast<long long>(std::stod(s));
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

// A script's refusal of a queue with another lane count ("WALFOLD lanes: ..."): a data error
// (exit 65, not restarted), like a queue in another format.
[[noreturn]] void rethrow_kind(const RedisReplyError& e) {
  if (std::string_view(e.what()).find("WALFOLD lanes") != std::string_view::npos)
    throw DataError(std::string(e.what()) +
                    " (nothing was changed; drain it with the build that wrote it, or empty it "
                    "with `walfold reconcile --from-lsn`; see README.md, Upgrading)");
  throw e;
}

}  // namespace

std::optional<Lsn> JobQueue::pending_lsn(std::string_view member) const {
  auto lsn = member.size() == 16 ? parse_lsn_key(member) : std::nullopt;
  if (!lsn)
    throw DataError("redis " + prefix_ + ":pending holds a malformed member '" +
                    std::string(member.substr(0, 80)) +
                    "' (a queue written by a walfold before issue #12? see README: Upgrading)");
  return lsn;
}

QueueEntry parse_entry(std::string_view e) {
  // "<score>:<enqueued ms>:<commit lsn, 16 hex>:<priority>:<key length>:<key><body>"
  QueueEntry q;
  std::size_t pos = 0;
  unsigned long long score = 0;
  std::optional<Lsn> lsn;
  bool ok = take_number(e, pos, score) && take_number(e, pos, q.enqueued_ms) &&
            e.size() - pos > 16 && e[pos + 16] == ':' &&
            (lsn = parse_lsn_key(e.substr(pos, 16))).has_value();
  if (ok) pos += 17;
  std::size_t key_len = 0;
  if (!ok || !take_number(e, pos, q.priority) || !take_number(e, pos, key_len) ||
      key_len > e.size() - pos)
    throw DataError("malformed queue entry '" + std::string(e.substr(0, 80)) + "'");
  q.score = static_cast<double>(score);
  q.commit_lsn = *lsn;
  q.key.assign(e.substr(pos, key_len));
  q.body.assign(e.substr(pos + key_len));
  return q;
}

QueueOptions queue_options(const Config& cfg) {
  QueueOptions o;
  o.aging_ms = cfg.priorities.aging.count();
  o.retry.initial_ms = cfg.workers.retry.initial.count();
  o.retry.max_ms = cfg.workers.retry.max.count();
  o.retry.max_attempts = cfg.workers.retry.max_attempts;
  return o;
}

std::uint32_t lane_of_key(std::string_view key, int lanes) {
  // FNV-1a (32 bits): stable across builds and hosts, as the lane of a key must be.
  std::uint32_t h = 2166136261u;
  for (unsigned char c : key) {
    h ^= c;
    h *= 16777619u;
  }
  return h % static_cast<std::uint32_t>(lanes);
}

std::string queue_prefix(const std::string& redis_prefix, const std::string& slot) {
  return redis_prefix + ":{" + slot + "}";
}

JobQueue::JobQueue(Redis& redis, std::string prefix, QueueOptions options)
    : redis_(redis), prefix_(std::move(prefix)), options_(options), rng_(std::random_device{}()) {}

namespace {

// The shape of one batch: its jobs per commit (commits in the order they first appear) and its
// jobs grouped by lane in the order lanes first appear (a key's jobs keep their order).
struct BatchShape {
  std::vector<std::pair<Lsn, long long>> commits;
  std::vector<std::vector<std::size_t>> groups;  // indexes into the items, one group per lane
  std::vector<std::uint32_t> lane_of;            // the lane of each group
};

BatchShape shape_of(const std::vector<EnqueueItem>& items, int lanes) {
  BatchShape b;
  std::vector<int> slot(static_cast<std::size_t>(lanes), -1);  // lane -> index in `groups`
  for (std::size_t i = 0; i < items.size(); ++i) {
    const EnqueueItem& it = items[i];
    if (b.commits.empty() || b.commits.back().first != it.commit_lsn) {
      auto found = std::find_if(b.commits.rbegin(), b.commits.rend(),
                                [&](const auto& c) { return c.first == it.commit_lsn; });
      if (found == b.commits.rend()) {
        b.commits.emplace_back(it.commit_lsn, 1);
      } else {
        ++found->second;
      }
    } else {
      ++b.commits.back().second;
    }
    const std::uint32_t lane = lane_of_key(it.key, lanes);
    if (slot[lane] < 0) {
      slot[lane] = static_cast<int>(b.groups.size());
      b.groups.emplace_back();
      b.lane_of.push_back(lane);
    }
    b.groups[static_cast<std::size_t>(slot[lane])].push_back(i);
  }
  return b;
}

void append_int(std::string& out, long long v) {
  char num[24];
  auto r = std::to_chars(num, num + sizeof num, v);
  out.append(num, static_cast<std::size_t>(r.ptr - num));
}

// One lane list entry: "<score>:<enqueued ms>:<commit lsn 16 hex>:<priority>:<key length>:
// <key><body>". `when` is ":<enqueued ms>:".
std::string encode_entry(const EnqueueItem& it, long long score, std::string_view when) {
  std::string e;
  e.reserve(40 + it.body.size());
  append_int(e, score);
  e += when;
  e += lsn_key(it.commit_lsn);
  e += ':';
  append_int(e, it.priority);
  e += ':';
  append_int(e, static_cast<long long>(it.key.size()));
  e += ':';
  e += it.key;
  e += it.body;
  return e;
}

}  // namespace

std::vector<std::string_view> JobQueue::enqueue_args(const std::vector<EnqueueItem>& items, Lsn end,
                                                     std::deque<std::string>& owned) {
  // enqueue.lua's arguments: the jobs per commit (counts), then the jobs grouped by lane, each
  // lane with its best score and its complete list entries, so Redis makes one RPUSH per lane
  // and builds nothing per job.
  auto own = [&](std::string v) -> std::string_view {
    owned.push_back(std::move(v));
    return owned.back();
  };
  const BatchShape shape = shape_of(items, options_.lanes);
  std::vector<std::string_view> args;
  args.reserve(9 + shape.commits.size() * 2 + shape.groups.size() * 3 + items.size());
  args.push_back(prefix_);
  args.push_back(own(end ? lsn_key(end) : std::string()));
  // The batch's stamps: one per job, strictly increasing, from this host's clock shifted to
  // Redis's (see enqueue.lua).
  if (!clock_known_) learn_clock();
  const long long now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count() +
                           redis_offset_ms_;
  long long stamp = std::max(stamp_, now_ms * 256 - 1);
  const long long last_stamp = stamp + static_cast<long long>(items.size());
  stamp_ = last_stamp;
  args.push_back(own(std::to_string(last_stamp)));
  args.push_back(own(std::to_string(items.size())));
  args.push_back(own(std::to_string(shape.commits.size())));
  args.push_back(own(std::to_string(shape.groups.size())));
  // The batch's name, and its predecessor's while that one is in flight (see enqueue_send).
  if (batch_id_.empty()) batch_id_ = std::to_string(rng_());
  args.push_back(own(in_flight_ > 0 ? batch_id_ + ":" + std::to_string(batch_count_) : ""));
  args.push_back(own(batch_id_ + ":" + std::to_string(++batch_count_)));
  args.push_back(own(std::to_string(options_.lanes)));
  for (const auto& [lsn, n] : shape.commits) {
    args.push_back(own(lsn_key(lsn)));
    args.push_back(own(std::to_string(n)));
  }
  // The stamps follow the order of `items` (arrival), whatever the grouping by lane.
  std::vector<std::string_view> entry(items.size());
  std::vector<long long> score(items.size());
  std::string when = ":";
  append_int(when, now_ms);
  when += ':';
  for (std::size_t i = 0; i < items.size(); ++i) {
    const EnqueueItem& it = items[i];
    if (it.priority < 0 || it.priority > 255)
      throw DataError("job priority " + std::to_string(it.priority) + " outside 0..255");
    score[i] = ++stamp + static_cast<long long>(it.priority) * options_.aging_ms * 256;
    entry[i] = own(encode_entry(it, score[i], when));
  }
  for (std::size_t gi = 0; gi < shape.groups.size(); ++gi) {
    const auto& g = shape.groups[gi];
    long long best = score[g.front()];
    for (std::size_t j : g) best = std::min(best, score[j]);
    args.push_back(own(std::to_string(shape.lane_of[gi])));
    args.push_back(own(std::to_string(g.size())));
    args.push_back(own(std::to_string(best)));
    for (std::size_t j : g) args.push_back(entry[j]);
  }
  return args;
}

void JobQueue::learn_clock() {
  // Called before the first batch of this JobQueue is sent (nothing in flight yet).
  enqueue_wait();
  const auto before = std::chrono::system_clock::now();
  redis_.append({"TIME"});
  redis_.append({"HGET", prefix_ + ":meta", "stamp"});
  auto t = redis_.read_reply();
  auto st = redis_.read_reply();
  const auto after = std::chrono::system_clock::now();
  const long long redis_ms = time_ms(t.get());
  const long long local_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 (before + (after - before) / 2).time_since_epoch())
                                 .count();
  redis_offset_ms_ = redis_ms - local_ms;
  if (auto v = text_or_nil(st.get(), "HGET meta stamp"))
    stamp_ = std::max(stamp_, to_ll(std::string(*v)));
  clock_known_ = true;
}

void JobQueue::enqueue(const std::vector<EnqueueItem>& items, Lsn completes_end_lsn) {
  enqueue_wait();
  std::deque<std::string> owned;  // deque: views into it stay valid
  Reply r;
  try {
    r = redis_.eval(enqueue_script(), {}, enqueue_args(items, completes_end_lsn, owned));
  } catch (const RedisReplyError& e) {
    rethrow_kind(e);
  }
  last_seq_ = integer(r.get(), "enqueue");
  wake_workers(redis_, prefix_);  // queue/wake.h
}

void JobQueue::enqueue_send(const std::vector<EnqueueItem>& items, Lsn completes_end_lsn) {
  std::deque<std::string> owned;
  auto args = enqueue_args(items, completes_end_lsn, owned);
  std::vector<std::string_view> argv{"EVAL", enqueue_script().body(), "0"};
  argv.insert(argv.end(), args.begin(), args.end());
  redis_.append(argv);
  redis_.send();
  ++in_flight_;
}

void JobQueue::enqueue_wait_one() {
  if (in_flight_ == 0) return;
  --in_flight_;
  try {
    Reply r;
    try {
      r = redis_.read_reply();
    } catch (const RedisReplyError& e) {
      rethrow_kind(e);
    }
    last_seq_ = integer(r.get(), "enqueue");
    if (in_flight_ == 0) wake_workers(redis_, prefix_);  // else the next batch's reply does
  } catch (const UnavailableError&) {
    in_flight_ = 0;  // the connection is gone, and the replies with it
    throw;
  } catch (const std::exception&) {
    // The later batches named this one as their predecessor: enqueue.lua refused them. Read
    // their replies so the connection stays in step, then report the first error.
    for (; in_flight_ > 0; --in_flight_) {
      try {
        redis_.read_reply();
      } catch (const UnavailableError&) {
        in_flight_ = 0;
        throw;
      } catch (const std::exception&) {
      }
    }
    throw;
  }
}

void JobQueue::enqueue_wait() {
  while (in_flight_ > 0) enqueue_wait_one();
}

std::optional<Lsn> JobQueue::oldest_pending_commit() {
  enqueue_wait();
  auto r = redis_.command({"ZRANGE", prefix_ + ":pending", "0", "0"});
  if (array(r.get(), "ZRANGE pending").elements == 0) return std::nullopt;
  return pending_lsn(text(at(r.get(), 0, "ZRANGE pending"), "ZRANGE pending"));
}

namespace {
// The refusal of a queue in another format (see kQueueFormat).
[[noreturn]] void refuse_format(const std::string& address, const std::string& prefix,
                                std::string_view found) {
  throw DataError(
      "redis at " + address + " holds the queue " + prefix + " in format '" + std::string(found) +
      "', and this walfold reads and writes format '" + kQueueFormat +
      "' (written by another walfold version; nothing was changed). Drain it with the version "
      "that wrote it (`walfold run --stop-at-lsn current`, then stop), or stop walfold and empty "
      "it with `walfold reconcile --from-lsn <the slot's confirmed LSN>` (or delete the keys " +
      prefix +
      ":*): this version then replays every change after the slot's confirmed "
      "position. See README.md, Upgrading");
}
// The refusal of a queue hashed into another number of lanes (meta `lanes`).
[[noreturn]] void refuse_lanes(const std::string& address, const std::string& prefix,
                               std::string_view found, int lanes) {
  throw DataError("redis at " + address + " holds the queue " + prefix + " with " +
                  std::string(found) + " lanes, and this walfold hashes ordering keys into " +
                  std::to_string(lanes) +
                  " (nothing was changed): a queue is never read with another lane count. Drain "
                  "it with the build that wrote it, or empty it with `walfold reconcile "
                  "--from-lsn <the slot's confirmed LSN>`. See README.md, Upgrading");
}
}  // namespace

std::string JobQueue::check_format() {
  enqueue_wait();
  auto r = redis_.command({"HGET", prefix_ + ":meta", "format"});
  auto v = text_or_nil(r.get(), "HGET meta format");
  if (!v) {
    // Unmarked with an epoch: written before the marker (an older build set both), its jobs (if
    // any) have the older bodies. Without an epoch: Redis lost the queue (the reader replays).
    auto e = redis_.command({"HEXISTS", prefix_ + ":meta", "epoch"});
    auto n = redis_.command({"ZCARD", prefix_ + ":pending"});
    if (integer(e.get(), "HEXISTS meta epoch") == 1 && integer(n.get(), "ZCARD pending") > 0)
      refuse_format(redis_.address(), prefix_, kUnmarkedQueueFormat);
    return {};
  }
  std::string found(*v);
  if (found != kQueueFormat) refuse_format(redis_.address(), prefix_, found);
  auto lanes = redis_.command({"HGET", prefix_ + ":meta", "lanes"});
  if (auto l = text_or_nil(lanes.get(), "HGET meta lanes");
      l && *l != std::to_string(options_.lanes))
    refuse_lanes(redis_.address(), prefix_, *l, options_.lanes);
  return found;
}

std::pair<std::string, EpochState> JobQueue::ensure_epoch(const std::string& fresh,
                                                          const std::string& known,
                                                          long long known_seq) {
  enqueue_wait();
  auto seq = std::to_string(known_seq);
  const auto lanes = std::to_string(options_.lanes);
  auto r = redis_.eval(epoch_script(), {},
                       {prefix_, fresh, known, seq, kQueueFormat, kUnmarkedQueueFormat, lanes});
  const long long state = integer(at(r.get(), 1, "epoch"), "epoch");
  if (state == 3) refuse_format(redis_.address(), prefix_, text(at(r.get(), 2, "epoch"), "epoch"));
  if (state == 4)
    refuse_lanes(redis_.address(), prefix_, text(at(r.get(), 2, "epoch"), "epoch"), options_.lanes);
  if (state < 0 || state > 2) throw DataError("epoch: unexpected state " + std::to_string(state));
  static constexpr EpochState states[] = {EpochState::Adopted, EpochState::FirstStart,
                                          EpochState::Lost};
  return {std::string(text(at(r.get(), 0, "epoch"), "epoch")), states[state]};
}

void JobQueue::reset(const std::string& fresh) {
  // epoch.lua takes its loss path when the caller's known epoch differs from Redis's; this one
  // can never be a real epoch (those are hex), so the queue is always emptied.
  ensure_epoch(fresh, "reset", 0);
}

JobQueue::State JobQueue::state() {
  enqueue_wait();
  auto r = redis_.eval(checkpoint_script(), {}, {prefix_});
  State st;
  // Lua's false arrives as a nil.
  if (auto e = text_or_nil(at(r.get(), 0, "checkpoint"), "checkpoint")) st.epoch.emplace(*e);
  st.seq = integer(at(r.get(), 1, "checkpoint"), "checkpoint");
  if (auto o = text_or_nil(at(r.get(), 2, "checkpoint"), "checkpoint"))
    st.oldest_pending = pending_lsn(*o);
  return st;
}

Lsn JobQueue::enqueued_end_lsn() {
  enqueue_wait();
  auto r = redis_.command({"HGET", prefix_ + ":meta", "enqueued_end_lsn"});
  auto v = text_or_nil(r.get(), "HGET meta enqueued_end_lsn");
  if (!v) return 0;
  return parse_lsn_key(*v).value_or(0);
}

Claim JobQueue::claim(int max_keys, int max_jobs, std::chrono::milliseconds lease) {
  enqueue_wait();
  auto mk = std::to_string(max_keys), mj = std::to_string(max_jobs),
       ls = std::to_string(lease.count());
  auto r =
      redis_.eval(claim_script(), {}, {prefix_, mk, mj, ls, kQueueFormat, kUnmarkedQueueFormat});
  Claim c;
  c.fence = integer(at(r.get(), 0, "claim"), "claim");
  last_fence_ = 0;
  last_lanes_.clear();
  if (c.fence == -1)
    refuse_format(redis_.address(), prefix_, text(at(r.get(), 1, "claim"), "claim"));
  const redisReply* list = &array(at(r.get(), 1, "claim"), "claim");
  std::vector<std::string_view> keys(list->elements);
  for (std::size_t i = 0; i < keys.size(); ++i) keys[i] = text(list->element[i], "claim");
  // The claimed units' entries (see claim.lua), pipelined, 500 units per round trip.
  const std::string lim = std::to_string(std::max(0, max_jobs - 1));
  for (std::size_t from = 0; from < list->elements; from += 500) {
    const std::size_t to = std::min(list->elements, from + 500);
    for (std::size_t i = from; i < to; ++i)
      redis_.append({"LRANGE", prefix_ + ":" + std::string(keys[i]), "0", lim});
    std::optional<std::string> failed;  // read every reply of the chunk: the connection stays
                                        // in step
    for (std::size_t i = from; i < to; ++i) {
      Reply jobs;
      try {
        jobs = redis_.read_reply();
      } catch (const UnavailableError&) {
        throw;
      } catch (const std::exception& e) {
        if (!failed) failed = e.what();
        continue;
      }
      if (failed) continue;
      try {
        const redisReply& entries = array(jobs.get(), "LRANGE");
        // Empty only if Redis lost its data meanwhile: the unit's lease runs out untouched.
        if (entries.elements == 0) continue;
        // A lane holds several keys' jobs: grouped by key, in the order keys first appear (a
        // key's jobs keep their order).
        std::unordered_map<std::string, std::size_t> at_key;
        std::vector<std::string>* order = nullptr;
        if (keys[i].starts_with("l:"))
          order =
              &last_lanes_.emplace_back(std::string(keys[i]), std::vector<std::string>{}).second;
        for (size_t j = 0; j < entries.elements; ++j) {
          auto e = parse_entry(text(entries.element[j], "LRANGE"));
          if (order) order->push_back(e.key);
          auto [it, fresh] = at_key.try_emplace(e.key, c.keys.size());
          if (fresh) {
            c.keys.emplace_back();
            c.keys.back().key = e.key;
          }
          ClaimedKey& k = c.keys[it->second];
          k.bodies.push_back(std::move(e.body));
          k.commits.push_back(e.commit_lsn);
          k.priorities.push_back(e.priority);
          k.enqueued_ms.push_back(e.enqueued_ms);
        }
      } catch (const std::exception& e) {
        failed = e.what();  // the chunk's other replies are still read
      }
    }
    if (failed) throw DataError("claim: " + *failed);
  }
  last_fence_ = c.fence;
  return c;
}

AckResult JobQueue::settle(std::int64_t fence, const std::vector<AckItem>& items) {
  enqueue_wait();
  std::deque<std::string> owned;  // deque: views into it stay valid
  std::size_t total = 7;
  total += 6 * items.size();

  auto own = [&](std::string v) -> std::string_view {
    owned.push_back(std::move(v));
    return owned.back();
  };
  std::vector<std::string_view> args;
  args.reserve(total);
  args.push_back(prefix_);
  args.push_back(own(std::to_string(fence)));
  args.push_back(own(std::to_string(options_.retry.initial_ms)));
  args.push_back(own(std::to_string(options_.retry.max_ms)));
  args.push_back(own(std::to_string(options_.retry.max_attempts)));
  args.push_back(own(std::to_string(items.size())));
  args.push_back(own(std::to_string(options_.lanes)));
  std::uniform_int_distribution<int> jitter(0, 1000000);
  for (const auto& it : items) {
    args.push_back(it.key);
    args.push_back(own(std::to_string(lane_of_key(it.key, options_.lanes))));
    args.push_back(own(std::to_string(it.jobs_done)));
    args.push_back(it.outcome == Outcome::Retry    ? "retry"
                   : it.outcome == Outcome::Poison ? "poison"
                                                   : "");
    args.push_back(it.reason);
    int j =
        it.jitter < 0 ? jitter(rng_) : static_cast<int>(std::min(it.jitter, 1.0) * 1000000.0 + 0.5);
    args.push_back(own(std::to_string(j)));
  }
  // The lanes of this fence's claim whose every claimed entry is done and whose keys all go on
  // (the common case): ack.lua pops their claimed entries as they are. Any other lane (or a
  // settle without the claim at hand) is checked entry by entry there.
  std::size_t whole_at = args.size();
  args.push_back("0");
  if (fence == last_fence_ && !last_lanes_.empty()) {
    std::unordered_map<std::string_view, const AckItem*> by_key;
    for (const auto& it : items) by_key.emplace(it.key, &it);
    std::size_t whole = 0;
    for (const auto& [lane, order] : last_lanes_) {
      std::unordered_map<std::string_view, int> seen;
      bool ok = true;
      for (const auto& k : order) ++seen[k];
      for (const auto& [k, n] : seen) {
        auto f = by_key.find(k);
        if (f == by_key.end() || f->second->jobs_done != n ||
            f->second->outcome != Outcome::GiveBack) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      args.push_back(lane);
      args.push_back(own(std::to_string(order.size())));
      ++whole;
    }
    args[whole_at] = own(std::to_string(whole));
  }
  Reply r;
  try {
    r = redis_.eval(ack_script(), {}, args);
  } catch (const RedisReplyError& e) {
    rethrow_kind(e);
  }
  AckResult out;
  const redisReply& rej = array(at(r.get(), 0, "ack"), "ack");
  for (size_t i = 0; i < rej.elements; ++i) out.rejected.emplace_back(text(rej.element[i], "ack"));
  const redisReply& dead = array(at(r.get(), 1, "ack"), "ack");
  for (size_t i = 0; i + 1 < dead.elements; i += 2)
    out.dead.push_back(
        {std::string(text(dead.element[i], "ack")), integer(dead.element[i + 1], "ack")});
  const redisReply& del = array(at(r.get(), 2, "ack"), "ack");
  for (size_t i = 0; i + 2 < del.elements; i += 3)
    out.delayed.push_back({std::string(text(del.element[i], "ack")),
                           integer(del.element[i + 2], "ack"), integer(del.element[i + 1], "ack")});
  return out;
}

std::vector<std::string> JobQueue::ack(std::int64_t fence, const std::vector<AckItem>& items) {
  return settle(fence, items).rejected;
}

QueueCounts JobQueue::counts() {
  enqueue_wait();
  QueueCounts c;
  redis_.append({"ZCARD", prefix_ + ":ready"});
  redis_.append({"ZCARD", prefix_ + ":active"});
  redis_.append({"ZCARD", prefix_ + ":pending"});
  redis_.append({"ZCARD", prefix_ + ":delayed"});
  redis_.append({"HLEN", prefix_ + ":dead"});
  redis_.append({"HEXISTS", prefix_ + ":meta", "paused"});
  redis_.append({"HMGET", prefix_ + ":meta", "seq", "done"});
  // Every reply is read before any is checked: the connection stays in step.
  std::vector<Reply> rs;
  for (int i = 0; i < 6; ++i) rs.push_back(redis_.read_reply());
  // Jobs queued: enqueued minus folded or purged (meta's seq and done; both go with the epoch).
  auto seq_done = redis_.read_reply();
  c.ready_keys = integer(rs[0].get(), "ZCARD ready");
  c.active_keys = integer(rs[1].get(), "ZCARD active");
  c.pending_commits = integer(rs[2].get(), "ZCARD pending");
  c.delayed_keys = integer(rs[3].get(), "ZCARD delayed");
  c.dead_keys = integer(rs[4].get(), "HLEN dead");
  c.paused = integer(rs[5].get(), "HEXISTS meta paused") == 1;
  auto number = [&](std::size_t i) -> long long {
    auto v = text_or_nil(at(seq_done.get(), i, "HMGET meta"), "HMGET meta");
    return v ? to_ll(std::string(*v)) : 0;
  };
  c.pending_jobs = std::max(0LL, number(0) - number(1));
  return c;
}

long long JobQueue::redis_time_ms() {
  return time_ms(redis_.command({"TIME"}).get());
}

QueueStats JobQueue::stats() {
  enqueue_wait();
  QueueStats st;
  st.counts = counts();
  // Every key with jobs is in exactly one of ready, active, delayed, dead: walk each set and
  // classify its keys by their head job's priority.
  // The oldest pending commit's jobs are at the head of their keys (a key's list is in commit
  // order): the walk below finds one of them, for its key and age.
  auto oldest = redis_.command({"ZRANGE", prefix_ + ":pending", "0", "0"});
  if (array(oldest.get(), "ZRANGE pending").elements >= 1)
    st.oldest_pending_commit = pending_lsn(text(at(oldest.get(), 0, "ZRANGE pending"), "ZRANGE"));
  std::optional<long long> oldest_enqueued;
  auto classify = [&](const std::vector<std::string>& keys, long long QueueStats::Class::*state) {
    for (std::size_t from = 0; from < keys.size(); from += 500) {
      std::size_t to = std::min(keys.size(), from + 500);
      for (std::size_t i = from; i < to; ++i) {
        redis_.append({"LINDEX", prefix_ + ":" + keys[i], "0"});
        redis_.append({"LLEN", prefix_ + ":" + keys[i]});
      }
      // Every reply of the chunk is read before any is checked: the connection stays in step.
      std::vector<Reply> rs;
      for (std::size_t i = from; i < to; ++i) {
        rs.push_back(redis_.read_reply());
        rs.push_back(redis_.read_reply());
      }
      for (std::size_t i = from; i < to; ++i) {
        const auto head = text_or_nil(rs[2 * (i - from)].get(), "LINDEX");
        const long long len = integer(rs[2 * (i - from) + 1].get(), "LLEN");
        if (!head) continue;  // settled meanwhile
        auto e = parse_entry(*head);
        if (st.oldest_pending_commit && e.commit_lsn == *st.oldest_pending_commit &&
            (!oldest_enqueued || e.enqueued_ms < *oldest_enqueued)) {
          oldest_enqueued = e.enqueued_ms;
          st.oldest_pending_key = e.key;
        }
        auto& c = st.by_priority[e.priority];
        ++(c.*state);
        c.jobs += len;
      }
    }
  };
  auto scan = [&](const char* type, const std::string& set) {
    std::vector<std::string> keys;
    std::string cursor = "0";
    do {
      auto r = redis_.command({type, set, cursor, "COUNT", "1000"});
      cursor.assign(text(at(r.get(), 0, type), type));
      const redisReply& els = array(at(r.get(), 1, type), type);
      // ZSCAN and HSCAN return member/score or field/value pairs.
      for (size_t i = 0; i + 1 < els.elements; i += 2)
        keys.emplace_back(text(els.element[i], type));
    } while (cursor != "0");
    return keys;
  };
  classify(scan("ZSCAN", prefix_ + ":ready"), &QueueStats::Class::ready);
  classify(scan("ZSCAN", prefix_ + ":active"), &QueueStats::Class::active);
  classify(scan("ZSCAN", prefix_ + ":delayed"), &QueueStats::Class::delayed);
  auto dead = scan("HSCAN", prefix_ + ":dead");
  for (auto& k : dead) k = "k:" + k;  // dead keys are detached: their unit is "k:<key>"
  classify(dead, &QueueStats::Class::dead);

  if (oldest_enqueued) st.oldest_pending_age_ms = std::max(0LL, redis_time_ms() - *oldest_enqueued);
  return st;
}

namespace {
DeadLetter dead_from_json(std::string key, std::string_view json) {
  DeadLetter d;
  d.key = std::move(key);
  d.attempts = to_ll(json_field(json, "attempts"));
  d.reason = json_field(json, "reason");
  d.lsn = json_field(json, "lsn");
  d.at_ms = to_ll(json_field(json, "at_ms"));
  return d;
}
}  // namespace

std::vector<DeadLetter> JobQueue::dead_letters() {
  enqueue_wait();
  auto r = redis_.command({"HGETALL", prefix_ + ":dead"});
  std::vector<DeadLetter> out;
  const redisReply& all = array(r.get(), "HGETALL dead");
  for (size_t i = 0; i + 1 < all.elements; i += 2)
    out.push_back(dead_from_json(std::string(text(all.element[i], "HGETALL dead")),
                                 text(all.element[i + 1], "HGETALL dead")));
  for (auto& d : out)
    d.jobs = integer(redis_.command({"LLEN", prefix_ + ":k:" + d.key}).get(), "LLEN");
  std::sort(out.begin(), out.end(),
            [](const DeadLetter& a, const DeadLetter& b) { return a.lsn < b.lsn; });
  return out;
}

std::optional<DeadLetter> JobQueue::dead_letter(const std::string& key) {
  enqueue_wait();
  auto r = redis_.command({"HGET", prefix_ + ":dead", key});
  auto json = text_or_nil(r.get(), "HGET dead");
  if (!json) return std::nullopt;
  auto d = dead_from_json(key, *json);
  d.jobs = integer(redis_.command({"LLEN", prefix_ + ":k:" + key}).get(), "LLEN");
  return d;
}

std::vector<QueueEntry> JobQueue::entries(const std::string& key, long long limit) {
  enqueue_wait();
  // A detached key has its own list; any other key's jobs are in its lane, among other keys'.
  auto lane = redis_.command({"HGET", prefix_ + ":detached", key});
  const bool own = text_or_nil(lane.get(), "HGET detached").has_value();
  const std::string list = own ? prefix_ + ":k:" + key
                               : prefix_ + ":l:" + std::to_string(lane_of_key(key, options_.lanes));
  auto r = redis_.command({"LRANGE", list, "0", own ? std::to_string(limit - 1) : "-1"});
  std::vector<QueueEntry> out;
  const redisReply& all = array(r.get(), "LRANGE");
  for (size_t i = 0; i < all.elements && static_cast<long long>(out.size()) < limit; ++i) {
    auto e = parse_entry(text(all.element[i], "LRANGE"));
    if (e.key == key) out.push_back(std::move(e));
  }
  return out;
}

bool JobQueue::retry_dead(const std::string& key) {
  enqueue_wait();
  return integer(redis_.eval(dead_script(), {}, {prefix_, "retry", key}).get(), "dead retry") >= 0;
}

long long JobQueue::purge_dead(const std::string& key) {
  enqueue_wait();
  return integer(redis_.eval(dead_script(), {}, {prefix_, "purge", key}).get(), "dead purge");
}

void JobQueue::set_paused(bool paused) {
  enqueue_wait();
  // Creating meta without an epoch would look like a Redis that lost walfold's data.
  if (integer(redis_.command({"HEXISTS", prefix_ + ":meta", "epoch"}).get(), "HEXISTS meta") != 1)
    throw DataError("redis at " + redis_.address() + " holds no queue for " + prefix_ +
                    " yet (the reader has not started)");
  if (paused)
    redis_.command({"HSET", prefix_ + ":meta", "paused", "1"});
  else
    redis_.command({"HDEL", prefix_ + ":meta", "paused"});
}

}  // namespace walfold::queue
