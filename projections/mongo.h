// RAII over libmongoc/libbson, kept small: a client pool, owned bson documents, and errors that
// name the server.
#pragma once

#include <mongoc/mongoc.h>

#include <memory>
#include <string>

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

// Call once per process before any other libmongoc use (idempotent, thread-safe).
void mongo_global_init();

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
    MongoPool& pool_;
    mongoc_client_t* client_;
  };

  const std::string& address() const { return address_; }
  const MongoConfig& config() const { return cfg_; }
  // Runs {ping: 1}; throws UnavailableError naming the address.
  void ping();

 private:
  MongoConfig cfg_;
  std::string address_;
  mongoc_uri_t* uri_ = nullptr;
  mongoc_client_pool_t* pool_ = nullptr;
  mongoc_write_concern_t* wc_ = nullptr;
};

struct CollectionDeleter {
  void operator()(mongoc_collection_t* c) const { mongoc_collection_destroy(c); }
};
using Collection = std::unique_ptr<mongoc_collection_t, CollectionDeleter>;

}  // namespace walfold::projections
