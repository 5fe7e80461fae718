#include "cdc/deadlines.h"

#include <algorithm>

namespace walfold::cdc {

Deadlines::Deadlines(const Settings& s, Clock::time_point now)
    : s_(s), next_status_(now), last_data_(now) {}

std::optional<Deadlines::Clock::time_point> Deadlines::heartbeat_at() const {
  if (s_.heartbeat_interval.count() <= 0) return std::nullopt;
  return std::max(last_data_, last_heartbeat_) + s_.heartbeat_interval;
}

std::optional<Deadlines::Clock::time_point> Deadlines::ask_at() const {
  // Once the WAL has been idle that long, and no sooner than that after the last ask.
  const auto since = std::max(last_ask_, last_data_);
  if (stop_pending_) return since + kAskForStop;
  const auto at = since + kAskAfterHeartbeat;
  if (at < ask_until_) return at;
  return std::nullopt;
}

bool Deadlines::heartbeat_due(Clock::time_point now) const {
  const auto at = heartbeat_at();
  return at && now >= *at;
}

bool Deadlines::ask_due(Clock::time_point now) const {
  if (!stop_pending_ && now >= ask_until_) return false;
  const auto at = ask_at();
  return at && now >= *at;
}

Deadlines::Clock::time_point Deadlines::next(Clock::time_point now, Buffer buffer) const {
  if (reply_) return now;
  auto at = next_status_;
  if (!buffer.empty && !buffer.backpressure) at = std::min(at, buffer_due_);
  if (auto h = heartbeat_at()) at = std::min(at, *h);
  if (auto a = ask_at()) at = std::min(at, *a);
  return at;
}

Deadlines::ms Deadlines::wait(Clock::time_point now, Buffer buffer) const {
  const auto at = next(now, buffer);
  if (at <= now) return ms(0);
  return std::chrono::ceil<ms>(at - now);
}

}  // namespace walfold::cdc
