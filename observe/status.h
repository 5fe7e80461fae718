// `walfold status [--json] [--max-lag N]`: one summary of the deployment for a terminal or a
// script, from the servers themselves (the daemon need not run): PostgreSQL (slot, WAL end,
// lag), Redis (queue counts, oldest job, registered walfold processes), MongoDB (reachable,
// saved checkpoint). Its exit code is usable from monitoring; see StatusExit.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>

#include "config/config.h"
#include "queue/redis.h"

namespace walfold::observe {

// Exit codes of `walfold status`, the most severe problem found (documented in walfold(1)).
enum StatusExit : int {
  kStatusHealthy = 0,
  kStatusLagOverLimit = 1,  // lag over --max-lag (bytes or seconds)
  kStatusDeadKeys = 2,      // dead letters block ordering keys
  kStatusSlotMissing = 3,   // the replication slot does not exist (never set up, or dropped)
  kStatusSlotLost = 4,      // wal_status 'lost': changes were lost to it
  kStatusUnreachable = 69,  // PostgreSQL, Redis or MongoDB cannot be reached (EX_UNAVAILABLE)
  // and, for a server, 77 (it refused walfold's credentials or TLS verification failed) or 78 (its
  // connection string cannot be parsed), as every other command exits.
};

// How long the oldest pending job has waited, by Redis's clock (0 when none is pending); one
// ZRANGE, TIME and LINDEX.
std::optional<double> oldest_pending_age_seconds(queue::Redis& redis, const std::string& prefix);

// The process registry (`<prefix>:procs`: one JSON entry per walfold process, refreshed by its
// observer): an entry whose heartbeat is older than this, or unreadable, is gone.
inline constexpr std::int64_t kRegistryTtlMs = 15000;
bool is_live_process(const nlohmann::json& entry, std::int64_t now_ms);

// Prints the summary (text, or one JSON document with --json) and returns a StatusExit.
// `max_lag`: "" (no lag limit) or a limit like "64MiB" / "30s" (ConfigError when malformed).
int status_command(const Config& cfg, bool json, const std::string& max_lag, std::ostream& out);

}  // namespace walfold::observe
