// Unit tests for the pgoutput protocol-1 decoder (cdc/pgoutput.h).
//
// NOTE: this file replaces the global operator new/delete with counting versions (forwarding to
// malloc/free) so the allocation test below can prove the Insert/Update/Delete hot path
// allocates nothing after warm-up. Link it into a test binary in which no other translation
// unit replaces them.

#include "cdc/pgoutput.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <string_view>
#include <vector>

namespace {
std::atomic<long> g_allocations{0};
}  // namespace

// noinline: if GCC inlines free() into callers at -O2 it reports a false
// -Wmismatched-new-delete against the operator new it sees at the call site.
[[gnu::noinline]] void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* p) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
// The nothrow forms too (std::stable_sort's temporary buffer uses them): every allocation of
// this test binary must pair with these deletes, or ASan reports a new/free mismatch.
[[gnu::noinline]] void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n == 0 ? 1 : n);
}
[[gnu::noinline]] void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}

namespace walfold::cdc {
namespace {

// Test-only builder of big-endian protocol messages.
class Msg {
 public:
  explicit Msg(char type) { u8(static_cast<std::uint8_t>(type)); }

  Msg& u8(std::uint8_t v) {
    bytes_.push_back(v);
    return *this;
  }
  Msg& i16(std::int16_t v) { return be(static_cast<std::uint16_t>(v), 2); }
  Msg& i32(std::int32_t v) { return be(static_cast<std::uint32_t>(v), 4); }
  Msg& u32(std::uint32_t v) { return be(v, 4); }
  Msg& i64(std::int64_t v) { return be(static_cast<std::uint64_t>(v), 8); }
  Msg& u64(std::uint64_t v) { return be(v, 8); }
  Msg& raw(std::string_view s) {
    bytes_.insert(bytes_.end(), s.begin(), s.end());
    return *this;
  }
  Msg& str(std::string_view s) { return raw(s).u8(0); }  // NUL-terminated String

  // TupleData column helpers.
  Msg& null() { return u8('n'); }
  Msg& unchanged() { return u8('u'); }
  Msg& text(std::string_view s) { return u8('t').i32(static_cast<std::int32_t>(s.size())).raw(s); }
  Msg& binary(std::string_view s) {
    return u8('b').i32(static_cast<std::int32_t>(s.size())).raw(s);
  }

  std::span<const std::uint8_t> span() const { return bytes_; }
  const std::vector<std::uint8_t>& bytes() const { return bytes_; }

 private:
  Msg& be(std::uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) bytes_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    return *this;
  }
  std::vector<std::uint8_t> bytes_;
};

std::string hex(std::string_view s) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

std::string render(Tuple t) {
  std::string out = "[";
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (i > 0) out += ' ';
    out += t[i].kind;
    if (t[i].kind == 't') out += ":" + std::string(t[i].data);
    if (t[i].kind == 'b') out += ":" + hex(t[i].data);
    if ((t[i].kind == 'n' || t[i].kind == 'u') && !t[i].data.empty()) out += ":NONEMPTY";
  }
  return out + "]";
}

std::string kind_str(char k) {
  return k == 0 ? std::string("0") : std::string(1, k);
}

// Renders every callback as one line so tests can compare exact decoded values.
class Recorder : public Handler {
 public:
  std::vector<std::string> log;

