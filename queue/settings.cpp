#include "queue/settings.h"

#include <spdlog/spdlog.h>

#include "common/error.h"

namespace walfold::queue {
namespace {

std::string config_get(Redis& redis, const char* name) {
  auto r = redis.command({"CONFIG", "GET", name});
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[1]->type != REDIS_REPLY_STRING)
    throw std::runtime_error(std::string("CONFIG GET ") + name + " returned no value");
  return std::string(r->element[1]->str, r->element[1]->len);
}

}  // namespace

RedisSettingsCheck check_redis_settings(Redis& redis) {
  RedisSettingsCheck out;
  try {
    auto aof = config_get(redis, "appendonly");
    auto policy = config_get(redis, "maxmemory-policy");
    out.checked = true;
    if (aof != "yes")
      out.problems.push_back(
          "appendonly is '" + aof +
          "': a Redis restart loses the queue (walfold notices and replays everything after the "
          "slot's confirmed position, but the replay costs time); set appendonly yes");
    if (policy != "noeviction")
      out.problems.push_back(
          "maxmemory-policy is '" + policy +
          "': Redis may evict queue keys under memory pressure, silently losing changes from the "
          "read model; set maxmemory-policy noeviction");
  } catch (const UnavailableError&) {
    throw;
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  return out;
}

void warn_about_redis_settings(const RedisConfig& cfg) {
  try {
    Redis redis(cfg);
    auto c = check_redis_settings(redis);
    if (!c.checked) {
      spdlog::warn(
          "redis at {}: could not check appendonly and maxmemory-policy ({}); walfold needs "
          "appendonly yes and maxmemory-policy noeviction",
          redis.address(), c.error);
      return;
    }
    for (const auto& p : c.problems) spdlog::warn("redis at {}: {}", redis.address(), p);
  } catch (const std::exception& e) {
    spdlog::warn("redis settings not checked: {}", e.what());
  }
}

}  // namespace walfold::queue
