#include "reconcile/verify.h"

#include <algorithm>
#include <map>
#include <ostream>
#include <sstream>
#include <tuple>

namespace walfold::reconcile {
namespace {

// Ids that are all digits compare as numbers ("9" < "10"), others as bytes.
bool digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}
struct IdLess {
  bool operator()(const std::pair<std::size_t, std::string>& a,
                  const std::pair<std::size_t, std::string>& b) const {
    if (a.first != b.first) return a.first < b.first;
    if (digits(a.second) && digits(b.second) && a.second.size() != b.second.size())
      return a.second.size() < b.second.size();
    return a.second < b.second;
  }
};
using Key = std::pair<std::size_t, std::string>;  // section rank, id

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

VerifyResult compare_records(const std::vector<Record>& postgres, const std::vector<Record>& mongo,
                             std::ostream& out) {
  // Sections rank in the order they first appear (PostgreSQL's side first).
  std::vector<std::string> sections;
  auto rank = [&](const std::string& s) {
    auto it = std::find(sections.begin(), sections.end(), s);
    if (it != sections.end()) return static_cast<std::size_t>(it - sections.begin());
    sections.push_back(s);
    return sections.size() - 1;
  };
  VerifyResult r;
  std::map<Key, const std::string*, IdLess> pg, mg;
  for (const auto& rec : postgres) {
    pg[{rank(rec.section), rec.id}] = &rec.text;
    if (r.compared.empty() || r.compared.back().first != rec.section)
      r.compared.emplace_back(rec.section, 0);
    ++r.compared.back().second;
  }
  for (const auto& rec : mongo) mg[{rank(rec.section), rec.id}] = &rec.text;
  auto report = [&](const Key& key, const std::string* p, const std::string* m) {
    ++r.drifted;
    out << "drift: " << sections[key.first] << " " << key.second << "\n";
    if (p)
      indent(out, "postgres: ", *p);
    else
      out << "  postgres: (none)\n";
    if (m)
      indent(out, "mongo:    ", *m);
    else
      out << "  mongo:    (none)\n";
  };
  IdLess less;
  auto it = pg.begin();
  auto jt = mg.begin();
  while (it != pg.end() || jt != mg.end()) {
    if (jt == mg.end() || (it != pg.end() && less(it->first, jt->first))) {
      report(it->first, it->second, nullptr);
      ++it;
    } else if (it == pg.end() || less(jt->first, it->first)) {
      report(jt->first, nullptr, jt->second);
      ++jt;
    } else {
      if (*it->second != *jt->second) report(it->first, it->second, jt->second);
      ++it;
      ++jt;
    }
  }
  return r;
}

VerifyResult verify(const tools::ReportOptions& options, const projections::Projection& projection,
                    std::ostream& out) {
  std::vector<Record> pg, mg;
  tools::ReportOptions o = options;
  auto into = [](std::vector<Record>& v) {
    return [&v](const projections::CanonicalRecord& r) {
      v.push_back({std::string(r.section), std::string(r.id), std::string(r.text)});
    };
  };
  o.from = tools::ReportSource::Postgres;
  tools::read_canonical(o, projection, into(pg));
  o.from = tools::ReportSource::Mongo;
  tools::read_canonical(o, projection, into(mg));
  return compare_records(pg, mg, out);
}

}  // namespace walfold::reconcile
