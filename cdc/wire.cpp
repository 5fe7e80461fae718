#include "cdc/wire.h"

#include "cdc/bytes.h"

#include <chrono>
#include <cstdio>
#include <string>

namespace walfold::cdc {

namespace {

std::uint64_t load_be64(const std::uint8_t* p) {
  return bytes::load_be<std::uint64_t>(p);
}
using bytes::describe_byte;

void store_be64(std::uint8_t* p, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<std::uint8_t>(v & 0xff);
    v >>= 8;
  }
}

[[noreturn]] void fail(const std::string& detail) {
  throw DecodeError("replication CopyData message: " + detail);
}

}  // namespace

std::variant<XLogData, Keepalive> parse_copy_data(std::span<const std::uint8_t> buf) {
  if (buf.empty()) fail("empty buffer at byte offset 0: expected Byte1 'w' or 'k'");
  const std::uint8_t* p = buf.data();
  switch (buf[0]) {
    case 'w': {
      if (buf.size() < kXLogDataHeaderSize) {
        fail("XLogData ('w') truncated: expected a " + std::to_string(kXLogDataHeaderSize) +
             "-byte header (Int64 dataStart, Int64 walEnd, Int64 sendTime), got " +
             std::to_string(buf.size()) + " bytes");
      }
      XLogData x{};
      x.data_start = load_be64(p + 1);
      x.wal_end = load_be64(p + 9);
      x.send_time = static_cast<std::int64_t>(load_be64(p + 17));
      x.payload = buf.subspan(kXLogDataHeaderSize);
      return x;
    }
    case 'k': {
      if (buf.size() != kKeepaliveSize) {
        fail("Primary keepalive ('k') must be " + std::to_string(kKeepaliveSize) +
             " bytes (Int64 walEnd, Int64 sendTime, Byte1 replyRequested), got " +
             std::to_string(buf.size()) + " bytes");
      }
      Keepalive k{};
      k.wal_end = load_be64(p + 1);
      k.send_time = static_cast<std::int64_t>(load_be64(p + 9));
      k.reply_requested = p[17] != 0;
      return k;
    }
    default:
      fail("unknown message type " + describe_byte(buf[0]) +
           " at byte offset 0: expected 'w' (XLogData) or 'k' (Primary keepalive)");
  }
}

std::array<std::uint8_t, kStandbyStatusSize> encode_standby_status(Lsn write, Lsn flush, Lsn apply,
                                                                   std::int64_t now_pg_us,
                                                                   bool reply_requested) {
  std::array<std::uint8_t, kStandbyStatusSize> out{};
  out[0] = 'r';
  store_be64(out.data() + 1, write);
  store_be64(out.data() + 9, flush);
  store_be64(out.data() + 17, apply);
  store_be64(out.data() + 25, static_cast<std::uint64_t>(now_pg_us));
  out[33] = reply_requested ? 1 : 0;
  return out;
}

std::int64_t pg_now_us() {
  // system_clock measures Unix time (guaranteed since C++20).
  const auto since_unix = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::system_clock::now().time_since_epoch());
  return static_cast<std::int64_t>(since_unix.count()) - kPgEpochUnixUs;
}

}  // namespace walfold::cdc
