#include "cdc/pgoutput.h"

#include "cdc/bytes.h"

#include <cstdio>
#include <cstring>
#include <type_traits>

namespace walfold::cdc {

namespace {

using bytes::describe_byte;
using bytes::load_be;

// Cursor over one pgoutput message. Every accessor checks the remaining length first and throws
// DecodeError naming the message type, the byte offset and what was expected.
class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> buf) : buf_(buf) {}

  std::size_t offset() const { return pos_; }
  std::size_t remaining() const { return buf_.size() - pos_; }

  // Errors raised while a context is set mention it, e.g. "(in new tuple column 3)".
  void set_context(const char* context, int index) {
    context_ = context;
    index_ = index;
  }
  void clear_context() { context_ = nullptr; }

  [[noreturn]] void fail(std::size_t at, const std::string& detail) const {
    std::string msg = "pgoutput ";
    if (buf_.empty()) {
      msg += "message (empty)";
    } else {
      msg += message_type_name(static_cast<char>(buf_[0]));
      msg += " message (type byte ";
      msg += describe_byte(buf_[0]);
      msg += ")";
    }
    msg += ", byte offset " + std::to_string(at) + " of " + std::to_string(buf_.size()) + ": ";
    msg += detail;
    if (context_ != nullptr) {
      msg += " (in ";
      msg += context_;
      msg += " " + std::to_string(index_) + ")";
    }
    throw DecodeError(msg);
  }

  std::uint8_t u8(const char* what) {
    need(1, what);
    return buf_[pos_++];
  }
  std::int16_t i16(const char* what) { return take<std::int16_t>(what); }
  std::int32_t i32(const char* what) { return take<std::int32_t>(what); }
  std::uint32_t u32(const char* what) { return take<std::uint32_t>(what); }
  std::int64_t i64(const char* what) { return take<std::int64_t>(what); }
  std::uint64_t u64(const char* what) { return take<std::uint64_t>(what); }

  // A NUL-terminated string; the view excludes the terminator.
  std::string_view cstring(const char* what) {
    const auto* start = buf_.data() + pos_;
    const auto* nul = static_cast<const std::uint8_t*>(std::memchr(start, 0, remaining()));
    if (nul == nullptr) [[unlikely]] {
      fail(pos_, std::string("expected NUL-terminated String ") + what +
                     ", but there is no NUL byte in the " + std::to_string(remaining()) +
                     " remaining bytes");
    }
    const auto len = static_cast<std::size_t>(nul - start);
    pos_ += len + 1;
    return {reinterpret_cast<const char*>(start), len};
  }

  std::string_view bytes(std::size_t n, const char* what) {
    need(n, what);
    std::string_view out(reinterpret_cast<const char*>(buf_.data() + pos_), n);
    pos_ += n;
    return out;
  }

  // Reads a signed Int32 length and rejects negative values and values beyond the buffer.
  std::size_t length(const char* what) {
    const std::size_t at = pos_;
    const std::int32_t len = i32(what);
    if (len < 0) [[unlikely]] {
      fail(at, std::string("expected non-negative ") + what + ", got " + std::to_string(len));
    }
    if (static_cast<std::size_t>(len) > remaining()) [[unlikely]] {
      fail(at, std::string(what) + " is " + std::to_string(len) + ", but only " +
                   std::to_string(remaining()) + " bytes follow");
    }
    return static_cast<std::size_t>(len);
  }

