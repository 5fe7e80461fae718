#include "mongo/pool.h"

#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/log.h"

namespace walfold::mongo {

MongoPool::MongoPool(const MongoConfig& cfg) : cfg_(cfg) {
  mongo_global_init();
  bson_error_t err;
  uri_.reset(mongoc_uri_new_with_error(cfg.uri.c_str(), &err));
  if (!uri_)
    throw ConfigError("mongodb.uri '" + redact_secrets(cfg.uri) + "' is invalid: " + err.message);
  address_ = redact_secrets(cfg.uri);
  if (!cfg.username.empty())
    set_mongo_credentials(uri_.get(), cfg.username, read_secret_file(cfg.password_file));
  mongoc_uri_t* uri = uri_.get();
  // Fail fast instead of libmongoc's 30 s default when the server is down.
  if (!mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 5000);
  // A server that stops answering (paused, partitioned) must become an error the worker backs
  // off from, not a request that hangs for libmongoc's default of 5 minutes.
  if (!mongoc_uri_has_option(uri, MONGOC_URI_SOCKETTIMEOUTMS))
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SOCKETTIMEOUTMS, 30000);
  if (!mongoc_uri_has_option(uri, MONGOC_URI_APPNAME))
    mongoc_uri_set_option_as_utf8(uri, MONGOC_URI_APPNAME, "walfold");
  pool_.reset(mongoc_client_pool_new(uri));
  if (!pool_) throw ConfigError("mongodb.uri '" + address_ + "': cannot create a client pool");
  mongoc_client_pool_set_error_api(pool_.get(), MONGOC_ERROR_API_VERSION_2);
  wc_.reset(mongoc_write_concern_new());
  if (cfg.write_concern == "majority") {
    mongoc_write_concern_set_wmajority(wc_.get(), 0);
  } else {
    try {
      mongoc_write_concern_set_w(wc_.get(), std::stoi(cfg.write_concern));
    } catch (...) {
      throw ConfigError("mongodb.write_concern '" + cfg.write_concern +
                        "' must be 'majority' or a number");
    }
  }
}

MongoPool::Client::Client(MongoPool& pool) : pool_(pool), client_(pool.pool_.get()) {}

Collection MongoPool::Client::collection(const char* name) const {
  Collection c(mongoc_client_get_collection(client_.get(), pool_.cfg_.database.c_str(), name));
  mongoc_collection_set_write_concern(c.get(), pool_.wc_.get());
  return c;
}

void MongoPool::ping() {
  Client c(*this);
  auto cmd = make_bson();
  BSON_APPEND_INT32(cmd.get(), "ping", 1);
  bson_error_t err;
  StackBson reply;
  bool ok = mongoc_client_command_simple(c.get(), "admin", cmd.get(), nullptr, reply.get(), &err);
  if (ok) return;
  throw_connect_error(address_, err);
}

void append_lsn_not(bson_t* filter, const char* field, const char* op, Lsn lsn) {
  bson_t w, n;
  bson_append_document_begin(filter, field, -1, &w);
  bson_append_document_begin(&w, "$not", -1, &n);
  BSON_APPEND_INT64(&n, op, static_cast<std::int64_t>(lsn));
  bson_append_document_end(&w, &n);
  bson_append_document_end(filter, &w);
}

void append_decimal(bson_t* doc, const char* key, const Decimal& d) {
  bson_decimal128_t dec;
  std::string s = d.to_string();
  bson_decimal128_from_string(s.c_str(), &dec);
  bson_append_decimal128(doc, key, -1, &dec);
}

std::int64_t get_int64(const bson_iter_t& it) {
  switch (bson_iter_type(&it)) {
    case BSON_TYPE_INT64:
      return bson_iter_int64(&it);
    case BSON_TYPE_INT32:
      return bson_iter_int32(&it);
    case BSON_TYPE_DOUBLE:
      return static_cast<std::int64_t>(bson_iter_double(&it));
    default:
      return 0;
  }
}

bool is_connection_error(const bson_error_t& e) {
  return e.domain == MONGOC_ERROR_STREAM || e.domain == MONGOC_ERROR_SERVER_SELECTION ||
         (e.domain == MONGOC_ERROR_CLIENT && e.code == MONGOC_ERROR_CLIENT_AUTHENTICATE);
}

bool is_document_error(const bson_error_t& e) {
  // Error API 2 (set on the pool): every error the server reports, write errors included, is
  // in MONGOC_ERROR_SERVER with the server's code; the other domains carry libmongoc's own
  // codes, which overlap these numbers.
  if (e.domain != MONGOC_ERROR_SERVER) return false;
  switch (e.code) {
    case 2:      // BadValue
    case 9:      // FailedToParse
    case 14:     // TypeMismatch
    case 28:     // PathNotViable
    case 52:     // DollarPrefixedFieldName
    case 56:     // EmptyFieldName
    case 66:     // ImmutableField
    case 121:    // DocumentValidationFailure
    case 10334:  // BSONObjectTooLarge
    case 17419:  // the update makes the document too large
    case 17280:  // KeyTooLong
      return true;
    default:
      return false;
  }
}

ErrorKind mongo_error_kind(const bson_error_t& e) {
  if (is_connection_error(e)) return ErrorKind::Unavailable;
  if (is_document_error(e)) return ErrorKind::Data;
  return ErrorKind::Transient;  // write conflicts, elections, timeouts: retried with backoff
}

void throw_mongo(const std::string& message, const bson_error_t& err) {
  switch (mongo_error_kind(err)) {
    case ErrorKind::Unavailable:
      throw UnavailableError(message);
    case ErrorKind::Data:
      throw DataError(message + " (error code " + std::to_string(err.code) + ")");
    default:
      throw TransientError(message);
  }
}

void throw_mongo_error(const MongoPool& pool, const std::string& what, const bson_error_t& err) {
  throw_mongo("mongodb at " + pool.address() + ": " + what + " failed: " + err.message, err);
}

void bulk_write(const MongoPool& pool, const MongoPool::Client& client, const char* collection,
                std::vector<Statement>& statements, bool ordered) {
  if (statements.empty()) return;
  Collection coll = client.collection(collection);
  auto opts = make_bson();
  BSON_APPEND_BOOL(opts.get(), "ordered", ordered);
  BulkOperation bulk(mongoc_collection_create_bulk_operation_with_opts(coll.get(), opts.get()));
  mongoc_bulk_operation_t* b = bulk.get();
  bson_error_t err;
  for (auto& s : statements) {
    auto o = make_bson();
    if (s.upsert) BSON_APPEND_BOOL(o.get(), "upsert", true);
    bool added = s.replace ? mongoc_bulk_operation_replace_one_with_opts(
                                 b, s.filter.get(), s.update.get(), o.get(), &err)
                           : mongoc_bulk_operation_update_one_with_opts(
                                 b, s.filter.get(), s.update.get(), o.get(), &err);
    if (!added) {
      throw DataError(std::string("building the ") + collection + " bulk write: " + err.message +
                      " (" + bson_json(s.update.get()) + ")");
    }
  }
  StackBson reply;
  bool ok = mongoc_bulk_operation_execute(b, reply.get(), &err) != 0;
  std::string detail = ok ? "" : bson_json(reply.get());
  if (!ok) {
    throw_mongo("mongodb at " + pool.address() + ": bulk write to " + collection +
                    " failed: " + err.message + " " + detail.substr(0, 2000),
                err);
  }
}

}  // namespace walfold::mongo
