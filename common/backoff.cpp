#include "common/backoff.h"

#include <algorithm>

namespace walfold {

Backoff::Backoff(ms min, ms max, double jitter, unsigned seed)
    : min_(min), max_(std::max(min, max)), delay_(min), jitter_(jitter), rng_(seed) {}

Backoff::ms Backoff::next() {
  const auto spread = static_cast<long long>(static_cast<double>(delay_.count()) * jitter_);
  const ms wait = delay_ + ms(std::uniform_int_distribution<long long>(0, spread)(rng_));
  delay_ = std::min(delay_ * 2, max_);
  return wait;
}

void pause(const Wakeup& stop, std::chrono::milliseconds d, Server server) {
  Loop::turn();
  ServerWait waiting(server);
  stop.wait_for(d);
}

Server server_named_in(std::string_view what, Server otherwise) {
  if (what.starts_with("redis")) return Server::Redis;
  if (what.starts_with("mongodb")) return Server::MongoDB;
  if (what.starts_with("postgresql")) return Server::PostgreSQL;
  return otherwise;
}

}  // namespace walfold
