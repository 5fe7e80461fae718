#include "cdc/enqueuer.h"

#include "common/progress.h"

namespace walfold::cdc {

Enqueuer::Enqueuer(queue::EnqueueSink& queue) : queue_(queue) {
  thread_ = std::thread([this] { run(); });
}

Enqueuer::~Enqueuer() {
  {
    std::lock_guard lk(m_);
    stop_ = true;
  }
  work_cv_.notify_all();
  // The thread stops once its Redis call returns (up to the connection's timeout): meanwhile
  // the reader's loop is blocked on Redis, as the watchdog must see it.
  ServerWait waiting(Server::Redis);
  thread_.join();
}

void Enqueuer::send(std::vector<queue::EnqueueItem> batch, Lsn completes_end_lsn) {
  {
    std::lock_guard lk(m_);
    if (error_) std::rethrow_exception(error_);
    work_.push_back({std::move(batch), completes_end_lsn});
  }
  ++handed_;
  work_cv_.notify_one();
}

std::size_t Enqueuer::take_acks() {
  // Cleared under the lock that the Redis thread holds from counting an ack to raising the
  // wake-up (run()), so the wake-up and the count agree: every ack counted is taken here and
  // its wake-up lowered, and an ack counted after this sets it again. A wait on acked_fd() thus
  // never misses an ack and never wakes for one already taken. Before, the clear came first,
  // outside the lock, and could miss a wake-up raised between its check and the count.
  std::lock_guard lk(m_);
  acked_wake_.clear();
  const std::size_t n = acked_ - taken_;
  taken_ = acked_;
  if (n == 0 && error_) std::rethrow_exception(error_);
  return n;
}

std::size_t Enqueuer::wait_one() {
  if (outstanding() == 0) return take_acks();
  {
    // The reader's loop is blocked on Redis (for the watchdog, as in a direct Redis call).
    ServerWait waiting(Server::Redis);
    std::unique_lock lk(m_);
    done_cv_.wait(lk, [&] { return acked_ > taken_ || error_; });
  }
  return take_acks();
}

std::size_t Enqueuer::wait_all() {
  std::size_t n = 0;
  while (outstanding() > 0) n += wait_one();
  return n;
}

void Enqueuer::run() {
  std::size_t in_flight = 0;  // sent to Redis, reply not read
  std::unique_lock lk(m_);
  while (true) {
    work_cv_.wait(lk, [&] { return stop_ || !work_.empty() || in_flight > 0; });
    if (stop_) return;
    try {
      if (!work_.empty()) {
        // Send before reading a reply: Redis finds the next batch on its socket when it is done
        // with the current one.
        Batch b = std::move(work_.front());
        work_.pop_front();
        lk.unlock();
        queue_.enqueue_send(b.items, b.completes);
        b.items = {};  // freed here, not under the lock
        lk.lock();
        ++in_flight;
        continue;
      }
      lk.unlock();
      queue_.enqueue_wait_one();
      lk.lock();
      --in_flight;
      ++acked_;
      done_cv_.notify_all();
      acked_wake_.notify();
    } catch (...) {
      if (!lk.owns_lock()) lk.lock();
      error_ = std::current_exception();
      work_.clear();
      done_cv_.notify_all();
      acked_wake_.notify();
      return;
    }
  }
}

}  // namespace walfold::cdc