  void on_begin(const Begin& m) override {
    log.push_back("begin " + std::to_string(m.final_lsn) + " " + std::to_string(m.commit_time) +
                  " " + std::to_string(m.xid));
  }
  void on_commit(const Commit& m) override {
    log.push_back("commit " + std::to_string(m.flags) + " " + std::to_string(m.commit_lsn) + " " +
                  std::to_string(m.end_lsn) + " " + std::to_string(m.commit_time));
  }
  void on_origin(const Origin& m) override {
    log.push_back("origin " + std::to_string(m.commit_lsn) + " " + std::string(m.name));
  }
  void on_relation(const Relation& m) override {
    std::string s = "relation " + std::to_string(m.relid) + " " + m.nspname + "." + m.relname +
                    " " + m.replica_identity;
    for (const auto& c : m.columns) {
      s += " (" + std::to_string(c.flags) + " " + c.name + " " + std::to_string(c.type_oid) + " " +
           std::to_string(c.type_modifier) + ")";
    }
    log.push_back(s);
  }
  void on_type(const Type& m) override {
    log.push_back("type " + std::to_string(m.type_oid) + " " + std::string(m.nspname) + "." +
                  std::string(m.name));
  }
  void on_insert(std::uint32_t relid, Tuple t) override {
    log.push_back("insert " + std::to_string(relid) + " " + render(t));
  }
  void on_update(std::uint32_t relid, char old_kind, Tuple o, Tuple n) override {
    log.push_back("update " + std::to_string(relid) + " " + kind_str(old_kind) + " " + render(o) +
                  " " + render(n));
  }
  void on_delete(std::uint32_t relid, char old_kind, Tuple o) override {
    log.push_back("delete " + std::to_string(relid) + " " + kind_str(old_kind) + " " + render(o));
  }
  void on_truncate(const Truncate& m) override {
    std::string s = "truncate " + std::to_string(m.options);
    for (auto id : m.relids) s += " " + std::to_string(id);
    log.push_back(s);
  }
  void on_message(const LogicalMessage& m) override {
    log.push_back("message " + std::to_string(m.transactional) + " " + std::to_string(m.lsn) + " " +
                  std::string(m.prefix) + " " + hex(m.content));
  }
};

// Decodes one message and returns the single callback it produced.
std::string decode_one(const Msg& m) {
  Decoder d;
  Recorder r;
  d.decode(m.span(), r);
  EXPECT_EQ(r.log.size(), 1u);
  return r.log.empty() ? std::string() : r.log.front();
}

// Expects DecodeError whose message contains every needle; no callback may fire.
void expect_error(std::span<const std::uint8_t> bytes, std::vector<std::string> needles) {
  Decoder d;
  Recorder r;
  try {
    d.decode(bytes, r);
    ADD_FAILURE() << "expected DecodeError";
  } catch (const DecodeError& e) {
    const std::string what = e.what();
    for (const auto& n : needles) EXPECT_NE(what.find(n), std::string::npos) << what;
  }
  EXPECT_TRUE(r.log.empty());
}
void expect_error(const Msg& m, std::vector<std::string> needles) {
  expect_error(m.span(), std::move(needles));
}

constexpr std::uint64_t kBig = 0x0102030405060708ULL;

// One valid instance of every message type (and every Update/Delete shape).
std::vector<Msg> valid_messages() {
  std::vector<Msg> v;
  v.push_back(Msg('B').u64(kBig).i64(-5).u32(0xdeadbeef));
  v.push_back(Msg('C').u8(0).u64(10).u64(20).i64(30));
  v.push_back(Msg('O').u64(kBig).str("origin1"));
  v.push_back(Msg('R')
                  .u32(16384)
                  .str("public")
                  .str("accounts")
                  .u8('d')
                  .i16(2)
                  .u8(1)
                  .str("id")
                  .u32(20)
                  .i32(-1)
                  .u8(0)
                  .str("amount")
                  .u32(1700)
                  .i32(1310726));
  v.push_back(Msg('Y').u32(90000).str("public").str("mood"));
  v.push_back(Msg('I').u32(16384).u8('N').i16(4).text("42").null().unchanged().binary("\x01"));
  v.push_back(Msg('U').u32(16384).u8('N').i16(1).text("x"));
  v.push_back(Msg('U').u32(16384).u8('K').i16(1).text("1").u8('N').i16(1).text("2"));
  v.push_back(
      Msg('U').u32(16384).u8('O').i16(2).text("1").null().u8('N').i16(2).text("1").text("y"));
  v.push_back(Msg('D').u32(16384).u8('K').i16(1).text("7"));
  v.push_back(Msg('D').u32(16384).u8('O').i16(2).text("7").null());
  v.push_back(Msg('T').i32(2).u8(3).u32(1).u32(2));
  v.push_back(Msg('M').u8(1).u64(99).str("walfold").i32(3).raw("abc"));
  return v;
}