  // Reads a signed Int16/Int32 count, rejecting negative values and counts whose items (at least
  // min_item_size bytes each) cannot fit in the rest of the message. Keeps hostile counts from
  // driving allocations.
  template <typename T>
  std::size_t count(const char* what, std::size_t min_item_size, std::size_t trailing = 0) {
    const std::size_t at = pos_;
    const T n = take<T>(what);
    if (n < 0) [[unlikely]] {
      fail(at, std::string("expected non-negative ") + what + ", got " + std::to_string(n));
    }
    const auto un = static_cast<std::size_t>(n);
    const std::size_t room = remaining() >= trailing ? remaining() - trailing : 0;
    if (un > room / min_item_size) [[unlikely]] {
      fail(at, std::string(what) + " is " + std::to_string(un) + ", but the " +
                   std::to_string(room) + " bytes that follow cannot hold that many items of at " +
                   "least " + std::to_string(min_item_size) + " byte(s) each");
    }
    return un;
  }

  void expect_end() const {
    if (pos_ != buf_.size()) [[unlikely]] {
      fail(pos_, "expected end of message, but " + std::to_string(remaining()) +
                     " trailing bytes follow");
    }
  }

 private:
  void need(std::size_t n, const char* what) const {
    if (remaining() < n) [[unlikely]] {
      fail(pos_, std::string("expected ") + what + " (" + std::to_string(n) +
                     (n == 1 ? " byte" : " bytes") + "), but only " + std::to_string(remaining()) +
                     " bytes remain (truncated message)");
    }
  }

  template <typename T>
  T take(const char* what) {
    need(sizeof(T), what);
    const T v = load_be<T>(buf_.data() + pos_);
    pos_ += sizeof(T);
    return v;
  }

  std::span<const std::uint8_t> buf_;
  std::size_t pos_ = 0;
  const char* context_ = nullptr;
  int index_ = 0;
};

// TupleData: Int16 ncols, then per column Byte1 kind ('n' | 'u' | 't' Int32 len bytes | 'b' ...).
// Reuses out's capacity: no allocation once it has grown to ncols.
void read_tuple(Reader& r, std::vector<TupleValue>& out, const char* which) {
  // Every column takes at least its kind byte.
  const std::size_t ncols = r.count<std::int16_t>("Int16 number of tuple columns", 1);
  out.clear();
  for (std::size_t i = 0; i < ncols; ++i) {
    r.set_context(which, static_cast<int>(i + 1));
    const std::size_t kind_at = r.offset();
    const std::uint8_t kind = r.u8("Byte1 column kind ('n', 'u', 't' or 'b')");
    switch (kind) {
      case 'n':
      case 'u':
        out.push_back(TupleValue{static_cast<char>(kind), {}});
        break;
      case 't':
      case 'b': {
        const std::size_t len = r.length("Int32 column value length");
        out.push_back(TupleValue{static_cast<char>(kind), r.bytes(len, "column value bytes")});
        break;
      }
      default:
        r.fail(kind_at, "expected column kind 'n', 'u', 't' or 'b', got " + describe_byte(kind));
    }
  }
  r.clear_context();
}

bool valid_replica_identity(std::uint8_t c) {
  return c == 'd' || c == 'n' || c == 'f' || c == 'i';
}

}  // namespace

std::string_view message_type_name(char type) {
  switch (type) {
    case 'B':
      return "Begin";
    case 'C':
      return "Commit";
    case 'O':
      return "Origin";
    case 'R':
      return "Relation";
    case 'Y':
      return "Type";
    case 'I':
      return "Insert";
    case 'U':
      return "Update";
    case 'D':
      return "Delete";
    case 'T':
      return "Truncate";
    case 'M':
      return "Logical Decoding Message";
    case 'S':
      return "Stream Start";
    case 'E':
      return "Stream Stop";
    case 'c':
      return "Stream Commit";
    case 'A':
      return "Stream Abort";
    case 'b':
      return "Begin Prepare";
    case 'P':
      return "Prepare";
    case 'K':
      return "Commit Prepared";
    case 'r':
      return "Rollback Prepared";
    case 'p':
      return "Stream Prepare";
    default:
      return "unknown";
  }
}

