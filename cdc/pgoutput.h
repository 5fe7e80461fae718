// Bounds-checked decoder for the pgoutput logical replication protocol, version 1 (the payload
// of each XLogData message on a replication connection started with proto_version '1').
//
// Every read is checked against the message length; malformed input raises DecodeError naming
// the message type, the byte offset and what was expected there. Views handed to the Handler
// (string_views, Tuple spans) point into the caller's message buffer or into the Decoder's
// scratch storage and are valid only for the duration of the callback.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/lsn.h"

namespace walfold::cdc {

// A replication message that does not match the protocol. The message names the message type
// character, the byte offset within the message and what was expected there.
struct DecodeError : walfold::DataError {
  using DataError::DataError;
};

struct TupleValue {
  char kind;              // 'n' NULL, 'u' unchanged TOASTed value (not sent), 't' text, 'b' binary
  std::string_view data;  // view into the message buffer for 't'/'b'; empty otherwise
};
using Tuple = std::span<const TupleValue>;

struct Begin {
  Lsn final_lsn;
  std::int64_t commit_time;  // microseconds since 2000-01-01 00:00:00 UTC
  std::uint32_t xid;
};

struct Commit {
  std::uint8_t flags;  // currently unused by PostgreSQL (0)
  Lsn commit_lsn;
  Lsn end_lsn;
  std::int64_t commit_time;  // microseconds since 2000-01-01 00:00:00 UTC
};

struct Origin {
  Lsn commit_lsn;
  std::string_view name;
};

struct RelationColumn {
  std::uint8_t flags;  // kColumnFlagKey when part of the replica identity key
  std::string name;
  std::uint32_t type_oid;
  std::int32_t type_modifier;
};
inline constexpr std::uint8_t kColumnFlagKey = 1;

struct Relation {
  std::uint32_t relid;
  std::string nspname;  // empty for pg_catalog
  std::string relname;
  char replica_identity;  // pg_class.relreplident: 'd' default, 'n' nothing, 'f' full, 'i' index
  std::vector<RelationColumn> columns;
};

struct Type {
  std::uint32_t type_oid;
  std::string_view nspname;
  std::string_view name;
};

struct Truncate {
  std::uint8_t options;  // kTruncateCascade | kTruncateRestartIdentity
  std::vector<std::uint32_t> relids;
};
inline constexpr std::uint8_t kTruncateCascade = 1;
inline constexpr std::uint8_t kTruncateRestartIdentity = 2;

struct LogicalMessage {
  bool transactional;
  Lsn lsn;
  std::string_view prefix;
  std::string_view content;
};

class Handler {  // callbacks; views are valid only during the call
 public:
  virtual ~Handler() = default;
  virtual void on_begin(const Begin&) = 0;
  virtual void on_commit(const Commit&) = 0;
  virtual void on_origin(const Origin&) {}
  virtual void on_relation(const Relation&) = 0;
  virtual void on_type(const Type&) {}
  virtual void on_insert(std::uint32_t relid, Tuple new_tuple) = 0;
  // old_kind: 'K' (old key columns), 'O' (whole old row, REPLICA IDENTITY FULL) or 0 when absent
  // (old_tuple empty).
  virtual void on_update(std::uint32_t relid, char old_kind, Tuple old_tuple, Tuple new_tuple) = 0;
  virtual void on_delete(std::uint32_t relid, char old_kind, Tuple old_tuple) = 0;
  virtual void on_truncate(const Truncate&) = 0;
  virtual void on_message(const LogicalMessage&) {}
};

// Human-readable name of a pgoutput message type byte ("Insert" for 'I'), "unknown" otherwise.
std::string_view message_type_name(char type);

class Decoder {
 public:
  // Decodes exactly one pgoutput message (the whole XLogData payload) and calls the handler.
  // Throws DecodeError on unknown message types, truncation, trailing bytes, bad tuple kinds,
  // counts that exceed the buffer, etc. Never reads out of bounds. Not reentrant: a handler must
  // not call decode() on the same Decoder from inside a callback.
  void decode(std::span<const std::uint8_t> message, Handler& handler);

 private:
  // Reusable scratch storage: once the vectors have grown to the widest table seen, decoding
  // Insert/Update/Delete allocates nothing.
  std::vector<TupleValue> old_tuple_;
  std::vector<TupleValue> new_tuple_;
  Relation relation_;
  Truncate truncate_;
};

}  // namespace walfold::cdc
