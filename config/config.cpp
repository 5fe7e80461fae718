#include "config/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "common/error.h"
#include "config/section.h"

namespace walfold {
namespace {

// Collects every problem instead of stopping at the first, so `walfold check-config` (and the
// error of `walfold run`) can list them all. A getter whose value is bad records a problem and
// returns the default, and parsing goes on.
struct Ctx {
  std::vector<ConfigProblem> problems;
  void error(const YAML::Mark& mark, const std::string& what) {
    ConfigProblem p;
    if (!mark.is_null()) {
      p.line = mark.line + 1;
      p.column = mark.column + 1;
    }
    p.message = what;
    problems.push_back(std::move(p));
  }
};

YAML::Mark mark_of(const YAML::Node& node) {
  return node && node.IsDefined() ? node.Mark() : YAML::Mark::null_mark();
}

// Checks that `node` is a mapping whose keys are all in `allowed`; false when it is no mapping.
bool check_keys(Ctx& ctx, const YAML::Node& node, const std::string& where,
                const std::vector<std::string>& allowed) {
  if (!node.IsMap()) {
    ctx.error(node.Mark(), where + " must be a mapping");
    return false;
  }
  std::map<std::string, int> seen;  // key -> line (1-based)
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) {
      ctx.error(kv.first.Mark(), "a key in " + where + " must be a plain name");
      continue;
    }
    auto key = kv.first.Scalar();
    // yaml-cpp keeps one of two equal keys silently; a setting must not vanish that way.
    auto [it, fresh] = seen.emplace(key, kv.first.Mark().line + 1);
    if (!fresh) {
      ctx.error(kv.first.Mark(), "duplicate key '" + key + "' in " + where + " (first at line " +
                                     std::to_string(it->second) + ")");
      continue;
    }
    if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
    auto near = closest_name(key, allowed);
    if (!near.empty()) {
      ctx.error(kv.first.Mark(),
                "unknown key '" + key + "' in " + where + ": did you mean '" + near + "'?");
    } else {
      auto sorted = allowed;
      std::sort(sorted.begin(), sorted.end());
      std::string list;
      for (const auto& a : sorted) list += (list.empty() ? "" : ", ") + a;
      ctx.error(kv.first.Mark(),
                "unknown key '" + key + "' in " + where + " (expected one of: " + list + ")");
    }
  }
  return true;
}

std::string get_string(Ctx& ctx, const YAML::Node& parent, const std::string& key,
                       const std::string& where, const std::string& fallback) {
  auto node = parent[key];
  if (!node) return fallback;
  if (!node.IsScalar()) {
    ctx.error(node.Mark(), where + "." + key + " has the wrong type (expected a text value)");
    return fallback;
  }
  return node.Scalar();
}

std::optional<std::int64_t> parse_integer(const std::string& s) {
  std::int64_t v = 0;
  const char* b = s.data() + (s.size() > 1 && s[0] == '+' ? 1 : 0);
  auto [p, ec] = std::from_chars(b, s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || b == s.data() + s.size())
    return std::nullopt;
  return v;
}

bool looks_integral(const std::string& s) {
  std::size_t i = s.size() > 1 && (s[0] == '-' || s[0] == '+') ? 1 : 0;
  return i < s.size() && s.find_first_not_of("0123456789", i) == std::string::npos;
}

// An integer setting in [min, max]. `unit` (a duration or size kind) lets the value carry a unit
// instead of the key's own, converted by `convert` into that unit; `unit_hint` names them.
enum class Unit { None, Milliseconds, Mebibytes };

std::int64_t get_number(Ctx& ctx, const YAML::Node& parent, const std::string& key,
                        const std::string& where, std::int64_t fallback, std::int64_t min,
                        std::int64_t max, Unit unit = Unit::None) {
  auto node = parent[key];
  if (!node) return fallback;
  const std::string name = where + "." + key;
  static const char* kDurationHint =
      "a number of milliseconds, or a duration with a unit: 500ms, 30s, 2m, 1h";
  static const char* kSizeHint = "a number of MiB, or a size with a unit: 512KiB, 256MiB, 1GiB";
  if (!node.IsScalar()) {
    ctx.error(node.Mark(), name + " has the wrong type (expected " +
                               (unit == Unit::Milliseconds ? std::string(kDurationHint)
                                : unit == Unit::Mebibytes  ? std::string(kSizeHint)
                                                           : std::string("an integer")) +
                               ")");
    return fallback;
  }
  const std::string text = node.Scalar();
  std::optional<std::int64_t> v;
  bool with_unit = false;
  if (looks_integral(text)) {
    v = parse_integer(text);
    if (!v) {
      ctx.error(node.Mark(), name + " = " + text + " is out of range [" + std::to_string(min) +
                                 ", " + std::to_string(max) + "]");
      return fallback;
    }
  } else if (unit == Unit::Milliseconds) {
    v = parse_duration_ms(text);
    with_unit = true;
    if (!v) {
      ctx.error(node.Mark(), name + " '" + text + "' is not a duration (" + kDurationHint + ")");
      return fallback;
    }
  } else if (unit == Unit::Mebibytes) {
    auto bytes = parse_size_bytes(text);
    with_unit = true;
    if (!bytes) {
      ctx.error(node.Mark(), name + " '" + text + "' is not a size (" + kSizeHint + ")");
      return fallback;
    }
    if (*bytes % (1024 * 1024) != 0) {
      ctx.error(node.Mark(), name + " '" + text + "' is not a whole number of MiB");
      return fallback;
    }
    v = *bytes / (1024 * 1024);
  } else {
    ctx.error(node.Mark(), name + " has the wrong type (expected an integer)");
    return fallback;
  }
  if (*v < min || *v > max) {
    const char* u = unit == Unit::Milliseconds ? " ms" : unit == Unit::Mebibytes ? " MiB" : "";
    ctx.error(node.Mark(), name + " = " + text +
                               (with_unit ? " (" + std::to_string(*v) + u + ")" : "") +
                               " is out of range [" + std::to_string(min) + ", " +
                               std::to_string(max) + "]" + (with_unit ? u : ""));
    return fallback;
  }
  return *v;
}

