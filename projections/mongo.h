// The MongoDB client under the names the projection room has always used: the pool, bulk
// writes and helpers live in mongo/pool.h, the owned handles in mongo/handles.h. Rooms below
// projections/ (checkpoint/, tools/) include those directly.
#pragma once

#include "mongo/connect.h"
#include "mongo/handles.h"
#include "mongo/pool.h"

namespace walfold::projections {

using mongo::Bson;
using mongo::Collection;
using mongo::make_bson;
using mongo::MongoPool;
using mongo::StackBson;
using mongo::Statement;

using mongo::append_decimal;
using mongo::append_lsn_not;
using mongo::bson_json;
using mongo::bulk_write;
using mongo::get_int64;
using mongo::is_connection_error;
using mongo::is_document_error;
using mongo::mongo_global_init;
using mongo::route_mongoc_logs;
using mongo::set_mongo_credentials;
using mongo::throw_connect_error;
using mongo::throw_mongo_error;

}  // namespace walfold::projections
