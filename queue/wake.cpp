#include "queue/wake.h"

#include <spdlog/spdlog.h>

#include <string_view>
#include <thread>

#include "common/error.h"

namespace walfold::queue {

std::string wake_key(const std::string& queue_prefix) {
  return queue_prefix + ":wake";
}

void wake_workers(Redis& redis, const std::string& queue_prefix) {
  try {
    redis.command({"XADD", wake_key(queue_prefix), "MAXLEN", "1", "*", "w", "1"});
  } catch (const std::exception& e) {
    spdlog::debug(
        "queue: could not wake idle workers ({}); they claim again after "
        "workers.idle_poll_max_ms",
        e.what());
  }
}

WakeWait::WakeWait(std::string queue_prefix) : key_(wake_key(queue_prefix)) {}

WakeWait::Result WakeWait::wait(Redis& redis, std::chrono::milliseconds timeout) {
  if (unsupported_) {
    std::this_thread::sleep_for(timeout);
    return Result::TimedOut;
  }
  try {
    if (last_id_.empty()) {
      // The newest entry, if any ("0-0": every entry added from now on is newer).
      auto r = redis.command({"XREVRANGE", key_, "+", "-", "COUNT", "1"});
      last_id_ = "0-0";
      if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
        const redisReply* e = r->element[0];
        if (e->type == REDIS_REPLY_ARRAY && e->elements > 0 &&
            e->element[0]->type == REDIS_REPLY_STRING)
          last_id_.assign(e->element[0]->str, e->element[0]->len);
      }
      return Result::Woken;
    }
    const auto ms = std::to_string(std::max<long long>(1, timeout.count()));
    auto r = redis.command({"XREAD", "COUNT", "1", "BLOCK", ms, "STREAMS", key_, last_id_});
    // Timed out: a nil reply. Otherwise [[key, [[id, [fields]]]]].
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) return Result::TimedOut;
    const redisReply* stream = r->element[0];
    if (stream->type == REDIS_REPLY_ARRAY && stream->elements == 2 &&
        stream->element[1]->type == REDIS_REPLY_ARRAY && stream->element[1]->elements > 0) {
      const redisReply* entry = stream->element[1]->element[0];
      if (entry->type == REDIS_REPLY_ARRAY && entry->elements > 0 &&
          entry->element[0]->type == REDIS_REPLY_STRING)
        last_id_.assign(entry->element[0]->str, entry->element[0]->len);
    }
    return Result::Woken;
  } catch (const AuthError& e) {
    // An ACL that does not allow the stream commands: poll instead. Other credential errors
    // are the caller's, as for any command.
    if (std::string_view(e.what()).find("NOPERM") == std::string_view::npos) throw;
    disable(e.what(), timeout);
    return Result::TimedOut;
  } catch (const RedisReplyError& e) {
    // A refusal that asking again does not change (an unknown command: Redis before 5.0).
    disable(e.what(), timeout);
    return Result::TimedOut;
  }
}

void WakeWait::disable(const char* why, std::chrono::milliseconds timeout) {
  spdlog::warn(
      "worker: Redis refused the wake-up stream {} ({}); idle workers poll every "
      "workers.idle_poll_max_ms instead",
      key_, why);
  unsupported_ = true;
  std::this_thread::sleep_for(timeout);
}

}  // namespace walfold::queue