int get_int(Ctx& ctx, const YAML::Node& parent, const std::string& key, const std::string& where,
            int fallback, int min, int max, Unit unit = Unit::None) {
  return static_cast<int>(get_number(ctx, parent, key, where, fallback, min, max, unit));
}

std::chrono::milliseconds get_ms(Ctx& ctx, const YAML::Node& parent, const std::string& key,
                                 const std::string& where, std::chrono::milliseconds fallback,
                                 std::int64_t min, std::int64_t max) {
  return std::chrono::milliseconds(
      get_number(ctx, parent, key, where, fallback.count(), min, max, Unit::Milliseconds));
}

// "a, b or c"
std::string one_of(const std::vector<std::string>& words, const char* last = " or ") {
  std::string out;
  for (std::size_t i = 0; i < words.size(); ++i)
    out += (i == 0 ? "" : i + 1 == words.size() ? last : ", ") + words[i];
  return out;
}

// "a, b, c": how the model errors list a projection's models.
std::string comma_list(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : ", ") + w;
  return out;
}

// A `model:` value: one of the selected projection's models.
std::optional<std::string> parse_model(Ctx& ctx, const YAML::Node& node,
                                       const ProjectionConfigSpec& spec) {
  const std::string models = comma_list(spec.models);
  if (!node.IsScalar()) {
    ctx.error(node.Mark(), "model must be one of " + models);
    return std::nullopt;
  }
  auto s = node.Scalar();
  if (std::find(spec.models.begin(), spec.models.end(), s) != spec.models.end()) return s;
  auto near = closest_name(s, spec.models);
  ctx.error(node.Mark(), "model '" + s + "' is not one of " + models +
                             (near.empty() ? "" : " (did you mean '" + near + "'?)"));
  return std::nullopt;
}

// http: {listen, allow_remote, token_file, admin, ready_max_lag} (observe/)
void parse_http(Ctx& ctx, const YAML::Node& root, Config& c) {
  auto h = root["http"];
  if (!h || !check_keys(ctx, h, "http",
                        {"listen", "allow_remote", "token_file", "admin", "ready_max_lag"}))
    return;
  auto& http = c.http;
  auto get_bool = [&](const char* key, bool fallback) {
    auto n = h[key];
    if (!n) return fallback;
    bool v = fallback;
    if (!n.IsScalar() || !YAML::convert<bool>::decode(n, v))
      ctx.error(n.Mark(), std::string("http.") + key + " must be true or false");
    return v;
  };
  if (auto l = h["listen"]) {
    const auto text = get_string(ctx, h, "listen", "http", "");
    if (text == "off" || text == "false" || text.empty()) {
      http.enabled = false;
    } else {
      const auto colon = text.rfind(':');
      std::string host = colon == std::string::npos ? "" : text.substr(0, colon);
      if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
      auto port = colon == std::string::npos ? std::nullopt : parse_integer(text.substr(colon + 1));
      if (host.empty() || !port || *port < 0 || *port > 65535) {
        ctx.error(l.Mark(), "http.listen '" + text +
                                "' must be HOST:PORT (e.g. 127.0.0.1:9731, [::1]:9731) or off");
      } else {
        http.host = host;
        http.port = static_cast<int>(*port);
      }
    }
  }
  http.allow_remote = get_bool("allow_remote", false);
  http.token_file = get_string(ctx, h, "token_file", "http", "");
  http.admin = get_bool("admin", false);
  if (auto m = h["ready_max_lag"]) {
    auto lim = parse_lag_limit(get_string(ctx, h, "ready_max_lag", "http", ""));
    if (!lim)
      ctx.error(m.Mark(),
                "http.ready_max_lag must be a size (e.g. 64MiB, 1GiB, or bytes) or a duration "
                "(e.g. 30s, 2m)");
    else
      http.ready_max_lag = *lim;
  }
  if (http.enabled && !is_loopback_host(http.host) && !http.allow_remote)
    ctx.error(mark_of(h["listen"]),
              "http.listen " + http.host +
                  " is not a loopback address: the status page and metrics would be reachable "
                  "from the network; set http.allow_remote: true (with http.token_file) to allow "
                  "it");
  if (http.allow_remote && http.token_file.empty())
    ctx.error(h.Mark(),
              "http.allow_remote needs http.token_file: every request must then carry that "
              "bearer token");
}