// ---- Every message type ---------------------------------------------------------------------

TEST(PgoutputDecode, Begin) {
  EXPECT_EQ(decode_one(Msg('B').u64(kBig).i64(-5).u32(0xdeadbeef)),
            "begin 72623859790382856 -5 3735928559");
}

TEST(PgoutputDecode, Commit) {
  EXPECT_EQ(decode_one(Msg('C').u8(0).u64(kBig).u64(kBig + 1).i64(789012345678)),
            "commit 0 72623859790382856 72623859790382857 789012345678");
}

TEST(PgoutputDecode, Origin) {
  EXPECT_EQ(decode_one(Msg('O').u64(77).str("node_a")), "origin 77 node_a");
  EXPECT_EQ(decode_one(Msg('O').u64(0).str("")), "origin 0 ");
}

TEST(PgoutputDecode, Relation) {
  EXPECT_EQ(decode_one(valid_messages()[3]),
            "relation 16384 public.accounts d (1 id 20 -1) (0 amount 1700 1310726)");
  // pg_catalog is sent as an empty namespace; zero columns are legal.
  EXPECT_EQ(decode_one(Msg('R').u32(1).str("").str("t").u8('n').i16(0)), "relation 1 .t n");
  for (char ri : {'d', 'n', 'f', 'i'}) {
    EXPECT_EQ(decode_one(Msg('R').u32(1).str("s").str("t").u8(ri).i16(0)),
              std::string("relation 1 s.t ") + ri);
  }
}

TEST(PgoutputDecode, RelationScratchIsResetBetweenMessages) {
  Decoder d;
  Recorder r;
  d.decode(valid_messages()[3].span(), r);
  d.decode(
      Msg('R').u32(5).str("s").str("short").u8('f').i16(1).u8(0).str("c").u32(25).i32(-1).span(),
      r);
  ASSERT_EQ(r.log.size(), 2u);
  EXPECT_EQ(r.log[1], "relation 5 s.short f (0 c 25 -1)");
}

TEST(PgoutputDecode, Type) {
  EXPECT_EQ(decode_one(Msg('Y').u32(90000).str("public").str("mood")), "type 90000 public.mood");
}

TEST(PgoutputDecode, InsertWithAllColumnKinds) {
  EXPECT_EQ(decode_one(Msg('I')
                           .u32(16384)
                           .u8('N')
                           .i16(5)
                           .text("42")
                           .null()
                           .unchanged()
                           .binary(std::string_view("\x00\xff", 2))
                           .text("")),
            "insert 16384 [t:42 n u b:00ff t:]");
}

TEST(PgoutputDecode, InsertZeroColumns) {
  EXPECT_EQ(decode_one(Msg('I').u32(7).u8('N').i16(0)), "insert 7 []");
}

TEST(PgoutputDecode, InsertValuesViewTheMessageBuffer) {
  const Msg m = Msg('I').u32(1).u8('N').i16(1).text("hello");
  struct Check : Recorder {
    const Msg* msg = nullptr;
    void on_insert(std::uint32_t, Tuple t) override {
      ASSERT_EQ(t.size(), 1u);
      const auto* begin = reinterpret_cast<const char*>(msg->bytes().data());
      EXPECT_EQ(t[0].data.data(), begin + msg->bytes().size() - 5);
      EXPECT_EQ(t[0].data, "hello");
      log.push_back("ok");
    }
  } check;
  check.msg = &m;
  Decoder d;
  d.decode(m.span(), check);
  EXPECT_EQ(check.log.size(), 1u);
}

TEST(PgoutputDecode, UpdateWithoutOldTuple) {
  EXPECT_EQ(decode_one(Msg('U').u32(9).u8('N').i16(2).text("a").unchanged()),
            "update 9 0 [] [t:a u]");
}

