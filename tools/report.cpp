#include "tools/report.h"

#include <mongoc/mongoc.h>

#include <functional>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>

#include "common/error.h"
#include "common/pg.h"
#include "mongo/connect.h"
#include "mongo/handles.h"

namespace walfold::tools {

namespace {

using mongo::Bson;
using mongo::Collection;
using mongo::Cursor;
using mongo::StackBson;

// The servers a URI names, for messages (never the URI itself: it may hold a password).
std::string describe_hosts(const mongoc_uri_t* uri) {
  std::string out;
  for (const mongoc_host_list_t* h = mongoc_uri_get_hosts(uri); h != nullptr; h = h->next) {
    if (!out.empty()) out.push_back(',');
    out += h->host_and_port;
  }
  if (out.empty()) {
    const char* srv = mongoc_uri_get_srv_hostname(uri);
    out = srv != nullptr ? std::string("srv:") + srv : "?";
  }
  return out;
}

// The MongoDB side: a client of its own (appname walfold-report) that fails fast when the
// server is down.
class MongoSource : public projections::DocumentScan {
 public:
  explicit MongoSource(const ReportOptions& o) : database_(o.mongo_database) {
    mongo::mongo_global_init();
    bson_error_t err;
    uri_.reset(mongoc_uri_new_with_error(o.mongo_uri.c_str(), &err));
    if (!uri_) throw ConfigError(std::string("MongoDB URI is not valid: ") + err.message);
    server_ = describe_hosts(uri_.get());
    if (!o.mongo_username.empty() &&
        (!mongoc_uri_set_username(uri_.get(), o.mongo_username.c_str()) ||
         !mongoc_uri_set_password(uri_.get(), o.mongo_password.c_str())))
      throw ConfigError("MongoDB " + server_ + ": the user name or password is not valid UTF-8");
    // Fail fast when the server is down, unless the URI chose its own timeout.
    if (!mongoc_uri_has_option(uri_.get(), MONGOC_URI_SERVERSELECTIONTIMEOUTMS)) {
      mongoc_uri_set_option_as_int32(uri_.get(), MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 5000);
    }
    client_.reset(mongoc_client_new_from_uri(uri_.get()));
    if (!client_) throw ConfigError("MongoDB " + server_ + ": cannot create a client for the URI");
    mongoc_client_set_error_api(client_.get(), MONGOC_ERROR_API_VERSION_2);
    mongoc_client_set_appname(client_.get(), "walfold-report");

    Bson ping = Bson::adopt(BCON_NEW("ping", BCON_INT32(1)));
    StackBson reply;
    bool ok = mongoc_client_command_simple(client_.get(), "admin", ping.get(), nullptr, reply.get(),
                                           &err);
    if (!ok) mongo::throw_connect_error(server_, err);
  }

  void scan(const char* collection, std::initializer_list<const char*> fields,
            const std::function<void(const projections::Document&)>& each) override {
    std::string ns = database_ + "." + collection;
    const std::string where = "MongoDB " + server_ + ": " + ns;
    Collection coll(mongoc_client_get_collection(client_.get(), database_.c_str(), collection));
    Bson filter;
    Bson opts = Bson::adopt(BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}"));
    Bson projection;
    for (const char* f : fields) BSON_APPEND_INT32(projection.get(), f, 1);
    BSON_APPEND_DOCUMENT(opts.get(), "projection", projection.get());
    Cursor cursor(mongoc_collection_find_with_opts(coll.get(), filter.get(), opts.get(), nullptr));
    const bson_t* doc = nullptr;
    while (mongoc_cursor_next(cursor.get(), &doc)) each(projections::Document{where, doc});
    bson_error_t err;
    if (mongoc_cursor_error(cursor.get(), &err)) {
      throw UnavailableError("MongoDB " + server_ + ": reading " + ns + " failed: " + err.message);
    }
  }

 private:
  std::string database_;
  std::string server_;
  mongo::Uri uri_;
  mongo::Client client_;
};

const projections::CanonicalForm& form_of(const projections::Projection& projection) {
  const projections::CanonicalForm* form = projection.canonical_form();
  if (!form)
    throw ConfigError("the " + std::string(projection.name()) +
                      " projection has no canonical form to report or verify");
  return *form;
}

}  // namespace

ReportOptions report_options(const Config& cfg, ReportSource from) {
  ReportOptions o;
  o.from = from;
  o.pg_dsn = postgres_conninfo(cfg.postgres);
  o.mongo_uri = cfg.mongodb.uri;
  o.mongo_database = cfg.mongodb.database;
  if (!cfg.mongodb.username.empty()) {
    o.mongo_username = cfg.mongodb.username;
    o.mongo_password = read_secret_file(cfg.mongodb.password_file);
  }
  o.tables = mapped_tables(cfg);
  return o;
}

void read_canonical(const ReportOptions& options, const projections::Projection& projection,
                    const projections::RecordSink& each) {
  const projections::CanonicalForm& form = form_of(projection);
  if (options.from == ReportSource::Mongo) {
    MongoSource mongo(options);
    form.from_mongo(mongo, each);
    return;
  }
  PgConn conn(options.pg_dsn, {}, "report");
  conn.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "starting the report snapshot");
  ConfigTables tables(options.tables, conn);
  projections::PgRead read{conn, tables};
  form.from_postgres(read, each);
  conn.exec("COMMIT", "ending the report snapshot");
}

projections::Counts write_report(const ReportOptions& options,
                                 const projections::Projection& projection, std::ostream& out) {
  projections::Counts counts;
  read_canonical(options, projection, [&](const projections::CanonicalRecord& r) {
    if (counts.empty() || counts.back().first != r.section) counts.emplace_back(r.section, 0);
    ++counts.back().second;
    out.write(r.text.data(), static_cast<std::streamsize>(r.text.size()));
    if (!out) throw std::runtime_error("report: writing the output failed");
  });
  out.flush();
  if (!out) throw std::runtime_error("report: writing the output failed");
  return counts;
}

}  // namespace walfold::tools