// One row condition of a rule, `key: VALUE` as the projection's rule key says.
std::optional<RowCondition> parse_condition(Ctx& ctx, const YAML::Node& n, const std::string& where,
                                            const ProjectionConfigSpec::RuleKey& k) {
  RowCondition cond;
  cond.key = k.key;
  cond.column = k.column;
  cond.op = k.op;
  cond.value = get_string(ctx, n, k.key, where, "");
  if (cond.op == RowCondition::Op::Above) {
    cond.number = Decimal::parse(cond.value);
    if (!cond.number) {
      ctx.error(n[k.key].Mark(),
                where + "." + k.key + " '" + cond.value +
                    "' is not a decimal number (write it as a string, e.g. \"10000.00\")");
      return std::nullopt;
    }
  }
  return cond;
}

// priorities: {aging_ms, replay, rules: [{table, <the projection's row-condition keys>,
// priority}, ...]}
void parse_priorities(Ctx& ctx, const YAML::Node& root, Config& c, bool tables_ok,
                      const ProjectionConfigSpec* spec) {
  auto pr = root["priorities"];
  if (!pr) return;
  if (!check_keys(ctx, pr, "priorities", {"aging_ms", "replay", "rules"})) return;
  c.priorities.aging = get_ms(ctx, pr, "aging_ms", "priorities", c.priorities.aging, 1, 3600000);
  c.priorities.replay = get_int(ctx, pr, "replay", "priorities", c.priorities.replay, 0, 255);
  auto rules = pr["rules"];
  if (!rules) return;
  if (!rules.IsSequence()) {
    ctx.error(rules.Mark(), "priorities.rules must be a list of rules");
    return;
  }
  std::vector<std::string> allowed{"table", "priority"}, condition_keys;
  if (spec)
    for (const auto& k : spec->rule_keys) {
      allowed.push_back(k.key);
      condition_keys.push_back(k.key);
    }
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const auto& n = rules[i];
    const std::string where = "priorities.rules[" + std::to_string(i) + "]";
    if (!check_keys(ctx, n, where, allowed)) continue;
    PriorityRule rule;
    if (!n["priority"]) ctx.error(n.Mark(), where + ".priority is required");
    rule.priority = get_int(ctx, n, "priority", where, 0, 0, 255);
    rule.table = get_string(ctx, n, "table", where, "");
    bool conditions_ok = true;
    std::vector<std::string> models;  // the models the rule's conditions test
    if (spec)
      for (const auto& k : spec->rule_keys) {
        if (!n[k.key]) continue;
        auto cond = parse_condition(ctx, n, where, k);
        conditions_ok = conditions_ok && cond.has_value();
        if (cond) rule.conditions.push_back(std::move(*cond));
        if (std::find(models.begin(), models.end(), k.model) == models.end())
          models.push_back(k.model);
      }
    if (rule.table.empty() && rule.conditions.empty() && conditions_ok) {
      std::vector<std::string> keys{"table"};
      keys.insert(keys.end(), condition_keys.begin(), condition_keys.end());
      ctx.error(n.Mark(), where + " has no condition (" + one_of(keys) + ")");
      continue;
    }
    if (models.size() > 1) {
      ctx.error(n.Mark(), where + " tests rows of " + one_of(models, " and ") +
                              " at once; a rule's conditions are about one table");
      continue;
    }
    if (!models.empty()) rule.model = models[0];
    const TableConfig* t = nullptr;
    if (!rule.table.empty()) {
      if (rule.table.find('.') == std::string::npos) rule.table = "public." + rule.table;
      auto it = c.tables.find(rule.table);
      if (it == c.tables.end()) {
        // Only worth saying when the tables themselves were read without problems.
        if (tables_ok)
          ctx.error(n["table"].Mark(), where + ".table '" + rule.table + "' is not in tables");
        continue;
      }
      t = &it->second;
    }
    if (!rule.model.empty() && t && t->model != rule.model) {
      std::vector<std::string> keys;
      for (const auto& k : spec->rule_keys)
        if (k.model == rule.model) keys.push_back(k.key);
      ctx.error(n.Mark(), where + ": " + one_of(keys, " and ") + " apply to the " + rule.model +
                              " table, not " + rule.table + " (model " + t->model + ")");
      continue;
    }
    c.priorities.rules.push_back(std::move(rule));
  }
}