TEST(PgoutputDecode, UpdateWithOldKey) {
  EXPECT_EQ(decode_one(
                Msg('U').u32(9).u8('K').i16(2).text("1").null().u8('N').i16(2).text("2").text("b")),
            "update 9 K [t:1 n] [t:2 t:b]");
}

TEST(PgoutputDecode, UpdateWithOldFullRow) {
  EXPECT_EQ(decode_one(Msg('U')
                           .u32(9)
                           .u8('O')
                           .i16(3)
                           .text("1")
                           .text("old")
                           .null()
                           .u8('N')
                           .i16(3)
                           .text("1")
                           .unchanged()
                           .text("new")),
            "update 9 O [t:1 t:old n] [t:1 u t:new]");
}

TEST(PgoutputDecode, DeleteWithKeyAndFullRow) {
  EXPECT_EQ(decode_one(Msg('D').u32(3).u8('K').i16(1).text("7")), "delete 3 K [t:7]");
  EXPECT_EQ(decode_one(Msg('D').u32(3).u8('O').i16(3).text("7").null().binary("z")),
            "delete 3 O [t:7 n b:7a]");
}

TEST(PgoutputDecode, Truncate) {
  EXPECT_EQ(decode_one(Msg('T')
                           .i32(3)
                           .u8(kTruncateCascade | kTruncateRestartIdentity)
                           .u32(1)
                           .u32(0xffffffff)
                           .u32(16384)),
            "truncate 3 1 4294967295 16384");
  EXPECT_EQ(decode_one(Msg('T').i32(1).u8(0).u32(5)), "truncate 0 5");
  EXPECT_EQ(decode_one(Msg('T').i32(0).u8(0)), "truncate 0");
}

TEST(PgoutputDecode, LogicalMessage) {
  EXPECT_EQ(decode_one(Msg('M').u8(1).u64(99).str("walfold").i32(3).raw("abc")),
            "message 1 99 walfold 616263");
  // Non-transactional, binary content with embedded NUL, then empty content.
  EXPECT_EQ(decode_one(Msg('M').u8(0).u64(kBig).str("p").i32(2).raw(std::string_view("\0\1", 2))),
            "message 0 72623859790382856 p 0001");
  EXPECT_EQ(decode_one(Msg('M').u8(0).u64(1).str("").i32(0)), "message 0 1  ");
}

TEST(PgoutputDecode, DefaultHandlerCallbacksIgnoreOptionalMessages) {
  struct Minimal : Handler {
    int calls = 0;
    void on_begin(const Begin&) override { ++calls; }
    void on_commit(const Commit&) override { ++calls; }
    void on_relation(const Relation&) override { ++calls; }
    void on_insert(std::uint32_t, Tuple) override { ++calls; }
    void on_update(std::uint32_t, char, Tuple, Tuple) override { ++calls; }
    void on_delete(std::uint32_t, char, Tuple) override { ++calls; }
    void on_truncate(const Truncate&) override { ++calls; }
  } h;
  Decoder d;
  d.decode(Msg('O').u64(1).str("o").span(), h);
  d.decode(Msg('Y').u32(1).str("s").str("t").span(), h);
  d.decode(Msg('M').u8(0).u64(1).str("p").i32(0).span(), h);
  EXPECT_EQ(h.calls, 0);
}

// ---- Malformed input ------------------------------------------------------------------------

TEST(PgoutputDecode, TruncatedAtEveryBytePosition) {
  for (const Msg& m : valid_messages()) {
    const auto& bytes = m.bytes();
    ASSERT_NO_THROW(decode_one(m)) << "message type " << static_cast<char>(bytes[0]);
    for (std::size_t len = 0; len < bytes.size(); ++len) {
      SCOPED_TRACE(std::string("type ") + static_cast<char>(bytes[0]) + " prefix length " +
                   std::to_string(len));
      // Copy into an exact-size heap buffer so ASan flags any read past the prefix.
      std::vector<std::uint8_t> prefix(bytes.begin(), bytes.begin() + static_cast<long>(len));
      expect_error(prefix, {"byte offset"});
    }
  }
}

