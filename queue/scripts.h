// The queue's Lua scripts (queue/scripts/*.lua), embedded at build time.
#pragma once

namespace walfold::queue::scripts {
extern const char* const enqueue;
extern const char* const claim;
extern const char* const ack;
extern const char* const checkpoint;
extern const char* const epoch;
extern const char* const dead;
}  // namespace walfold::queue::scripts