// yaml-cpp takes a quoted value that is not closed on its line as running on, across lines, to
// the next quote or the end of the file: one on the last line is accepted silently, one mid-file
// swallows the keys after it or is reported lines later. walfold's values never span lines, so a
// quote that a line opens and does not close is reported where it opens; the returned text has
// the quote closed at the end of its line, so that parsing goes on and finds the other problems.
std::string close_unterminated_quotes(const std::string& text, Ctx& ctx) {
  std::string out;
  out.reserve(text.size() + 8);
  std::size_t pos = 0;
  int lineno = 0;
  int block_indent = -1;  // inside a block scalar (| or >): lines indented more than this
  while (pos <= text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    ++lineno;
    const std::size_t first = line.find_first_not_of(" \t");
    const int indent = first == std::string::npos ? -1 : static_cast<int>(first);
    if (block_indent >= 0 && (indent < 0 || indent > block_indent)) {
      out += line;
    } else {
      block_indent = -1;
      char quote = 0;
      std::size_t opened = 0;
      char prev_sig = 0;  // last character outside quotes that is not a blank (0: none yet)
      std::size_t i = 0;
      for (; i < line.size(); ++i) {
        char ch = line[i];
        if (quote == '"') {
          if (ch == '\\')
            ++i;
          else if (ch == '"')
            quote = 0, prev_sig = '"';
          continue;
        }
        if (quote == '\'') {
          if (ch == '\'' && i + 1 < line.size() && line[i + 1] == '\'')
            ++i;
          else if (ch == '\'')
            quote = 0, prev_sig = '\'';
          continue;
        }
        if (ch == ' ' || ch == '\t') continue;
        const bool after_blank = i > 0 && (line[i - 1] == ' ' || line[i - 1] == '\t');
        if (ch == '#' && (i == 0 || after_blank)) break;  // a comment
        if ((ch == '"' || ch == '\'') &&
            (prev_sig == 0 || (after_blank && std::strchr(":-?", prev_sig)) ||
             std::strchr("[{,", prev_sig))) {
          quote = ch;
          opened = i;
          continue;
        }
        prev_sig = ch;
      }
      out += line;
      if (quote) {
        YAML::Mark at;
        at.line = lineno - 1;
        at.column = static_cast<int>(opened);
        ctx.error(at, std::string("unterminated quoted value: the ") + quote +
                          " opened here is not closed on this line (a quoted value must end on "
                          "the line it starts)");
        if (quote == '"' && i > line.size()) out += '\\';  // a dangling escape
        out += quote;
      }
      // A block scalar starts when the value is '|' or '>' (with chomping/indent indicators).
      const std::size_t last = line.find_last_not_of(" \t");
      if (!quote && last != std::string::npos) {
        std::size_t s = last;
        while (s > 0 && (line[s] == '-' || line[s] == '+' || (line[s] >= '1' && line[s] <= '9')))
          --s;
        if ((line[s] == '|' || line[s] == '>') && s > 0 &&
            (line[s - 1] == ' ' || line[s - 1] == ':'))
          block_indent = indent;
      }
    }
    if (end == text.size()) break;
    out += '\n';
    pos = end + 1;
  }
  return out;
}

void parse_nodes(Ctx& ctx, const std::string& yaml_text, const std::string& source_name,
                 const ProjectionSpecs& specs, Config& c);

}  // namespace

std::string format_problem(const std::string& file, const ConfigProblem& p) {
  std::string out = file;
  if (p.line > 0) out += ":" + std::to_string(p.line) + ":" + std::to_string(p.column);
  return out + ": " + p.message;
}

namespace {
// "<digits><unit>" -> digits × the unit's factor; nullopt for no digits, an unknown unit or
// overflow.
template <std::size_t N>
std::optional<std::int64_t> parse_with_unit(
    const std::string& text, const std::pair<const char*, std::int64_t> (&units)[N]) {
  std::size_t digits = text.find_first_not_of("0123456789");
  if (digits == 0 || digits == std::string::npos) return std::nullopt;
  auto n = parse_integer(text.substr(0, digits));
  if (!n) return std::nullopt;
  const std::string unit = text.substr(digits);
  for (const auto& [name, factor] : units)
    if (unit == name) {
      if (*n > INT64_MAX / factor) return std::nullopt;
      return *n * factor;
    }
  return std::nullopt;
}
}  // namespace

std::optional<std::int64_t> parse_duration_ms(const std::string& text) {
  static const std::pair<const char*, std::int64_t> units[] = {
      {"ms", 1}, {"s", 1000}, {"m", 60'000}, {"min", 60'000}, {"h", 3'600'000}, {"d", 86'400'000}};
  return parse_with_unit(text, units);
}

std::optional<std::int64_t> parse_size_bytes(const std::string& text) {
  static const std::pair<const char*, std::int64_t> units[] = {
      {"B", 1}, {"KiB", 1LL << 10}, {"MiB", 1LL << 20}, {"GiB", 1LL << 30}, {"TiB", 1LL << 40}};
  return parse_with_unit(text, units);
}

std::string closest_name(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_d = 3;  // at most 2 edits
  for (const auto& cand : candidates) {
    // Edit distance with adjacent transpositions (optimal string alignment): "prot" is one
    // edit from "port".
    const std::size_t n = word.size(), m = cand.size();
    std::vector<std::vector<std::size_t>> dist(n + 1, std::vector<std::size_t>(m + 1));
    for (std::size_t i = 0; i <= n; ++i) dist[i][0] = i;
    for (std::size_t j = 0; j <= m; ++j) dist[0][j] = j;
    for (std::size_t i = 1; i <= n; ++i)
      for (std::size_t j = 1; j <= m; ++j) {
        const std::size_t cost = word[i - 1] == cand[j - 1] ? 0 : 1;
        dist[i][j] = std::min({dist[i - 1][j] + 1, dist[i][j - 1] + 1, dist[i - 1][j - 1] + cost});
        if (i > 1 && j > 1 && word[i - 1] == cand[j - 2] && word[i - 2] == cand[j - 1])
          dist[i][j] = std::min(dist[i][j], dist[i - 2][j - 2] + 1);
      }
    const std::size_t d = dist[n][m];
    if (d < best_d && d * 2 < word.size()) {
      best_d = d;
      best = cand;
    }
  }
  return best;
}

const TableConfig* Config::table(const std::string& schema, const std::string& name) const {
  auto it = tables.find(schema + "." + name);
  return it == tables.end() ? nullptr : &it->second;
}