TEST(PgoutputDecode, CorruptedBytesEitherDecodeOrThrowDecodeError) {
  // Overwrite every byte of every valid message with boundary values; each result must decode
  // or raise DecodeError (run under ASan/UBSan to also prove there are no out-of-bounds reads).
  Decoder d;
  std::size_t decoded = 0, rejected = 0;
  for (const Msg& m : valid_messages()) {
    for (std::size_t i = 0; i < m.bytes().size(); ++i) {
      for (std::uint8_t v : {0x00, 0x01, 0x7f, 0x80, 0xff}) {
        std::vector<std::uint8_t> bytes = m.bytes();
        bytes[i] = v;
        Recorder r;
        try {
          d.decode(bytes, r);
          ++decoded;
        } catch (const DecodeError&) {
          EXPECT_TRUE(r.log.empty());
          ++rejected;
        }
      }
    }
  }
  EXPECT_GT(decoded, 0u);
  EXPECT_GT(rejected, 0u);
}

TEST(PgoutputDecode, TrailingBytesAreRejected) {
  for (const Msg& m : valid_messages()) {
    Msg extra = m;
    extra.u8(0);
    SCOPED_TRACE(std::string("type ") + static_cast<char>(m.bytes()[0]));
    expect_error(extra, {"trailing", "byte offset " + std::to_string(m.bytes().size())});
  }
}

TEST(PgoutputDecode, ErrorNamesTypeOffsetAndExpectation) {
  expect_error(
      Msg('I').u32(1).u8('N').i16(1).u8('t').i16(0),
      {"Insert", "'I'", "byte offset 9 of 11", "Int32 column value length", "new tuple column 1"});
  expect_error(Msg('B').u64(1), {"Begin", "'B'", "byte offset 9 of 9", "Int64 commit timestamp"});
}

TEST(PgoutputDecode, EmptyMessage) {
  expect_error(std::span<const std::uint8_t>(), {"empty"});
}

TEST(PgoutputDecode, UnknownMessageType) {
  expect_error(Msg('Z'), {"unknown", "'Z'", "byte offset 0"});
  expect_error(Msg('\x00').u32(1), {"unknown", "0x00"});
  expect_error(Msg('\xff'), {"unknown", "0xff"});
}

TEST(PgoutputDecode, StreamingMessagesAreNotSupported) {
  for (char t : {'S', 'E', 'c', 'A'}) {
    expect_error(Msg(t).u32(1).u8(0),
                 {"streaming", "protocol version 2", "not supported", std::string("'") + t + "'"});
  }
}

TEST(PgoutputDecode, TwoPhaseMessagesAreNotSupported) {
  for (char t : {'b', 'P', 'K', 'r', 'p'}) {
    expect_error(Msg(t).u64(1), {"two-phase", "not supported"});
  }
}

TEST(PgoutputDecode, BadTupleKind) {
  expect_error(Msg('I').u32(1).u8('N').i16(2).text("a").u8('x'),
               {"column kind", "'x'", "new tuple column 2", "byte offset 14 of 15"});
  expect_error(Msg('D').u32(1).u8('K').i16(1).u8(0), {"column kind", "0x00", "old key column 1"});
}

TEST(PgoutputDecode, BadTupleTags) {
  expect_error(Msg('I').u32(1).u8('K').i16(0), {"expected Byte1 'N'", "byte offset 5"});
  expect_error(Msg('U').u32(1).u8('X').i16(0), {"'K'", "'O'", "'N'", "'X'"});
  expect_error(Msg('U').u32(1).u8('K').i16(0).u8('K').i16(0), {"expected Byte1 'N'"});
  expect_error(Msg('U').u32(1).u8('O').i16(0).i16(0), {"expected Byte1 'N'"});
  expect_error(Msg('D').u32(1).u8('N').i16(0), {"'K'", "'O'", "got 'N'"});
}