namespace {

// One function per message type: each reads the whole message and calls its handler.

void decode_begin(Reader& r, Handler& handler) {
  Begin m{};
  m.final_lsn = r.u64("Int64 final LSN of the transaction");
  m.commit_time = r.i64("Int64 commit timestamp");
  m.xid = r.u32("Int32 transaction id");
  r.expect_end();
  handler.on_begin(m);
}

void decode_commit(Reader& r, Handler& handler) {
  Commit m{};
  m.flags = r.u8("Int8 flags");
  m.commit_lsn = r.u64("Int64 commit LSN");
  m.end_lsn = r.u64("Int64 end LSN of the transaction");
  m.commit_time = r.i64("Int64 commit timestamp");
  r.expect_end();
  handler.on_commit(m);
}

void decode_origin(Reader& r, Handler& handler) {
  Origin m{};
  m.commit_lsn = r.u64("Int64 commit LSN on the origin");
  m.name = r.cstring("origin name");
  r.expect_end();
  handler.on_origin(m);
}

// `m` is the decoder's reusable Relation (its strings and columns keep their capacity).
void decode_relation(Reader& r, Relation& m, Handler& handler) {
  m.relid = r.u32("Int32 relation id");
  m.nspname.assign(r.cstring("namespace name"));
  m.relname.assign(r.cstring("relation name"));
  const std::size_t ri_at = r.offset();
  const std::uint8_t ri = r.u8("Int8 replica identity");
  if (!valid_replica_identity(ri)) {
    r.fail(ri_at, "expected replica identity 'd', 'n', 'f' or 'i', got " + describe_byte(ri));
  }
  m.replica_identity = static_cast<char>(ri);
  // A column is at least flags (1) + empty name (1) + type OID (4) + typmod (4) = 10 bytes.
  const std::size_t ncols = r.count<std::int16_t>("Int16 number of columns", 10);
  m.columns.resize(ncols);
  for (std::size_t i = 0; i < ncols; ++i) {
    r.set_context("relation column", static_cast<int>(i + 1));
    RelationColumn& col = m.columns[i];
    col.flags = r.u8("Int8 column flags");
    col.name.assign(r.cstring("column name"));
    col.type_oid = r.u32("Int32 column type OID");
    col.type_modifier = r.i32("Int32 column type modifier");
  }
  r.clear_context();
  r.expect_end();
  handler.on_relation(m);
}

void decode_type(Reader& r, Handler& handler) {
  Type m{};
  m.type_oid = r.u32("Int32 type OID");
  m.nspname = r.cstring("type namespace name");
  m.name = r.cstring("type name");
  r.expect_end();
  handler.on_type(m);
}

// Reads the Byte1 'N' that announces a new tuple.
void expect_new_tuple_tag(Reader& r) {
  const std::size_t tag_at = r.offset();
  const std::uint8_t tag = r.u8("Byte1 'N' (new tuple follows)");
  if (tag != 'N') r.fail(tag_at, "expected Byte1 'N' (new tuple), got " + describe_byte(tag));
}

void decode_insert(Reader& r, std::vector<TupleValue>& new_tuple, Handler& handler) {
  const std::uint32_t relid = r.u32("Int32 relation id");
  expect_new_tuple_tag(r);
  read_tuple(r, new_tuple, "new tuple column");
  r.expect_end();
  handler.on_insert(relid, Tuple(new_tuple));
}

void decode_update(Reader& r, std::vector<TupleValue>& old_tuple,
                   std::vector<TupleValue>& new_tuple, Handler& handler) {
  const std::uint32_t relid = r.u32("Int32 relation id");
  const std::size_t tag_at = r.offset();
  const std::uint8_t tag = r.u8("Byte1 'K', 'O' or 'N'");
  char old_kind = 0;
  if (tag == 'K' || tag == 'O') {
    old_kind = static_cast<char>(tag);
    read_tuple(r, old_tuple, tag == 'K' ? "old key column" : "old tuple column");
    expect_new_tuple_tag(r);
  } else if (tag != 'N') {
    r.fail(tag_at, "expected Byte1 'K' (old key), 'O' (old tuple) or 'N' (new tuple), got " +
                       describe_byte(tag));
  }
  read_tuple(r, new_tuple, "new tuple column");
  r.expect_end();
  handler.on_update(relid, old_kind, old_kind != 0 ? Tuple(old_tuple) : Tuple(), Tuple(new_tuple));
}

void decode_delete(Reader& r, std::vector<TupleValue>& old_tuple, Handler& handler) {
  const std::uint32_t relid = r.u32("Int32 relation id");
  const std::size_t tag_at = r.offset();
  const std::uint8_t tag = r.u8("Byte1 'K' or 'O'");
  if (tag != 'K' && tag != 'O') {
    r.fail(tag_at, "expected Byte1 'K' (old key) or 'O' (old tuple), got " + describe_byte(tag));
  }
  read_tuple(r, old_tuple, tag == 'K' ? "old key column" : "old tuple column");
  r.expect_end();
  handler.on_delete(relid, static_cast<char>(tag), Tuple(old_tuple));
}

// `m` is the decoder's reusable Truncate.
void decode_truncate(Reader& r, Truncate& m, Handler& handler) {
  // The options byte sits between the count and the relation ids.
  const std::size_t nrels = r.count<std::int32_t>("Int32 number of relations", 4, 1);
  m.options = r.u8("Int8 truncate option bits");
  m.relids.clear();
  m.relids.reserve(nrels);
  for (std::size_t i = 0; i < nrels; ++i) {
    r.set_context("truncated relation", static_cast<int>(i + 1));
    m.relids.push_back(r.u32("Int32 relation id"));
  }
  r.clear_context();
  r.expect_end();
  handler.on_truncate(m);
}

void decode_message(Reader& r, Handler& handler) {
  LogicalMessage m{};
  const std::size_t flags_at = r.offset();
  const std::uint8_t flags = r.u8("Int8 flags");
  if (flags > 1) {
    r.fail(flags_at, "expected flags 0 or 1 (transactional), got " + std::to_string(flags));
  }
  m.transactional = flags == 1;
  m.lsn = r.u64("Int64 LSN of the message");
  m.prefix = r.cstring("message prefix");
  const std::size_t len = r.length("Int32 content length");
  m.content = r.bytes(len, "message content");
  r.expect_end();
  handler.on_message(m);
}

}  // namespace

