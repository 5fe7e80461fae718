#include "cdc/replication_stream.h"

#include <poll.h>

#include <algorithm>

#include "cdc/wire.h"
#include "common/error.h"
#include "common/progress.h"

namespace walfold::cdc {

ReplicationStream::ReplicationStream(const PgConnInfo& dsn)
    : conn_(dsn, {{"replication", "database"}}, "replication") {}

ReplicationStream::~ReplicationStream() {
  if (buf_) PQfreemem(buf_);
}

SystemIdentity ReplicationStream::identify_system() {
  auto r = conn_.exec("IDENTIFY_SYSTEM");
  if (PQntuples(r.get()) != 1 || PQnfields(r.get()) < 4)
    throw UnavailableError("postgresql at " + address() + ": unexpected IDENTIFY_SYSTEM reply");
  SystemIdentity id;
  id.system_id = PQgetvalue(r.get(), 0, 0);
  id.timeline = std::atoi(PQgetvalue(r.get(), 0, 1));
  id.xlogpos = parse_lsn(PQgetvalue(r.get(), 0, 2)).value_or(0);
  if (!PQgetisnull(r.get(), 0, 3)) id.dbname = PQgetvalue(r.get(), 0, 3);
  return id;
}

void ReplicationStream::start(const std::string& slot, const std::string& publication, Lsn start) {
  std::string pubs = publication;
  std::string sql = "START_REPLICATION SLOT " + quote_ident(slot) + " LOGICAL " +
                    format_lsn(start) + " (proto_version '1', publication_names " +
                    quote_literal(quote_ident(pubs)) + ")";
  conn_.exec(sql);  // PGRES_COPY_BOTH on success
  streaming_ = true;
}

std::span<const std::uint8_t> ReplicationStream::read(std::chrono::milliseconds timeout,
                                                      std::span<const int> wake_fds) {
  if (buf_) {
    PQfreemem(buf_);
    buf_ = nullptr;
  }
  PGconn* c = conn_.get();
  // The clock is read only once libpq has no complete message buffered (in a catch-up most
  // calls return a buffered one).
  std::optional<std::chrono::steady_clock::time_point> deadline;
  // Returns empty only when no complete message arrived before the deadline: a message that
  // is still arriving is not "idle" (the reader flushes its batch to Redis when idle).
  while (true) {
    int n = PQgetCopyData(c, &buf_, 1);
    if (n > 0) return {reinterpret_cast<const std::uint8_t*>(buf_), static_cast<std::size_t>(n)};
    if (n == -1) {
      // The server ended the stream: collect its reason.
      streaming_ = false;
      std::string why;
      while (PGresult* r = PQgetResult(c)) {
        if (PQresultStatus(r) == PGRES_FATAL_ERROR) why = pg_error_text(c, r);
        PQclear(r);
      }
      throw UnavailableError("postgresql at " + address() + ": replication stream ended" +
                             (why.empty() ? "" : ": " + why));
    }
    if (n == -2) {
      std::string why = pg_error_text(c);
      throw UnavailableError("postgresql at " + address() + ": replication stream broke: " + why);
    }
    const auto now = std::chrono::steady_clock::now();
    if (!deadline) deadline = now + timeout;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - now);
    if (left.count() < 0) return {};
    pollfd p[1 + kMaxWakeFds] = {{PQsocket(c), POLLIN, 0}};
    const std::size_t nw = std::min(wake_fds.size(), kMaxWakeFds);
    for (std::size_t i = 0; i < nw; ++i) p[1 + i] = {wake_fds[i], POLLIN, 0};
    int rc;
    {
      // Waiting for the server's next message, for as long as the caller's next deadline: the
      // watchdog counts this as waiting on PostgreSQL, however long that deadline is.
      ServerWait waiting(Server::PostgreSQL);
      rc = ::poll(p, static_cast<nfds_t>(1 + nw), static_cast<int>(left.count()));
    }
    if (rc < 0 && errno != EINTR)
      throw UnavailableError("postgresql at " + address() + ": poll failed");
    if (rc == 0) return {};
    for (std::size_t i = 0; i < nw; ++i)
      if (p[1 + i].revents & POLLIN) return {};
    if (rc > 0 && !PQconsumeInput(c)) {
      std::string why = pg_error_text(c);
      throw UnavailableError("postgresql at " + address() +
                             ": replication connection lost: " + why);
    }
  }
}

void ReplicationStream::send_status(Lsn write, Lsn flush, Lsn apply, bool reply_requested) {
  auto msg = encode_standby_status(write, flush, apply, pg_now_us(), reply_requested);
  PGconn* c = conn_.get();
  if (PQputCopyData(c, reinterpret_cast<const char*>(msg.data()), static_cast<int>(msg.size())) <=
          0 ||
      PQflush(c) != 0) {
    std::string why = pg_error_text(c);
    throw UnavailableError("postgresql at " + address() +
                           ": sending standby status failed: " + why);
  }
}

void ReplicationStream::finish() {
  if (!streaming_) return;
  streaming_ = false;
  PGconn* c = conn_.get();
  if (PQputCopyEnd(c, nullptr) <= 0) return;
  PQflush(c);
  // Drain until the server ends the stream, for at most a few seconds: a walsender still
  // sending a backlog may not read our CopyDone soon. Whatever arrives now is not confirmed,
  // so closing the connection instead loses nothing.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    char* b = nullptr;
    int n = PQgetCopyData(c, &b, 1);
    if (b) PQfreemem(b);
    if (n > 0) continue;
    if (n < 0) break;  // the server ended the copy (or the connection broke)
    pollfd p{PQsocket(c), POLLIN, 0};
    if (::poll(&p, 1, 100) < 0 && errno != EINTR) break;
    if (!PQconsumeInput(c)) break;
  }
  // The end-of-stream results; a result still in a COPY state means the server did not end
  // the stream in time (PQgetResult would return it forever): the destructor closes it.
  for (int i = 0; i < 8; ++i) {
    PGresult* r = PQgetResult(c);
    if (!r) break;
    auto st = PQresultStatus(r);
    PQclear(r);
    if (st == PGRES_COPY_BOTH || st == PGRES_COPY_OUT || st == PGRES_COPY_IN) break;
  }
}

}  // namespace walfold::cdc
