// libmongoc's process setup and first contact, shared by every room that talks to MongoDB
// (the projection's pool, the checkpoint store, `walfold report`).
#pragma once

#include <mongoc/mongoc.h>

#include <string>

#include "mongo/handles.h"

namespace walfold::mongo {

// Call once per process before any other libmongoc use (idempotent, thread-safe). Routes
// libmongoc's log messages to spdlog (route_mongoc_logs) before initialising it.
void mongo_global_init();
void route_mongoc_logs();

// Relaxed extended JSON of a document, for messages.
std::string bson_json(const bson_t* b);

// Sets the user and password on a parsed URI (mongoc_uri_set_username/password). ConfigError
// when the URI already carries a user (credentials belong in mongodb.username/password_file).
void set_mongo_credentials(mongoc_uri_t* uri, const std::string& username,
                           const std::string& password);

// A failed first contact (ping): AuthError (exit 77) when MongoDB refused the credentials or
// TLS verification failed, UnavailableError otherwise. The one classification of both.
[[noreturn]] void throw_connect_error(const std::string& address, const bson_error_t& err);

}  // namespace walfold::mongo
