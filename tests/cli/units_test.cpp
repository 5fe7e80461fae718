// The shipped systemd units (systemd/walfold.service and the walfold@.service template): no
// failure restarts them forever, permanent failures are not restarted, nothing but walfold and
// its libraries can be executed, the credentials are ready to enable, and the template differs
// from the plain unit only where an instance must. `systemd-analyze verify` and `security` run on
// the built package (packaging/build-deb.sh, the package phase of scripts/test.sh).
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/harness/servers.h"

namespace walfold::test {
namespace {

struct Unit {
  // "Section.Key" -> values in order (a key may repeat).
  std::map<std::string, std::vector<std::string>> keys;
  std::vector<std::string> commented;  // "#Key=value" lines inside sections, without the '#'
};

Unit parse_unit(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot read " + path);
  Unit u;
  std::string line, section;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    if (line[0] == '[') {
      section = line.substr(1, line.find(']') - 1);
      continue;
    }
    if (line[0] == '#' || line[0] == ';') {
      if (!section.empty() && line.size() > 1 && std::isupper(line[1]) &&
          line.find('=') != std::string::npos)
        u.commented.push_back(line.substr(1));
      continue;
    }
    auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    u.keys[section + "." + line.substr(0, eq)].push_back(line.substr(eq + 1));
  }
  return u;
}

std::vector<std::string> words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

std::string one(const Unit& u, const std::string& key) {
  auto it = u.keys.find(key);
  if (it == u.keys.end() || it->second.size() != 1) return "(missing or repeated)";
  return it->second[0];
}

std::set<std::string> all_words(const Unit& u, const std::string& key) {
  std::set<std::string> out;
  auto it = u.keys.find(key);
  if (it == u.keys.end()) return out;
  for (const auto& v : it->second)
    for (const auto& w : words(v)) out.insert(w);
  return out;
}

void expect_safe_unit(const std::string& name) {
  SCOPED_TRACE(name);
  const Unit u = parse_unit(source_dir() + "/systemd/" + name);

  EXPECT_EQ(one(u, "Service.Restart"), "on-failure");
  const auto prevent = all_words(u, "Service.RestartPreventExitStatus");
  for (const char* code : {"64", "65", "73", "74", "77", "78"})
    EXPECT_TRUE(prevent.count(code)) << "RestartPreventExitStatus lacks " << code;
  // A start limit bounds every other failure: a burst > 0 within a non-zero interval.
  EXPECT_GT(std::stoi(one(u, "Unit.StartLimitBurst")), 0);
  EXPECT_NE(one(u, "Unit.StartLimitIntervalSec"), "0");
  EXPECT_NE(one(u, "Unit.StartLimitIntervalSec"), "infinity");

  EXPECT_EQ(one(u, "Service.NoExecPaths"), "/");
  std::set<std::string> exec_paths;
  for (auto w : all_words(u, "Service.ExecPaths")) exec_paths.insert(w[0] == '-' ? w.substr(1) : w);
  EXPECT_TRUE(exec_paths.count("/usr/bin/walfold"));
  // Every command the unit runs must be executable under NoExecPaths=/.
  for (const char* key : {"Service.ExecStart", "Service.ExecReload"}) {
    auto it = u.keys.find(key);
    if (it == u.keys.end()) continue;
    for (const auto& v : it->second) {
      auto bin = words(v).at(0);
      EXPECT_TRUE(exec_paths.count(bin)) << key << "'s " << bin << " is not in ExecPaths=";
    }
  }
  bool libs = false;
  for (const auto& p : exec_paths) libs |= p.rfind("/usr/lib/", 0) == 0;
  EXPECT_TRUE(libs) << "ExecPaths= names no library directory (ld.so and the .so files)";

  // The credentials, commented and ready to enable.
  for (const char* cred : {"pg-password", "mongodb-password", "redis-password"}) {
    bool found = false;
    for (const auto& c : u.commented)
      found |= c.rfind(std::string("LoadCredential=") + cred + ":", 0) == 0;
    EXPECT_TRUE(found) << "no commented LoadCredential=" << cred << ":...";
  }
  EXPECT_FALSE(u.keys.count("Service.LoadCredential"))
      << "an active LoadCredential= fails the unit when its file is missing";
}

TEST(Units, NoFailureRestartsForeverAndOnlyWalfoldExecutes) {
  expect_safe_unit("walfold.service");
  expect_safe_unit("walfold@.service");
}

TEST(Units, TheTemplateDiffersOnlyPerInstance) {
  const Unit plain = parse_unit(source_dir() + "/systemd/walfold.service");
  const Unit tmpl = parse_unit(source_dir() + "/systemd/walfold@.service");
  EXPECT_EQ(one(tmpl, "Service.ExecStart"), "/usr/bin/walfold run --config /etc/walfold/%i.yaml");
  EXPECT_EQ(one(tmpl, "Service.StateDirectory"), "walfold/%i");
  EXPECT_EQ(one(tmpl, "Service.WorkingDirectory"), "/var/lib/walfold/%i");
  const std::set<std::string> per_instance{"Unit.Description", "Service.ExecStart",
                                           "Service.StateDirectory", "Service.WorkingDirectory"};
  std::set<std::string> all;
  for (const auto& [k, v] : plain.keys) all.insert(k);
  for (const auto& [k, v] : tmpl.keys) all.insert(k);
  for (const auto& k : all) {
    if (per_instance.count(k)) continue;
    auto a = plain.keys.find(k), b = tmpl.keys.find(k);
    ASSERT_TRUE(a != plain.keys.end() && b != tmpl.keys.end())
        << k << " is in only one of walfold.service and walfold@.service";
    EXPECT_EQ(a->second, b->second) << k << " differs between walfold.service and walfold@.service";
  }
}

}  // namespace
}  // namespace walfold::test
