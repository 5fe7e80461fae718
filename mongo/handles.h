// The one RAII layer over libmongoc and libbson: every handle walfold takes from either library
// is owned by one of these types, so no error path (an exception thrown mid-cursor, a constructor
// that fails after allocating) can leak it. Nothing outside this header calls a
// mongoc_*_destroy, bson_destroy or mongoc_client_pool_push.
//
// It lives in its own room (mongo/, library wf_mongo: libmongoc and this header only) because
// every room that talks to MongoDB includes it -- projections/, checkpoint/, reconcile/ and
// tools/ -- and checkpoint/ and tools/ must not depend on projections/.
#pragma once

#include <mongoc/mongoc.h>

#include <memory>
#include <utility>

namespace walfold::mongo {

// unique_ptr deleter calling a library's destroy function.
template <auto Destroy>
struct Destroyer {
  template <typename T>
  void operator()(T* p) const noexcept {
    if (p != nullptr) Destroy(p);
  }
};

using Uri = std::unique_ptr<mongoc_uri_t, Destroyer<mongoc_uri_destroy>>;
using ClientPool = std::unique_ptr<mongoc_client_pool_t, Destroyer<mongoc_client_pool_destroy>>;
// A client of its own (not from a pool): `walfold report`.
using Client = std::unique_ptr<mongoc_client_t, Destroyer<mongoc_client_destroy>>;
using Collection = std::unique_ptr<mongoc_collection_t, Destroyer<mongoc_collection_destroy>>;
using Cursor = std::unique_ptr<mongoc_cursor_t, Destroyer<mongoc_cursor_destroy>>;
using BulkOperation =
    std::unique_ptr<mongoc_bulk_operation_t, Destroyer<mongoc_bulk_operation_destroy>>;
using WriteConcern =
    std::unique_ptr<mongoc_write_concern_t, Destroyer<mongoc_write_concern_destroy>>;
using ReadConcern = std::unique_ptr<mongoc_read_concern_t, Destroyer<mongoc_read_concern_destroy>>;
// Text libbson allocated (bson_as_relaxed_extended_json and the like).
using BsonChars = std::unique_ptr<char, Destroyer<bson_free>>;

// A client popped from a pool, pushed back when this goes (the pool must outlive it).
class PooledClient {
 public:
  explicit PooledClient(mongoc_client_pool_t* pool)
      : pool_(pool), client_(mongoc_client_pool_pop(pool)) {}
  ~PooledClient() {
    if (client_ != nullptr) mongoc_client_pool_push(pool_, client_);
  }
  PooledClient(PooledClient&& o) noexcept
      : pool_(o.pool_), client_(std::exchange(o.client_, nullptr)) {}
  PooledClient(const PooledClient&) = delete;
  PooledClient& operator=(const PooledClient&) = delete;
  PooledClient& operator=(PooledClient&&) = delete;
  mongoc_client_t* get() const noexcept { return client_; }

 private:
  mongoc_client_pool_t* pool_;
  mongoc_client_t* client_;
};

// An owned heap bson_t (a class rather than unique_ptr<bson_t>: bson_t carries an alignment
// attribute that template arguments drop, -Wignored-attributes). Empty by default.
class Bson {
 public:
  Bson() : p_(bson_new()) {}
  // Takes ownership of a document libbson allocated (BCON_NEW, bson_new_from_json, bson_copy).
  static Bson adopt(bson_t* p) noexcept { return Bson(p); }
  ~Bson() {
    if (p_ != nullptr) bson_destroy(p_);
  }
  Bson(Bson&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  Bson& operator=(Bson&& o) noexcept {
    if (this != &o) {
      if (p_ != nullptr) bson_destroy(p_);
      p_ = std::exchange(o.p_, nullptr);
    }
    return *this;
  }
  Bson(const Bson&) = delete;
  Bson& operator=(const Bson&) = delete;
  bson_t* get() const noexcept { return p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }

 private:
  explicit Bson(bson_t* p) noexcept : p_(p) {}
  bson_t* p_;
};

// A stack bson_t: the out-parameter `reply` of libmongoc's commands (which initialise it, on
// success and on failure alike) or a small document built in place. Initialised empty here, so
// destroying it is right whether or not a call filled it (bson_init of a stack document
// allocates nothing, so a callee initialising it again leaks nothing).
class StackBson {
 public:
  StackBson() { bson_init(&b_); }
  ~StackBson() { bson_destroy(&b_); }
  StackBson(const StackBson&) = delete;
  StackBson& operator=(const StackBson&) = delete;
  bson_t* get() noexcept { return &b_; }
  const bson_t* get() const noexcept { return &b_; }

 private:
  bson_t b_;
};

}  // namespace walfold::mongo
