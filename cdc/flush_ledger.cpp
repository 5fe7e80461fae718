#include "cdc/flush_ledger.h"

#include <algorithm>

#include "common/error.h"

namespace walfold::cdc {
namespace {

void lower(std::optional<Lsn>& slot, Lsn v) {
  slot = slot ? std::min(*slot, v) : v;
}

}  // namespace

FlushLedger::FlushLedger(Lsn confirmed, Lsn in_redis_through)
    : admitted_(confirmed),
      processed_end_(std::max(confirmed, in_redis_through)),
      received_(processed_end_),
      // Until Redis's pending set is read, what an earlier session enqueued may all be pending.
      pending_(confirmed) {}

void FlushLedger::data(Lsn start) {
  if (frozen_) return;
  received_ = std::max(received_, start);
}

void FlushLedger::dropped(Lsn) {
  frozen_ = true;
}

void FlushLedger::keepalive(Lsn wal_end, bool in_transaction) {
  if (frozen_ || in_transaction) return;
  received_ = std::max(received_, wal_end);
  processed_end_ = std::max(processed_end_, wal_end);
}

void FlushLedger::commit(Lsn commit_lsn, Lsn end_lsn, bool buffered) {
  if (frozen_) return;
  if (buffered && (buffered_.empty() || buffered_.back() != commit_lsn))
    buffered_.push_back(commit_lsn);
  received_ = std::max(received_, end_lsn);
  processed_end_ = std::max(processed_end_, end_lsn);
}

void FlushLedger::sent_to_redis(std::optional<Lsn> rest_from) {
  in_flight_.push_back(buffered_first());
  while (!buffered_.empty() && (!rest_from || buffered_.front() < *rest_from))
    buffered_.pop_front();
}

std::optional<Lsn> FlushLedger::buffered_first() const {
  if (buffered_.empty()) return std::nullopt;
  // Commits are buffered in stream order; the minimum keeps the bound right if a caller ever
  // reported them out of order.
  return *std::min_element(buffered_.begin(), buffered_.end());
}

void FlushLedger::redis_acknowledged() {
  if (in_flight_.empty()) return;
  if (in_flight_.front()) lower(acked_first_, *in_flight_.front());
  in_flight_.pop_front();
}

std::optional<Lsn> FlushLedger::in_flight_first() const {
  std::optional<Lsn> first;
  for (const auto& b : in_flight_)
    if (b) lower(first, *b);
  return first;
}

void FlushLedger::pending_read(std::optional<Lsn> oldest_pending) {
  if (!in_flight_.empty())
    throw InternalError(
        "reader: Redis's pending set was read while " + std::to_string(in_flight_.size()) +
        " batch(es) sent to Redis were still unacknowledged" +
        (in_flight_first() ? " (from commit " + format_lsn(*in_flight_first()) + ")" : "") +
        "; the read does not bound them");
  pending_ = oldest_pending;
  acked_first_.reset();
}

Lsn FlushLedger::bound() const {
  Lsn b = processed_end_;
  for (const auto& o : {buffered_first(), in_flight_first(), acked_first_, pending_})
    if (o) b = std::min(b, *o);
  return std::max(b, admitted_);
}

Lsn FlushLedger::admit(Lsn flush) {
  if (flush <= admitted_) return flush;
  const Lsn allowed = bound();
  if (flush > allowed)
    throw InternalError(
        "reader: refusing to confirm flush position " + format_lsn(flush) +
        " to PostgreSQL: the flush rule allows at most " + format_lsn(allowed) + " (processed " +
        format_lsn(processed_end_) + (frozen_ ? ", a message was dropped" : "") +
        (buffered_first() ? ", buffered from " + format_lsn(*buffered_first()) : "") +
        (in_flight_first() ? ", in flight from " + format_lsn(*in_flight_first()) : "") +
        (acked_first_ ? ", enqueued from " + format_lsn(*acked_first_) : "") +
        (pending_ ? ", pending from " + format_lsn(*pending_) : "") +
        "). This is a bug in walfold; nothing past the last admitted position " +
        format_lsn(admitted_) + " was confirmed");
  admitted_ = flush;
  return flush;
}

}  // namespace walfold::cdc