const TableConfig* Config::table_for(std::string_view model) const {
  for (const auto& [_, t] : tables)
    if (t.model == model) return &t;
  return nullptr;
}

ConfigCheck check_config_text(const std::string& yaml_text, const std::string& source_name,
                              const ProjectionSpecs& specs) {
  Ctx ctx;
  Config c;
  try {
    parse_nodes(ctx, yaml_text, source_name, specs, c);
  } catch (const YAML::Exception& e) {
    // A conversion the checks above did not anticipate (a list where a name belongs, a
    // mapping as a key): still a configuration problem with its place.
    ctx.error(e.mark, e.msg);
  }
  ConfigCheck out;
  out.problems = std::move(ctx.problems);
  std::stable_sort(out.problems.begin(), out.problems.end(),
                   [](const ConfigProblem& a, const ConfigProblem& b) {
                     return std::pair(a.line, a.column) < std::pair(b.line, b.column);
                   });
  if (out.problems.empty()) out.config = std::move(c);
  return out;
}

ConfigCheck check_config_file(const std::string& path, const ProjectionSpecs& specs) {
  std::ifstream in(path);
  if (!in) {
    ConfigCheck out;
    out.problems.push_back(
        {0, 0, std::string("cannot open the configuration file: ") + std::strerror(errno)});
    return out;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) {
    ConfigCheck out;
    out.problems.push_back({0, 0, "cannot read the configuration file"});
    return out;
  }
  return check_config_text(ss.str(), path, specs);
}

namespace {
[[noreturn]] void throw_problems(const std::string& file, const std::vector<ConfigProblem>& ps) {
  std::string msg;
  for (const auto& p : ps) msg += (msg.empty() ? "" : "\n") + format_problem(file, p);
  throw ConfigError(msg);
}
}  // namespace

Config parse_config(const std::string& yaml_text, const std::string& source_name,
                    const ProjectionSpecs& specs) {
  auto r = check_config_text(yaml_text, source_name, specs);
  if (!r.config) throw_problems(source_name, r.problems);
  return std::move(*r.config);
}

Config load_config(const std::string& path, const ProjectionSpecs& specs) {
  auto r = check_config_file(path, specs);
  if (!r.config) throw_problems(path, r.problems);
  return std::move(*r.config);
}

std::string resolve_config_path(const std::string& cli_path) {
  if (!cli_path.empty()) return cli_path;
  const char* env = std::getenv("WALFOLD_CONFIG");
  if (env != nullptr && *env != '\0') return env;
  return "/etc/walfold/walfold.yaml";
}

