// The Redis settings walfold relies on: AOF persistence (`appendonly yes`; otherwise a Redis
// restart loses the queue, which walfold detects and replays from the slot, but at the cost of
// refolding everything not yet confirmed) and `maxmemory-policy noeviction` (an evicted job
// list or pending member would be a change silently missing from the read model, or a
// checkpoint that moves past an unfolded commit). Checked at start; problems are warnings.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"
#include "queue/redis.h"

namespace walfold::queue {

struct RedisSettingsCheck {
  bool checked = false;               // CONFIG GET answered (it may be disabled or renamed)
  std::string error;                  // why it could not be checked
  std::vector<std::string> problems;  // one sentence each
};

RedisSettingsCheck check_redis_settings(Redis& redis);
// Connects, checks and logs a warning per problem (or one saying the settings could not be
// checked). Never throws: a Redis that is down is the run loop's business.
void warn_about_redis_settings(const RedisConfig& cfg);

}  // namespace walfold::queue
