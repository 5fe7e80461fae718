// walfold's MongoDB client: a pool with the configured write concern, bulk writes, the guard and
// value helpers every writer uses, and errors that name the server. The handles themselves are
// owned by mongo/handles.h.
#pragma once

#include <mongoc/mongoc.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/decimal.h"
#include "common/error.h"
#include "common/lsn.h"
#include "common/progress.h"

#include "config/config.h"
#include "mongo/connect.h"
#include "mongo/handles.h"

namespace walfold::mongo {

inline Bson make_bson() {
  return Bson();
}

class MongoPool {
 public:
  // Throws ConfigError for a URI, credentials or write concern it cannot use (owning nothing
  // by then: every handle is a member that frees itself).
  explicit MongoPool(const MongoConfig& cfg);
  MongoPool(const MongoPool&) = delete;
  MongoPool& operator=(const MongoPool&) = delete;

  class Client {
   public:
    explicit Client(MongoPool& pool);
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;
    mongoc_client_t* get() const { return client_.get(); }
    // Collection handle with the configured write concern.
    Collection collection(const char* name) const;

   private:
    ServerWait wait_{Server::MongoDB};  // a thread holding a client is talking to MongoDB
    const MongoPool& pool_;
    PooledClient client_;
  };

  const std::string& address() const { return address_; }
  const MongoConfig& config() const { return cfg_; }
  // Runs {ping: 1} (which connects and authenticates); throws AuthError when MongoDB refused
  // the credentials or TLS verification failed, UnavailableError otherwise, naming the address.
  void ping();

 private:
  MongoConfig cfg_;
  std::string address_;
  // Declared in the order they are made: destroyed write concern, pool, URI.
  Uri uri_;
  ClientPool pool_;
  WriteConcern wc_;
};

// One write of a bulk: update (`update` holds operators) or, with `replace`, a whole-document
// replacement; `upsert` inserts when the filter matches nothing.
struct Statement {
  Bson filter;
  Bson update;
  bool upsert = false;
  bool replace = false;
};

// Sends `statements` to `collection` as one bulk write (ordered or not). Throws as throw_mongo
// does: UnavailableError when MongoDB cannot be reached, DataError when the server refused a
// document for what it is (retrying the same write cannot succeed), TransientError on other
// write errors (write conflicts, elections).
void bulk_write(const MongoPool& pool, const MongoPool::Client& client, const char* collection,
                std::vector<Statement>& statements, bool ordered);

// Appends {<field>: {$not: {<op>: lsn}}} to a filter: true when the field is below (for "$gte")
// or not above (for "$gt") the LSN, and also when it is missing. The shape of every LSN guard.
void append_lsn_not(bson_t* filter, const char* field, const char* op, Lsn lsn);

// Decimal -> Decimal128 (exact: the text keeps its scale).
void append_decimal(bson_t* doc, const char* key, const Decimal& d);
// int64/int32 (or a double, truncated) as int64; 0 for other types.
std::int64_t get_int64(const bson_iter_t& it);
// A connection-level failure (server unreachable, selection timeout), as opposed to a write
// error.
bool is_connection_error(const bson_error_t& e);
// A server error about the written document itself (failed validation, too large, a field
// name or value the server refuses): the same write fails the same way every time.
bool is_document_error(const bson_error_t& e);
// MongoDB's errors by domain and code, the one table of this room: connection-level failures
// (stream, server selection, authentication during the handshake) are Unavailable, a refused
// document Data, anything else the server reports Transient.
ErrorKind mongo_error_kind(const bson_error_t& e);
// Throws the error of that kind with `message` (a DataError gets the server's code appended).
[[noreturn]] void throw_mongo(const std::string& message, const bson_error_t& err);
// throw_mongo with "mongodb at <address>: <what> failed: <msg>".
[[noreturn]] void throw_mongo_error(const MongoPool& pool, const std::string& what,
                                    const bson_error_t& err);

}  // namespace walfold::mongo
