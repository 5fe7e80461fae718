// Framing of the streaming replication protocol's CopyData messages (the buffers returned by
// PQgetCopyData on a connection in START_REPLICATION mode) and of the standby status update we
// send back. All integers are big-endian.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <variant>

#include "cdc/pgoutput.h"  // DecodeError
#include "common/lsn.h"

namespace walfold::cdc {

// 'w': Int64 dataStart, Int64 walEnd, Int64 sendTime, then the pgoutput message.
struct XLogData {
  Lsn data_start;
  Lsn wal_end;
  std::int64_t send_time;                 // microseconds since 2000-01-01 00:00:00 UTC
  std::span<const std::uint8_t> payload;  // view into the parsed buffer
};

// 'k': Int64 walEnd, Int64 sendTime, Byte1 replyRequested.
struct Keepalive {
  Lsn wal_end;
  std::int64_t send_time;  // microseconds since 2000-01-01 00:00:00 UTC
  bool reply_requested;
};

inline constexpr std::size_t kXLogDataHeaderSize = 1 + 8 + 8 + 8;
inline constexpr std::size_t kKeepaliveSize = 1 + 8 + 8 + 1;
inline constexpr std::size_t kStandbyStatusSize = 1 + 8 + 8 + 8 + 8 + 1;

// Microseconds between the Unix epoch and the PostgreSQL epoch (2000-01-01 00:00:00 UTC).
inline constexpr std::int64_t kPgEpochUnixUs = 946'684'800LL * 1'000'000LL;

// Parses one CopyData buffer from PQgetCopyData. Returns XLogData or Keepalive; throws
// DecodeError for an unknown leading byte, a buffer shorter than the header, or a keepalive of
// the wrong length.
std::variant<XLogData, Keepalive> parse_copy_data(std::span<const std::uint8_t> buf);

// 34-byte 'r' message: Int64 write, Int64 flush, Int64 apply (each the LSN + 1 of the last byte
// processed), Int64 clock (microseconds since 2000-01-01 UTC), Byte1 replyRequested.
std::array<std::uint8_t, kStandbyStatusSize> encode_standby_status(Lsn write, Lsn flush, Lsn apply,
                                                                   std::int64_t now_pg_us,
                                                                   bool reply_requested);

// Microseconds since 2000-01-01 00:00:00 UTC for the current wall-clock time.
std::int64_t pg_now_us();

}  // namespace walfold::cdc