namespace {
// One configuration file being read: every section parser gets the whole document (a section
// may look at another, e.g. priorities at tables) and adds its problems to ctx.
struct Document {
  Ctx& ctx;
  const YAML::Node& root;
  Config& c;
  const ProjectionSpecs& specs;  // the projections `projection:` may select
  bool tables_ok = true;  // the tables were read without problems (later checks depend on them)
  const ProjectionConfigSpec* spec = nullptr;  // the selected projection (nullptr: unknown)
};

// postgres: {dsn, password_file, slot, publication}; the one required section.
void parse_postgres_section(Document& d) {
  auto& ctx = d.ctx;
  auto& c = d.c;
  auto pg = d.root["postgres"];
  if (!pg) {
    ctx.error(d.root.Mark(), "missing section 'postgres'");
    return;
  }
  if (!check_keys(ctx, pg, "postgres", {"dsn", "password_file", "slot", "publication"})) return;
  c.postgres.dsn = get_string(ctx, pg, "dsn", "postgres", "");
  if (c.postgres.dsn.empty() && (!pg["dsn"] || pg["dsn"].IsScalar()))
    ctx.error(pg["dsn"] ? pg["dsn"].Mark() : pg.Mark(), "postgres.dsn is required");
  c.postgres.password_file = get_string(ctx, pg, "password_file", "postgres", "");
  c.postgres.slot = get_string(ctx, pg, "slot", "postgres", c.postgres.slot);
  c.postgres.publication = get_string(ctx, pg, "publication", "postgres", c.postgres.publication);
  for (const auto& [key, value] :
       {std::pair{"slot", c.postgres.slot}, std::pair{"publication", c.postgres.publication}}) {
    bool ok = !value.empty() && value.size() <= 63;
    for (char ch : value)
      ok = ok && ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_');
    if (!ok)
      ctx.error(pg[key] ? pg[key].Mark() : pg.Mark(),
                std::string("postgres.") + key + " '" + value +
                    "' must be 1-63 characters of lower-case letters, digits and '_'");
  }
}

// redis: {host, port, unix_socket, username, password_file, db, prefix}
void parse_redis_section(Document& d) {
  auto& ctx = d.ctx;
  auto& c = d.c;
  auto r = d.root["redis"];
  if (!r ||
      !check_keys(ctx, r, "redis",
                  {"host", "port", "unix_socket", "username", "password_file", "db", "prefix"}))
    return;
  c.redis.host = get_string(ctx, r, "host", "redis", c.redis.host);
  c.redis.port = get_int(ctx, r, "port", "redis", c.redis.port, 1, 65535);
  c.redis.unix_socket = get_string(ctx, r, "unix_socket", "redis", "");
  c.redis.username = get_string(ctx, r, "username", "redis", "");
  c.redis.password_file = get_string(ctx, r, "password_file", "redis", "");
  c.redis.db = get_int(ctx, r, "db", "redis", 0, 0, 15);
  c.redis.prefix = get_string(ctx, r, "prefix", "redis", c.redis.prefix);
  if (c.redis.prefix.find_first_of("{}: ") != std::string::npos || c.redis.prefix.empty())
    ctx.error(mark_of(r["prefix"]),
              "redis.prefix must be non-empty without '{', '}', ':' or blanks");
  if (!c.redis.username.empty() && c.redis.password_file.empty())
    ctx.error(mark_of(r["username"]),
              "redis.username needs redis.password_file (AUTH takes a user and its password)");
}

// mongodb: {uri, database, write_concern, username, password_file}
void parse_mongodb_section(Document& d) {
  auto& ctx = d.ctx;
  auto& c = d.c;
  auto m = d.root["mongodb"];
  if (!m || !check_keys(ctx, m, "mongodb",
                        {"uri", "database", "write_concern", "username", "password_file"}))
    return;
  c.mongodb.uri = get_string(ctx, m, "uri", "mongodb", c.mongodb.uri);
  c.mongodb.database = get_string(ctx, m, "database", "mongodb", c.mongodb.database);
  c.mongodb.write_concern = get_string(ctx, m, "write_concern", "mongodb", c.mongodb.write_concern);
  c.mongodb.username = get_string(ctx, m, "username", "mongodb", "");
  c.mongodb.password_file = get_string(ctx, m, "password_file", "mongodb", "");
  if (c.mongodb.uri.rfind("mongodb://", 0) != 0 && c.mongodb.uri.rfind("mongodb+srv://", 0) != 0)
    ctx.error(mark_of(m["uri"]), "mongodb.uri must start with mongodb:// or mongodb+srv://");
  if (c.mongodb.write_concern != "majority" &&
      (c.mongodb.write_concern.empty() ||
       c.mongodb.write_concern.find_first_not_of("0123456789") != std::string::npos))
    ctx.error(mark_of(m["write_concern"]), "mongodb.write_concern '" + c.mongodb.write_concern +
                                               "' must be 'majority' or a number");
  if (c.mongodb.username.empty() != c.mongodb.password_file.empty())
    ctx.error(mark_of(m[c.mongodb.username.empty() ? "password_file" : "username"]),
              "mongodb.username and mongodb.password_file go together (set both, or neither "
              "and let the URI carry no credentials)");
}

// One entry of tables: "schema.name: {model, priority}" (schema public when not given).
void parse_table_entry(Ctx& ctx, const YAML::Node& name, const YAML::Node& v, Config& c,
                       const ProjectionConfigSpec* spec) {
  if (!name.IsScalar()) {
    ctx.error(name.Mark(), "a table name must be a plain schema.table name");
    return;
  }
  auto full = name.Scalar();
  auto dot = full.find('.');
  TableConfig tc;
  if (dot == std::string::npos) {
    tc.name = full;
  } else {
    tc.schema = full.substr(0, dot);
    tc.name = full.substr(dot + 1);
  }
  if (!check_keys(ctx, v, "tables." + full, {"model", "priority"})) return;
  tc.priority = get_int(ctx, v, "priority", "tables." + full, tc.priority, 0, 255);
  if (!v["model"]) {
    ctx.error(v.Mark(), "tables." + full + ".model is required");
    return;
  }
  if (!spec) return;  // the projection is unknown: so are its models (said once, at projection:)
  auto model = parse_model(ctx, v["model"], *spec);
  if (!model) return;
  tc.model = *model;
  if (c.tables.count(tc.schema + "." + tc.name)) {
    ctx.error(name.Mark(), "table " + tc.schema + "." + tc.name + " is configured twice");
    return;
  }
  c.tables[tc.schema + "." + tc.name] = tc;
}

// tables: {schema.name: {model, priority}, ...}, by default the projection's default_tables;
// exactly one table per model of the projection.
void parse_tables_section(Document& d) {
  auto& ctx = d.ctx;
  auto& c = d.c;
  if (auto t = d.root["tables"]) {
    const std::size_t before = ctx.problems.size();
    if (!t.IsMap()) {
      ctx.error(t.Mark(), "tables must be a mapping of schema.table to settings");
    } else {
      for (const auto& kv : t) parse_table_entry(ctx, kv.first, kv.second, c, d.spec);
    }
    d.tables_ok = ctx.problems.size() == before && d.spec;
  } else if (d.spec) {
    for (const auto& tc : d.spec->default_tables) c.tables[tc.schema + "." + tc.name] = tc;
  } else {
    d.tables_ok = false;
  }
  // One table per model; not worth saying when a table's entry was wrong already (it would be
  // the same mistake seen again).
  if (!d.tables_ok) return;
  for (const auto& m : d.spec->models) {
    int n = 0;
    for (const auto& [_, tc] : c.tables) n += tc.model == m;
    if (n != 1)
      ctx.error(mark_of(d.root["tables"]),
                "exactly one table must have model '" + m + "' (found " + std::to_string(n) + ")");
  }
}

// reader: intervals, batch sizes, reconnect backoff, the transaction size limit.
void parse_reader_section(Document& d) {
  auto& ctx = d.ctx;
  auto& r = d.c.reader;
  auto rd = d.root["reader"];
  if (!rd || !check_keys(ctx, rd, "reader",
                         {"status_interval_ms", "enqueue_max_delay_ms", "enqueue_batch_jobs",
                          "heartbeat_interval_ms", "checkpoint_history_interval_ms",
                          "reconnect_min_ms", "reconnect_max_ms", "max_transaction_mb"}))
    return;
  r.status_interval =
      get_ms(ctx, rd, "status_interval_ms", "reader", r.status_interval, 10, 3600000);
  r.enqueue_max_delay =
      get_ms(ctx, rd, "enqueue_max_delay_ms", "reader", r.enqueue_max_delay, 0, 10000);
  r.enqueue_batch_jobs =
      get_int(ctx, rd, "enqueue_batch_jobs", "reader", r.enqueue_batch_jobs, 1, 100000);
  r.reconnect_min = get_ms(ctx, rd, "reconnect_min_ms", "reader", r.reconnect_min, 10, 600000);
  r.reconnect_max = get_ms(ctx, rd, "reconnect_max_ms", "reader", r.reconnect_max, 10, 3600000);
  r.heartbeat_interval =
      get_ms(ctx, rd, "heartbeat_interval_ms", "reader", r.heartbeat_interval, 0, 3600000);
  r.checkpoint_history_interval = get_ms(ctx, rd, "checkpoint_history_interval_ms", "reader",
                                         r.checkpoint_history_interval, 0, 86400000);
  r.max_transaction_mb = get_int(ctx, rd, "max_transaction_mb", "reader", r.max_transaction_mb, 1,
                                 65536, Unit::Mebibytes);
  if (r.reconnect_min > r.reconnect_max)
    ctx.error(rd.Mark(), "reader.reconnect_min_ms is larger than reader.reconnect_max_ms");
}

// workers: {count, batch sizes, lease_ms, idle_poll_max_ms, retry: {initial_ms, max_ms,
// max_attempts}}
void parse_workers_section(Document& d) {
  auto& ctx = d.ctx;
  auto& ws = d.c.workers;
  auto w = d.root["workers"];
  if (!w || !check_keys(ctx, w, "workers",
                        {"count", "batch_keys", "batch_jobs_per_key", "batch_max_changes",
                         "lease_ms", "idle_poll_max_ms", "retry"}))
    return;
  ws.count = get_int(ctx, w, "count", "workers", ws.count, 0, 256);
  ws.batch_keys = get_int(ctx, w, "batch_keys", "workers", ws.batch_keys, 1, 10000);
  ws.batch_jobs_per_key =
      get_int(ctx, w, "batch_jobs_per_key", "workers", ws.batch_jobs_per_key, 1, 10000);
  ws.batch_max_changes =
      get_int(ctx, w, "batch_max_changes", "workers", ws.batch_max_changes, 1, 10000000);
  ws.lease = get_ms(ctx, w, "lease_ms", "workers", ws.lease, 1000, 3600000);
  ws.idle_poll_max = get_ms(ctx, w, "idle_poll_max_ms", "workers", ws.idle_poll_max, 1, 10000);
  auto rt = w["retry"];
  if (!rt || !check_keys(ctx, rt, "workers.retry", {"initial_ms", "max_ms", "max_attempts"}))
    return;
  auto& r = ws.retry;
  r.initial = get_ms(ctx, rt, "initial_ms", "workers.retry", r.initial, 1, 3600000);
  r.max = get_ms(ctx, rt, "max_ms", "workers.retry", r.max, 1, 86400000);
  r.max_attempts = get_int(ctx, rt, "max_attempts", "workers.retry", r.max_attempts, 1, 1000);
  if (r.initial > r.max)
    ctx.error(rt.Mark(), "workers.retry.initial_ms is larger than workers.retry.max_ms");
}

void parse_priorities_section(Document& d) {
  parse_priorities(d.ctx, d.root, d.c, d.tables_ok, d.spec);
}

// projection: NAME (default bank), one of the specs given; read first, every other section's
// checks depend on it.
void parse_projection(Document& d) {
  const auto& specs = d.specs;
  d.c.projection = get_string(d.ctx, d.root, "projection", "top level", d.c.projection);
  std::vector<std::string> names;
  for (const auto* s : specs) {
    names.push_back(s->name);
    if (s->name == d.c.projection) d.spec = s;
  }
  if (d.spec) return;
  auto near = closest_name(d.c.projection, names);
  d.ctx.error(mark_of(d.root["projection"]),
              "projection '" + d.c.projection + "' is not one of " + comma_list(names) +
                  (near.empty() ? "" : " (did you mean '" + near + "'?)"));
}

// The sections of projections: the selected one's read by its parse_section, another's refused.
class Reader final : public SectionReader {
 public:
  Reader(Ctx& ctx, YAML::Node node, std::string key)
      : ctx_(ctx), node_(std::move(node)), key_(std::move(key)) {}
  const YAML::Node& section() const override { return node_; }
  const std::string& key() const override { return key_; }
  bool check_keys(const YAML::Node& node, const std::string& where,
                  const std::vector<std::string>& allowed) override {
    return walfold::check_keys(ctx_, node, where, allowed);
  }
  std::string text(const YAML::Node& parent, const std::string& key, const std::string& where,
                   const std::string& fallback) override {
    return get_string(ctx_, parent, key, where, fallback);
  }
  void error(const YAML::Node& at, const std::string& message) override {
    ctx_.error(mark_of(at), message);
  }

