#include "reconcile/verify.h"

#include <map>
#include <ostream>
#include <sstream>

#include "tools/report.h"

namespace walfold::reconcile {
namespace {

// "account 17 ..." plus its "  tx" lines, or "user 5 ...": keyed by kind and id.
std::map<std::pair<int, long long>, std::string> records(const std::string& report) {
  std::map<std::pair<int, long long>, std::string> out;
  std::istringstream in(report);
  std::string line;
  std::string* current = nullptr;
  while (std::getline(in, line)) {
    if (line.rfind("  ", 0) == 0 && current) {
      *current += "\n" + line;
      continue;
    }
    int kind = line.rfind("account ", 0) == 0 ? 0 : line.rfind("user ", 0) == 0 ? 1 : -1;
    if (kind < 0) {
      current = nullptr;
      continue;
    }
    std::istringstream words(line);
    std::string word;
    long long id = 0;
    words >> word >> id;
    current = &(out[{kind, id}] = line);
  }
  return out;
}

void indent(std::ostream& out, const char* side, const std::string& block) {
  std::istringstream in(block);
  std::string line;
  bool first = true;
  while (std::getline(in, line)) {
    out << "  " << (first ? side : "          ") << line << "\n";
    first = false;
  }
}

}  // namespace

VerifyResult compare_reports(const std::string& postgres, const std::string& mongo,
                             std::ostream& out) {
  auto pg = records(postgres), mg = records(mongo);
  VerifyResult r;
  for (const auto& [key, _] : pg) (key.first == 0 ? r.accounts : r.users)++;
  auto it = pg.begin();
  auto jt = mg.begin();
  auto report = [&](const std::pair<int, long long>& key, const std::string* p,
                    const std::string* m) {
    ++r.drifted;
    out << "drift: " << (key.first == 0 ? "account " : "user ") << key.second << "\n";
    if (p)
      indent(out, "postgres: ", *p);
    else
      out << "  postgres: (none)\n";
    if (m)
      indent(out, "mongo:    ", *m);
    else
      out << "  mongo:    (none)\n";
  };
  while (it != pg.end() || jt != mg.end()) {
    if (jt == mg.end() || (it != pg.end() && it->first < jt->first)) {
      report(it->first, &it->second, nullptr);
      ++it;
    } else if (it == pg.end() || jt->first < it->first) {
      report(jt->first, nullptr, &jt->second);
      ++jt;
    } else {
      if (it->second != jt->second) report(it->first, &it->second, &jt->second);
      ++it;
      ++jt;
    }
  }
  return r;
}

VerifyOptions verify_options(const Config& cfg) {
  tools::ReportOptions r = tools::report_options(cfg, tools::ReportSource::Postgres);
  return {r.pg_dsn, r.mongo_uri, r.mongo_database, r.mongo_username, r.mongo_password, r.tables};
}

VerifyResult verify(const VerifyOptions& opts, std::ostream& out) {
  std::ostringstream pg, mg;
  tools::ReportOptions o;
  o.pg_dsn = opts.pg_dsn;
  o.mongo_uri = opts.mongo_uri;
  o.mongo_database = opts.mongo_database;
  o.mongo_username = opts.mongo_username;
  o.mongo_password = opts.mongo_password;
  o.tables = opts.tables;
  o.from = tools::ReportSource::Postgres;
  tools::write_report(o, pg);
  o.from = tools::ReportSource::Mongo;
  tools::write_report(o, mg);
  return compare_reports(pg.str(), mg.str(), out);
}

}  // namespace walfold::reconcile
