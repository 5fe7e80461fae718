#include "queue/job_queue.h"

#include <cstdlib>
#include <deque>

#include "common/error.h"
#include "queue/scripts.h"

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

std::optional<Lsn> parse_lsn_key(std::string_view hex) {
  if (hex.size() != 16) return std::nullopt;
  Lsn v = 0;
  for (char c : hex) {
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) return std::nullopt;
    v = (v << 4) | static_cast<Lsn>(d);
  }
  return v;
}

}  // namespace

std::string queue_prefix(const std::string& redis_prefix, const std::string& slot) {
  return redis_prefix + ":{" + slot + "}";
}

JobQueue::JobQueue(Redis& redis, std::string prefix) : redis_(redis), prefix_(std::move(prefix)) {}

std::vector<std::string_view> JobQueue::enqueue_args(const std::vector<EnqueueItem>& items, Lsn end,
                                                     std::deque<std::string>& owned) const {
  std::vector<std::string_view> args;
  args.reserve(3 + items.size() * 4);
  args.push_back(prefix_);
  owned.push_back(end ? lsn_key(end) : std::string());
  args.push_back(owned.back());
  owned.push_back(std::to_string(items.size()));
  args.push_back(owned.back());
  for (const auto& it : items) {
    owned.push_back(std::to_string(it.priority));
    args.push_back(it.key);
    args.push_back(owned.back());
    args.push_back(it.member);
    args.push_back(it.body);
  }
  return args;
}

void JobQueue::enqueue(const std::vector<EnqueueItem>& items, Lsn completes_end_lsn) {
  enqueue_wait();
  std::deque<std::string> owned;  // deque: views into it stay valid
  auto r = redis_.eval(enqueue_script(), {}, enqueue_args(items, completes_end_lsn, owned));
  if (r->type == REDIS_REPLY_INTEGER) last_seq_ = r->integer;
}

void JobQueue::enqueue_send(std::vector<EnqueueItem> items, Lsn completes_end_lsn) {
  enqueue_wait();
  std::deque<std::string> owned;
  auto args = enqueue_args(items, completes_end_lsn, owned);
  std::vector<std::string_view> argv{"EVALSHA", enqueue_script().sha(), "0"};
  argv.insert(argv.end(), args.begin(), args.end());
  redis_.append(argv);
  redis_.send();
  in_flight_ = InFlight{std::move(items), completes_end_lsn};
}

void JobQueue::enqueue_wait() {
  if (!in_flight_) return;
  auto batch = std::move(*in_flight_);
  in_flight_.reset();
  try {
    auto r = redis_.read_reply();
    if (r->type == REDIS_REPLY_INTEGER) last_seq_ = r->integer;
  } catch (const UnavailableError&) {
    throw;
  } catch (const std::runtime_error& e) {
    if (std::string_view(e.what()).find("NOSCRIPT") == std::string_view::npos) throw;
    enqueue(batch.items, batch.end);  // EVALSHA fell back to EVAL: the script is loaded again
  }
}

std::optional<Lsn> JobQueue::oldest_pending_commit() {
  enqueue_wait();
  auto r = redis_.command({"ZRANGE", prefix_ + ":pending", "0", "0"});
  if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) return std::nullopt;
  std::string_view member(r->element[0]->str, r->element[0]->len);
  auto lsn = parse_lsn_key(member.substr(0, 16));
  if (!lsn)
    throw DataError("redis " + prefix_ + ":pending holds a malformed member '" +
                    std::string(member) + "'");
  return lsn;
}

std::pair<std::string, int> JobQueue::ensure_epoch(const std::string& fresh,
                                                   const std::string& known, long long known_seq) {
  enqueue_wait();
  auto seq = std::to_string(known_seq);
  auto r = redis_.eval(epoch_script(), {}, {prefix_, fresh, known, seq});
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) throw DataError("epoch: unexpected reply");
  return {std::string(r->element[0]->str, r->element[0]->len),
          static_cast<int>(r->element[1]->integer)};
}