 private:
  Ctx& ctx_;
  YAML::Node node_;
  std::string key_;
};

void parse_projection_sections(Document& d) {
  for (const auto* s : d.specs) {
    if (!s->parse_section) continue;
    auto node = d.root[s->name];
    if (s != d.spec) {
      if (node)
        d.ctx.error(node.Mark(), "section '" + s->name + "' configures the " + s->name +
                                     " projection, but projection is '" + d.c.projection + "'");
      continue;
    }
    Reader r(d.ctx, node ? node : YAML::Node(YAML::NodeType::Undefined), s->name);
    d.c.projection_settings = s->parse_section(r);
  }
}

void parse_http_section(Document& d) {
  parse_http(d.ctx, d.root, d.c);
}

void parse_log_level(Document& d) {
  d.c.log_level = get_string(d.ctx, d.root, "log_level", "top level", d.c.log_level);
  static const std::vector<std::string> levels{"trace", "debug",    "info", "warn",
                                               "error", "critical", "off"};
  if (std::find(levels.begin(), levels.end(), d.c.log_level) != levels.end()) return;
  auto near = closest_name(d.c.log_level, levels);
  d.ctx.error(mark_of(d.root["log_level"]),
              "log_level '" + d.c.log_level +
                  "' is not one of trace, debug, info, warn, error, critical, off" +
                  (near.empty() ? "" : " (did you mean '" + near + "'?)"));
}

void parse_state_dir(Document& d) {
  d.c.state_dir = get_string(d.ctx, d.root, "state_dir", "top level", d.c.state_dir);
  if (d.c.state_dir.empty())
    d.ctx.error(mark_of(d.root["state_dir"]), "state_dir must not be empty");
}

// The top-level keys, each with its parser, in the order they are read (priorities after
// tables: a rule names a table).
struct Section {
  const char* key;
  void (*parse)(Document&);
};
const Section kSections[] = {
    {"projection", parse_projection},   {"postgres", parse_postgres_section},
    {"redis", parse_redis_section},     {"mongodb", parse_mongodb_section},
    {"tables", parse_tables_section},   {"reader", parse_reader_section},
    {"workers", parse_workers_section}, {"priorities", parse_priorities_section},
    {"http", parse_http_section},       {"log_level", parse_log_level},
    {"state_dir", parse_state_dir},
};

void parse_nodes(Ctx& ctx, const std::string& yaml_text, const std::string& source_name,
                 const ProjectionSpecs& specs, Config& c) {
  const std::string text = close_unterminated_quotes(yaml_text, ctx);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    ctx.error(e.mark, "malformed YAML: " + e.msg);
    return;
  }
  c.source_file = source_name;
  if (!root || root.IsNull()) {
    if (ctx.problems.empty()) ctx.error(YAML::Mark::null_mark(), "the file is empty");
    return;
  }
  std::vector<std::string> keys;
  for (const auto& s : kSections) keys.emplace_back(s.key);
  for (const auto* p : specs)
    if (p->parse_section) keys.push_back(p->name);
  if (!check_keys(ctx, root, "the top level", keys)) return;
  Document doc{ctx, root, c, specs};
  for (const auto& s : kSections) s.parse(doc);
  parse_projection_sections(doc);
}
}  // namespace

