// The RAII layer over libmongoc/libbson (mongo/handles.h) and the pool built on it: every path
// out of MongoPool's constructor, the refused ones included, frees what it allocated. These
// tests prove it under the sanitizer build (LeakSanitizer, detect_leaks=1): before the layer, a
// write concern refused after the URI, the pool and the write concern were allocated leaked
// all three.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "common/error.h"
#include "config/config.h"
#include "mongo/handles.h"
#include "mongo/pool.h"

namespace walfold {
namespace {

std::string construction_error(const MongoConfig& mc) {
  try {
    mongo::MongoPool pool(mc);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(MongoHandles, APoolWhoseWriteConcernIsRefusedFreesItsUriAndPool) {
  MongoConfig mc;
  mc.uri = "mongodb://127.0.0.1:1/";
  mc.write_concern = "three";  // refused after the URI, pool and write concern exist
  EXPECT_EQ(construction_error(mc), "mongodb.write_concern 'three' must be 'majority' or a number");
}

TEST(MongoHandles, APoolWhoseCredentialsAreRefusedFreesItsUri) {
  char tmpl[] = "/tmp/wf-mongo-secret-XXXXXX";
  int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  ::close(fd);
  std::ofstream(tmpl) << "s3cret\n";
  MongoConfig mc;
  mc.uri = "mongodb://someone@127.0.0.1:1/";
  mc.username = "walfold";
  mc.password_file = tmpl;
  EXPECT_NE(construction_error(mc).find("mongodb.uri already names a user"), std::string::npos);
  mc.uri = "mongodb://127.0.0.1:1/";
  mc.password_file = std::string(tmpl) + ".missing";
  EXPECT_NE(construction_error(mc).find(".missing"), std::string::npos);
  std::remove(tmpl);
}

TEST(MongoHandles, AnInvalidUriIsAConfigErrorWithoutTheUriPassword) {
  MongoConfig mc;
  mc.uri = "mongodb://u:hunter2@127.0.0.1:notaport/";
  std::string msg = construction_error(mc);
  EXPECT_NE(msg.find("mongodb.uri"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("hunter2"), std::string::npos) << msg;
}

TEST(MongoHandles, AnUnreachableServerIsUnavailableAndTheClientGoesBackToThePool) {
  MongoConfig mc;
  mc.uri = "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200&maxPoolSize=1";
  mongo::MongoPool pool(mc);
  EXPECT_THROW(pool.ping(), UnavailableError);
  // maxPoolSize=1: a client that was not pushed back would make this second pop wait forever.
  EXPECT_THROW(pool.ping(), UnavailableError);
}

TEST(MongoHandles, OwnedDocumentsMoveAndAdopt) {
  mongo::Bson a;
  BSON_APPEND_INT32(a.get(), "x", 1);
  mongo::Bson b = std::move(a);
  EXPECT_FALSE(a);
  EXPECT_EQ(mongo::bson_json(b.get()), R"({ "x" : 1 })");
  mongo::Bson c = mongo::Bson::adopt(BCON_NEW("y", BCON_INT32(2)));
  b = std::move(c);  // frees {x: 1}
  EXPECT_EQ(mongo::bson_json(b.get()), R"({ "y" : 2 })");
  mongo::StackBson reply;
  BSON_APPEND_UTF8(reply.get(), "big", std::string(4096, 'z').c_str());  // grows onto the heap
  EXPECT_GT(reply.get()->len, 4096u);
}

// MongoDB's errors by domain and code (mongo/pool.cpp): the kind decides the retry class and
// the exit code, and throw_mongo throws the matching type.
bson_error_t mongo_error(std::uint32_t domain, std::uint32_t code) {
  bson_error_t e{};
  bson_set_error(&e, domain, code, "%s", "made up");
  return e;
}

TEST(MongoErrors, KindsComeFromDomainAndCode) {
  using mongo::mongo_error_kind;
  EXPECT_EQ(mongo_error_kind(mongo_error(MONGOC_ERROR_STREAM, MONGOC_ERROR_STREAM_SOCKET)),
            ErrorKind::Unavailable);
  EXPECT_EQ(mongo_error_kind(
                mongo_error(MONGOC_ERROR_SERVER_SELECTION, MONGOC_ERROR_SERVER_SELECTION_FAILURE)),
            ErrorKind::Unavailable);
  EXPECT_EQ(mongo_error_kind(mongo_error(MONGOC_ERROR_SERVER, 10334)), ErrorKind::Data);
  EXPECT_EQ(mongo_error_kind(mongo_error(MONGOC_ERROR_SERVER, 121)), ErrorKind::Data);
  EXPECT_EQ(mongo_error_kind(mongo_error(MONGOC_ERROR_SERVER, 112)), ErrorKind::Transient);
  // 2 is BadValue from the server, but a libmongoc code in another domain: not a document error.
  EXPECT_EQ(mongo_error_kind(mongo_error(MONGOC_ERROR_COMMAND, 2)), ErrorKind::Transient);
  try {
    mongo::throw_mongo("bulk", mongo_error(MONGOC_ERROR_SERVER, 112));
  } catch (const TransientError& e) {
    EXPECT_EQ(error_class(e).retry, RetryClass::Backoff);
  }
  try {
    mongo::throw_mongo("bulk", mongo_error(MONGOC_ERROR_SERVER, 10334));
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("error code 10334"), std::string::npos) << e.what();
  }
  EXPECT_THROW(mongo::throw_mongo("x", mongo_error(MONGOC_ERROR_STREAM, 1)), UnavailableError);
}

}  // namespace
}  // namespace walfold