TEST(PgoutputDecode, NegativeAndHugeValueLengths) {
  expect_error(Msg('I').u32(1).u8('N').i16(1).u8('t').i32(-1).raw("abc"), {"non-negative", "-1"});
  expect_error(Msg('I').u32(1).u8('N').i16(1).u8('b').i32(INT32_MIN), {"non-negative"});
  expect_error(Msg('I').u32(1).u8('N').i16(1).u8('t').i32(INT32_MAX).raw("abc"),
               {"2147483647", "only 3 bytes follow"});
  expect_error(Msg('I').u32(1).u8('N').i16(1).u8('t').i32(4).raw("abc"), {"only 3 bytes"});
  expect_error(Msg('M').u8(0).u64(1).str("p").i32(-7).raw("abc"), {"non-negative", "-7"});
  expect_error(Msg('M').u8(0).u64(1).str("p").i32(INT32_MAX), {"content length"});
}

TEST(PgoutputDecode, NegativeAndHugeCounts) {
  // Tuple column counts.
  expect_error(Msg('I').u32(1).u8('N').i16(-1), {"non-negative", "number of tuple columns"});
  expect_error(Msg('I').u32(1).u8('N').i16(INT16_MAX).null().null(),
               {"32767", "cannot hold", "number of tuple columns"});
  expect_error(Msg('I').u32(1).u8('N').i16(3).null().null(),
               {"byte offset 6 of 10", "cannot hold"});
  expect_error(Msg('U').u32(1).u8('O').i16(INT16_MIN), {"non-negative"});
  // Relation column counts.
  expect_error(Msg('R').u32(1).str("s").str("t").u8('d').i16(-2), {"non-negative", "-2"});
  expect_error(
      Msg('R').u32(1).str("s").str("t").u8('d').i16(INT16_MAX).u8(0).str("c").u32(1).i32(0),
      {"32767", "cannot hold"});
  // Truncate relation counts.
  expect_error(Msg('T').i32(-1).u8(0), {"non-negative", "number of relations"});
  expect_error(Msg('T').i32(INT32_MAX).u8(0).u32(1), {"2147483647", "cannot hold"});
  expect_error(Msg('T').i32(2).u8(0).u32(1), {"cannot hold"});
  expect_error(Msg('T').i32(1).u8(0).u32(1).u32(2), {"trailing"});
}

TEST(PgoutputDecode, StringsMustBeNulTerminated) {
  expect_error(Msg('O').u64(1).raw("no-nul"), {"NUL", "origin name"});
  expect_error(Msg('R').u32(1).str("s").raw("t"), {"NUL", "relation name"});
  expect_error(Msg('Y').u32(1).str("s").raw("name"), {"NUL", "type name"});
  expect_error(Msg('M').u8(0).u64(1).raw("prefix"), {"NUL", "message prefix"});
}

TEST(PgoutputDecode, BadReplicaIdentityAndMessageFlags) {
  expect_error(Msg('R').u32(1).str("s").str("t").u8('x').i16(0), {"replica identity", "'x'"});
  expect_error(Msg('M').u8(2).u64(1).str("p").i32(0), {"flags", "2"});
}

TEST(PgoutputDecode, DecoderIsUsableAfterAnError) {
  Decoder d;
  Recorder r;
  EXPECT_THROW(d.decode(Msg('I').u32(1).u8('N').i16(2).text("a").u8('?').span(), r), DecodeError);
  d.decode(Msg('I').u32(1).u8('N').i16(1).text("b").span(), r);
  ASSERT_EQ(r.log.size(), 1u);
  EXPECT_EQ(r.log[0], "insert 1 [t:b]");
}

TEST(PgoutputDecode, DecodeErrorIsADataError) {
  Decoder d;
  Recorder r;
  EXPECT_THROW(d.decode(Msg('Z').span(), r), walfold::DataError);
}