std::string SectionReader::near(const std::string& word,
                                const std::vector<std::string>& candidates) {
  return closest_name(word, candidates);
}

bool is_loopback_host(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

std::optional<LagLimit> parse_lag_limit(const std::string& text) {
  if (looks_integral(text)) {
    auto n = parse_integer(text);
    if (!n || *n < 0) return std::nullopt;
    return LagLimit{false, static_cast<double>(*n)};
  }
  if (auto b = parse_size_bytes(text)) return LagLimit{false, static_cast<double>(*b)};
  if (auto ms = parse_duration_ms(text)) return LagLimit{true, static_cast<double>(*ms) / 1000.0};
  return std::nullopt;
}

std::string format_lag_limit(const LagLimit& l) {
  std::ostringstream os;
  os << l.value << (l.seconds ? " s" : " bytes");
  return os.str();
}

std::string expand_environment(const std::string& text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '$' && i + 1 < text.size() && text[i + 1] == '{') {
      auto close = text.find('}', i + 2);
      if (close == std::string::npos) throw ConfigError("'" + text + "': unterminated ${...}");
      std::string name = text.substr(i + 2, close - i - 2);
      const char* value = std::getenv(name.c_str());
      if (!value)
        throw ConfigError("'" + text + "' refers to ${" + name + "}, which is not set" +
                          (name == "CREDENTIALS_DIRECTORY"
                               ? " (is LoadCredential= configured for the unit?)"
                               : ""));
      out += value;
      i = close;
    } else {
      out += text[i];
    }
  }
  return out;
}

std::string read_secret_file(const std::string& configured_path) {
  const std::string path = expand_environment(configured_path);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw ConfigError(path + ": the secret file does not exist or is not a regular file");
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot read the secret file");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

PgConnInfo postgres_conninfo(const PostgresConfig& pg) {
  PgConnInfo info(pg.dsn);
  if (!pg.password_file.empty()) info.password = read_secret_file(pg.password_file);
  return info;
}

}  // namespace walfold
