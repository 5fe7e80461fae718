// A flag that can be waited on: notify() sets it, wakes every wait_for(), and makes fd()
// readable, so a thread can poll() it next to a socket (the reader waits for WAL data or its stop
// flag; the supervisor for a signal or a thread that needs it) instead of waking up to look.
// Level-triggered: it stays set until clear().
#pragma once

#include <atomic>
#include <chrono>

namespace walfold {

class Wakeup {
 public:
  Wakeup();  // throws InternalError when no eventfd can be made
  ~Wakeup();
  Wakeup(const Wakeup&) = delete;
  Wakeup& operator=(const Wakeup&) = delete;

  void notify();
  void clear();
  bool is_set() const { return set_.load(); }
  // Waits until set or `timeout` passed; returns is_set().
  bool wait_for(std::chrono::milliseconds timeout) const;
  // Readable while set.
  int fd() const { return fd_; }

 private:
  int fd_;
  std::atomic<bool> set_{false};
};

}  // namespace walfold