JobQueue::State JobQueue::state() {
  enqueue_wait();
  auto r = redis_.eval(checkpoint_script(), {}, {prefix_});
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 3)
    throw DataError("checkpoint: unexpected reply");
  State st;
  if (r->element[0]->type == REDIS_REPLY_STRING)
    st.epoch.emplace(r->element[0]->str, r->element[0]->len);
  st.seq = r->element[1]->integer;
  if (r->element[2]->type == REDIS_REPLY_STRING) {
    std::string_view member(r->element[2]->str, r->element[2]->len);
    st.oldest_pending = parse_lsn_key(member.substr(0, 16));
    if (!st.oldest_pending)
      throw DataError("redis " + prefix_ + ":pending holds a malformed member '" +
                      std::string(member) + "'");
  }
  return st;
}

Lsn JobQueue::enqueued_end_lsn() {
  enqueue_wait();
  auto r = redis_.command({"HGET", prefix_ + ":meta", "enqueued_end_lsn"});
  if (r->type != REDIS_REPLY_STRING) return 0;
  return parse_lsn_key(std::string_view(r->str, r->len)).value_or(0);
}

Claim JobQueue::claim(int max_keys, int max_jobs, std::chrono::milliseconds lease) {
  enqueue_wait();
  auto mk = std::to_string(max_keys), mj = std::to_string(max_jobs),
       ls = std::to_string(lease.count());
  auto r = redis_.eval(claim_script(), {}, {prefix_, mk, mj, ls});
  Claim c;
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) throw DataError("claim: unexpected reply");
  c.fence = r->element[0]->integer;
  const redisReply* list = r->element[1];
  for (size_t i = 0; i + 1 < list->elements; i += 2) {
    ClaimedKey k;
    k.key.assign(list->element[i]->str, list->element[i]->len);
    const redisReply* jobs = list->element[i + 1];
    k.bodies.reserve(jobs->elements);
    for (size_t j = 0; j < jobs->elements; ++j) {
      std::string_view s(jobs->element[j]->str, jobs->element[j]->len);
      auto bar = s.find('|');
      if (bar == std::string_view::npos) throw DataError("job without score in key " + k.key);
      k.bodies.emplace_back(s.substr(bar + 1));
    }
    c.keys.push_back(std::move(k));
  }
  return c;
}

std::vector<std::string> JobQueue::ack(std::int64_t fence, const std::vector<AckItem>& items) {
  enqueue_wait();
  std::deque<std::string> owned;  // deque: views into it stay valid
  std::size_t total = 3;
  for (const auto& it : items) total += 3 + it.members.size();

  std::vector<std::string_view> args;
  args.reserve(total);
  args.push_back(prefix_);
  owned.push_back(std::to_string(fence));
  args.push_back(owned.back());
  owned.push_back(std::to_string(items.size()));
  args.push_back(owned.back());
  for (const auto& it : items) {
    args.push_back(it.key);
    owned.push_back(std::to_string(it.jobs_done));
    args.push_back(owned.back());
    owned.push_back(std::to_string(it.members.size()));
    args.push_back(owned.back());
    for (const auto& m : it.members) args.push_back(m);
  }
  auto r = redis_.eval(ack_script(), {}, args);
  std::vector<std::string> rejected;
  for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; ++i)
    rejected.emplace_back(r->element[i]->str, r->element[i]->len);
  return rejected;
}

QueueCounts JobQueue::counts() {
  enqueue_wait();
  QueueCounts c;
  redis_.append({"ZCARD", prefix_ + ":ready"});
  redis_.append({"ZCARD", prefix_ + ":active"});
  redis_.append({"ZCARD", prefix_ + ":pending"});
  c.ready_keys = redis_.read_reply()->integer;
  c.active_keys = redis_.read_reply()->integer;
  c.pending_jobs = redis_.read_reply()->integer;
  return c;
}

}  // namespace walfold::queue