void Decoder::decode(std::span<const std::uint8_t> message, Handler& handler) {
  Reader r(message);
  const char type = static_cast<char>(r.u8("Byte1 message type"));
  switch (type) {
    case 'B':
      return decode_begin(r, handler);
    case 'C':
      return decode_commit(r, handler);
    case 'O':
      return decode_origin(r, handler);
    case 'R':
      return decode_relation(r, relation_, handler);
    case 'Y':
      return decode_type(r, handler);
    case 'I':
      return decode_insert(r, new_tuple_, handler);
    case 'U':
      return decode_update(r, old_tuple_, new_tuple_, handler);
    case 'D':
      return decode_delete(r, old_tuple_, handler);
    case 'T':
      return decode_truncate(r, truncate_, handler);
    case 'M':
      return decode_message(r, handler);
    case 'S':
    case 'E':
    case 'c':
    case 'A':
      r.fail(0,
             "streaming of in-progress transactions (protocol version 2) is not supported; "
             "start replication with proto_version '1' and without the streaming option");
    case 'b':
    case 'P':
    case 'K':
    case 'r':
    case 'p':
      r.fail(0,
             "two-phase commit messages (protocol version 3) are not supported; "
             "use proto_version '1' and a slot created without two_phase");
    default:
      r.fail(0,
             "unknown message type; expected one of 'B', 'C', 'O', 'R', 'Y', 'I', 'U', 'D', "
             "'T', 'M' (pgoutput protocol version 1)");
  }
}

}  // namespace walfold::cdc
