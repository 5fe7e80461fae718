// RAII over libmongoc/libbson, kept small: a client pool, owned bson documents, and errors that
// name the server.
#pragma once

#include <mongoc/mongoc.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/decimal.h"
#include "common/lsn.h"
#include "common/progress.h"

#include "config/config.h"

namespace walfold::projections {

// An owned bson_t (a class rather than unique_ptr<bson_t>: bson_t carries an alignment
// attribute that template arguments drop).
class Bson {
 public:
  Bson() : p_(bson_new()) {}
  ~Bson() {
    if (p_) bson_destroy(p_);
  }
  Bson(Bson&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
  Bson& operator=(Bson&& o) noexcept {
    if (this != &o) {
      if (p_) bson_destroy(p_);
      p_ = o.p_;
      o.p_ = nullptr;
    }
    return *this;
  }
  Bson(const Bson&) = delete;
  Bson& operator=(const Bson&) = delete;
  bson_t* get() const { return p_; }

 private:
  bson_t* p_;
};
inline Bson make_bson() {
  return Bson();
}
std::string bson_json(const bson_t* b);

// Call once per process before any other libmongoc use (idempotent, thread-safe). Routes
// libmongoc's log messages to spdlog (route_mongoc_logs) before initialising it.
void mongo_global_init();
void route_mongoc_logs();

// Sets the user and password on a parsed URI (mongoc_uri_set_username/password). ConfigError
// when the URI already carries a user (credentials belong in mongodb.username/password_file).
void set_mongo_credentials(mongoc_uri_t* uri, const std::string& username,
                           const std::string& password);

class MongoPool {
 public:
  explicit MongoPool(const MongoConfig& cfg);
  ~MongoPool();
  MongoPool(const MongoPool&) = delete;
  MongoPool& operator=(const MongoPool&) = delete;

  class Client {
   public:
    Client(MongoPool& pool);
    ~Client();
    Client(const Client&) = delete;
    mongoc_client_t* get() const { return client_; }
    // Collection handle with the configured write concern. Caller owns it.
    mongoc_collection_t* collection(const char* name) const;

   private:
    ServerWait wait_{Server::MongoDB};  // a thread holding a client is talking to MongoDB
    MongoPool& pool_;
    mongoc_client_t* client_;
  };

  const std::string& address() const { return address_; }
  const MongoConfig& config() const { return cfg_; }
  // Runs {ping: 1} (which connects and authenticates); throws AuthError when MongoDB refused
  // the credentials or TLS verification failed, UnavailableError otherwise, naming the address.
  void ping();

 private:
  MongoConfig cfg_;
  std::string address_;
  mongoc_uri_t* uri_ = nullptr;
  mongoc_client_pool_t* pool_ = nullptr;
  mongoc_write_concern_t* wc_ = nullptr;
};

// One write of a bulk: update (`update` holds operators) or, with `replace`, a whole-document
// replacement; `upsert` inserts when the filter matches nothing.
struct Statement {
  Bson filter;
  Bson update;
  bool upsert = false;
  bool replace = false;
};

// Sends `statements` to `collection` as one bulk write (ordered or not). Throws
// UnavailableError when MongoDB cannot be reached, DataError when the server refused a
// document for what it is (is_document_error: retrying the same write cannot succeed), and
// std::runtime_error on other write errors (write conflicts, elections: transient).
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
// A failed first contact (ping): AuthError (exit 77) when MongoDB refused the credentials or
// TLS verification failed, UnavailableError otherwise. The one classification of both.
[[noreturn]] void throw_connect_error(const std::string& address, const bson_error_t& err);
// Throws UnavailableError or std::runtime_error: "mongodb at <address>: <what> failed: <msg>".
[[noreturn]] void throw_mongo_error(const MongoPool& pool, const std::string& what,
                                    const bson_error_t& err);

struct CollectionDeleter {
  void operator()(mongoc_collection_t* c) const { mongoc_collection_destroy(c); }
};
using Collection = std::unique_ptr<mongoc_collection_t, CollectionDeleter>;

}  // namespace walfold::projections
