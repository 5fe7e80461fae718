// PostgreSQL timestamptz text (walfold's connections use TimeZone=UTC, DateStyle=ISO) and
// microseconds since the Unix epoch.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace walfold {

// "2026-11-23 02:19:57.123456+00" (also without fraction, with "+00:00" or "Z", or 'T' instead
// of the blank) -> microseconds since 1970-01-01 UTC. nullopt when malformed.
std::optional<std::int64_t> parse_pg_timestamptz(std::string_view text);
// Microseconds since the epoch -> "2026-11-23T02:19:57.123456Z" (always 6 fractional digits).
std::string format_timestamp_us(std::int64_t us);
// Microseconds since the epoch -> milliseconds, floored (a BSON date): -1 us is -1 ms, not 0.
// Every read-model date is made with this, so the fold, the snapshot and the report agree.
constexpr std::int64_t floor_ms(std::int64_t us) {
  return us / 1000 - (us % 1000 < 0);
}

}  // namespace walfold
