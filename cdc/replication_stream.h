// A libpq replication connection (replication=database) streaming one logical slot with
// pgoutput. Owns the socket; knows nothing about what the messages mean.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "common/lsn.h"
#include "common/pg.h"

namespace walfold::cdc {

struct SystemIdentity {
  std::string system_id;
  int timeline = 0;
  Lsn xlogpos = 0;
  std::string dbname;
};

class ReplicationStream {
 public:
  explicit ReplicationStream(const PgConnInfo& dsn);
  ~ReplicationStream();

  SystemIdentity identify_system();
  // START_REPLICATION ... LOGICAL start (proto_version '1', publication_names '<pub>').
  void start(const std::string& slot, const std::string& publication, Lsn start);

  // Waits up to `timeout` for one CopyData message. Returns its bytes (valid until the next
  // call) or an empty span on timeout, or as soon as one of `wake_fds` (at most kMaxWakeFds) is
  // readable. Throws UnavailableError when the stream ends or breaks, with the server's error
  // message (e.g. the slot was dropped).
  static constexpr std::size_t kMaxWakeFds = 4;
  std::span<const std::uint8_t> read(std::chrono::milliseconds timeout,
                                     std::span<const int> wake_fds = {});
  // Sends a standby status update; flushes the socket.
  void send_status(Lsn write, Lsn flush, Lsn apply, bool reply_requested);
  // CopyDone, then drains the stream so a late error is not missed.
  void finish();

  const std::string& address() const { return conn_.address(); }

 private:
  PgConn conn_;
  char* buf_ = nullptr;
  bool streaming_ = false;
};

}  // namespace walfold::cdc
