#include "projections/mongo.h"

#include <mutex>

#include "common/error.h"
#include "common/log.h"

namespace walfold::projections {

std::string bson_json(const bson_t* b) {
  char* s = bson_as_relaxed_extended_json(b, nullptr);
  std::string out = s ? s : "";
  bson_free(s);
  return out;
}

void mongo_global_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    mongoc_init();
    std::atexit(mongoc_cleanup);
  });
}

MongoPool::MongoPool(const MongoConfig& cfg) : cfg_(cfg) {
  mongo_global_init();
  bson_error_t err;
  uri_ = mongoc_uri_new_with_error(cfg.uri.c_str(), &err);
  if (!uri_)
    throw ConfigError("mongodb.uri '" + redact_secrets(cfg.uri) + "' is invalid: " + err.message);
  address_ = redact_secrets(cfg.uri);
  // Fail fast instead of libmongoc's 30 s default when the server is down.
  if (!mongoc_uri_has_option(uri_, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
    mongoc_uri_set_option_as_int32(uri_, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 5000);
  if (!mongoc_uri_has_option(uri_, MONGOC_URI_APPNAME))
    mongoc_uri_set_option_as_utf8(uri_, MONGOC_URI_APPNAME, "walfold");
  pool_ = mongoc_client_pool_new(uri_);
  if (!pool_) throw ConfigError("mongodb.uri '" + address_ + "': cannot create a client pool");
  mongoc_client_pool_set_error_api(pool_, MONGOC_ERROR_API_VERSION_2);
  wc_ = mongoc_write_concern_new();
  if (cfg.write_concern == "majority") {
    mongoc_write_concern_set_wmajority(wc_, 0);
  } else {
    try {
      mongoc_write_concern_set_w(wc_, std::stoi(cfg.write_concern));
    } catch (...) {
      throw ConfigError("mongodb.write_concern '" + cfg.write_concern +
                        "' must be 'majority' or a number");
    }
  }
}

MongoPool::~MongoPool() {
  if (wc_) mongoc_write_concern_destroy(wc_);
  if (pool_) mongoc_client_pool_destroy(pool_);
  if (uri_) mongoc_uri_destroy(uri_);
}

MongoPool::Client::Client(MongoPool& pool)
    : pool_(pool), client_(mongoc_client_pool_pop(pool.pool_)) {}
MongoPool::Client::~Client() {
  mongoc_client_pool_push(pool_.pool_, client_);
}

mongoc_collection_t* MongoPool::Client::collection(const char* name) const {
  auto* c = mongoc_client_get_collection(client_, pool_.cfg_.database.c_str(), name);
  mongoc_collection_set_write_concern(c, pool_.wc_);
  return c;
}

void MongoPool::ping() {
  Client c(*this);
  auto cmd = make_bson();
  BSON_APPEND_INT32(cmd.get(), "ping", 1);
  bson_error_t err;
  bson_t reply;
  bool ok = mongoc_client_command_simple(c.get(), "admin", cmd.get(), nullptr, &reply, &err);
  bson_destroy(&reply);
  if (!ok) throw UnavailableError("mongodb at " + address_ + " is unreachable: " + err.message);
}

}  // namespace walfold::projections