TEST(PgoutputDecode, MessageTypeNames) {
  EXPECT_EQ(message_type_name('I'), "Insert");
  EXPECT_EQ(message_type_name('T'), "Truncate");
  EXPECT_EQ(message_type_name('S'), "Stream Start");
  EXPECT_EQ(message_type_name('z'), "unknown");
}

// ---- Allocation-free hot path ----------------------------------------------------------------

// Handler that touches every value but never allocates.
class Sink : public Handler {
 public:
  const TupleValue* first_new = nullptr;
  const TupleValue* first_old = nullptr;
  bool new_stable = true;
  bool old_stable = true;
  std::size_t bytes = 0;
  std::size_t calls = 0;

  void on_begin(const Begin&) override {}
  void on_commit(const Commit&) override {}
  void on_relation(const Relation&) override {}
  void on_truncate(const Truncate&) override {}
  void on_insert(std::uint32_t, Tuple t) override { see_new(t); }
  void on_update(std::uint32_t, char, Tuple o, Tuple n) override {
    see_old(o);
    see_new(n);
  }
  void on_delete(std::uint32_t, char, Tuple o) override { see_old(o); }

 private:
  void see_new(Tuple t) {
    track(t, first_new, new_stable);
    ++calls;
  }
  void see_old(Tuple t) {
    track(t, first_old, old_stable);
    ++calls;
  }
  void track(Tuple t, const TupleValue*& first, bool& stable) {
    for (const auto& v : t) bytes += v.data.size();
    if (t.empty()) return;
    if (first == nullptr) first = t.data();
    if (t.data() != first) stable = false;
  }
};

TEST(PgoutputDecode, HotPathReusesScratchStorage) {
  // Messages of varying widths (up to 8 columns), built before counting starts.
  std::vector<Msg> inserts;
  for (int i = 0; i < 1000; ++i) {
    Msg m('I');
    const int ncols = 1 + i % 8;
    m.u32(16384).u8('N').i16(static_cast<std::int16_t>(ncols));
    for (int c = 0; c < ncols; ++c) {
      if (c % 3 == 1) {
        m.null();
      } else {
        m.text(std::to_string(i * 10 + c));
      }
    }
    inserts.push_back(m);
  }
  const Msg update = Msg('U')
                         .u32(1)
                         .u8('O')
                         .i16(8)
                         .text("a")
                         .text("b")
                         .null()
                         .null()
                         .unchanged()
                         .text("c")
                         .text("d")
                         .text("e")
                         .u8('N')
                         .i16(8)
                         .text("a")
                         .text("b")
                         .null()
                         .null()
                         .unchanged()
                         .text("c")
                         .text("d")
                         .text("e");
  const Msg del = Msg('D').u32(1).u8('K').i16(2).text("1").text("2");

  Decoder d;
  Sink sink;
  // Warm-up: grow scratch to the widest tuple (8 columns, old and new).
  d.decode(inserts[7].span(), sink);
  d.decode(update.span(), sink);
  d.decode(del.span(), sink);

  const long before = g_allocations.load();
  for (int round = 0; round < 3; ++round) {
    for (const Msg& m : inserts) d.decode(m.span(), sink);
    d.decode(update.span(), sink);
    d.decode(del.span(), sink);
  }
  const long allocations = g_allocations.load() - before;

  EXPECT_EQ(allocations, 0);
  EXPECT_TRUE(sink.new_stable);
  EXPECT_TRUE(sink.old_stable);
  EXPECT_EQ(sink.calls, 4u + 3u * (1000u + 2u + 1u));  // Update reports old and new
  EXPECT_GT(sink.bytes, 0u);
}

TEST(PgoutputDecode, AllocationCounterIsLive) {
  // Guards the test above against a counter that never counts.
  const long before = g_allocations.load();
  std::vector<TupleValue> v;
  v.reserve(100);                // std::allocator -> operator new
  void* p = ::operator new(16);  // a direct call cannot be elided
  ::operator delete(p);
  EXPECT_GE(g_allocations.load() - before, 2);
  EXPECT_GE(v.capacity(), 100u);
}

}  // namespace
}  // namespace walfold::cdc
