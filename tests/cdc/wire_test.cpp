// Unit tests for replication CopyData framing (cdc/wire.h).

#include "cdc/wire.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace walfold::cdc {
namespace {

void put_be64(std::vector<std::uint8_t>& out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

std::uint64_t get_be64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

std::vector<std::uint8_t> xlogdata(std::uint64_t start, std::uint64_t end, std::int64_t t,
                                   std::vector<std::uint8_t> payload) {
  std::vector<std::uint8_t> out{'w'};
  put_be64(out, start);
  put_be64(out, end);
  put_be64(out, static_cast<std::uint64_t>(t));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

std::vector<std::uint8_t> keepalive(std::uint64_t end, std::int64_t t, std::uint8_t reply) {
  std::vector<std::uint8_t> out{'k'};
  put_be64(out, end);
  put_be64(out, static_cast<std::uint64_t>(t));
  out.push_back(reply);
  return out;
}

void expect_decode_error(const std::vector<std::uint8_t>& buf, const std::string& needle) {
  try {
    parse_copy_data(buf);
    ADD_FAILURE() << "expected DecodeError for " << buf.size() << "-byte buffer";
  } catch (const DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Wire, StandbyStatusByteLayout) {
  const auto msg = encode_standby_status(0x0102030405060708ULL, 0x1112131415161718ULL,
                                         0x2122232425262728ULL, 0x3132333435363738LL, true);
  const std::array<std::uint8_t, 34> expected = {
      'r',                                             //
      0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,  // write
      0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,  // flush
      0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28,  // apply
      0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38,  // clock
      0x01};                                           // reply requested
  EXPECT_EQ(msg, expected);
  EXPECT_EQ(msg.size(), kStandbyStatusSize);
  EXPECT_EQ(encode_standby_status(0, 0, 0, 0, false)[33], 0);
}

TEST(Wire, StandbyStatusRoundTrip) {
  const Lsn write = 0x16B374D848ULL, flush = 0x16B374D000ULL, apply = 0x16B3740000ULL;
  for (std::int64_t clock :
       {std::int64_t{0}, std::int64_t{-1}, pg_now_us(), INT64_MIN, INT64_MAX}) {
    for (bool reply : {false, true}) {
      const auto msg = encode_standby_status(write, flush, apply, clock, reply);
      EXPECT_EQ(msg[0], 'r');
      EXPECT_EQ(get_be64(msg.data() + 1), write);
      EXPECT_EQ(get_be64(msg.data() + 9), flush);
      EXPECT_EQ(get_be64(msg.data() + 17), apply);
      EXPECT_EQ(static_cast<std::int64_t>(get_be64(msg.data() + 25)), clock);
      EXPECT_EQ(msg[33], reply ? 1 : 0);
    }
  }
}

TEST(Wire, ParseXLogData) {
  const auto buf = xlogdata(0x0102030405060708ULL, 0x1112131415161718ULL, -42, {'B', 1, 2, 3});
  const auto parsed = parse_copy_data(buf);
  ASSERT_TRUE(std::holds_alternative<XLogData>(parsed));
  const auto& x = std::get<XLogData>(parsed);
  EXPECT_EQ(x.data_start, 0x0102030405060708ULL);
  EXPECT_EQ(x.wal_end, 0x1112131415161718ULL);
  EXPECT_EQ(x.send_time, -42);
  ASSERT_EQ(x.payload.size(), 4u);
  EXPECT_EQ(x.payload.data(), buf.data() + kXLogDataHeaderSize);  // a view, not a copy
  EXPECT_EQ(x.payload[0], 'B');
  EXPECT_EQ(x.payload[3], 3);
}

TEST(Wire, ParseXLogDataWithEmptyPayload) {
  const auto buf = xlogdata(1, 2, 3, {});
  const auto parsed = parse_copy_data(buf);
  ASSERT_TRUE(std::holds_alternative<XLogData>(parsed));
  EXPECT_TRUE(std::get<XLogData>(parsed).payload.empty());
}

TEST(Wire, ParseKeepalive) {
  for (std::uint8_t reply : {0, 1}) {
    const auto buf = keepalive(0x16B374D848ULL, 789012345678LL, reply);
    const auto parsed = parse_copy_data(buf);
    ASSERT_TRUE(std::holds_alternative<Keepalive>(parsed));
    const auto& k = std::get<Keepalive>(parsed);
    EXPECT_EQ(k.wal_end, 0x16B374D848ULL);
    EXPECT_EQ(k.send_time, 789012345678LL);
    EXPECT_EQ(k.reply_requested, reply == 1);
  }
}

TEST(Wire, ShortBuffersAtEveryLength) {
  const auto w = xlogdata(1, 2, 3, {});
  for (std::size_t len = 1; len < w.size(); ++len) {
    // Exact-size heap copies so ASan catches any over-read.
    expect_decode_error(std::vector<std::uint8_t>(w.begin(), w.begin() + static_cast<long>(len)),
                        "XLogData ('w') truncated");
  }
  const auto k = keepalive(1, 2, 0);
  for (std::size_t len = 1; len < k.size(); ++len) {
    expect_decode_error(std::vector<std::uint8_t>(k.begin(), k.begin() + static_cast<long>(len)),
                        "keepalive ('k') must be 18 bytes");
  }
  expect_decode_error({}, "empty");
}

TEST(Wire, KeepaliveWithTrailingBytes) {
  auto k = keepalive(1, 2, 0);
  k.push_back(0);
  expect_decode_error(k, "got 19 bytes");
}

TEST(Wire, UnknownLeadingByte) {
  expect_decode_error({'r', 0, 0}, "unknown message type 'r'");
  expect_decode_error({0x00}, "0x00");
  expect_decode_error({'W'}, "expected 'w' (XLogData) or 'k' (Primary keepalive)");
}

TEST(Wire, PgNowIsMicrosecondsSince2000) {
  EXPECT_EQ(kPgEpochUnixUs, 946684800000000LL);
  const std::int64_t unix_us = std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count();
  const std::int64_t pg = pg_now_us();
  EXPECT_LT(std::abs(pg + kPgEpochUnixUs - unix_us), 5'000'000);
  // 2024-01-01 00:00:00 UTC is 757382400 s after 2000-01-01.
  EXPECT_GT(pg, 757382400LL * 1'000'000);
}

TEST(Wire, XLogDataPayloadDecodesWithPgoutput) {
  // 'B': final LSN 0x10, commit time 0x20, xid 7.
  std::vector<std::uint8_t> payload{'B'};
  put_be64(payload, 0x10);
  put_be64(payload, 0x20);
  for (std::uint8_t b : {0, 0, 0, 7}) payload.push_back(b);
  const auto buf = xlogdata(0x10, 0x10, 0, payload);
  const auto x = std::get<XLogData>(parse_copy_data(buf));

  struct H : Handler {
    Begin begin{};
    void on_begin(const Begin& b) override { begin = b; }
    void on_commit(const Commit&) override {}
    void on_relation(const Relation&) override {}
    void on_insert(std::uint32_t, Tuple) override {}
    void on_update(std::uint32_t, char, Tuple, Tuple) override {}
    void on_delete(std::uint32_t, char, Tuple) override {}
    void on_truncate(const Truncate&) override {}
  } h;
  Decoder d;
  d.decode(x.payload, h);
  EXPECT_EQ(h.begin.final_lsn, 0x10u);
  EXPECT_EQ(h.begin.commit_time, 0x20);
  EXPECT_EQ(h.begin.xid, 7u);
}

}  // namespace
}  // namespace walfold::cdc
